
# Copyright (c) mdfeed authors
#
# Hourly open interest: mdfeed_backfill_open_interest equals the exchange's
# truth (fake_binance.py oi ... 1h) row for row.
#  A. 60 days of BTCUSDT: the job succeeds with the 30 days the exchange
#     keeps, exact, and mdfeed.jobs.detail says what could not be had; the
#     same job again writes nothing; a range wholly older than 30 days
#     succeeds with nothing and the same note.
#  B. The exchange sends `timestamp` as a string (as its docs show): NEWUSDT
#     from its listing, exact.
#  C. REST faults on the endpoint (scripted, then random), and no weight
#     header (as the live /futures/data family): still exact, no 418.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;
use IPC::Run;

use MdfeedTest;

my $HOUR = 3_600_000;
my $DAY = 86_400_000;
my $fake = start_fake();
my $node = new_node('oi', $fake,
	'mdfeed.rest_max_retries' => 40,
	'mdfeed.http_timeout' => "'3s'");


sub backfill_oi
{
	my ($sym, $from, $to) = @_;
	my $id = $node->safe_psql('postgres',
		"SELECT mdfeed_backfill_open_interest('$sym', " . ms_sql($from) . ", " . ms_sql($to) . ")");
	return track_job($node, $id);
}

sub started_ms
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT (extract(epoch FROM started_at) * 1000)::bigint FROM mdfeed.jobs WHERE id = $id");
}

# every stored row of $sym equals the truth of [from, to) as the exchange
# had it when the job started
sub compare_oi
{
	my ($sym, $from, $to, $now, $name) = @_;
	my $csv = oi_truth($sym, '1h', $from, $to, $now);
	my $ntruth = () = $csv =~ /\n/g;
	my $sql = <<"EOS";
CREATE TEMP TABLE truth (symbol text, ts_ms bigint, oi text, val text);
COPY truth FROM STDIN WITH (FORMAT csv);
$csv\\.
CREATE TEMP VIEW got AS
  SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, sum_open_interest, sum_open_interest_value
  FROM mdfeed.open_interest_1h WHERE symbol = '$sym';
CREATE TEMP VIEW j AS
  SELECT t.ts_ms AS t_ms, g.ts_ms AS g_ms, t.oi, t.val, g.sum_open_interest, g.sum_open_interest_value
  FROM truth t FULL JOIN got g ON g.ts_ms = t.ts_ms;
SELECT json_build_object(
  'truth', (SELECT count(*) FROM truth),
  'got', (SELECT count(*) FROM got),
  'missing', (SELECT count(*) FROM j WHERE g_ms IS NULL),
  'extra', (SELECT count(*) FROM j WHERE t_ms IS NULL),
  'bad_value', (SELECT count(*) FROM j WHERE t_ms IS NOT NULL AND g_ms IS NOT NULL
                 AND (sum_open_interest::text <> oi OR sum_open_interest_value::text <> val)),
  'off_hour', (SELECT count(*) FROM got WHERE ts_ms % $HOUR <> 0),
  'min_ms', (SELECT min(ts_ms) FROM got),
  'max_ms', (SELECT max(ts_ms) FROM got),
  'sample', (SELECT json_agg(x) FROM (SELECT * FROM j WHERE g_ms IS NULL OR t_ms IS NULL
               OR sum_open_interest::text <> oi OR sum_open_interest_value::text <> val
               ORDER BY coalesce(t_ms, g_ms) LIMIT 3) x)
)::text;
EOS
	my $r = comparison_json($node, $sql, "$name: comparison query failed", 120)
	  or return undef;
	my $ok = 1;
	$ok &= is($r->{truth}, $ntruth, "$name: truth loaded ($ntruth hours)");
	$ok &= ok($ntruth > 0, "$name: truth not empty");
	$ok &= is($r->{got}, $r->{truth}, "$name: stored rows = truth ($r->{got})");
	$ok &= is($r->{missing} + $r->{extra}, 0,
		"$name: every hour stored, nothing else (missing $r->{missing}, extra $r->{extra})");
	$ok &= is($r->{bad_value}, 0, "$name: values exact (decimal strings kept)");
	$ok &= is($r->{off_hour}, 0, "$name: ts = the timestamp sent, on the hour");
	diag("$name: " . encode_json($r) . " (now $now)") unless $ok;
	return $r;
}

sub oi_sig
{
	return $node->safe_psql('postgres',
		"SELECT count(*) || '/' || coalesce(max(updated_at)::text, '') || '/' || "
		  . "coalesce(sum(xmin::text::bigint), 0) FROM mdfeed.open_interest_1h");
}

