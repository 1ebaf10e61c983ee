
# Copyright (c) mdfeed authors
#
# Beyond one server (issue 12): two ingest shards and an analytics server,
# merged by PostgreSQL's logical replication.
#  - the analytics server (mdfeed.mode = 'replica') is the coordinator: the
#    symbol lists are kept there and reach the shards by subscription; a
#    shard refuses a local change to them;
#  - shards 0/2 and 1/2 call the fake exchange from 127.0.0.2 and 127.0.0.3
#    (mdfeed.source_address), which keys its weight limits by client IP;
#  - each of six whitelisted symbols is streamed and backfilled by exactly
#    its owner (mdfeed.shard_of), as the fake saw it per address;
#  - the analytics server subscribes to both shards' data publications and
#    equals the exchange's truth for all six, row for row: the startup
#    sync (the multi-insert path), the stream (upserts), an archive import;
#  - shard 1 stopped for over a minute and started again: caught up exactly;
#  - n from 2 to 3: a third shard (127.0.0.4) takes the symbols the hash
#    gives it, fills them from its own budget, the old owners stop
#    streaming them, and the analytics server still equals the truth;
#  - auto-tracking: each shard keeps the part of the board's top it owns,
#    the analytics server the whole top, before and after the move;
#  - a new mdfeed.source_address at reload moves the stream without a gap;
#  - two CoinDCX futures pairs, one a shard: their rows (whose ids each
#    server numbers itself) equal the truth on the analytics server;
#  - a running repair of a pair that moved is canceled by the old owner;
#  - two inserts of one key at the same moment, as two subscriptions would
#    make them: the second waits for the first and merges;
#  - a model on the analytics server runs once on every closed candle of
#    the six, from whichever shard, and queues no job there.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

# six symbols: with two shards three each; with three, ADAUSDT and
# LINKUSDT go to the new shard (sql/shards.sql pins the hash)
my @syms = qw(ADAUSDT BNBUSDT BTCUSDT ETHUSDT LINKUSDT XRPUSDT);
my %owner2 = (ADAUSDT => 0, ETHUSDT => 0, LINKUSDT => 0, BNBUSDT => 1, BTCUSDT => 1, XRPUSDT => 1);
my %owner3 = (%owner2, ADAUSDT => 2, LINKUSDT => 2);
my @ips = ('127.0.0.2', '127.0.0.3', '127.0.0.4');
my $lookback_ms = 3 * 3_600_000;

my $universe = join(',', @syms);
@MdfeedTest::TRUTH_ARGS = ('--symbols', $universe);
my $fake = start_fake(args => [ '--symbols', $universe ]);
# two CoinDCX futures pairs, one a shard (their ids are each server's own)
my $cdx = start_cdx_fake(config => { ws_futures_interval_ms => 250 });
my %cdx_owner = ('B-BTC_USDT' => 0, 'B-ETH_USDT' => 1);
# the board's top 4, auto-tracked: BTCUSDT (shard 1), then ETHUSDT, ADAUSDT
# and LINKUSDT (shard 0; with three shards ADAUSDT and LINKUSDT are shard 2's)
my @top4 = qw(BTCUSDT ETHUSDT ADAUSDT LINKUSDT);
fake_config($fake, { quote_volumes => { BTCUSDT => '600.5', ETHUSDT => '500.5', ADAUSDT => '400.5',
			LINKUSDT => '300.5', BNBUSDT => '200.5', XRPUSDT => '100.5' } });

my %common = (
	cdx_settings($cdx),
	'mdfeed.intervals' => "'1m'",
	'mdfeed.sync_lookback' => "'3h'",
	'mdfeed.gap_lookback' => "'3h'",
	'mdfeed.gap_check_interval' => "'5s'",
	'mdfeed.auto_track_top_n' => 4,
	'mdfeed.binance_archive_url' => "'$fake->{url}'",
	wal_level => 'logical',
	max_replication_slots => 10,
	max_wal_senders => 10,
	max_logical_replication_workers => 8,
	max_sync_workers_per_subscription => 2);

