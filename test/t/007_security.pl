# 007_security.pl: a hostile or careless role cannot hold back the job
# queue, and one role's flood of jobs delays neither another role's job nor
# mdfeed's own upkeep (issue 7, items 2, 4 and 5).  The privilege and input
# checks that need no workers are in the pg_regress test sql/security.sql.
#
#  - Claims live in shared memory: a role with no grants at all that takes
#    the advisory locks the 1.0 workers claimed jobs with (and every other
#    id it can think of) delays nothing.
#  - Upkeep (sync, repair, stream, collection) goes before users' jobs, and
#    a running user job yields to it between pages when every worker is busy.
#  - Users share the workers: the role with the fewest running jobs goes
#    next, and a long job yields to another role's after the time slice.
#    Yielding loses nothing: the jobs' data equals the truth.
#  - Job ranges end at the present: an open-interest job "to 2100" costs a
#    request or two, not 1,300.
use strict;
use warnings;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;
use Test::More;
use MdfeedTest;

my $fake = start_fake(name => 'sec');
my $node = new_node('sec', $fake,
	'mdfeed.backfill_workers' => 2,
	'mdfeed.job_time_slice' => "'2s'",
	'mdfeed.stream_enabled' => 'off',
	'mdfeed.derivatives_enabled' => 'off',
	'mdfeed.max_queued_jobs_per_role' => 5000);

$node->safe_psql('postgres', <<'EOS');
CREATE ROLE nobody LOGIN;
CREATE ROLE analyst_a LOGIN;
CREATE ROLE analyst_b LOGIN;
GRANT USAGE ON SCHEMA mdfeed TO analyst_a, analyst_b;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO analyst_a, analyst_b;
GRANT EXECUTE ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text),
	mdfeed_wait(bigint, interval), mdfeed_cancel(bigint),
	mdfeed_backfill_open_interest(text, timestamptz, timestamptz, text)
	TO analyst_a, analyst_b;
EOS

# as($role, $sql): run SQL as a role (a login of its own, not SET ROLE)
sub as_role
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

