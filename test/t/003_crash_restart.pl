
# Copyright (c) mdfeed authors
#
# A backfill interrupted half-way resumes from mdfeed.jobs.cursor_time:
#  1. the backfill worker is SIGKILLed: the postmaster restarts the cluster
#     (restart_after_crash), the job goes on and succeeds;
#  2. the server is restarted (pg_ctl restart, fast mode) mid-job: same.
# Either way the candles are exact and the fake served hardly more rows than
# the range holds (no download from scratch).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $fake = start_fake();
my $node = new_node('crash', $fake);

# slow answers, so that a job of ~60 pages of 499 takes ~15 s
set_faults($fake, { slow => 1, slow_ms => 200 });

sub interrupted_job
{
	my ($what, $sym, $from, $to, $interrupt) = @_;
	reset_fake($fake);
	my $id = backfill($node, $sym, '1m', $from, $to);
	my $rows = ($to - $from) / 60_000;

	ok(poll_job($node, $id, "state = 'running' AND rows_written >= 5000 AND cursor_time > from_time", 60),
		"$what: job running, rows written, cursor advanced");
	my $before = job_row($node, $id);
	note "$what: interrupting at " . encode_json($before);
	ok($before->{state} eq 'running' && $before->{rows_written} < $rows,
		"$what: job not finished before the interruption");

	$interrupt->($before);

	my $state = wait_job($node, $id, 90);
	is($state, 'succeeded', "$what: job succeeded after the interruption")
	  or diag(encode_json(job_row($node, $id) // {}) . "\n" . log_tail($node, 60));
	my $after = job_row($node, $id);
	compare_with_truth($node, $fake, $sym, '1m', $from, $to, "$what: $sym 1m");
	is($after->{progress}, 1, "$what: progress = 1");

	my $served = fake_rows_served($fake);
	ok($served <= $rows + 2 * 499,
		"$what: rows served $served <= $rows + 2 pages of 499 (resumed, not redone)");
	ok($served >= $rows, "$what: rows served $served >= $rows");
	return $id;
}

# 1. SIGKILL of the backfill worker -> crash restart
interrupted_job(
	'SIGKILL',
	'BTCUSDT',
	ts_ms('2024-04-01'),
	ts_ms('2024-04-21'),
	sub {
		my ($j) = @_;
		my $pid = $j->{worker_pid};
		my $is_worker = $node->safe_psql('postgres',
			"SELECT backend_type FROM pg_stat_activity WHERE pid = $pid");
		is($is_worker, 'mdfeed backfill worker', "worker_pid $pid is a backfill worker");
		my $pm_before = $node->safe_psql('postgres', "SELECT pg_postmaster_start_time()");
		ok(kill('KILL', $pid), "SIGKILL sent to backfill worker $pid");
		# the postmaster notices, kills everything and reinitializes
		my $deadline = time() + 60;
		my $back = 0;
		while (time() < $deadline)
		{
			my ($ret, $out) = $node->psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE pid = $pid");
			if (defined $ret && $ret == 0 && $out eq '0')
			{
				$back = 1;
				last;
			}
			usleep(200_000);
		}
		ok($back, 'server accepts connections again after the crash');
		like(log_contents($node),
			qr/terminated by signal 9|all server processes terminated; reinitializing/,
			'the postmaster went through crash recovery');
		ok(wait_workers($node, 2, 60), 'backfill workers are back');
	});

# 2. fast restart mid-job
interrupted_job(
	'restart',
	'ETHUSDT',
	ts_ms('2024-04-01'),
	ts_ms('2024-04-21'),
	sub {
		$node->restart;
		ok(wait_workers($node, 2, 60), 'backfill workers are back after restart');
	});

is(fake_418($fake), 0, 'no 418 ban');
ok($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE state IN ('queued', 'running')") eq '0',
	'no job left queued or running');

finish();
