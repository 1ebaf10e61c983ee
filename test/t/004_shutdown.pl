
# Copyright (c) mdfeed authors
#
# pg_ctl stop -m fast must not wait for a backfill worker stuck in a REST
# call, whether the exchange sent headers and stalls the body ("stall") or
# sends nothing at all ("slow"), and the interrupted job must finish after
# the next start.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $fake = start_fake();
# a long HTTP timeout: only the shutdown itself may end the stuck call
my $node = new_node('shutdown', $fake, 'mdfeed.http_timeout' => "'120s'");

my $n = 0;
for my $case (
	[ 'stalled body', { stall => 1, stall_ms => 300_000, paths => ['/fapi/v1/klines'] } ],
	[ 'no answer', { slow => 1, slow_ms => 300_000, paths => ['/fapi/v1/klines'] } ])
{
	my ($what, $faults) = @$case;
	$n++;
	my $from = ts_ms("2024-0$n-01");
	my $to = $from + 2 * 86_400_000;

	# every klines call hangs (exchangeInfo and time still answer)
	set_faults($fake, $faults);
	my $req0 = fake_klines_requests($fake);
	my $id = backfill($node, 'BTCUSDT', '1m', $from, $to);
	ok(poll_job($node, $id, "state = 'running'", 30), "$what: job running");
	my $deadline = time() + 20;
	usleep(100_000) while (fake_klines_requests($fake) == $req0 && time() < $deadline);
	ok(fake_klines_requests($fake) > $req0, "$what: the worker sent a klines request");
	usleep(1_000_000);
	my $j = job_row($node, $id);
	is($j->{state}, 'running', "$what: job still running, its worker inside a hanging call");

	my $t = Time::HiRes::time();
	my $stopped = $node->stop('fast', fail_ok => 1);
	my $dt = Time::HiRes::time() - $t;
	ok($stopped, "$what: pg_ctl stop -m fast succeeded");
	ok($dt < 10, sprintf('%s: pg_ctl stop -m fast returned in %.1f s (< 10 s)', $what, $dt));

	clear_faults($fake);
	$node->start;
	ok(wait_workers($node, 2, 60), "$what: backfill workers back after start");
	is(wait_job($node, $id, 60), 'succeeded', "$what: the interrupted job succeeded after restart")
	  or diag(encode_json(job_row($node, $id) // {}) . "\n" . log_tail($node, 50));
	compare_with_truth($node, $fake, 'BTCUSDT', '1m', $from, $to, "$what: BTCUSDT 1m");
}

# a worker waiting out a 429's Retry-After (the rest of the clock minute)
{
	my $what = 'rate limited';
	fake_config($fake, { weight_limit => 1 });
	my $st0 = fake_stats($fake);
	my $id = backfill($node, 'ETHUSDT', '1m', ts_ms('2024-03-01'), ts_ms('2024-03-03'));
	my $deadline = time() + 20;
	usleep(100_000) while (fake_429_rate_limited($fake) == fake_429_rate_limited($fake, $st0)
		  && time() < $deadline);
	ok(fake_429_rate_limited($fake) > fake_429_rate_limited($fake, $st0),
		"$what: the exchange answered 429");
	usleep(500_000);
	is(job_row($node, $id)->{state}, 'running', "$what: job still running, waiting");
	# the hold is Binance's budget's, shown per exchange
	is($node->safe_psql('postgres', "SELECT rate_limited > 0 AND blocked_until > now() "
		  . "FROM mdfeed.budgets WHERE exchange = 'binance' AND limit_name = 'weight'"),
		't', "$what: mdfeed.budgets shows binance held back by the 429");

	my $t = Time::HiRes::time();
	my $stopped = $node->stop('fast', fail_ok => 1);
	my $dt = Time::HiRes::time() - $t;
	ok($stopped, "$what: pg_ctl stop -m fast succeeded");
	ok($dt < 10, sprintf('%s: pg_ctl stop -m fast returned in %.1f s (< 10 s)', $what, $dt));

	fake_config($fake, { weight_limit => 2400 });
	reset_fake($fake);
	$node->start;
	ok(wait_workers($node, 2, 60), "$what: backfill workers back after start");
	is(wait_job($node, $id, 60), 'succeeded', "$what: the job succeeded after restart")
	  or diag(encode_json(job_row($node, $id) // {}) . "\n" . log_tail($node, 50));
	compare_with_truth($node, $fake, 'ETHUSDT', '1m', ts_ms('2024-03-01'), ts_ms('2024-03-03'),
		"$what: ETHUSDT 1m");
}

# an idle server stops quickly too
{
	my $t = Time::HiRes::time();
	ok($node->stop('fast', fail_ok => 1), 'idle: pg_ctl stop -m fast succeeded');
	my $dt = Time::HiRes::time() - $t;
	ok($dt < 10, sprintf('idle: stop returned in %.1f s', $dt));
	$node->start;
}

unlike(log_contents($node), qr/PANIC|terminated by signal/,
	'no crash in the server log');

finish();