my $an = new_node('analytics', $fake, %common, 'mdfeed.mode' => "'replica'", _no_wait => 1);
my @shard;
$shard[$_] = new_node("shard$_", $fake, %common,
	'mdfeed.shard' => "'$_/2'", 'mdfeed.source_address' => "'$ips[$_]'")
  for 0 .. 1;

# connstr($node): what a subscription connects to
sub connstr { my ($n) = @_; return $n->connstr('postgres'); }

# sql_list(@values): a SQL array of text
sub sql_list { return "ARRAY[" . join(', ', map { "'$_'" } @_) . "]"; }

# by_ip($ip): what the fake saw from one address
sub by_ip { my ($ip, $st) = @_; $st //= fake_stats($fake); return $st->{by_ip}{$ip} // {}; }

# streamed($ip): the symbols the address streams, upper case, sorted
sub streamed
{
	my ($ip) = @_;
	my %s = map { my $x = $_; $x =~ s/@.*//; (uc($x) => 1) } @{ by_ip($ip)->{ws_streams} // [] };
	return join(',', sort keys %s);
}

sub owned { my ($owner, $k) = @_; return join(',', sort grep { $owner->{$_} == $k } @syms); }

# auto_set($node): its auto-tracked symbols, sorted
sub auto_set
{
	my ($n) = @_;
	return $n->safe_psql('postgres', "SELECT string_agg(symbol, ',' ORDER BY symbol) FROM mdfeed.auto_tracked");
}

# catch_up: every shard's changes have reached the analytics server
sub catch_up
{
	my (@nodes) = @_;
	for my $k (0 .. $#nodes)
	{
		next unless $nodes[$k];
		$nodes[$k]->wait_for_catchup("from_shard$k");
	}
}

# ---- the analytics server runs no exchange worker ----
ok(wait_until(sub { worker_row($an, 'watch') }, 30), 'analytics: the watch worker runs (the probe)');
is($an->safe_psql('postgres', "SELECT count(*) FROM mdfeed.workers WHERE role IN ('backfill', 'stream')"),
	'0', 'analytics: no backfill or stream worker in replica mode');
my ($rc, $out, $err) = $an->psql('postgres',
	"SELECT mdfeed_backfill('BTCUSDT', '1m', now() - interval '1 hour', now())");
like($err, qr/mdfeed.mode is "replica": this server calls no exchange/, 'analytics: mdfeed_backfill is refused');

# ---- publications, subscriptions, lists from the coordinator ----
for my $k (0 .. 1)
{
	ok(wait_until(sub { try_sql($shard[$k], "SELECT count(*) FROM mdfeed.instruments WHERE exchange = 'binance'") >= 6 }, 60),
		"shard$k: instruments fetched");
	is($shard[$k]->safe_psql('postgres', "SELECT mdfeed_publish('mdfeed_data')"), '33',
		"shard$k: mdfeed_publish publishes the 33 data tables");
	$an->safe_psql('postgres',
		"CREATE SUBSCRIPTION from_shard$k CONNECTION \$c\$@{[connstr($shard[$k])]}\$c\$ PUBLICATION mdfeed_data");
}
is($an->safe_psql('postgres', "SELECT mdfeed_publish('mdfeed_lists', 'lists')"), '1',
	'analytics: publishes the lists');
ok(wait_until(sub { try_sql($an, "SELECT count(*) FROM mdfeed.instruments WHERE exchange = 'binance' AND tradable") >= 6 }, 60),
	'analytics: instruments arrived from both shards (merged, no subscription stopped)');
for my $k (0 .. 1)
{
	$shard[$k]->safe_psql('postgres',
		"CREATE SUBSCRIPTION lists_shard$k CONNECTION \$c\$@{[connstr($an)]}\$c\$ PUBLICATION mdfeed_lists");
}

ok(wait_until(sub { try_sql($an, "SELECT count(*) FROM mdfeed.instruments WHERE exchange = 'coindcx' AND tradable") >= 2 }, 60),
	'analytics: CoinDCX instruments arrived too');
my $t_track = now_ms();
is($an->safe_psql('postgres', "SELECT mdfeed_whitelist(@{[sql_list(@syms)]})"), '6',
	'analytics (coordinator): six symbols whitelisted');
is($an->safe_psql('postgres', "SELECT mdfeed_whitelist(@{[sql_list(sort keys %cdx_owner)]}, 'coindcx')"), '2',
	'analytics (coordinator): two CoinDCX pairs whitelisted');
for my $k (0 .. 1)
{
	ok(wait_until(sub { try_sql($shard[$k], "SELECT count(*) FROM mdfeed.symbol_lists") == 8 }, 30),
		"shard$k: the lists arrived");
	is($shard[$k]->safe_psql('postgres', "SELECT string_agg(symbol, ',' ORDER BY symbol) FROM mdfeed.tracked WHERE here AND exchange = 'binance'"),
		owned(\%owner2, $k), "shard$k: mdfeed.tracked.here is its shard");
	is($shard[$k]->safe_psql('postgres', "SELECT string_agg(symbol, ',' ORDER BY symbol) FROM mdfeed.tracked WHERE here AND exchange = 'coindcx'"),
		join(',', grep { $cdx_owner{$_} == $k } sort keys %cdx_owner), "shard$k: and its CoinDCX pair");
	($rc, $out, $err) = $shard[$k]->psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT'])");
	like($err, qr/the symbol lists of this server come from a coordinator/, "shard$k: a local list change is refused");
}
is($an->safe_psql('postgres', "SELECT count(*) FROM mdfeed.tracked WHERE here"), '0',
	'analytics: ingests nothing (here is false everywhere)');

# ---- each symbol streamed and filled by its owner alone ----
for my $k (0 .. 1)
{
	ok(wait_until(sub { streamed($ips[$k]) eq owned(\%owner2, $k) }, 60),
		"shard$k streams its symbols from $ips[$k]: " . owned(\%owner2, $k))
	  or diag("streams from $ips[$k]: " . streamed($ips[$k]));
}
my $from = MdfeedTest::align_down('1m', $t_track - $lookback_ms) + 60_000;
for my $k (0 .. 1)
{
	ok(wait_no_gaps($shard[$k], [ map { [ $_, '1m' ] } grep { $owner2{$_} == $k } @syms ], $from, 120),
		"shard$k: its pairs have no gaps");
}
my $st = fake_stats($fake);
for my $k (0 .. 1)
{
	my $got = join(',', sort keys %{ by_ip($ips[$k], $st)->{klines_symbols} // {} });
	is($got, owned(\%owner2, $k), "shard$k fetched candles of its symbols only, from $ips[$k]");
	is($shard[$k]->safe_psql('postgres',
			"SELECT count(*) FROM mdfeed.jobs WHERE symbol <> ALL (@{[sql_list((grep { $owner2{$_} == $k } @syms), (grep { $cdx_owner{$_} == $k } keys %cdx_owner))]})"),
		'0', "shard$k: no job for another shard's symbol or pair");
}
ok(!exists $st->{by_ip}{'127.0.0.1'} || !%{ $st->{by_ip}{'127.0.0.1'}{klines_symbols} // {} },
	'nothing fetched candles from the default address');

# an archive import on shard 0 replicates too (the fake serves the archives)
my $day = MdfeedTest::align_down('1d', now_ms()) - 40 * 86_400_000;
my $job = backfill($shard[0], 'ETHUSDT', '1m', $day, $day + 2 * 86_400_000);
ok(wait_job($shard[0], $job, 120), 'shard0: an archive backfill of ETHUSDT succeeded');
is($shard[0]->safe_psql('postgres', "SELECT archive_rows > 0 FROM mdfeed.jobs WHERE id = $job"), 't',
	'shard0: it read the archives');

# the ranking: each shard keeps the ranked symbols it owns; the analytics
# server has the union, the board's top 4
for my $k (0 .. 1)
{
	my $want = join(',', sort grep { $owner2{$_} == $k } @top4);
	ok(wait_until(sub { auto_set($shard[$k]) eq $want }, 30), "shard$k auto-tracks its part of the top 4: $want");
}

for my $k (0 .. 1)
{
	ok(wait_no_gaps_on($shard[$k], [ map { [ 'coindcx', $_, '1m', $from ] } grep { $cdx_owner{$_} == $k } keys %cdx_owner ], 120, 12),
		"shard$k: its CoinDCX pair has no gaps");
}
my $t1 = MdfeedTest::align_down('1m', now_ms() - 5000);
my $t1_cdx = MdfeedTest::align_down('1m', now_ms() - 15_000);
catch_up(@shard);
for my $p (sort keys %cdx_owner)
{
	compare_cdx_with_truth($an, $cdx, 'futures', $p, '1m', $from, $t1_cdx, "analytics CoinDCX $p");
}
is($an->safe_psql('postgres', "SELECT count(*) = count(DISTINCT id) AND count(*) > 0 FROM mdfeed.cdx_candles_1m"), 't',
	'analytics: CoinDCX rows from both shards, each with an id of its own');
for my $s (@syms)
{
	compare_with_truth($an, $fake, $s, '1m', $from, $t1, "analytics $s after the first fill");
}
compare_with_truth($an, $fake, 'ETHUSDT', '1m', $day, $day + 2 * 86_400_000, 'analytics ETHUSDT from the archives');
is(auto_set($an), join(',', sort @top4), 'analytics: auto-tracked is the board\'s top 4, from both shards');
is($an->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.candles_1m c WHERE symbol = ANY (@{[sql_list(@syms)]}) "
		  . "GROUP BY symbol, open_time HAVING count(*) > 1"), '', 'analytics: no duplicate rows');
is($an->safe_psql('postgres',
		"SELECT count(*) FROM unnest(@{[sql_list(@syms)]}) s, "
		  . "mdfeed_gaps(s, '1m', @{[MdfeedTest::ms_sql($from)]}, @{[MdfeedTest::ms_sql($t1)]}) g"),
	'0', 'analytics: mdfeed_gaps finds no gap in what replicated');

# a model on the analytics server runs on every tracked symbol, on what
# replication brings, through the stop and the move below
my $mfrom = $from + 30 * 60_000;
$an->safe_psql('postgres', <<"EOS");
CREATE ROLE quant LOGIN;
GRANT USAGE ON SCHEMA mdfeed TO quant;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO quant;
GRANT EXECUTE ON FUNCTION mdfeed_register_model(text, regprocedure, text, text[], integer, timestamptz, text) TO quant;
SET ROLE quant;
SELECT mdfeed_register_model('vol', 'mdfeed.model_realized_volatility(text,text,mdfeed.candle[])', '1m',
                             window_size => 5, from_time => @{[MdfeedTest::ms_sql($mfrom)]});
EOS

# ---- shard 1 stopped for over a minute, then started again ----
$shard[1]->stop('fast');
my $down_ms = now_ms();
usleep(75_000_000);
$shard[1]->start;
ok(wait_no_gaps($shard[1], [ map { [ $_, '1m' ] } grep { $owner2{$_} == 1 } @syms ], $from, 120),
	'shard1: caught up after ' . int((now_ms() - $down_ms) / 1000) . ' s offline');
my $t2 = MdfeedTest::align_down('1m', now_ms() - 5000);
catch_up(@shard);
for my $s (grep { $owner2{$_} == 1 } @syms)
{
	compare_with_truth($an, $fake, $s, '1m', $from, $t2, "analytics $s after shard 1's restart");
}

# ---- from two shards to three ----
my $t_shard2 = now_ms();
$shard[2] = new_node('shard2', $fake, %common,
	'mdfeed.shard' => "'2/3'", 'mdfeed.source_address' => "'$ips[2]'");
ok(wait_until(sub { try_sql($shard[2], "SELECT count(*) FROM mdfeed.instruments WHERE exchange = 'binance'") >= 6 }, 60),
	'shard2: instruments fetched');
$shard[2]->safe_psql('postgres', "SELECT mdfeed_publish('mdfeed_data')");
$an->safe_psql('postgres',
	"CREATE SUBSCRIPTION from_shard2 CONNECTION \$c\$@{[connstr($shard[2])]}\$c\$ PUBLICATION mdfeed_data");
$shard[2]->safe_psql('postgres',
	"CREATE SUBSCRIPTION lists_shard2 CONNECTION \$c\$@{[connstr($an)]}\$c\$ PUBLICATION mdfeed_lists");
ok(wait_until(sub { try_sql($shard[2], "SELECT count(*) FROM mdfeed.symbol_lists") == 8 }, 30),
	'shard2: the lists arrived');
# a long repair of ADAUSDT on shard 0, under way when the pair moves
my $long = $shard[0]->safe_psql('postgres',
	"SELECT mdfeed.queue_sync('binance', 'ADAUSDT', '1m', now() - interval '700 days', now() - interval '10 days', 'repair')");
ok(wait_until(sub { try_sql($shard[0], "SELECT state FROM mdfeed.jobs WHERE id = $long") eq 'running' }, 30),
	'shard0: a long repair of ADAUSDT runs');
for my $k (0 .. 1)
{
	$shard[$k]->append_conf('postgresql.conf', "mdfeed.shard = '$k/3'\n");
	$shard[$k]->reload;
}
ok(wait_until(sub { try_sql($shard[0], "SELECT state FROM mdfeed.jobs WHERE id = $long") eq 'canceled' }, 30),
	'n = 3: shard0 canceled its running repair of ADAUSDT, now shard 2\'s');
is($shard[0]->safe_psql('postgres', "SELECT error FROM mdfeed.jobs WHERE id = $long"),
	'mdfeed.shard is 0/3: another shard ingests the pair', '... and says why');
for my $k (0 .. 2)
{
	ok(wait_until(sub { streamed($ips[$k]) eq owned(\%owner3, $k) }, 60),
		"n = 3: shard$k streams " . owned(\%owner3, $k))
	  or diag("streams from $ips[$k]: " . streamed($ips[$k]));
}
# its own fill reaches mdfeed.sync_lookback back from its start; the
# analytics server has the older rows from shard 0
my $from2 = MdfeedTest::align_down('1m', $t_shard2 - $lookback_ms) + 120_000;
ok(wait_no_gaps($shard[2], [ map { [ $_, '1m' ] } grep { $owner3{$_} == 2 } @syms ], $from2, 120),
	'shard2: filled the symbols it took over');

# a new source address at reload: the stream moves to it without a gap
$shard[0]->append_conf('postgresql.conf', "mdfeed.source_address = '127.0.0.5'\n");
$shard[0]->reload;
ok(wait_until(sub { streamed('127.0.0.5') eq owned(\%owner3, 0) && streamed($ips[0]) eq '' }, 60),
	'shard0 streams from 127.0.0.5 after a reload, and no longer from 127.0.0.2')
  or diag('from 127.0.0.5: ' . streamed('127.0.0.5') . '; from 127.0.0.2: ' . streamed($ips[0]));
is(join(',', sort keys %{ by_ip($ips[2])->{klines_symbols} // {} }), owned(\%owner3, 2),
	'shard2 fetched candles of its symbols only, from its own address');
for my $k (0 .. 2)
{
	my $want = join(',', sort grep { $owner3{$_} == $k } @top4);
	ok(wait_until(sub { (auto_set($shard[$k]) // '') eq $want }, 30), "n = 3: shard$k auto-tracks $want");
}
my $t3 = MdfeedTest::align_down('1m', now_ms() - 5000);
for my $k (0 .. 2)
{
	ok(wait_no_gaps($shard[$k], [ map { [ $_, '1m' ] } grep { $owner3{$_} == $k } @syms ], $k == 2 ? $from2 : $from, 120),
		"n = 3: shard$k has no gaps");
}
catch_up(@shard);
for my $s (@syms)
{
	compare_with_truth($an, $fake, $s, '1m', $from, $t3, "analytics $s after n went to 3");
}
ok(wait_no_gaps_on($shard[1], [ [ 'coindcx', 'B-ETH_USDT', '1m', $from ] ], 60, 12),
	'shard1: its CoinDCX pair has no gaps after the restart');
my $t3_cdx = MdfeedTest::align_down('1m', now_ms() - 15_000);
catch_up(@shard);
for my $p (sort keys %cdx_owner)
{
	compare_cdx_with_truth($an, $cdx, 'futures', $p, '1m', $from, $t3_cdx, "analytics CoinDCX $p at the end");
}
# the old owner's delete of a moved symbol deleted nothing of the new owner's
is(auto_set($an), join(',', sort @top4), 'analytics: auto-tracked is still the board\'s top 4, from three shards');
# the model ran once on every closed candle of all six, and asked for no
# history: the analytics server queues no job
my $t4 = $t3 - 60_000;
ok(wait_until(sub {
			try_sql($an, "SELECT count(*) FROM mdfeed.model_outputs WHERE model = 'vol' "
				  . "AND open_time >= @{[MdfeedTest::ms_sql($mfrom)]} AND open_time < @{[MdfeedTest::ms_sql($t4)]}")
			  == 6 * ($t4 - $mfrom) / 60_000 }, 60),
	'analytics: the model ran on every closed candle of the six symbols from every shard')
  or diag($an->safe_psql('postgres', "SELECT symbol, next_open, waiting_for FROM mdfeed.model_progress ORDER BY symbol"));
is($an->safe_psql('postgres', "SELECT runs = (SELECT count(*) FROM mdfeed.model_outputs WHERE model = 'vol') FROM mdfeed.models WHERE name = 'vol'"),
	't', 'analytics: runs equal outputs (none twice)');
is($an->safe_psql('postgres', 'SELECT count(*) FROM mdfeed.jobs'), '0', 'analytics: no job was ever queued');

# two subscriptions inserting one key at the same moment: the second waits
# for the first and merges, where a plain insert would fail and stop it
{
	my $first = $an->background_psql('postgres');
	my $second = $an->background_psql('postgres');
	$first->query_safe("BEGIN; SET LOCAL session_replication_role = replica; "
		  . "INSERT INTO mdfeed.funding_rates VALUES ('RACEUSDT', '2024-01-01', 0.0001, 1, '2024-01-01', '2024-01-01')");
	$second->query_until(qr/started/, "\\echo started\nSET session_replication_role = replica;\n"
		  . "INSERT INTO mdfeed.funding_rates VALUES ('RACEUSDT', '2024-01-01', 0.0002, 2, '2024-01-01', '2024-01-01');\n");
	ok(wait_until(sub {
				try_sql($an, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
					  . "AND query LIKE 'INSERT INTO mdfeed.funding_rates%RACEUSDT%'") == 1 }, 10),
		'analytics: a second insert of a key being inserted waits for the first');
	$first->query_safe('COMMIT');
	$second->query_safe('SELECT 1');
	is($second->{stderr}, '', 'analytics: ... and merges once it commits, with no error');
	is($an->safe_psql('postgres', "SELECT count(*) || ' ' || funding_rate FROM mdfeed.funding_rates WHERE symbol = 'RACEUSDT' GROUP BY funding_rate"),
		'1 0.0002', 'analytics: one row, with the later values');
	$first->quit;
	$second->quit;
	$an->safe_psql('postgres', "DELETE FROM mdfeed.funding_rates WHERE symbol = 'RACEUSDT'");
}

# a subscription's worker errs when its shard goes away (shard 1's stop);
# a conflict would be a unique violation or a missing row
my $anlog = slurp_file($an->logfile);
unlike($anlog, qr/duplicate key value violates unique constraint/, 'analytics: no replicated row met a taken key');
unlike($anlog, qr/logical replication did not find row/,
	'analytics: no replicated update or delete missed its row');
note('analytics subscription errors (apply/sync): '
	  . $an->safe_psql('postgres', "SELECT string_agg(subname || ' ' || apply_error_count || '/' || sync_error_count, ', ' ORDER BY subname) FROM pg_stat_subscription_stats"));

finish();
