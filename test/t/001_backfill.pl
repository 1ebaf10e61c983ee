
# Copyright (c) mdfeed authors
#
# Backfills against the fake exchange: exact candles for several intervals,
# job bookkeeping, idempotence of a second backfill, the forming candle, a
# symbol listed recently, an unknown symbol, and cancellation.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $fake = start_fake();
my $node = new_node('main', $fake);

is(scalar(worker_pids($node)), 2, 'two backfill workers run (mdfeed.backfill_workers default)');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'mdfeed launcher'"),
	'1', 'the launcher runs');

#--------------------------------------------------------------------------
# 1. several intervals, exact vs truth
#--------------------------------------------------------------------------

my @cases = (
	# symbol, interval, from, to   (from may be unaligned: align_down applies)
	[ 'BTCUSDT', '1m',  ts_ms('2024-03-01 00:00'), ts_ms('2024-03-03 00:00') ],
	[ 'BTCUSDT', '15m', ts_ms('2024-01-01 00:00'), ts_ms('2024-02-01 00:00') ],
	[ 'BTCUSDT', '1h',  ts_ms('2024-01-01 00:30'), ts_ms('2024-07-01 00:00') ],
	[ 'BTCUSDT', '1d',  ts_ms('2023-01-01 00:00'), ts_ms('2024-07-01 12:00') ],
	[ 'BTCUSDT', '1w',  ts_ms('2020-06-03 12:34'), ts_ms('2024-06-01 00:00') ],
	[ 'BTCUSDT', '1M',  ts_ms('2020-01-15 00:00'), ts_ms('2025-01-01 00:00') ],
);

my $st0 = fake_stats($fake);
my @ids;
my $t0 = time();
for my $c (@cases)
{
	push @ids, backfill($node, @$c);
}
for my $i (0 .. $#cases)
{
	my ($sym, $iv, $from, $to) = @{ $cases[$i] };
	job_is($node, $ids[$i], 'succeeded', "$sym $iv backfill succeeded", 90);
}
note sprintf('first round of %d backfills took %d s', scalar(@cases), time() - $t0);

my %rows;
for my $i (0 .. $#cases)
{
	my ($sym, $iv, $from, $to) = @{ $cases[$i] };
	my $r = compare_with_truth($node, $fake, $sym, $iv, $from, $to, "$sym $iv");
	$rows{$i} = $r ? $r->{truth} : -1;

	my $j = job_row($node, $ids[$i]);
	my $tab = candle_table($iv);
	my $stored = $node->safe_psql('postgres',
		"SELECT count(*) FROM $tab WHERE symbol = '$sym' AND open_time >= "
		  . ms_sql(align_down($iv, $from)) . " AND open_time < " . ms_sql($to));
	is($j->{rows_written}, $stored, "$iv: jobs.rows_written = rows stored ($stored)");
	is($j->{progress}, 1, "$iv: jobs.progress = 1");
	ok($j->{requests} > 0, "$iv: jobs.requests > 0 ($j->{requests})");
	ok(defined $j->{started_at} && defined $j->{finished_at},
		"$iv: started_at and finished_at set");
	ok(!defined $j->{error}, "$iv: no error recorded")
	  or diag("error: $j->{error}");
	is($j->{symbol} . '/' . $j->{interval}, "$sym/$iv", "$iv: job symbol/interval");
}

# the very first candle of the 1h and 1w jobs is the one containing from
is($node->safe_psql('postgres',
		"SELECT min(open_time) = " . ms_sql(ts_ms('2024-01-01 00:00'))
		  . " FROM mdfeed.candles_1h WHERE symbol = 'BTCUSDT'"),
	't', '1h: first candle is align_down(from)');
is($node->safe_psql('postgres',
		"SELECT min(open_time) = " . ms_sql(ts_ms('2020-06-01 00:00'))
		  . " FROM mdfeed.candles_1w WHERE symbol = 'BTCUSDT'"),
	't', '1w: first candle is the Monday before from');
is($node->safe_psql('postgres',
		"SELECT min(open_time) = " . ms_sql(ts_ms('2020-01-01 00:00'))
		  . " FROM mdfeed.candles_1mo WHERE symbol = 'BTCUSDT'"),
	't', '1M: first candle is the first of the month');
# and nothing at or after to
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.candles_1d WHERE symbol = 'BTCUSDT' AND open_time >= "
		  . ms_sql(ts_ms('2024-07-02 00:00'))),
	'0', '1d: nothing at or after to');

