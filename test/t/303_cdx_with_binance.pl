
# Copyright (c) mdfeed authors
#
# Binance and CoinDCX in one server: an outage of one exchange must not slow
# the other.
#  1. both tracked at once (Binance BTCUSDT, ETHUSDT; CoinDCX futures
#     B-BTC_USDT, spot I-BTC_INR; 1m), both streaming, and backfills of both
#     running side by side: every one equals its exchange's truth;
#  2. CoinDCX goes away (its fake is stopped: connections refused), with
#     CoinDCX backfills queued ahead and holding the backfill workers: the
#     Binance stream still writes each 1m close within 5 s, without a
#     reconnect; then, the CoinDCX jobs well into their retry backoff, a
#     Binance backfill of the same size as before takes about as long as
#     beside a healthy CoinDCX (loosely: 3 times as long, or the 4 s
#     mdfeed.http_timeout plus 3 s more);
#  3. CoinDCX comes back with every REST answer stalled (headers, then
#     nothing), CoinDCX jobs holding both workers, one inside a stalled
#     request: the same for a third Binance backfill;
#  4. CoinDCX comes back whole: its hole is repaired, and everything of both
#     exchanges equals the truth; mdfeed.budgets never held Binance back.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $t_start = time();
my $bn = start_fake();
my $cdx = start_cdx_fake(config => { ws_futures_interval_ms => 250, ws_spot_interval_ms => 500 });
my $node = new_node('both', $bn, cdx_settings($cdx),
	'mdfeed.intervals' => "'1m'",
	'mdfeed.sync_lookback' => "'30min'",
	'mdfeed.gap_lookback' => "'30min'",
	'mdfeed.gap_check_interval' => "'2s'",
	'mdfeed.http_timeout' => "'4s'");

sub sql { return $node->safe_psql('postgres', $_[0]); }

# how many of these jobs a worker has taken up (whether or not it still runs them)
sub started
{
	my (@ids) = @_;
	return try_sql($node, "SELECT count(*) FROM mdfeed.jobs WHERE started_at IS NOT NULL AND id IN (" . join(',', @ids) . ')') // 0;
}

