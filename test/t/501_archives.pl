
# Copyright (c) mdfeed authors
#
# History from Binance's bulk archives (data.binance.vision, served by the
# fake on its own port).
#  A. Four months and nine days of BTCUSDT 1m through mdfeed_backfill, with
#     a monthly file whose checksum is wrong, one that is not published, an
#     incomplete one and a truncated one, plus a daily file that is wrong and
#     one that is missing: the table equals the truth row for row, and REST
#     served exactly the candles of the two days the archives lacked.
#  B. The same backfill again downloads nothing and writes nothing.
#  C. With mdfeed.binance_archive_url empty, a backfill is REST only.
#  E. pg_ctl stop -m fast while a worker reads archives returns at once;
#     after the restart the job resumes from its archive_cursor and ends
#     equal to the truth, having downloaded no finished month again.
#  D. 90 days of open interest: the hourly table equals the truth over all
#     90 days (60 of them older than REST's window), the five-minute table
#     equals the archives' truth; a day the archives lack is reported.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use Time::Local qw(timegm);
use Time::HiRes;

use MdfeedTest;

my $DAY = 86_400_000;
my $HOUR = 3_600_000;
my $fake = start_fake();
my $node = new_node('archives', $fake,
	'mdfeed.binance_archive_url' => "'$fake->{url}'",
	'mdfeed.rest_max_retries' => 20);

sub utc_ms { my ($y, $m, $d) = @_; return timegm(0, 0, 0, $d, $m - 1, $y) * 1000; }
sub archive_state { return MdfeedTest::_fake_call($fake, 'GET', '/_fake/archive'); }
sub set_archive { my ($f) = @_; return MdfeedTest::_fake_call($fake, 'POST', '/_fake/archive', $f); }

#--------------------------------------------------------------------------
# A: a multi-month 1m backfill through the archives, with faults
#--------------------------------------------------------------------------
set_archive({
	bad_checksum => [ 'BTCUSDT-1m-2022-03.zip', 'BTCUSDT-1m-2022-03-15.zip' ],
	missing => [ 'BTCUSDT-1m-2022-04.zip', 'BTCUSDT-1m-2022-04-02.zip' ],
	incomplete => { 'BTCUSDT-1m-2022-05.zip' => [ 7, 8 ] },
	truncate => [ 'BTCUSDT-1m-2022-06.zip' ],
});
my $from = utc_ms(2022, 3, 1);
my $to = utc_ms(2022, 7, 10);
my $w0 = fake_stats($fake);
my $id = backfill($node, 'BTCUSDT', '1m', $from, $to);
job_is($node, $id, 'succeeded', 'A: four months and nine days of 1m: succeeded', 300);
my $w1 = fake_stats($fake);
my $r = compare_with_truth($node, $fake, 'BTCUSDT', '1m', $from, $to, 'A: BTCUSDT 1m');
my $j = job_row($node, $id);
my $lacked = 2 * 1440;
is($j->{rest_rows}, $lacked, "A: REST wrote the two days the archives lacked ($lacked rows)");
is($j->{archive_rows}, $r->{truth} - $lacked, "A: the archives wrote the rest ($j->{archive_rows} rows)");
is($j->{rows_written}, $r->{truth}, 'A: rows_written = archive_rows + rest_rows');
is(fake_rows_served($fake, $w1) - fake_rows_served($fake, $w0), $lacked,
	'A: REST served only what the archives lacked');
my $weight = $w1->{weight_total} - $w0->{weight_total};
# three pages of at most 499 a day, 2 weight each; exchange info and time
cmp_ok($weight, '<=', 2 * 3 * 2 + 2, "A: REST weight $weight: the lacked days' pages and no more");
# 2022-03: 31 days, 2022-04: 30, the two missing days of 2022-05, 2022-06: 30,
# 2022-07: 9, and the two bad daily files counted as read once each
cmp_ok($j->{archive_files}, '>=', 31 + 30 + 1 + 2 + 30 + 9 - 2, "A: $j->{archive_files} archive files read");
like($j->{detail}, qr/BTCUSDT-1m-2022-03\.zip: checksum mismatch/, 'A: the detail names the bad checksum');
like($j->{detail}, qr/BTCUSDT-1m-2022-04\.zip: not published/, 'A: ... and the missing month');
like($j->{detail}, qr/BTCUSDT-1m-2022-05\.zip lacks candles/, 'A: ... and the incomplete month');
like($j->{detail}, qr/BTCUSDT-1m-2022-06\.zip: download failed/, 'A: ... and the truncated one');
note("A: detail: $j->{detail}");
my $st = archive_state();
note("A: archive requests $st->{requests}, bytes $st->{bytes}, not found $st->{not_found}");

