# 012_dump_restore.pl: pg_dump and pg_restore into a new database keep every
# row mdfeed stores (candles, funding, open interest, lists, instruments,
# gaps, jobs), and the restored database works with the workers.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use MdfeedTest;

my $fake = start_fake(name => 'dump');
my $node = new_node('dump', $fake,
	'mdfeed.backfill_workers' => 1,
	'mdfeed.stream_enabled' => 'off',
	'mdfeed.derivatives_enabled' => 'off');
my $now = now_ms();
my $d = 24 * 3_600_000;

# real data through the workers, and a row of every other kind by hand
my @ids = (
	backfill($node, 'BTCUSDT', '1h', $now - 5 * $d),
	backfill($node, 'ETHUSDT', '1d', $now - 60 * $d));
push @ids, track_job($node, $node->safe_psql('postgres',
	"SELECT mdfeed_backfill_funding('BTCUSDT', " . ms_sql($now - 10 * $d) . ")"));
push @ids, track_job($node, $node->safe_psql('postgres',
	"SELECT mdfeed_backfill_open_interest('BTCUSDT', " . ms_sql($now - 2 * $d) . ")"));
job_is($node, $_, 'succeeded', "job $_ succeeds", 90) for @ids;
$node->safe_psql('postgres', <<'EOS');
INSERT INTO mdfeed.symbol_lists (exchange, symbol, list) VALUES ('binance', 'XRPUSDT', 'blacklist');
INSERT INTO mdfeed.auto_tracked VALUES ('binance', 'DUMPUSDT', 1234.5, 1, '2024-01-01');
INSERT INTO mdfeed.exchange_gaps VALUES ('binance', 'DUMPUSDT', '1m', '2019-01-01', '2019-02-01', '2024-01-01');
EOS

my @tables = qw(candles_1h candles_1d jobs instruments symbol_lists auto_tracked
  open_interest_1h funding_rates exchange_gaps);

sub fingerprint
{
	my ($db) = @_;
	my %fp;
	for my $t (@tables)
	{
		$fp{$t} = $node->safe_psql($db,
			"SELECT count(*) || ' ' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') FROM mdfeed.$t r");
	}
	$fp{seq} = $node->safe_psql($db, "SELECT last_value FROM mdfeed.jobs_id_seq");
	return \%fp;
}

my $before = fingerprint('postgres');
cmp_ok((split / /, $before->{$_})[0], '>', 0, "mdfeed.$_ has rows to dump") for @tables;

my $dir = PostgreSQL::Test::Utils::tempdir();
my ($out, $err) = run_command([ 'pg_dump', '-Fc', '-f', "$dir/mdfeed.dump", '-d', $node->connstr('postgres') ]);
is($err, '', 'pg_dump runs without a warning');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
($out, $err) = run_command([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), "$dir/mdfeed.dump" ]);
is($err, '', 'pg_restore runs without an error');

my $after = fingerprint('restored');
is($after->{$_}, $before->{$_}, "restored mdfeed.$_ equals the original ($before->{$_})") for @tables, 'seq';

# the workers on the restored database: point mdfeed.database at it
$node->append_conf('postgresql.conf', "mdfeed.database = 'restored'\n");
$node->restart;
wait_workers($node, 1, 60) or diag(log_tail($node, 30));
my $from = align_down('1h', $now - 3 * $d);
my $to = align_down('1h', now_ms());
my $id = $node->safe_psql('restored',
	"SELECT mdfeed_backfill('ETHUSDT', '1h', " . ms_sql($from) . ", " . ms_sql($to) . ")");
my $state = '';
for (1 .. 120)
{
	$state = $node->safe_psql('restored', "SELECT state FROM mdfeed.jobs WHERE id = $id");
	last if $state =~ /^(succeeded|failed|canceled)$/;
	sleep 1;
}
is($state, 'succeeded', 'a backfill on the restored database succeeds');
cmp_ok($id, '>', $before->{seq}, 'its job id follows the restored sequence');
is($node->safe_psql('restored',
	"SELECT count(*) FROM mdfeed.candles_1h WHERE symbol = 'ETHUSDT' AND closed AND open_time >= "
	  . ms_sql($from) . " AND open_time < " . ms_sql($to)),
	($to - $from) / 3_600_000,
	'and stores every candle of its range, closed');

done_testing();
