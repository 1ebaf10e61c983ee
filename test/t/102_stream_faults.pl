
# Copyright (c) mdfeed authors
#
# The stream under WebSocket faults, then a SIGKILL of the stream worker:
#  - dropped connections (ws_drop), truncated JSON frames (ws_garbage) and
#    repeated frames (ws_duplicate): the worker reconnects, counts the
#    malformed frames, queues 'stream' repairs;
#  - the stream worker is SIGKILLed just before a minute boundary: the
#    cluster restarts, and the candle that closed meanwhile is repaired;
#  - in the end no closed candle is missing from the window and every pair
#    equals the exchange's truth.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my @syms = qw(BTCUSDT ETHUSDT);
my @ivs = qw(1m 15m 1h);
my @pairs = map { my $s = $_; map { [ $s, $_ ] } @ivs } @syms;

my $fake = start_fake();
my $node = new_node('faults', $fake,
	'mdfeed.sync_lookback' => "'1h'",
	'mdfeed.gap_lookback' => "'1h'",
	'mdfeed.gap_check_interval' => "'2s'");

is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])"),
	'2', 'whitelisted 2 symbols');
ok(wait_stream($node, 6, 30, 1), 'stream worker carries 6 streams');
ok(wait_jobs_settled($node, 60), 'startup sync done');
my $from = $node->safe_psql('postgres',
	"SELECT (extract(epoch FROM max(from_time)) * 1000)::bigint FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'sync'");
note 'window starts at ' . iso_ms($from);

# 1. faults on the WebSocket
my $t0 = now_ms();
set_faults($fake, { ws_drop => 0.15, ws_garbage => 0.05, ws_duplicate => 0.1, seed => 7 });
my $w = wait_until(
	sub {
		my $w = stream_worker($node);
		return ($w && $w->{reconnects} >= 1 && $w->{malformed} >= 1 && now_ms() - $t0 >= 15_000) ? $w : undef;
	},
	75, 0.5);
ok($w, 'under faults the stream worker reconnected and met malformed frames');
$w //= stream_worker($node) // {};
ok($w->{reconnects} > 0, "mdfeed.workers.reconnects = $w->{reconnects}");
ok($w->{malformed} > 0, "mdfeed.workers.malformed = $w->{malformed}");
my $fs = fake_stats($fake)->{faults};
ok($fs->{ws_drop} > 0 && $fs->{ws_garbage} > 0 && $fs->{ws_duplicate} > 0,
	"the fake injected drops ($fs->{ws_drop}), garbage ($fs->{ws_garbage}) and duplicates ($fs->{ws_duplicate})");
like(log_contents($node), qr/mdfeed stream connection \d+ closed/, 'the connection loss is in the server log');
ok(wait_until(sub { try_sql($node, "SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'stream'") > 0 }, 15),
	"reconnects queued 'stream' repair jobs");

# 2. SIGKILL of the stream worker a moment before a 1m candle closes: the
# restarted worker connects after the exchange sent the closing frame, so
# that candle must come over REST
# (the faults stay on until 2 s before)
my $boundary = align_down('1m', now_ms() + 4000) + 60_000;
usleep(($boundary - 2000 - now_ms()) * 1000);
clear_faults($fake);
my $old = stream_worker($node);
ok($old && $old->{pid}, "stream worker pid $old->{pid}");
is($node->safe_psql('postgres', "SELECT backend_type FROM pg_stat_activity WHERE pid = $old->{pid}"),
	'mdfeed stream worker', 'that pid is the stream worker');
usleep(($boundary - 300 - now_ms()) * 1000);
my $t_kill = now_ms();
ok(kill('KILL', $old->{pid}), 'SIGKILL sent to the stream worker ' . ($boundary - $t_kill) . ' ms before a close');

my $new = wait_until(
	sub {
		my $n = stream_worker($node);
		return ($n && $n->{pid} != $old->{pid} && $n->{streams} == 6 && $n->{connections} == 1) ? $n : undef;
	},
	60, 0.3);
ok($new, 'after the crash restart a new stream worker carries the 6 streams again');
like(log_contents($node), qr/terminated by signal 9/, 'the postmaster saw the SIGKILL');
like(log_contents($node), qr/all server processes terminated; reinitializing/, 'and crash-restarted the cluster');
note 'stream back ' . (now_ms() - $boundary) . ' ms after the boundary';

# 3. the holes are repaired: nothing missing, every pair equals the truth
wait_next_minute(0) if now_ms() < $boundary;
ok(wait_no_gaps($node, \@pairs, $from, 60), 'mdfeed_gaps is empty for every pair after the repairs');
ok(wait_jobs_settled($node, 60), 'repair jobs done');
avoid_minute_edge(5, 55);
my $to_ms = now_ms() - 3000;
for my $p (@pairs)
{
	my ($sym, $iv) = @$p;
	compare_with_truth($node, $fake, $sym, $iv, $from, align_down($iv, $to_ms), "$sym $iv after faults and SIGKILL");
}
my $g = pair_gaps($node, 'BTCUSDT', '1m', ms_sql($from), "mdfeed.interval_floor('1m', now() - interval '3 s')");
is_deeply($g, [], 'mdfeed_gaps(BTCUSDT, 1m) is empty');
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.jobs WHERE state <> 'succeeded'"),
	'0', 'every job succeeded');
is($node->safe_psql('postgres',
		"SELECT count(DISTINCT (symbol, \"interval\")) FROM mdfeed.jobs WHERE kind = 'candles' AND origin IN ('sync', 'stream') "
		  . "AND finished_at > @{[ms_sql($t_kill)]}"),
	'6', 'after the restart every pair was brought up to date by a sync or stream job (queued after the kill, '
	  . 'or resumed: a restart fast enough to sync before the close finds those still covering it)');
my $how = $node->safe_psql('postgres',
	"SELECT symbol || ': ' || round(extract(epoch FROM updated_at - close_time)::numeric, 1) || ' s after close' "
	  . "FROM mdfeed.candles_1m WHERE open_time = @{[ms_sql($boundary - 60_000)]} ORDER BY symbol");
note "the 1m candle that closed during the restart was written: $how";
note 'jobs that ended after the kill: '
  . $node->safe_psql('postgres',
	"SELECT string_agg(id || ' ' || origin || ' ' || symbol || ' ' || coalesce(\"interval\", '-'), ', ' ORDER BY id) FROM mdfeed.jobs "
	  . "WHERE finished_at > @{[ms_sql($t_kill)]}");
my $sw = stream_worker($node);
is($sw->{malformed}, 0, 'no malformed frame since the faults stopped');
is(fake_ws($fake)->{rate_drops}, 0, 'the fake never dropped a connection for its message rate');
unlike(log_contents($node), qr/PANIC/, 'no PANIC');

finish();