#--------------------------------------------------------------------------
# 2. the same backfills again change nothing and download (almost) nothing
#--------------------------------------------------------------------------

my $snap_sql = join(' UNION ALL ',
	map {
		my $t = candle_table($_->[1]);
		"SELECT '$t' AS t, count(*) AS n, md5(string_agg(xmin::text || '/' || updated_at::text, ',' ORDER BY open_time)) AS h FROM $t WHERE symbol = 'BTCUSDT'"
	} @cases) . ' ORDER BY 1';
my $snap1 = $node->safe_psql('postgres', $snap_sql);
my $st1 = fake_stats($fake);

my @ids2 = map { backfill($node, @$_) } @cases;
for my $i (0 .. $#cases)
{
	my ($sym, $iv) = @{ $cases[$i] };
	if (job_is($node, $ids2[$i], 'succeeded', "second $iv backfill succeeded", 60))
	{
		my $j = job_row($node, $ids2[$i]);
		is($j->{rows_written}, 0, "second $iv backfill: rows_written = 0");
	}
}
my $snap2 = $node->safe_psql('postgres', $snap_sql);
is($snap2, $snap1, 'second backfills left every stored row untouched (xmin, updated_at)');
my $st2 = fake_stats($fake);
my $req = fake_klines_requests($fake, $st2) - fake_klines_requests($fake, $st1);
my $served = fake_rows_served($fake, $st2) - fake_rows_served($fake, $st1);
note "second round: $req klines requests, $served rows served "
  . "(first round: " . (fake_klines_requests($fake, $st1) - fake_klines_requests($fake, $st0))
  . " requests, " . (fake_rows_served($fake, $st1) - fake_rows_served($fake, $st0)) . " rows)";
ok($req <= scalar(@cases),
	"second round made at most one klines request per job ($req for " . scalar(@cases) . " jobs)");
ok($served <= 2 * scalar(@cases), "second round re-downloaded (almost) no rows ($served)");

# a backfill of a sub-range of stored data, and a superset of it
{
	my $before = fake_rows_served($fake);
	my $id = backfill($node, 'BTCUSDT', '1m', ts_ms('2024-03-01 06:00'), ts_ms('2024-03-01 18:00'));
	job_is($node, $id, 'succeeded', 'sub-range backfill succeeded');
	is(fake_rows_served($fake) - $before, 0, 'sub-range of stored data: no rows downloaded');

	$before = fake_rows_served($fake);
	$id = backfill($node, 'BTCUSDT', '1m', ts_ms('2024-02-29 23:00'), ts_ms('2024-03-03 01:00'));
	job_is($node, $id, 'succeeded', 'superset backfill succeeded');
	my $j = job_row($node, $id);
	is($j->{rows_written}, 120, 'superset backfill wrote only the 120 missing candles');
	my $got = fake_rows_served($fake) - $before;
	ok($got >= 120 && $got <= 120 + 2 * 499,
		"superset backfill downloaded about the missing rows only ($got)");
	compare_with_truth($node, $fake, 'BTCUSDT', '1m', ts_ms('2024-02-29 23:00'),
		ts_ms('2024-03-03 01:00'), 'BTCUSDT 1m superset');
}

#--------------------------------------------------------------------------
# 3. a range reaching now: exactly the forming candle has closed = false
#--------------------------------------------------------------------------
{
	# keep clear of a 5-minute boundary while the job runs
	my $left = 300_000 - (now_ms() % 300_000);
	if ($left < 40_000)
	{
		note "sleeping " . ($left / 1000 + 1) . " s past a 5m boundary";
		usleep(($left + 1000) * 1000);
	}
	my $submit = now_ms();
	my $from = align_down('5m', $submit) - 6 * 3_600_000;
	my $id = $node->safe_psql('postgres',
		"SELECT mdfeed_backfill('ETHUSDT', '5m', " . ms_sql($from) . ")");
	track_job($node, $id);
	job_is($node, $id, 'succeeded', 'backfill up to now() succeeded', 60);
	my $forming = align_down('5m', $submit);
	my $r = $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE NOT closed), "
		  . "bool_and(open_time = " . ms_sql($forming) . ") FILTER (WHERE NOT closed), "
		  . "bool_and(close_time > now() - interval '5 minutes') FILTER (WHERE NOT closed), "
		  . "max(open_time) = " . ms_sql($forming) . ", count(*) "
		  . "FROM mdfeed.candles_5m WHERE symbol = 'ETHUSDT'");
	is($r, '1|t|t|t|73', 'exactly the forming candle (the newest) has closed = false, 72 closed before it')
	  or diag("count(not closed)|is forming|close_time ahead|newest is forming|count = $r");
	compare_with_truth($node, $fake, 'ETHUSDT', '5m', $from, $forming, 'ETHUSDT 5m up to now');
}

