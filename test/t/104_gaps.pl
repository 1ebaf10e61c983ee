
# Copyright (c) mdfeed authors
#
# mdfeed_gaps and the gap watchdog:
#  - holes punched into stored candles (outside mdfeed.gap_lookback at
#    first) are reported by mdfeed_gaps exactly, range by range, clipped to
#    the asked range, and left alone by the watchdog;
#  - once mdfeed.gap_lookback covers them (reloaded), the watchdog
#    (gap_check_interval = 1s) queues 'repair' jobs for exactly those ranges
#    and the table equals the truth again;
#  - NEWUSDT, listed 10 days ago, tracked with an 11-day lookback: the range
#    before its listing is reported as exchange_has_none, and the watchdog
#    does not queue jobs for it over and over;
#  - a closed candle still on its way from the stream (flushed every 8 s
#    here) is not a gap: the watchdog leaves the tail alone for 15 s.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $M = 60_000;
my $H = 3_600_000;

my $fake = start_fake();
my $node = new_node('gaps', $fake,
	'mdfeed.intervals' => "'1m,1h'",
	'mdfeed.sync_lookback' => "'6h'",
	'mdfeed.gap_lookback' => "'3h'",
	'mdfeed.gap_check_interval' => "'1s'");

sub reload
{
	my (%set) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $_ = '$set{$_}'") for sort keys %set;
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}

sub candle_jobs
{
	my ($sym) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND symbol = '$sym'");
}

sub sync_from
{
	my ($sym, $iv) = @_;
	return $node->safe_psql('postgres',
		"SELECT (extract(epoch FROM min(from_time)) * 1000)::bigint FROM mdfeed.jobs "
		  . "WHERE kind = 'candles' AND origin = 'sync' AND symbol = '$sym' AND \"interval\" = '$iv'");
}

sub gaps_is
{
	my ($sym, $iv, $from, $to, $want, $name) = @_;
	my $got = pair_gaps($node, $sym, $iv, ms_sql($from), ms_sql($to));
	my $ok = is_deeply($got, $want, $name);
	diag('got ' . encode_json($got) . "\nwant " . encode_json($want)) unless $ok;
	return $ok;
}