# seconds from queueing to start of a job, once it has started
sub start_delay
{
	my ($id, $timeout) = @_;
	poll_job($node, $id, "started_at IS NOT NULL", $timeout // 60)
	  or return undef;
	return $node->safe_psql('postgres',
		"SELECT round(extract(epoch FROM started_at - created_at)::numeric, 2) FROM mdfeed.jobs WHERE id = $id");
}

my $now = now_ms();
my $h = 3_600_000;
my $d = 24 * $h;

#--------------------------------------------------------------------------
# Item 2: advisory locks are nobody's handle on the queue
#--------------------------------------------------------------------------
{
	my $next = $node->safe_psql('postgres',
		"SELECT coalesce(max(id), 0) + 1 FROM mdfeed.jobs");
	my $bg = $node->background_psql('postgres', extra_params => [ '-U', 'nobody' ]);
	# the 1.0 claim key, both halves of every id it could use next, and more
	my $held = $bg->query_safe(
		"SELECT count(*) FROM (SELECT pg_advisory_lock(1835296356, g), "
		  . "pg_advisory_lock(g::bigint) FROM generate_series($next, $next + 300) g) s");
	is($held, 301, 'a role with no grants holds the advisory locks of the next 301 job ids');
	is($bg->query_safe("SELECT count(*) FROM (SELECT pg_advisory_lock(1835296356, g) FROM generate_series(-10, -1) g) s"),
		10, 'and the negative second keys of the same first key');
	# a role that may read mdfeed's tables holds what lock it can on them
	my $reader = $node->background_psql('postgres', extra_params => [ '-U', 'analyst_b' ]);
	$reader->query_safe("BEGIN; LOCK TABLE mdfeed.jobs, mdfeed.queue_lock IN ACCESS SHARE MODE");
	my ($r, $o, $e) = $node->psql('postgres',
		"SET statement_timeout = '5s'; SELECT mdfeed.queue_sync('binance', 'ETHUSDT', '1d', now() - interval '3 days', now(), 'repair') > 0");
	is($r, 0, "mdfeed's own queueing (queue_job) is not held back by those locks") or diag($e);
	$reader->query_safe("ROLLBACK");
	$reader->quit;

	my $id = as_role('analyst_a',
		"SELECT mdfeed_backfill('BTCUSDT', '1h', " . ms_sql($now - 3 * $d) . ")");
	track_job($node, $id);
	ok($id >= $next && $id <= $next + 300, "the job's id ($id) is one of the locked ids");
	job_is($node, $id, 'succeeded', 'the job runs whatever advisory locks others hold', 60);
	compare_with_truth($node, $fake, 'BTCUSDT', '1h', $now - 3 * $d, $now, 'its candles equal the truth', allow_open => 1);
	$bg->quit;
}

#--------------------------------------------------------------------------
# Item 4: an open-interest job "to 2100" ends at the present
#--------------------------------------------------------------------------
{
	my $id = as_role('analyst_a',
		"SELECT mdfeed_backfill_open_interest('BTCUSDT', " . ms_sql($now - 2 * $d) . ", '2100-01-01')");
	track_job($node, $id);
	job_is($node, $id, 'succeeded', 'open-interest job to 2100 succeeds', 60);
	my $row = job_row($node, $id);
	cmp_ok($row->{requests}, '<=', 3, "it took $row->{requests} requests (the empty future cost about 1,300 before)");
	is($node->safe_psql('postgres', "SELECT to_time <= now() + interval '1 second' FROM mdfeed.jobs WHERE id = $id"),
		't', 'its to_time was clipped at the present');
}

#--------------------------------------------------------------------------
# Item 5: a flood of one role's jobs
#--------------------------------------------------------------------------
# every REST answer takes 150 ms, so the flood would keep both workers busy
# for 2000 * 0.15 / 2 = 150 s if jobs ran in the order they were queued
set_faults($fake, { slow => 1.0, slow_ms => 150, seed => 7 });
my $flood_from = align_down('1h', $now - 90 * $d);
as_role('analyst_a', <<"EOS");
SELECT count(mdfeed_backfill('ETHUSDT', '1m', t, t + interval '1 hour'))
FROM generate_series(to_timestamp($flood_from / 1000.0), to_timestamp($flood_from / 1000.0) + interval '1999 hours',
					 interval '1 hour') t;
EOS
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.jobs WHERE requested_by = 'analyst_a' AND state IN ('queued', 'running')"),
	2000, 'analyst_a queued 2000 jobs');
usleep(500_000);

my $b1 = track_job($node, as_role('analyst_b',
	"SELECT mdfeed_backfill('BTCUSDT', '15m', " . ms_sql($now - 2 * $d) . ")"));
my $repair = track_job($node, $node->safe_psql('postgres',
	"SELECT mdfeed.queue_sync('binance', 'BTCUSDT', '1h', now() - interval '10 days', now(), 'repair')"));
$node->safe_psql('postgres', 'SELECT mdfeed.wake_workers()');