#--------------------------------------------------------------------------
# 3b. a range ending with the forming candle, asked for just before it closes:
# the job waits for the close and stores that candle closed (no stream here
# would close it otherwise)
#--------------------------------------------------------------------------
{
	my $boundary = align_down('1m', now_ms() + 3000) + 60_000;
	usleep(($boundary - 1500 - now_ms()) * 1000);
	my $submit = now_ms();
	my $from = $boundary - 30 * 60_000;
	my $id = $node->safe_psql('postgres',
		"SELECT mdfeed_backfill('ETHUSDT', '1m', " . ms_sql($from) . ", " . ms_sql($boundary) . ")");
	note 'submitted ' . ($boundary - $submit) . ' ms before a minute boundary';
	track_job($node, $id);
	job_is($node, $id, 'succeeded', 'backfill up to a close 1.5 s away succeeded', 60);
	my $finished = $node->safe_psql('postgres',
		"SELECT (extract(epoch FROM finished_at) * 1000)::bigint FROM mdfeed.jobs WHERE id = $id");
	ok($finished > $boundary,
		'the job ended after the candle closed (' . ($finished - $boundary) . ' ms after the close)');
	is($node->safe_psql('postgres',
			"SELECT count(*) FILTER (WHERE NOT closed) || '|' || count(*) FROM mdfeed.candles_1m "
			  . "WHERE symbol = 'ETHUSDT' AND open_time >= " . ms_sql($from)),
		'0|30', 'all 30 candles of the range are stored closed, the one that closed during the job included');
	compare_with_truth($node, $fake, 'ETHUSDT', '1m', $from, $boundary, 'ETHUSDT 1m up to the close');
}

#--------------------------------------------------------------------------
# 4. a symbol listed 10 days ago, asked from before its listing
#--------------------------------------------------------------------------
{
	my ($new) = grep { $_->{symbol} eq 'NEWUSDT' } @{ fake_symbols($fake) };
	my $onboard = $new->{onboardDate};
	my $to = align_down('1h', now_ms()) - 86_400_000;
	my $from = $to - 30 * 86_400_000;
	my $id = backfill($node, 'NEWUSDT', '1h', $from, $to);
	job_is($node, $id, 'succeeded', 'NEWUSDT from before its listing succeeded');
	is($node->safe_psql('postgres',
			"SELECT min(open_time) = " . ms_sql(align_down('1h', $onboard))
			  . " FROM mdfeed.candles_1h WHERE symbol = 'NEWUSDT'"),
		't', 'NEWUSDT: first candle is the listing candle');
	compare_with_truth($node, $fake, 'NEWUSDT', '1h', $from, $to, 'NEWUSDT 1h');
	my $j = job_row($node, $id);
	is($j->{progress}, 1, 'NEWUSDT: progress = 1');

	# again: neither the stored candles nor the time before the listing are
	# asked for again
	my $req0 = fake_klines_requests($fake);
	$id = backfill($node, 'NEWUSDT', '1h', $from, $to);
	job_is($node, $id, 'succeeded', 'second NEWUSDT backfill succeeded');
	is(job_row($node, $id)->{rows_written}, 0, 'second NEWUSDT backfill: rows_written = 0');
	my $req = fake_klines_requests($fake) - $req0;
	ok($req <= 1, "second NEWUSDT backfill: at most one klines request ($req)");
}

#--------------------------------------------------------------------------
# 4b. a delisted symbol (OLDUSDT, settling, no candle after its delivery):
#     a range running past the end succeeds with the candles there are
#--------------------------------------------------------------------------
{
	my ($old) = grep { $_->{symbol} eq 'OLDUSDT' } @{ fake_symbols($fake) };
	my $end = $old->{endMs};
	my $from = align_down('1d', $end) - 60 * 86_400_000;
	my $to = align_down('1d', $end) + 10 * 86_400_000;
	my $id = backfill($node, 'OLDUSDT', '1d', $from, $to);
	job_is($node, $id, 'succeeded', 'OLDUSDT over its delisting succeeded', 30);
	compare_with_truth($node, $fake, 'OLDUSDT', '1d', $from, $to, 'OLDUSDT 1d');
}