# a Binance backfill, timed: [id, seconds from queued to finished]
sub timed_binance
{
	my ($sym, $from, $to, $name) = @_;
	my $id = backfill($node, $sym, '1m', $from, $to);
	job_is($node, $id, 'succeeded', "$name: Binance $sym 1m backfill succeeded", 120);
	my $s = job_seconds($node, $id);
	note sprintf('%s: Binance %s backfill took %.2f s', $name, $sym, $s // -1);
	return ($id, $s);
}

# queue CoinDCX backfills and wait until at least $n of them hold a worker
sub cdx_jobs_holding
{
	my ($n, $name, @cases) = @_;
	my @ids = map { backfill_on($node, @$_) } @cases;
	ok(wait_until(sub { started(@ids) >= $n }, 15, 0.1),
		"$name: $n CoinDCX backfills were taken up by workers, ahead of the Binance one")
	  or diag(sql("SELECT string_agg(id || ' ' || exchange || ' ' || state, ', ') FROM mdfeed.jobs"));
	return @ids;
}

#--------------------------------------------------------------------------
# 1. both exchanges, healthy
#--------------------------------------------------------------------------
is(sql("SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])"), '2', 'whitelisted 2 Binance symbols');
is(sql("SELECT mdfeed_whitelist(ARRAY['B-BTC_USDT'], 'coindcx')"), '1', 'whitelisted a CoinDCX futures pair');
is(sql("SELECT mdfeed_whitelist(ARRAY['I-BTC_INR'], 'coindcx_spot')"), '1', 'whitelisted a CoinDCX spot pair');
my $t_track = now_ms();
ok(wait_until(sub { my $w = stream_worker($node, 'binance'); $w && $w->{streams} == 2 && $w->{connections} == 1 }, 30),
	'the Binance stream worker carries 2 streams');
ok(wait_fake_subs($bn, 2, 30), 'the Binance fake has 2 subscriptions');
ok(wait_cdx_channels($cdx, 2, 30), 'the CoinDCX fake has 2 channels joined');
for my $ex (qw(coindcx coindcx_spot))
{
	ok(wait_until(sub { my $w = stream_worker($node, $ex); $w && $w->{streams} == 1 && $w->{connections} == 1 }, 30),
		"the $ex stream worker carries its stream");
}
ok(wait_jobs_settled($node, 60), 'the startup syncs of both exchanges are done');
is(sql("SELECT string_agg(DISTINCT exchange, ',' ORDER BY exchange) FROM mdfeed.jobs WHERE origin = 'sync' AND state = 'succeeded'"),
	'binance,coindcx,coindcx_spot', 'each exchange had its startup sync');
my %from;
for my $l (split /\n/, sql("SELECT exchange, symbol, (extract(epoch FROM min(from_time)) * 1000)::bigint FROM mdfeed.jobs "
		  . "WHERE kind = 'candles' AND origin = 'sync' AND \"interval\" = '1m' GROUP BY 1, 2"))
{
	my ($ex, $s, $f) = split /\|/, $l;
	$from{"$ex|$s"} = $f;
}
is(scalar(keys %from), 4, 'a 1m sync for each of the 4 tracked pairs');

# forming bars of both exchanges are being written
{
	avoid_minute_edge(3, 52);
	for my $t ([ 'binance', 'mdfeed.candles_1m', 2 ], [ 'coindcx', 'mdfeed.cdx_candles_1m', 1 ],
		[ 'coindcx_spot', 'mdfeed.cdx_spot_candles_1m', 1 ])
	{
		my ($ex, $tab, $n) = @$t;
		ok(wait_until(sub {
					try_sql($node, "SELECT count(*) FROM $tab WHERE NOT closed AND open_time = mdfeed.interval_floor('1m', now())") == $n
				}, 5, 0.2),
			"$ex: the forming 1m bar of each of its $n tracked pairs is stored with closed = false");
		my $m0 = (stream_worker($node, $ex) // {})->{messages} // 0;
		ok(wait_until(sub { ((stream_worker($node, $ex) // {})->{messages} // 0) > $m0 }, 5, 0.2),
			"$ex: its stream worker keeps receiving");
	}
}

# backfills side by side, and a Binance one alone for the reference
my $D = 86_400_000;
my (undef, $t_alone) = timed_binance('ETHUSDT', ts_ms('2024-02-01'), ts_ms('2024-02-11'), 'alone');
my @cdx_ok = (
	[ 'coindcx',      'B-ETH_USDT', '1m', ts_ms('2024-03-01'), ts_ms('2024-03-04') ],
	[ 'coindcx_spot', 'I-ETH_INR',  '1m', ts_ms('2024-03-01'), ts_ms('2024-03-04') ],
	[ 'coindcx',      'B-BTC_USDT', '1h', ts_ms('2024-01-01'), ts_ms('2024-06-01') ],
);
my @cdx_ok_ids = map { backfill_on($node, @$_) } @cdx_ok;
my ($bid_a, $t_both) = timed_binance('BTCUSDT', ts_ms('2024-03-01'), ts_ms('2024-03-11'), 'healthy');
for my $i (0 .. $#cdx_ok)
{
	my ($ex, $p, $iv, $f, $t) = @{ $cdx_ok[$i] };
	job_is($node, $cdx_ok_ids[$i], 'succeeded', "healthy: $ex $p $iv backfill beside Binance succeeded", 60);
	compare_cdx_with_truth($node, $cdx, $ex eq 'coindcx' ? 'futures' : 'spot', $p, $iv, $f, $t, "healthy: $ex $p $iv");
}
compare_with_truth($node, $bn, 'ETHUSDT', '1m', ts_ms('2024-02-01'), ts_ms('2024-02-11'), 'alone: binance ETHUSDT 1m');
compare_with_truth($node, $bn, 'BTCUSDT', '1m', ts_ms('2024-03-01'), ts_ms('2024-03-11'), 'healthy: binance BTCUSDT 1m');
my $t_ref = (defined $t_alone && defined $t_both) ? ($t_alone > $t_both ? $t_alone : $t_both) : 5;
note sprintf('reference: Binance backfill alone %.2f s, beside CoinDCX %.2f s', $t_alone // -1, $t_both // -1);
# A worker in the middle of a CoinDCX request may finish it first (refused:
# at once; stalled: after mdfeed.http_timeout, 4 s here); nothing else may
# hold Binance back, whatever the CoinDCX jobs' retry backoff
my $limit = 3 * $t_ref > $t_ref + 4 + 3 ? 3 * $t_ref : $t_ref + 4 + 3;

my $bn_w0 = stream_worker($node, 'binance') // {};

#--------------------------------------------------------------------------
# 2. CoinDCX is gone
#--------------------------------------------------------------------------
stop_fake($cdx);
my $t_out = now_ms();
note 'CoinDCX stopped at ' . iso_ms($t_out);
my @out_ids = cdx_jobs_holding(2, 'outage',
	[ 'coindcx',      'B-ETH_USDT',  '1m', ts_ms('2024-04-01'), ts_ms('2024-04-04') ],
	[ 'coindcx',      'B-ID_USDT',   '1m', ts_ms('2024-04-01'), ts_ms('2024-04-04') ],
	[ 'coindcx_spot', 'I-ETH_INR',   '1m', ts_ms('2024-04-01'), ts_ms('2024-04-04') ],
	[ 'coindcx_spot', 'B-ETH_USDT',  '1h', ts_ms('2023-01-01'), ts_ms('2023-03-01') ]);

# the Binance stream through a 1m close while CoinDCX is gone (at least 10 s
# into the outage, so that the CoinDCX jobs are well into their backoff)
my $B = align_down('1m', now_ms() + 10_000 - 1) + 60_000;
note 'waiting for the close ' . iso_ms($B) . ' with CoinDCX gone';
usleep(($B - now_ms()) * 1000) if now_ms() < $B;
my %closed_at;
wait_until(sub {
		for my $s (qw(BTCUSDT ETHUSDT))
		{
			next if $closed_at{$s};
			my $c = try_sql($node, "SELECT closed FROM mdfeed.candles_1m WHERE symbol = '$s' AND open_time = " . ms_sql($B - 60_000));
			$closed_at{$s} = now_ms() if defined $c && $c eq 't';
		}
		return scalar(keys %closed_at) == 2;
	}, 10, 0.1);
for my $s (qw(BTCUSDT ETHUSDT))
{
	my $at = $closed_at{$s};
	ok($at && $at - $B <= 5000,
		sprintf('outage: Binance %s 1m %s stored closed %.1f s after its close', $s, iso_ms($B - 60_000), (($at // now_ms()) - $B) / 1000));
}
my $late = sql("SELECT count(*) FROM mdfeed.candles_1m WHERE closed AND open_time >= " . ms_sql(align_down('1m', $t_track) + 60_000)
	  . " AND open_time < " . ms_sql($B) . " AND updated_at > close_time + interval '5 s'");
is($late, '0', 'every Binance 1m bar that closed while streaming, the outage included, was written within 5 s of its close');
my $bw = stream_worker($node, 'binance') // {};
is($bw->{reconnects}, $bn_w0->{reconnects}, 'the Binance stream did not reconnect');
note "Binance close latency p50/p99: before " . ($bn_w0->{close_latency_p50_ms} // "-") . "/" . ($bn_w0->{close_latency_p99_ms} // "-") . " ms, "
  . "now " . ($bw->{close_latency_p50_ms} // "-") . "/" . ($bw->{close_latency_p99_ms} // "-") . " ms";

# a Binance backfill, the CoinDCX jobs having failed for a while
note 'CoinDCX jobs: ' . sql("SELECT string_agg(id || ' ' || state || ' retries ' || retries, ', ' ORDER BY id) FROM mdfeed.jobs "
	  . "WHERE exchange LIKE 'coindcx%' AND state IN ('queued', 'running')");
my ($bid_b, $t_b) = timed_binance('ETHUSDT', ts_ms('2024-03-01'), ts_ms('2024-03-11'), 'outage');
ok(defined $t_b && $t_b <= $limit,
	sprintf('outage: the Binance backfill took %.1f s, against %.1f s with CoinDCX healthy (limit %.1f s)',
		$t_b // -1, $t_ref, $limit));
compare_with_truth($node, $bn, 'ETHUSDT', '1m', ts_ms('2024-03-01'), ts_ms('2024-03-11'), 'outage: binance ETHUSDT 1m');

#--------------------------------------------------------------------------
# 3. CoinDCX answers, but every REST answer stalls
#--------------------------------------------------------------------------
restart_cdx_fake($cdx);
set_faults($cdx, { stall => 1, stall_ms => 60_000 });
my @stall_ids = map { backfill_on($node, @$_) }
  ([ 'coindcx', 'B-PEPE_USDT', '1h', ts_ms('2024-01-01'), ts_ms('2024-03-01') ],
	[ 'coindcx_spot', 'I-BTC_INR', '1h', ts_ms('2024-01-01'), ts_ms('2024-03-01') ]);
# CoinDCX jobs hold both workers, one of them in a stalled request
ok(wait_until(sub {
			try_sql($node, "SELECT count(*) FROM mdfeed.jobs WHERE exchange LIKE 'coindcx%' AND state = 'running'") >= 2
			  && fake_stats($cdx)->{faults}{stall} >= 1
		}, 40, 0.2),
	'stall: two CoinDCX jobs hold the backfill workers, one in a stalled request');
my ($bid_c, $t_c) = timed_binance('BTCUSDT', ts_ms('2024-04-01'), ts_ms('2024-04-11'), 'stall');
ok(defined $t_c && $t_c <= $limit,
	sprintf('stall: the Binance backfill took %.1f s, against %.1f s with CoinDCX healthy (limit %.1f s)',
		$t_c // -1, $t_ref, $limit));
compare_with_truth($node, $bn, 'BTCUSDT', '1m', ts_ms('2024-04-01'), ts_ms('2024-04-11'), 'stall: binance BTCUSDT 1m');
ok(fake_stats($cdx)->{faults}{stall} > 0, 'stall: CoinDCX requests were stalled (' . fake_stats($cdx)->{faults}{stall} . ')');

#--------------------------------------------------------------------------
# 4. CoinDCX whole again
#--------------------------------------------------------------------------
clear_faults($cdx);
my $t_back = now_ms();
# the user's CoinDCX jobs queued during the outage are not what this is about
sql("SELECT mdfeed_cancel(id) FROM mdfeed.jobs WHERE id IN (" . join(',', @out_ids, @stall_ids) . ") AND state IN ('queued', 'running')");
ok(wait_cdx_channels($cdx, 2, 60), 'CoinDCX: both channels joined again');
my @cdx_pairs = ([ 'coindcx', 'B-BTC_USDT', '1m', $from{'coindcx|B-BTC_USDT'} ], [ 'coindcx_spot', 'I-BTC_INR', '1m', $from{'coindcx_spot|I-BTC_INR'} ]);
ok(wait_no_gaps_on($node, \@cdx_pairs, 60, 12), 'CoinDCX: the outage hole is repaired (mdfeed_gaps empty)');
note sprintf('CoinDCX whole %.1f s after it came back', (now_ms() - $t_back) / 1000);
ok(wait_no_gaps_on($node, [ map { [ 'binance', $_, '1m', $from{"binance|$_"} ] } qw(BTCUSDT ETHUSDT) ], 20, 3),
	'Binance: mdfeed_gaps empty over the whole run');
ok(wait_jobs_settled($node, 60), 'no job left queued or running');
avoid_minute_edge(15, 58);
my $now = now_ms();
for my $s (qw(BTCUSDT ETHUSDT))
{
	compare_with_truth($node, $bn, $s, '1m', $from{"binance|$s"}, align_down('1m', $now - 5000), "binance $s 1m, all stored");
}
compare_cdx_with_truth($node, $cdx, 'futures', 'B-BTC_USDT', '1m', $from{'coindcx|B-BTC_USDT'}, align_down('1m', $now - 15_000),
	'coindcx B-BTC_USDT 1m, all stored');
compare_cdx_with_truth($node, $cdx, 'spot', 'I-BTC_INR', '1m', $from{'coindcx_spot|I-BTC_INR'}, align_down('1m', $now - 15_000),
	'coindcx_spot I-BTC_INR 1m, all stored');

is(sql("SELECT coalesce(max(rate_limited), 0) + coalesce(max(bans), 0) || '|' || coalesce(bool_or(blocked_until > now()), false) "
		  . "FROM mdfeed.budgets WHERE exchange = 'binance'"),
	'0|false', 'mdfeed.budgets: binance was never throttled, banned or held');
is(sql("SELECT count(*) FROM mdfeed.jobs WHERE exchange = 'binance' AND state <> 'succeeded'"), '0', 'every Binance job succeeded');
$bw = stream_worker($node, 'binance') // {};
is($bw->{reconnects}, $bn_w0->{reconnects}, 'the Binance stream never reconnected');
is($bw->{malformed}, 0, 'nor met a malformed frame');
unlike(log_contents($node), qr/PANIC|terminated by signal/, 'no crash in the server log');
note 'test took ' . (time() - $t_start) . ' s';

finish();