sub gap { my ($s, $e, $n, $none) = @_; return { start_ms => $s, end_ms => $e, missing => $n, none => $none // 0 }; }

#--------------------------------------------------------------------------
# 1. holes in BTCUSDT
#--------------------------------------------------------------------------
is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT'])"), '1', 'whitelisted BTCUSDT');
ok(wait_until(sub { try_sql($node,
				"SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'sync' AND state = 'succeeded'") == 2 },
		60),
	'startup sync of 1m and 1h done');
my $from1m = sync_from('BTCUSDT', '1m');
my $from1h = sync_from('BTCUSDT', '1h');

my $N = align_down('1m', now_ms());
my $Hn = align_down('1h', now_ms());
my @holes_1m = ([ $N - 290 * $M, $N - 280 * $M ], [ $N - 250 * $M, $N - 249 * $M ], [ $N - 200 * $M, $N - 197 * $M ]);
my @holes_1h = ([ $Hn - 5 * $H, $Hn - 4 * $H ]);
ok($from1m <= $N - 300 * $M && $from1h <= $Hn - 5 * $H, 'the holes are inside the synced range');

gaps_is('BTCUSDT', '1m', $N - 300 * $M, $N - 190 * $M, [], 'no gap before the holes are punched');
my $deleted = 0;
for my $h (@holes_1m)
{
	$deleted += $node->safe_psql('postgres',
		"WITH d AS (DELETE FROM mdfeed.candles_1m WHERE symbol = 'BTCUSDT' AND open_time >= "
		  . ms_sql($h->[0]) . " AND open_time < " . ms_sql($h->[1]) . " RETURNING 1) SELECT count(*) FROM d");
}
is($deleted, 14, 'deleted 14 closed 1m candles in 3 ranges');
is($node->safe_psql('postgres',
		"WITH d AS (DELETE FROM mdfeed.candles_1h WHERE symbol = 'BTCUSDT' AND open_time = "
		  . ms_sql($holes_1h[0][0]) . " RETURNING 1) SELECT count(*) FROM d"),
	'1', 'deleted one 1h candle');

gaps_is('BTCUSDT', '1m', $N - 300 * $M, $N - 190 * $M,
	[ gap(@{ $holes_1m[0] }, 10), gap(@{ $holes_1m[1] }, 1), gap(@{ $holes_1m[2] }, 3) ],
	'mdfeed_gaps reports exactly the three 1m holes');
gaps_is('BTCUSDT', '1m', $N - 285 * $M, $N - 270 * $M, [ gap($N - 285 * $M, $N - 280 * $M, 5) ],
	'a range starting inside a hole: the gap starts at from_time');
gaps_is('BTCUSDT', '1m', $N - 300 * $M, $N - 285 * $M, [ gap($N - 290 * $M, $N - 285 * $M, 5) ],
	'a range ending inside a hole: the gap ends at to_time');
gaps_is('BTCUSDT', '1m', $N - 250 * $M + 30_000, $N - 249 * $M, [ gap($N - 250 * $M, $N - 249 * $M, 1) ],
	'from_time inside a candle counts that candle');
gaps_is('BTCUSDT', '1h', $Hn - 6 * $H, $Hn - 2 * $H, [ gap(@{ $holes_1h[0] }, 1) ],
	'mdfeed_gaps reports the 1h hole');

# the watchdog looks back 3 h only: it leaves these alone
usleep(3_000_000);
gaps_is('BTCUSDT', '1m', $N - 300 * $M, $N - 190 * $M,
	[ gap(@{ $holes_1m[0] }, 10), gap(@{ $holes_1m[1] }, 1), gap(@{ $holes_1m[2] }, 3) ],
	'holes older than mdfeed.gap_lookback are not repaired');
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'repair' AND from_time < " . ms_sql($N - 190 * $M)),
	'0', 'no repair job for them');

# reload: now the watchdog sees them
reload('mdfeed.gap_lookback' => '6h');
ok(wait_until(sub {
			my $a = pair_gaps($node, 'BTCUSDT', '1m', ms_sql($N - 300 * $M), ms_sql($N - 190 * $M));
			my $b = pair_gaps($node, 'BTCUSDT', '1h', ms_sql($Hn - 6 * $H), ms_sql($Hn - 2 * $H));
			return $a && $b && !@$a && !@$b;
		}, 30, 0.5),
	'after gap_lookback = 6h the watchdog repaired every hole');
ok(wait_jobs_settled($node, 30, "kind = 'candles'"), 'repair jobs done');
my %rep = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	"SELECT \"interval\" || ' ' || (extract(epoch FROM from_time) * 1000)::bigint || ' ' || (extract(epoch FROM to_time) * 1000)::bigint "
	  . "FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'repair' AND state = 'succeeded'");
for my $h (@holes_1m)
{
	ok($rep{"1m $h->[0] $h->[1]"}, '1m repair job for exactly [' . iso_ms($h->[0]) . ', ' . iso_ms($h->[1]) . ')');
}
ok($rep{"1h $holes_1h[0][0] $holes_1h[0][1]"}, '1h repair job for exactly the hole');
note 'repair jobs: ' . join(', ', sort keys %rep);
avoid_minute_edge(4, 56);
compare_with_truth($node, $fake, 'BTCUSDT', '1m', $from1m, align_down('1m', now_ms() - 3000), 'BTCUSDT 1m repaired');
compare_with_truth($node, $fake, 'BTCUSDT', '1h', $from1h, align_down('1h', now_ms() - 3000), 'BTCUSDT 1h repaired');

#--------------------------------------------------------------------------
# 2. a range before the listing
#--------------------------------------------------------------------------
is($node->safe_psql('postgres', "SELECT mdfeed_unlist(ARRAY['BTCUSDT'])"), '1', 'unlisted BTCUSDT');
reload('mdfeed.sync_lookback' => '11d', 'mdfeed.gap_lookback' => '11d');
my ($new) = grep { $_->{symbol} eq 'NEWUSDT' } @{ fake_symbols($fake) };
my $onboard = $new->{onboardDate};
ok($onboard > now_ms() - 11 * 86_400_000 && $onboard < now_ms() - 9 * 86_400_000,
	'NEWUSDT was listed about 10 days ago (' . iso_ms($onboard) . ')');
