
# Copyright (c) mdfeed authors
#
# Audits of a symbol with a daily maintenance window (issue 7, item 7).
# The fake's DOGEUSDT has no candle shorter than 1d overlapping 03:00-03:30
# UTC, every day (test/fake_exchange/PROTOCOL.md):
#  - a 1m backfill over three days stores exactly the truth, and
#    mdfeed_gaps reports one row per window, every one exchange_has_none:
#    the holes between the rows of a page are recorded too, not only the
#    range before the first row;
#  - a backfill whose range starts inside a window: the part of that window
#    it covers is exchange_has_none as well, and so is a whole window inside;
#  - tracked, with the gap watchdog (gap_check_interval = 1s) looking back
#    over all of it: a real hole punched in between is repaired (so the
#    watchdog scans the range), but no job of any origin asks for a window
#    again; the startup sync records the window it fetched itself;
#  - a second backfill over the same range writes nothing and asks the
#    exchange for nothing: the windows are confirmed empty.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

use MdfeedTest;

my $M = 60_000;
my $H = 3_600_000;
my $DAY = 86_400_000;
my $SYM = 'DOGEUSDT';

# today 00:00 UTC: every range below is a whole number of days before it
my $D = align_down('1d', now_ms());
my $W0 = 3 * $H;    # the fake's window: 03:00-03:30 UTC
my $W1 = 3 * $H + 30 * $M;

# A: three whole days; B: from inside a window to where A starts
my ($a_from, $a_to) = ($D - 4 * $DAY, $D - $DAY);
my ($b_from, $b_to) = ($D - 6 * $DAY + $W0 + 10 * $M, $a_from);

# what mdfeed_gaps must report over [b_from, a_to): B's head in its first
# window, then four whole windows
my @windows = ([ $b_from, $D - 6 * $DAY + $W1 ],
	map { [ $D - $_ * $DAY + $W0, $D - $_ * $DAY + $W1 ] } (5, 4, 3, 2));

# the watchdog looks back to 04:00 on B's first day: all of B and A, and
# nothing before B (which would be a real gap)
my $lookback_min = int((now_ms() - ($D - 6 * $DAY + 4 * $H)) / $M);

my $fake = start_fake();
my $node = new_node('audit', $fake,
	'mdfeed.intervals' => "'1m'",
	'mdfeed.sync_lookback' => "'3d'",
	'mdfeed.gap_lookback' => "'${lookback_min}min'",
	'mdfeed.gap_check_interval' => "'1s'",
	'mdfeed.derivatives_enabled' => 'off');

sub gap { my ($s, $e, $n, $none) = @_; return { start_ms => $s, end_ms => $e, missing => $n, none => $none }; }

sub window_gaps { return [ map { gap(@$_, ($_->[1] - $_->[0]) / $M, 1) } @_ ]; }

sub gaps_text { return join(',', map { "[$_->{start_ms}, $_->{end_ms}) $_->{missing} $_->{none}" } @{ $_[0] }); }

sub gaps_is
{
	my ($from, $to, $want, $name) = @_;
	my $got = pair_gaps($node, $SYM, '1m', ms_sql($from), ms_sql($to));
	my $ok = is_deeply($got, $want, $name);
	diag('got ' . encode_json($got) . "\nwant " . encode_json($want)) unless $ok;
	return $ok;
}

sub delete_1m
{
	my ($from, $to) = @_;
	return $node->safe_psql('postgres',
		"WITH d AS (DELETE FROM mdfeed.candles_1m WHERE symbol = '$SYM' AND open_time >= "
		  . ms_sql($from) . " AND open_time < " . ms_sql($to) . " RETURNING 1) SELECT count(*) FROM d");
}

# waits until mdfeed_gaps over B and A reports only the windows
sub wait_only_windows
{
	my ($name) = @_;
	my $got;
	my $ok = wait_until(sub {
			$got = pair_gaps($node, $SYM, '1m', ms_sql($b_from), ms_sql($a_to));
			return $got && gaps_text($got) eq gaps_text(window_gaps(@windows));
		}, 60, 0.3);
	ok($ok, $name) or diag('got ' . gaps_text($got // []) . "\nwant " . gaps_text(window_gaps(@windows)));
	return $ok;
}

#--------------------------------------------------------------------------
# 1. three days, three windows
#--------------------------------------------------------------------------
my $st0 = fake_stats($fake);
my $id_a = backfill($node, $SYM, '1m', $a_from, $a_to);
job_is($node, $id_a, 'succeeded', "$SYM 1m over three days succeeded", 120);
my $req_a = fake_klines_requests($fake) - fake_klines_requests($fake, $st0);
note "backfill A: $req_a klines requests";
my $ra = compare_with_truth($node, $fake, $SYM, '1m', $a_from, $a_to, "$SYM 1m A");
is($ra->{truth}, 3 * (1440 - 30), 'the truth has no candle in the three windows');
is(job_row($node, $id_a)->{rows_written}, 3 * (1440 - 30), 'A: rows_written = the candles outside the windows');
gaps_is($a_from, $a_to, window_gaps(@windows[ 2 .. 4 ]),
	'A: mdfeed_gaps reports the three windows, each exchange_has_none');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.exchange_gaps WHERE symbol = '$SYM' AND \"interval\" = '1m' "
		  . "AND from_time < " . ms_sql($a_to) . " AND to_time > " . ms_sql($a_from)),
	'3', 'A: mdfeed.exchange_gaps holds one range a window');

