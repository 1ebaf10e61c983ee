
# Copyright (c) mdfeed authors
#
# pg_ctl stop -m fast takes less than 10 s while the stream worker is busy:
#  1. live streams, and a backfill worker stuck in a REST call;
#  2. a stalled WebSocket (open, silent), with the backfill still stuck;
#  3. a firehose of closed-candle frames being ingested;
#  4. a WebSocket server that accepts the TCP connection and never answers
#     the upgrade (the stream worker is connecting).
# After each start the stream resumes, and the interrupted backfill ends.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use IO::Socket::INET;
use HTTP::Tiny;
use POSIX ();
use JSON::PP;

use MdfeedTest;

my $fake = start_fake();
my $node = new_node('sshut', $fake,
	'mdfeed.http_timeout' => "'120s'",
	'mdfeed.sync_lookback' => "'1h'");

is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])"), '2',
	'whitelisted 2 symbols');
ok(wait_stream($node, 6, 30, 1), 'streaming 6 streams');
ok(wait_jobs_settled($node, 60, "kind = 'candles'"), 'startup sync done');

# messages still arriving?
sub streaming
{
	my $a = stream_worker($node) or return 0;
	return wait_until(sub { my $b = stream_worker($node); $b && $b->{messages} > $a->{messages} }, 3, 0.3) ? 1 : 0;
}

sub fast_stop
{
	my ($what) = @_;
	my $t = Time::HiRes::time();
	my $ok = $node->stop('fast', fail_ok => 1);
	my $dt = Time::HiRes::time() - $t;
	ok($ok, "$what: pg_ctl stop -m fast succeeded");
	ok($dt < 10, sprintf('%s: pg_ctl stop -m fast returned in %.1f s (< 10 s)', $what, $dt));
}

# a user backfill whose REST calls hang
sub stuck_backfill
{
	my ($what, $from) = @_;
	set_faults($fake, { slow => 1, slow_ms => 300_000, paths => ['/fapi/v1/klines'] });
	my $req0 = fake_klines_requests($fake);
	my $id = backfill($node, 'ETHUSDT', '1m', $from, $from + 2 * 86_400_000);
	ok(poll_job($node, $id, "state = 'running'", 30), "$what: backfill job $id running");
	ok(wait_until(sub { fake_klines_requests($fake) > $req0 }, 20), "$what: its klines request is in flight");
	return $id;
}

# 1. live streams and a stuck backfill
my $j1 = stuck_backfill('live', ts_ms('2024-01-01'));
ok(streaming(), 'live: the stream worker receives messages');
fast_stop('live');
clear_faults($fake);
$node->start;
ok(wait_stream($node, 6, 30, 1), 'live: streaming again after start');
is(wait_job($node, $j1, 60), 'succeeded', 'live: the interrupted backfill succeeded');

# 2. stalled WebSocket, stuck backfill
my $j2 = stuck_backfill('stalled', ts_ms('2024-02-01'));
set_faults($fake, { ws_stall => 1, ws_stall_ms => 0, slow => 1, slow_ms => 300_000, paths => ['/fapi/v1/klines'] });
ok(wait_until(sub { !streaming() }, 15), 'stalled: the stream went silent');
is(stream_worker($node)->{connections}, 1, 'stalled: its connection is still open');
fast_stop('stalled');
clear_faults($fake);
$node->start;
ok(wait_stream($node, 6, 30, 1), 'stalled: streaming again after start');
ok(streaming(), 'stalled: messages arrive');
is(wait_job($node, $j2, 60), 'succeeded', 'stalled: the interrupted backfill succeeded');

# 3. a firehose: 6 x 40000 closed candles as fast as the fake can send them
{
	my $child = fork();
	die "fork: $!" unless defined $child;
	if ($child == 0)
	{
		HTTP::Tiny->new(timeout => 120)->request('POST', "$fake->{url}/_fake/firehose",
			{ content => encode_json({ frames => 40_000, start_ms => ts_ms('2023-01-01') }),
			  headers => { 'Content-Type' => 'application/json' } });
		POSIX::_exit(0);
	}
	my $m0 = stream_worker($node)->{messages};
	ok(wait_until(sub { stream_worker($node)->{messages} > $m0 + 20_000 }, 60, 0.1),
		'firehose: the stream worker is ingesting thousands of frames');
	fast_stop('firehose');
	waitpid($child, 0);
	$node->start;
	ok(wait_stream($node, 6, 30, 1), 'firehose: streaming again after start');
}

# 4. a WebSocket server that never answers the upgrade
my $hole = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "listen: $!";
my $hport = $hole->sockport;
$node->safe_psql('postgres', "ALTER SYSTEM SET mdfeed.binance_ws_url = 'ws://127.0.0.1:$hport/market'");
$node->restart;
ok(wait_until(sub { my $w = stream_worker($node); $w && $w->{streams} == 6 && $w->{connections} == 0 }, 30),
	'connecting: the stream worker wants 6 streams and has no open connection');
usleep(1_500_000);
fast_stop('connecting');
$hole->close;
$node->start;
$node->safe_psql('postgres', 'ALTER SYSTEM RESET mdfeed.binance_ws_url');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
$node->restart;
ok(wait_stream($node, 6, 30, 1), 'streaming again from the fake exchange');
ok(streaming(), 'messages arrive');

unlike(log_contents($node), qr/PANIC|terminated by signal/, 'no crash in the server log');

finish();