is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['NEWUSDT'])"), '1', 'whitelisted NEWUSDT');
ok(wait_until(sub { try_sql($node,
				"SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'sync' AND symbol = 'NEWUSDT' AND state = 'succeeded'") == 2 },
		60),
	'NEWUSDT startup sync of 1m and 1h done');
ok(wait_jobs_settled($node, 30, "kind = 'candles'"), 'no candle job left');
for my $iv (qw(1h 1m))
{
	my $from = sync_from('NEWUSDT', $iv);
	ok($from < $onboard, "NEWUSDT $iv: the sync started before the listing");
	gaps_is('NEWUSDT', $iv, $from, align_down($iv, now_ms() - 20_000),
		[ gap($from, $onboard, ($onboard - $from) / iv_ms($iv), 1) ],
		"NEWUSDT $iv: the only gap is before the listing, marked exchange_has_none");
	ok($node->safe_psql('postgres',
			"SELECT count(*) FROM mdfeed.exchange_gaps WHERE symbol = 'NEWUSDT' AND \"interval\" = '$iv' "
			  . "AND from_time <= " . ms_sql($from) . " AND to_time >= " . ms_sql($onboard)) >= 1,
		"NEWUSDT $iv: mdfeed.exchange_gaps holds the range");
}
my $n0 = candle_jobs('NEWUSDT');
usleep(6_000_000);    # six watchdog rounds
my $n1 = candle_jobs('NEWUSDT');
is($n1, $n0, "the watchdog does not queue jobs for the range before the listing ($n0 jobs, then $n1)");
note 'NEWUSDT jobs: ' . $node->safe_psql('postgres',
	"SELECT string_agg(origin || ' ' || \"interval\" || ' ' || from_time || '..' || to_time || ' ' || state, E'\\n' ORDER BY id) "
	  . "FROM mdfeed.jobs WHERE kind = 'candles' AND symbol = 'NEWUSDT'");
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND symbol = 'NEWUSDT' AND origin = 'repair' "
		  . "AND from_time < " . ms_sql($onboard)),
	'0', 'no repair job was ever queued before the listing');
avoid_minute_edge(4, 56);
compare_with_truth($node, $fake, 'NEWUSDT', '1h', sync_from('NEWUSDT', '1h'), align_down('1h', now_ms() - 3000), 'NEWUSDT 1h');
compare_with_truth($node, $fake, 'NEWUSDT', '1m', sync_from('NEWUSDT', '1m'), align_down('1m', now_ms() - 3000), 'NEWUSDT 1m');
#--------------------------------------------------------------------------
# 3. the tail: a candle that closed a few seconds ago is not missing yet
#--------------------------------------------------------------------------
reload('mdfeed.stream_flush_interval' => '8s');
my $rep0 = $node->safe_psql('postgres', "SELECT coalesce(max(id), 0) FROM mdfeed.jobs");
my $b = wait_next_minute(11);
is($node->safe_psql('postgres',
		"SELECT closed FROM mdfeed.candles_1m WHERE symbol = 'NEWUSDT' AND open_time = " . ms_sql($b - $M)),
	't', 'the stream wrote the 1m candle that closed ' . iso_ms($b) . ' within 11 s (flushes every 8 s)');
my $early = $node->safe_psql('postgres',
	"SELECT coalesce(string_agg(format('job %s %s %s [%s, %s) queued %s s after the close of its last candle', "
	  . "id, origin, \"interval\", from_time, to_time, round(extract(epoch FROM created_at - to_time)::numeric, 3)), E'\\n'), '') "
	  . "FROM mdfeed.jobs WHERE kind = 'candles' AND id > $rep0 AND origin = 'repair'");
is($early, '', 'the watchdog queued no repair for a candle that had closed less than 15 s before');
reload('mdfeed.stream_flush_interval' => '500ms');

is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND state <> 'succeeded'"),
	'0', 'every candle job succeeded');
unlike(log_contents($node), qr/PANIC|terminated by signal/, 'no crash');

finish();