my $delay_b = start_delay($b1, 60);
ok(defined $delay_b && $delay_b < 5, "analyst_b's job started " . ($delay_b // 'never') . " s after it was queued, behind 2000 of analyst_a's");
my $delay_r = start_delay($repair, 60);
ok(defined $delay_r && $delay_r < 5, "the watchdog's repair started " . ($delay_r // 'never') . " s after it was queued");
job_is($node, $b1, 'succeeded', "analyst_b's job succeeds", 60);
job_is($node, $repair, 'succeeded', 'the repair succeeds', 60);
my $a_left = $node->safe_psql('postgres',
	"SELECT count(*) FROM mdfeed.jobs WHERE requested_by = 'analyst_a' AND state IN ('queued', 'running')");
cmp_ok($a_left, '>', 1000, "most of analyst_a's flood ($a_left jobs) was still waiting when both were done");

# the cap: analyst_a may have 5000 unfinished jobs at most here
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT count(mdfeed_backfill('ETHUSDT', '1d', '2024-01-01', '2024-01-02')) FROM generate_series(1, 5001)",
	extra_params => [ '-U', 'analyst_a' ]);
isnt($ret, 0, 'queueing past mdfeed.max_queued_jobs_per_role fails');
like($err, qr/role "analyst_a" already has 5000 unfinished mdfeed jobs/, 'with an error naming the role and the count');
like($err, qr/HINT:.*mdfeed_cancel/, 'and a hint');

$node->safe_psql('postgres',
	"SELECT count(mdfeed_cancel(id)) FROM mdfeed.jobs WHERE requested_by = 'analyst_a' AND state IN ('queued', 'running')");
poll_job($node, $b1, "NOT EXISTS (SELECT 1 FROM mdfeed.jobs WHERE state = 'running')", 30);

#--------------------------------------------------------------------------
# Item 5: long jobs yield, and lose nothing by it
#--------------------------------------------------------------------------
my $long_from = align_down('1m', $now - 30 * $d);
my $la = track_job($node, as_role('analyst_a',
	"SELECT mdfeed_backfill('BTCUSDT', '1m', " . ms_sql($long_from) . ")"));
my $lb = track_job($node, as_role('analyst_a',
	"SELECT mdfeed_backfill('ETHUSDT', '1m', " . ms_sql($long_from) . ")"));
ok(poll_job($node, $la, "state = 'running' AND (SELECT count(*) FROM mdfeed.jobs WHERE state = 'running') = 2", 30),
	"both workers run analyst_a's long jobs");

my $repair2 = track_job($node, $node->safe_psql('postgres',
	"SELECT mdfeed.queue_sync('binance', 'ETHUSDT', '1h', now() - interval '10 days', now(), 'repair')"));
$node->safe_psql('postgres', 'SELECT mdfeed.wake_workers()');
$delay_r = start_delay($repair2, 30);
ok(defined $delay_r && $delay_r < 4, "a repair queued while every worker runs a long user job started after " . ($delay_r // 'never') . " s");

my $b2 = track_job($node, as_role('analyst_b',
	"SELECT mdfeed_backfill('ETHUSDT', '15m', " . ms_sql($now - 5 * $d) . ")"));
$node->safe_psql('postgres', 'SELECT mdfeed.wake_workers()');
$delay_b = start_delay($b2, 30);
ok(defined $delay_b && $delay_b < 6, "analyst_b's job started " . ($delay_b // 'never') . " s after it was queued, beside analyst_a's long jobs");
job_is($node, $repair2, 'succeeded', 'that repair succeeds', 60);
job_is($node, $b2, 'succeeded', "analyst_b's second job succeeds", 60);

clear_faults($fake);
job_is($node, $la, 'succeeded', 'the first long job succeeds after yielding', 180);
job_is($node, $lb, 'succeeded', 'the second long job succeeds after yielding', 180);
my $yields = () = log_contents($node) =~ /mdfeed job (?:$la|$lb) yields/g;
cmp_ok($yields, '>=', 1, "analyst_a's long jobs yielded ($yields times)");
compare_with_truth($node, $fake, 'BTCUSDT', '1m', $long_from, $now, 'the first long job equals the truth', allow_open => 1);
compare_with_truth($node, $fake, 'ETHUSDT', '1m', $long_from, $now, 'the second long job equals the truth', allow_open => 1);
compare_with_truth($node, $fake, 'ETHUSDT', '15m', $now - 5 * $d, $now, "analyst_b's job equals the truth", allow_open => 1);

# crash safety of claims: no job is left running without a worker
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.jobs WHERE state = 'running'"),
	0, 'nothing is left running');

done_testing();
