# 008_upgrade.pl: ALTER EXTENSION mdfeed UPDATE keeps every row, and for
# every released version in the chain, an upgraded database has exactly the
# schema of a fresh install of the default version.
#
# The schema is compared with pg_dump --binary-upgrade --schema-only, the
# one pg_dump mode that writes out every object of an extension (plain
# pg_dump writes only CREATE EXTENSION); the lines that name OIDs or other
# per-database facts are left out of the comparison.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use MdfeedTest;

# the versions: the default one, and every one a script installs or leads from
my $root = src_root();
my ($default) = slurp_file("$root/mdfeed.control") =~ /default_version\s*=\s*'([^']+)'/;
my %versions;
for my $f (glob("$root/sql/mdfeed--*.sql"))
{
	$versions{$1} = 1 if $f =~ /mdfeed--([\d.]+)\.sql$/;
	if ($f =~ /mdfeed--([\d.]+)--([\d.]+)\.sql$/) { $versions{$1} = 1; $versions{$2} = 1; }
}
my @older = sort { $a cmp $b } grep { $_ ne $default } keys %versions;
ok(defined $default && @older >= 1, "default version $default; older versions: @older");

my $fake = start_fake(name => 'upg');
my $node = new_node('upg', $fake, _no_extension => 1,
	'mdfeed.backfill_workers' => 1,
	'mdfeed.stream_enabled' => 'off',
	'mdfeed.derivatives_enabled' => 'off');