#--------------------------------------------------------------------------
# 5. an unlisted symbol fails with Binance's message
#--------------------------------------------------------------------------
{
	my $id = backfill($node, 'NOPEUSDT', '1h', ts_ms('2024-01-01'), ts_ms('2024-01-02'));
	job_is($node, $id, 'failed', 'NOPEUSDT backfill failed');
	my $j = job_row($node, $id);
	like($j->{error} // '', qr/Invalid symbol\./, 'NOPEUSDT: error carries "Invalid symbol."');
	ok(defined $j->{finished_at}, 'NOPEUSDT: finished_at set');
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM mdfeed.candles_1h WHERE symbol = 'NOPEUSDT'"),
		'0', 'NOPEUSDT: no candles');
}

#--------------------------------------------------------------------------
# 6. cancel a long running job; its worker goes on with the next job
#--------------------------------------------------------------------------
{
	set_faults($fake, { slow => 1, slow_ms => 300 });
	my $a = backfill($node, 'BTCUSDT', '1m', ts_ms('2022-01-01'), ts_ms('2024-01-01'));
	my $c = backfill($node, 'ETHUSDT', '1m', ts_ms('2022-01-01'), ts_ms('2024-01-01'));
	ok(poll_job($node, $a, "state = 'running' AND worker_pid IS NOT NULL", 30),
		'long job A is running');
	ok(poll_job($node, $c, "state = 'running' AND worker_pid IS NOT NULL", 30),
		'long job C is running');
	my $apid = job_row($node, $a)->{worker_pid};
	ok(poll_job($node, $a, 'rows_written > 0', 30), 'job A wrote rows');

	# both workers busy: B waits
	my $b = backfill($node, 'ETHUSDT', '1h', ts_ms('2024-01-01'), ts_ms('2024-01-03'));
	usleep(700_000);
	is(job_row($node, $b)->{state}, 'queued', 'job B queued while both workers are busy');

	my $t = Time::HiRes::time();
	is($node->safe_psql('postgres', "SELECT mdfeed_cancel($a)"), 't', 'mdfeed_cancel(A) = true');
	my $state = $node->safe_psql('postgres', "SELECT mdfeed_wait($a, '20 s')");
	my $dt = Time::HiRes::time() - $t;
	is($state, 'canceled', 'job A canceled');
	ok($dt < 5, sprintf('job A canceled quickly (%.1f s)', $dt));
	my $ja = job_row($node, $a);
	ok(defined $ja->{finished_at}, 'job A: finished_at set');
	ok($ja->{progress} < 1, "job A: progress < 1 ($ja->{progress})");
	is($node->safe_psql('postgres', "SELECT mdfeed_cancel($a)"), 'f',
		'mdfeed_cancel of an ended job = false');

	my $bpid;
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		my $jb = job_row($node, $b);
		$bpid //= $jb->{worker_pid};
		last if $jb->{state} =~ /^(succeeded|failed|canceled)$/;
		usleep(100_000);
	}
	job_is($node, $b, 'succeeded', 'job B succeeded after A was canceled');
	is($bpid, $apid, "job B ran on A's worker (pid $apid)");
	ok(scalar(grep { $_ == $apid } worker_pids($node)), "A's worker still alive");

	is($node->safe_psql('postgres', "SELECT mdfeed_cancel($c)"), 't', 'mdfeed_cancel(C) = true');
	is($node->safe_psql('postgres', "SELECT mdfeed_wait($c, '20 s')"), 'canceled', 'job C canceled');
	clear_faults($fake);

	# and a canceled job's range can be backfilled later
	my $d = backfill($node, 'ETHUSDT', '1h', ts_ms('2024-01-03'), ts_ms('2024-01-05'));
	job_is($node, $d, 'succeeded', 'a job after the cancellations succeeds');
	my $cnt = $node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE state IN ('queued', 'running')");
	is($cnt, '0', 'no job left queued or running');
}

is(fake_418($fake), 0, 'the fake never had to ban us (418)');
is(fake_429_rate_limited($fake), 0, 'the fake never rate-limited us (429)');
ok($node->safe_psql('postgres', 'SELECT 1') eq '1', 'server alive');

finish();