#--------------------------------------------------------------------------
# B: again: nothing downloaded, nothing written
#--------------------------------------------------------------------------
set_archive({});
my $req0 = archive_state()->{requests};
my $k0 = fake_klines_requests($fake);
my $id2 = backfill($node, 'BTCUSDT', '1m', $from, $to);
job_is($node, $id2, 'succeeded', 'B: the same backfill again: succeeded', 60);
my $j2 = job_row($node, $id2);
is($j2->{rows_written}, 0, 'B: ... wrote nothing');
is(archive_state()->{requests} - $req0, 0, 'B: ... and downloaded nothing');
is(fake_klines_requests($fake) - $k0, 0, 'B: ... and asked REST for nothing');

#--------------------------------------------------------------------------
# C: archives off
#--------------------------------------------------------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET mdfeed.binance_archive_url = ''");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;
$req0 = archive_state()->{requests};
my $cf = utc_ms(2022, 8, 1);
my $ct = $cf + 2 * $DAY;
my $id3 = backfill($node, 'ETHUSDT', '1m', $cf, $ct);
job_is($node, $id3, 'succeeded', 'C: with the archives off: succeeded', 60);
my $j3 = job_row($node, $id3);
is($j3->{archive_rows}, 0, 'C: no row from the archives');
is($j3->{rest_rows}, 2 * 1440, 'C: every row from REST');
is(archive_state()->{requests} - $req0, 0, 'C: no archive request');
compare_with_truth($node, $fake, 'ETHUSDT', '1m', $cf, $ct, 'C: ETHUSDT 1m');
$node->safe_psql('postgres', "ALTER SYSTEM SET mdfeed.binance_archive_url = '$fake->{url}'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
sleep 1;

#--------------------------------------------------------------------------
# D: 90 days of open interest
#--------------------------------------------------------------------------

sub compare_oi
{
	my ($table, $sym, $f, $t, $csv, $name) = @_;
	my $ntruth = () = $csv =~ /\n/g;
	my $sql = <<"EOS";
CREATE TEMP TABLE truth (symbol text, ts_ms bigint, oi text, val text);
COPY truth FROM STDIN WITH (FORMAT csv);
$csv\\.
CREATE TEMP VIEW got AS
  SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms,
    sum_open_interest::text AS oi, sum_open_interest_value::text AS val
  FROM mdfeed.$table WHERE symbol = '$sym'
    AND ts >= @{[ms_sql($f)]} AND ts < @{[ms_sql($t)]};
SELECT json_build_object(
  'truth', (SELECT count(*) FROM truth),
  'got', (SELECT count(*) FROM got),
  'missing', (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM got) m),
  'extra', (SELECT count(*) FROM (SELECT * FROM got EXCEPT SELECT * FROM truth) e))::text;
EOS
	my $c = comparison_json($node, $sql, "$name: comparison query failed", 120) or return;
	is($c->{truth}, $ntruth, "$name: truth loaded ($ntruth rows)");
	ok($ntruth > 0, "$name: truth not empty");
	is($c->{got}, $c->{truth}, "$name: stored rows = truth ($c->{got})");
	is($c->{missing} + $c->{extra}, 0,
		"$name: rows equal truth, values exact (missing $c->{missing}, extra $c->{extra})");
}

my $now = now_ms();
my $of = $now - 90 * $DAY;
$of -= $of % $HOUR;
my $oid = track_job($node, $node->safe_psql('postgres',
	"SELECT mdfeed_backfill_open_interest('BTCUSDT', " . ms_sql($of) . ", " . ms_sql($now) . ")"));