# schema_dump($db): the database's objects, per-database facts left out
sub schema_dump
{
	my ($db) = @_;
	my ($out, $err) = run_command([ 'pg_dump', '--schema-only', '--binary-upgrade',
		'--no-comments', '-d', $node->connstr($db) ]);
	die "pg_dump of $db failed: $err" if $err =~ /error/i;
	my @keep = grep {
		!/binary_upgrade_|^-- Dumped|^SELECT pg_catalog\.setval|^\\(un)?restrict|^SET |^SELECT pg_catalog\.set_config|relfrozenxid|^WHERE oid = '\d+';$/
	} split /\n/, $out;
	return join("\n", @keep) . "\n";
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION mdfeed');
is($node->safe_psql('fresh', "SELECT extversion FROM pg_extension WHERE extname = 'mdfeed'"),
	$default, "a fresh install is at $default");
my $fresh = schema_dump('fresh');
like($fresh, qr/CREATE TABLE mdfeed\.candles_1m/, 'the dump holds the extension\'s objects');

# the data a user has: one row or more in every table
my @tables = qw(candles_1m candles_1h candles_1mo jobs instruments symbol_lists auto_tracked
  open_interest_1h funding_rates exchange_gaps);
$node->safe_psql('postgres', 'CREATE ROLE upg_analyst');
my $fill = <<'EOS';
INSERT INTO mdfeed.candles_1m
SELECT 'BTCUSDT', t, t + interval '1 minute' - interval '1 millisecond',
	   1.5, 2.25, 1.125, 2.0000001, 10.5, 21.75, 5.25, 10.875, 42, true, '2024-01-01'
FROM generate_series(timestamptz '2024-01-01 00:00+00', '2024-01-01 23:59+00', interval '1 minute') t;
INSERT INTO mdfeed.candles_1h VALUES ('ETHUSDT', '2024-01-01 00:00+00', '2024-01-01 00:59:59.999+00',
	'0.00000001', '123456789012345678.123456789', 0, 1, 2, 3, 4, 5, 7, false, '2024-01-01');
INSERT INTO mdfeed.candles_1mo VALUES ('BTCUSDT', '2024-02-01 00:00+00', '2024-02-29 23:59:59.999+00',
	1, 2, 0.5, 1.5, 100, 150, 50, 75, 1000, true, '2024-03-01');
INSERT INTO mdfeed.jobs (kind, exchange, symbol, "interval", from_time, to_time, state, origin, requested_by,
						 rows_written, progress, finished_at)
VALUES ('candles', 'binance', 'BTCUSDT', '1m', '2024-01-01', '2024-01-02', 'succeeded', 'user', 'upg_analyst',
		1440, 1, '2024-01-02'),
	   ('funding', 'binance', 'BTCUSDT', NULL, '2024-01-01', '2024-01-02', 'failed', 'sync', 'postgres',
		0, 0.5, '2024-01-02'),
	   ('candles', 'binance', 'ETHUSDT', '1h', '2024-01-01', '2024-01-02', 'canceled', 'user', 'gone_role',
		0, 0, '2024-01-02');
INSERT INTO mdfeed.instruments VALUES ('binance', 'UPGUSDT', 'BREAK', 'PERPETUAL', 'UPG', 'USDT',
	'2019-09-25', 0.1, 0.001, '2024-01-01');
INSERT INTO mdfeed.symbol_lists VALUES ('binance', 'UPGUSDT', 'whitelist', '2024-01-01', 'postgres'),
	('binance', 'UPG2USDT', 'blacklist', '2024-01-01', 'postgres');
INSERT INTO mdfeed.auto_tracked VALUES ('binance', 'UPGUSDT', 123456.789, 1, '2024-01-01');
INSERT INTO mdfeed.open_interest_1h VALUES ('BTCUSDT', '2024-01-01 00:00+00', 80000.123, 3400000000.5, '2024-01-01');
INSERT INTO mdfeed.funding_rates VALUES ('BTCUSDT', '2024-01-01 00:00+00', 0.0001, 42000.1, '2024-01-01 00:00:00.005+00', '2024-01-01');
INSERT INTO mdfeed.exchange_gaps VALUES ('binance', 'BTCUSDT', '1m', '2019-01-01', '2019-09-25', '2024-01-01');
EOS

# fingerprint($db, $first): each table's row count and a digest of its rows,
# in the columns 1.0 had (later versions add columns; they must keep these),
# after the statement $first, in its transaction.  The workers start when
# the update commits, and then keep mdfeed.instruments fresh from the fake
# exchange (which does not list UPGUSDT) and rank the tracked symbols: so
# the rows after the update are read in the update's own transaction, and
# only the instruments written here are compared.
my %cols10;
sub fingerprint
{
	my ($db, $first) = @_;
	my $sql = "BEGIN;\n" . ($first // '') . ";\n";
	for my $t (@tables)
	{
		my $cols = $cols10{$t} //= $node->safe_psql($db,
			"SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
			  . "WHERE attrelid = 'mdfeed.$t'::regclass AND attnum > 0 AND NOT attisdropped");
		$sql .= "SELECT '$t=' || count(*) || ' ' || coalesce(md5(string_agg(r::text, '|' ORDER BY r::text)), '') "
		  . "FROM (SELECT $cols FROM mdfeed.$t"
		  . ($t eq 'instruments' ? " WHERE symbol LIKE 'UPG%'" : '') . ") r;\n";
	}
	# in the transaction of the update, if one is given: the workers, which
	# start at its commit, cannot have touched a row yet
	my %fp = map { split /=/, $_, 2 } grep { /=/ } split /\n/, $node->safe_psql($db, "$sql COMMIT;");
	return \%fp;
}

for my $v (@older)
{
	my $db = $v eq $older[0] ? 'postgres' : "upg_" . ($v =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db") if $db ne 'postgres';
	$node->safe_psql($db, "CREATE EXTENSION mdfeed VERSION '$v'");
	$node->safe_psql($db, $fill);
	%cols10 = ();
	my $before = fingerprint($db);
	my $after = fingerprint($db, 'ALTER EXTENSION mdfeed UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'mdfeed'"),
		$default, "$v: ALTER EXTENSION mdfeed UPDATE reaches $default");
	for my $t (@tables)
	{
		is($after->{$t}, $before->{$t}, "$v: every row of mdfeed.$t is kept ($before->{$t})");
	}
	my $dump = schema_dump($db);
	my $same = $dump eq $fresh;
	ok($same, "$v: the upgraded schema equals a fresh install of $default");
	unless ($same)
	{
		my $dir = PostgreSQL::Test::Utils::tempdir();
		open my $a, '>', "$dir/fresh.sql"; print $a $fresh; close $a;
		open my $b, '>', "$dir/upgraded.sql"; print $b $dump; close $b;
		my ($diff) = run_command([ 'diff', '-u', "$dir/fresh.sql", "$dir/upgraded.sql" ]);
		diag(substr($diff, 0, 4000));
	}
}

# 1.1: jobs queued before it know their requester by OID, when the role exists
is($node->safe_psql('postgres',
	"SELECT string_agg(requested_by || '=' || coalesce(requester::regrole::text, '-'), ',' ORDER BY id) FROM mdfeed.jobs WHERE id <= 3"),
	'upg_analyst=upg_analyst,postgres=-,gone_role=-',
	'user jobs from before 1.1 got their role\'s OID; mdfeed\'s own and a dropped role\'s have none');

# 1.2: the instruments stored before it get the adapter's normalised status
is($node->safe_psql('postgres',
	"SELECT string_agg(symbol || '=' || tradable, ',' ORDER BY symbol) FROM mdfeed.instruments WHERE symbol LIKE 'UPG%'"),
	'UPGUSDT=false', '1.2: an instrument stored before it (status BREAK) is not tradable');

# 1.2 adds columns to mdfeed.workers without dropping it or
# mdfeed_workers(): what users granted on them still counts, is no
# extension privilege (so pg_dump keeps it), and PUBLIC gets nothing
{
	my $v = (grep { $_ lt '1.2' } @older)[-1];
	$node->safe_psql('postgres', 'CREATE DATABASE upg_grants');
	$node->safe_psql('upg_grants', "CREATE EXTENSION mdfeed VERSION '$v'");
	$node->safe_psql('upg_grants', 'GRANT USAGE ON SCHEMA mdfeed TO upg_analyst; '
		  . 'GRANT SELECT ON mdfeed.workers TO upg_analyst; '
		  . 'GRANT EXECUTE ON FUNCTION mdfeed_workers() TO upg_analyst');
	$node->safe_psql('upg_grants', 'ALTER EXTENSION mdfeed UPDATE');
	is($node->safe_psql('upg_grants',
		"SELECT has_table_privilege('upg_analyst', 'mdfeed.workers', 'SELECT') || ' ' || "
		  . "has_function_privilege('upg_analyst', 'mdfeed_workers()', 'EXECUTE') || ' ' || "
		  . "has_function_privilege('public', 'mdfeed_workers()', 'EXECUTE')"),
		'true true false', "$v to $default: the grants on mdfeed.workers and mdfeed_workers() stay, PUBLIC has none");
	like($node->safe_psql('upg_grants', 'SET ROLE upg_analyst; SELECT count(*) FROM mdfeed.workers; '
		  . 'SELECT string_agg(attname, \',\' ORDER BY attnum) FROM pg_attribute '
		  . "WHERE attrelid = 'mdfeed.workers'::regclass AND attnum > 0"),
		qr/^\d+\n.*,exchange,close_latency_p50_ms,close_latency_p99_ms$/s,
		'the analyst reads mdfeed.workers, which has the 1.2 columns');
	my ($out, $err) = run_command([ 'pg_dump', '--schema-only', '-d', $node->connstr('upg_grants') ]);
	like($out, qr/GRANT SELECT ON TABLE mdfeed\.workers TO upg_analyst;/, 'pg_dump keeps the grant on mdfeed.workers');
	like($out, qr/GRANT ALL ON FUNCTION public\.mdfeed_workers\([^)]*\) TO upg_analyst;/,
		'and the grant on mdfeed_workers()');
	my ($rc, $o2, $e2) = $node->psql('upg_grants',
		"CREATE ROLE upg_nobody; GRANT USAGE ON SCHEMA mdfeed TO upg_nobody; SET ROLE upg_nobody; SELECT * FROM mdfeed.worker_status()");
	like($e2, qr/permission denied for function mdfeed\.worker_status/,
		'a role that may not execute mdfeed_workers() may not call mdfeed.worker_status() either');
}

# 1.3: the CoinDCX families on the database upgraded from the newest older
# version: they take rows, show in mdfeed.candles under their exchange,
# number them, and a replay changes nothing
{
	my $v = $older[-1];
	my $db = $v eq $older[0] ? 'postgres' : "upg_" . ($v =~ s/\./_/gr);
	my $body = '{"s":"ok","data":[{"open":3.1e-7,"high":4e-7,"low":3e-7,"volume":1200,"close":3.5e-7,"time":1704067200000},'
	  . '{"open":3.5e-7,"high":3.6e-7,"low":3.4e-7,"volume":900,"close":3.4e-7,"time":1704070800000}]}';
	is($node->safe_psql($db, "SELECT mdfeed.ingest_klines('coindcx', 'B-UPG_USDT', '1h', '$body', '2024-01-02')"),
		'2', "$v to $default: CoinDCX candles go into the new family");
	is($node->safe_psql($db, "SELECT mdfeed.ingest_klines('coindcx', 'B-UPG_USDT', '1h', '$body', '2024-01-02')"),
		'0', 'and a replay changes nothing');
	is($node->safe_psql($db,
		"SELECT string_agg(c.id || ':' || c.open || ':' || (c.quote_volume IS NULL), ',' ORDER BY c.id) "
		  . "FROM mdfeed.cdx_candles_1h c WHERE symbol = 'B-UPG_USDT'"),
		'1:0.00000031:true,2:0.00000035:true', 'numbered, exact, with no quote volume');
	is($node->safe_psql($db,
		"SELECT exchange || ' ' || count(*) FROM mdfeed.candles WHERE symbol = 'B-UPG_USDT' GROUP BY exchange"),
		'coindcx 2', 'mdfeed.candles shows them under coindcx');
	$node->safe_psql($db, "DELETE FROM mdfeed.cdx_candles_1h WHERE symbol = 'B-UPG_USDT'");
}

# the workers run on the upgraded database
my $now = now_ms();
my $id = backfill($node, 'ETHUSDT', '1h', $now - 3 * 24 * 3_600_000);
job_is($node, $id, 'succeeded', 'a backfill on the upgraded database succeeds', 90);
compare_with_truth($node, $fake, 'ETHUSDT', '1h', $now - 3 * 24 * 3_600_000, $now,
	'and its candles equal the truth', allow_open => 1);

done_testing();