#--------------------------------------------------------------------------
# 2. a range starting inside a window
#--------------------------------------------------------------------------
my $id_b = backfill($node, $SYM, '1m', $b_from, $b_to);
job_is($node, $id_b, 'succeeded', "$SYM 1m from " . iso_ms($b_from) . ' (inside a window) succeeded', 120);
my $rb = compare_with_truth($node, $fake, $SYM, '1m', $b_from, $b_to, "$SYM 1m B");
is(job_row($node, $id_b)->{rows_written}, $rb->{truth}, 'B: rows_written = the truth');
gaps_is($b_from, $b_to, window_gaps(@windows[ 0 .. 1 ]),
	'B: the rest of its first window and the whole next one, both exchange_has_none');
gaps_is($b_from, $a_to, window_gaps(@windows), 'B and A: one row a window, every one exchange_has_none');
is(scalar(grep { !$_->{none} } @{ pair_gaps($node, $SYM, '1m', ms_sql($b_from), ms_sql($a_to)) }),
	0, 'no row with exchange_has_none = false');

#--------------------------------------------------------------------------
# 3. tracked, the watchdog looking back over all of it
#--------------------------------------------------------------------------
my $base_id = $node->safe_psql('postgres', 'SELECT max(id) FROM mdfeed.jobs');
my @hole = ($D - 2 * $DAY + 10 * $H, $D - 2 * $DAY + 10 * $H + 5 * $M);
is(delete_1m(@hole), '5', 'punched a real 5-candle hole between the windows');
gaps_is($D - 2 * $DAY, $D - 2 * $DAY + 12 * $H, [ @{ window_gaps($windows[4]) }, gap(@hole, 5, 0) ],
	'the hole is a gap with exchange_has_none = false, the window beside it true');

is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['$SYM'])"), '1', "whitelisted $SYM");
ok(wait_until(sub { try_sql($node,
				"SELECT count(*) FROM mdfeed.jobs WHERE symbol = '$SYM' AND origin = 'sync' AND state = 'succeeded' AND id > $base_id") == 1 },
		60),
	'the startup sync succeeded');
wait_only_windows('the watchdog repaired the hole: only the windows are left');
my $rep = $node->safe_psql('postgres',
	"SELECT string_agg((extract(epoch FROM from_time) * 1000)::bigint || ' ' || (extract(epoch FROM to_time) * 1000)::bigint "
	  . "|| ' ' || state || ' ' || requests, ',' ORDER BY id) FROM mdfeed.jobs "
	  . "WHERE symbol = '$SYM' AND origin = 'repair' AND id > $base_id AND to_time <= " . ms_sql($a_to));
is($rep, "$hole[0] $hole[1] succeeded 1", 'one repair job, for exactly the hole, in one klines request');

# a second hole, repaired after the first: the watchdog has gone over the
# windows again since, as often as it liked
my @hole2 = ($D - 5 * $DAY + 12 * $H, $D - 5 * $DAY + 12 * $H + 2 * $M);
is(delete_1m(@hole2), '2', 'punched a second hole');
wait_only_windows('the watchdog repaired the second hole');
ok(wait_jobs_settled($node, 60, "symbol = '$SYM' AND to_time <= " . ms_sql($a_to)), 'the repairs are done');

my $cond = join(' OR ', map { '(from_time < ' . ms_sql($_->[1]) . ' AND to_time > ' . ms_sql($_->[0]) . ')' } @windows);
is($node->safe_psql('postgres',
		"SELECT coalesce(string_agg(format('job %s %s [%s, %s) %s requests', id, origin, from_time, to_time, requests), E'\\n'), '') "
		  . "FROM mdfeed.jobs WHERE symbol = '$SYM' AND \"interval\" = '1m' AND id > $base_id AND ($cond)"),
	'', 'no sync or repair job covered a window: none was asked for again');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE symbol = '$SYM' AND origin = 'repair' AND id > $base_id "
		  . "AND to_time <= " . ms_sql($a_to)),
	'2', 'two repair jobs in B and A: the two holes');
gaps_is($b_from, $a_to, window_gaps(@windows), 'B and A: still one row a window, every one exchange_has_none');

# the startup sync began at A's last candle and fetched yesterday's window:
# recorded as well, whoever fetched it
gaps_is($a_to, $a_to + 12 * $H, window_gaps([ $a_to + $W0, $a_to + $W1 ]),
	"the window the sync fetched (yesterday's) is exchange_has_none");
compare_with_truth($node, $fake, $SYM, '1m', $b_from, $a_to, "$SYM 1m B and A after the repairs");

#--------------------------------------------------------------------------
# 4. the same range again
#--------------------------------------------------------------------------
my $id_a2 = backfill($node, $SYM, '1m', $a_from, $a_to);
job_is($node, $id_a2, 'succeeded', 'a second backfill of A succeeded');
my $a2 = job_row($node, $id_a2);
is($a2->{rows_written}, 0, 'second backfill of A: rows_written = 0');
# backfills pass over the ranges mdfeed.exchange_gaps holds
is($a2->{requests}, 0, 'second backfill of A: no klines request');
gaps_is($a_from, $a_to, window_gaps(@windows[ 2 .. 4 ]), 'A: the windows are still exchange_has_none');

is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE symbol = '$SYM' AND kind = 'candles' AND state <> 'succeeded'"),
	'0', 'every candle job succeeded');
unlike(log_contents($node), qr/PANIC|terminated by signal/, 'no crash');

finish();