#--------------------------------------------------------------------------
# A: 60 days asked, 30 days had
#--------------------------------------------------------------------------
my $T = now_ms() - 1000;
my $a_from = $T - 60 * $DAY;
my $a_id = backfill_oi('BTCUSDT', $a_from, $T);
job_is($node, $a_id, 'succeeded', 'A: 60 days of BTCUSDT open interest: succeeded', 60);
my $a_now = started_ms($a_id);
my $r = compare_oi('BTCUSDT', $a_from, $T, $a_now, 'A: BTCUSDT');
my $j = job_row($node, $a_id);
is($j->{rows_written}, $r->{truth}, "A: the job counted $r->{truth} rows written");
is($j->{progress}, 1, 'A: progress = 1');
ok($r->{got} >= 30 * 24 - 1 && $r->{got} <= 30 * 24 + 1, "A: about 30 days of hours ($r->{got})");
cmp_ok($r->{min_ms}, '>=', $a_now - 30 * $DAY, 'A: nothing older than 30 days (there is none)');
is($r->{max_ms}, $T - $T % $HOUR, 'A: up to the last hour before to_time');
like($j->{detail} // '', qr/not available/, "A: jobs.detail says what could not be had: "
	  . ($j->{detail} // 'NULL'));
like($j->{detail} // '', qr/30 days/, 'A: ... and why (the exchange keeps 30 days)');
is($j->{error}, undef, 'A: no error');
cmp_ok($j->{requests}, '>=', 2, "A: 720 hours in pages of at most 500 ($j->{requests} requests)");

# again: nothing written, no row touched
my $sig = oi_sig();
my $a2 = backfill_oi('BTCUSDT', $a_from, $T);
job_is($node, $a2, 'succeeded', 'A: the same job again succeeded', 60);
is(job_row($node, $a2)->{rows_written}, 0, 'A: ... and wrote nothing');
is(oi_sig(), $sig, 'A: no row touched');

# wholly older than the exchange keeps
my $a3 = backfill_oi('BTCUSDT', ts_ms('2024-01-01'), ts_ms('2024-02-01'));
job_is($node, $a3, 'succeeded', 'A: a range older than 30 days succeeded', 60);
$j = job_row($node, $a3);
is($j->{rows_written}, 0, 'A: ... with nothing written');
like($j->{detail} // '', qr/not available/, 'A: ... and a note in jobs.detail');
is(oi_sig(), $sig, 'A: no row touched');

#--------------------------------------------------------------------------
# B: timestamp as a string
#--------------------------------------------------------------------------
fake_config($fake, { oi_timestamp_as_string => 1 });
{
	my $st0 = fake_stats($fake);
	my $b_to = now_ms() - 1000;
	my $b_from = $b_to - 20 * $DAY;    # NEWUSDT was listed 10 days ago
	my $b_id = backfill_oi('NEWUSDT', $b_from, $b_to);
	job_is($node, $b_id, 'succeeded', 'B: timestamps as strings: NEWUSDT succeeded', 60);
	my $st1 = fake_stats($fake);
	ok(($st1->{oi_rows} - $st0->{oi_rows}) > 0, 'B: the fake served rows with string timestamps');
	my $rb = compare_oi('NEWUSDT', $b_from, $b_to, started_ms($b_id), 'B: NEWUSDT');
	my $onb = (grep { $_->{symbol} eq 'NEWUSDT' } @{ fake_symbols($fake) })[0]{onboardDate};
	is($rb->{min_ms}, $onb + ($HOUR - $onb % $HOUR) % $HOUR, 'B: from the first hour of the listing');
	is(job_row($node, $b_id)->{detail}, undef, 'B: no note: everything asked for exists');
}
fake_config($fake, { oi_timestamp_as_string => 0 });

#--------------------------------------------------------------------------
# C: faults, no weight header
#--------------------------------------------------------------------------
reset_fake($fake);
my @kinds = qw(status_5xx status_429 truncate truncate_json garbage reset);
set_faults($fake, {
	(map { $_ => 0.12 } @kinds),
	script => [@kinds],
	paths => ['/futures/data/openInterestHist'],
	seed => 3 });
fake_config($fake, { oi_weight_header => 0 });
{
	my $c_to = now_ms() - 1000;
	my $c_from = $c_to - 30 * $DAY;
	my $t0 = time();
	my $c_id = backfill_oi('ETHUSDT', $c_from, $c_to);
	job_is($node, $c_id, 'succeeded', 'C: ETHUSDT succeeded despite faults', 120);
	note sprintf('C: took %d s', time() - $t0);
	my $st = fake_stats($fake);
	clear_faults($fake);
	fake_config($fake, { oi_weight_header => 1 });
	note 'C: fake stats ' . JSON::PP->new->canonical->encode($st);
	for my $k (@kinds)
	{
		ok(($st->{faults}{$k} // 0) > 0, "C: the fake injected $k ($st->{faults}{$k})");
	}
	ok(job_row($node, $c_id)->{retries} > 0, 'C: the job counted retries');
	compare_oi('ETHUSDT', $c_from, $c_to, started_ms($c_id), 'C: ETHUSDT');
	is(fake_418($fake, $st), 0, 'C: no 418');
	is($st->{endpoint_limited_429}{oi}, 0, 'C: no open-interest-limit 429');
}
# BTCUSDT untouched by all that
compare_oi('BTCUSDT', $a_from, $T, $a_now, 'BTCUSDT still');

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server alive');
unlike(log_contents($node), qr/server process .* was terminated by signal|PANIC/,
	'no crashed backend in the server log');

finish();