job_is($node, $oid, 'succeeded', 'D: 90 days of BTCUSDT open interest: succeeded', 120);
my $oj = job_row($node, $oid);
my $started = $node->safe_psql('postgres',
	"SELECT (extract(epoch FROM started_at) * 1000)::bigint FROM mdfeed.jobs WHERE id = $oid");
note("D: detail: " . ($oj->{detail} // ''));
cmp_ok($oj->{archive_files}, '>=', 59, "D: $oj->{archive_files} daily metrics files read");
# the hours REST keeps come from REST, the older ones from the archives
my $oldest = (int(($started - 30 * $DAY) / $HOUR) + 1) * $HOUR;
compare_oi('open_interest_1h', 'BTCUSDT', $of, $oldest,
	oi_truth('BTCUSDT', '1h', $of, $oldest, $started, 1), 'D: hourly, older than REST keeps');
compare_oi('open_interest_1h', 'BTCUSDT', $oldest, $now - $now % $HOUR,
	oi_truth('BTCUSDT', '1h', $oldest, $now - $now % $HOUR, $started, 0), 'D: hourly, REST window');
compare_oi('open_interest_5m', 'BTCUSDT', $of, $oldest,
	oi_truth('BTCUSDT', '5m', $of, $oldest, $started, 1), 'D: five-minute');

# a day the archives lack is said
my $day = $now - 50 * $DAY;
$day -= $day % $DAY;
my @t = gmtime($day / 1000);
my $name = sprintf('ETHUSDT-metrics-%04d-%02d-%02d.zip', $t[5] + 1900, $t[4] + 1, $t[3]);
set_archive({ missing => [$name] });
my $eid = track_job($node, $node->safe_psql('postgres',
	"SELECT mdfeed_backfill_open_interest('ETHUSDT', " . ms_sql($day - 2 * $DAY) . ", " . ms_sql($day + 2 * $DAY) . ")"));
job_is($node, $eid, 'succeeded', 'D: ETHUSDT with a day missing from the archives: succeeded', 60);
my $ej = job_row($node, $eid);
like($ej->{detail} // '', qr/1 days of open interest before .* are in neither the archives nor REST/,
	'D: the detail says one day could not be had: ' . ($ej->{detail} // ''));
is($node->safe_psql('postgres',
	"SELECT count(*) FROM mdfeed.open_interest_5m WHERE symbol = 'ETHUSDT'"), 3 * 288,
	'D: the three other days are stored');
set_archive({});

#--------------------------------------------------------------------------
# E: fast stop in the middle of the archives, then resume
#--------------------------------------------------------------------------
my $ef = utc_ms(2023, 1, 1);
my $et = utc_ms(2023, 7, 1);
my $eid2 = backfill($node, 'BTCUSDT', '1m', $ef, $et);
ok(poll_job($node, $eid2, "archive_rows > 0 AND archive_cursor > from_time + interval '1 month'", 120),
	'E: the job is in the middle of its archive files');
my $before = job_row($node, $eid2);
my $t0 = Time::HiRes::time();
my $stopped = $node->stop('fast', fail_ok => 1);
my $dt = Time::HiRes::time() - $t0;
ok($stopped, 'E: pg_ctl stop -m fast succeeded');
ok($dt < 5, sprintf('E: ... and returned in %.2f s', $dt));
note(sprintf('E: fast stop with a worker reading archives: %.2f s', $dt));
my $req_before = archive_state()->{requests};
$node->start;
job_is($node, $eid2, 'succeeded', 'E: the job resumed after the restart and succeeded', 300);
my $after = job_row($node, $eid2);
compare_with_truth($node, $fake, 'BTCUSDT', '1m', $ef, $et, 'E: BTCUSDT 1m 2023-01..06');
is($after->{rest_rows}, 0, 'E: nothing from REST (the archives had it all)');
my $months_left = 6 - int(($before->{archive_cursor} =~ /^2023-(\d\d)/)[0]) + 1;
cmp_ok((archive_state()->{requests} - $req_before) / 2, '<=', $months_left,
	"E: after the restart, only the months from archive_cursor ($before->{archive_cursor}) were downloaded");

finish();
