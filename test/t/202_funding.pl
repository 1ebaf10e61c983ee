
# Copyright (c) mdfeed authors
#
# Funding history: mdfeed_backfill_funding equals the exchange's truth
# (fake_binance.py funding) row for row.
#  A. A year of BTCUSDT (8 h; the year crosses 2023-11-01, before which the
#     exchange sends markPrice "" -> NULL), a year of ETHUSDT across its move
#     from 8 h to 4 h funding, and NEWUSDT (4 h) from its listing: every
#     event stored once, funding_time = the sent time rounded down to the
#     minute, exchange_time = the exact time sent, rate and mark price exact.
#  B. The same jobs again write nothing and touch no row.
#  C. REST faults on the funding endpoint (scripted, then random 5xx, 429,
#     truncated bodies, garbage, resets): still exact, no 418.
#  D. The fake limits fundingRate to 8 requests per 5 minutes (the extension
#     assumes Binance's 500 and reads no limit from the exchange), with its
#     window ending 20 s from now: 12 one-page jobs hit the limit once; the
#     workers honour Retry-After (no 418, no more than one 429 per worker),
#     and every job succeeds, exact.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;
use IPC::Run;

use MdfeedTest;

my $fake = start_fake();
my $node = new_node('funding', $fake,
	'mdfeed.rest_max_retries' => 40,
	'mdfeed.http_timeout' => "'3s'");

my $FAKE_PY = src_root() . '/test/fake_exchange/fake_binance.py';
my $T0 = now_ms() - 1000;    # fixed end of the "until now" ranges

my %ranges;    # symbol -> [[from, to), ...] asked for so far

sub funding_truth
{
	my ($sym, $from, $to) = @_;
	my ($out, $err) = ('', '');
	# the job covers [from, to); the CLI is inclusive at both ends
	IPC::Run::run([ '/usr/bin/python3', $FAKE_PY, 'funding', $sym, $from, $to - 1, '--now', $T0 ],
		'>', \$out, '2>', \$err)
	  or die "fake_binance.py funding failed: $err";
	return $out;
}

sub backfill_funding
{
	my ($sym, $from, $to) = @_;
	push @{ $ranges{$sym} }, [ $from, $to ];
	my $id = $node->safe_psql('postgres',
		"SELECT mdfeed_backfill_funding('$sym', " . ms_sql($from) . ", " . ms_sql($to) . ")");
	return track_job($node, $id);
}

# compare every stored row of $sym with the truth over every range asked for
sub compare_funding
{
	my ($sym, $name) = @_;
	# ranges may overlap: every event once
	my %seen;
	my $csv = join('', grep { !$seen{$_}++ } map { /([^\n]*\n)/g } map { funding_truth($sym, @$_) } @{ $ranges{$sym} });
	my $ntruth = () = $csv =~ /\n/g;
	my $sql = <<"EOS";
CREATE TEMP TABLE truth (symbol text, ft_ms bigint, rate text, mark text);
COPY truth FROM STDIN WITH (FORMAT csv);
$csv\\.
CREATE TEMP VIEW got AS
  SELECT symbol, (extract(epoch FROM exchange_time) * 1000)::bigint AS ft_ms,
    (extract(epoch FROM funding_time) * 1000)::bigint AS fmin_ms,
    funding_rate, mark_price
  FROM mdfeed.funding_rates WHERE symbol = '$sym';
CREATE TEMP VIEW j AS
  SELECT t.ft_ms AS t_ms, g.ft_ms AS g_ms, t.rate, t.mark, g.fmin_ms, g.funding_rate, g.mark_price
  FROM truth t FULL JOIN got g ON g.ft_ms = t.ft_ms;
SELECT json_build_object(
  'truth', (SELECT count(*) FROM truth),
  'got', (SELECT count(*) FROM got),
  'distinct_minutes', (SELECT count(DISTINCT fmin_ms) FROM got),
  'missing', (SELECT count(*) FROM j WHERE g_ms IS NULL),
  'extra', (SELECT count(*) FROM j WHERE t_ms IS NULL),
  'bad_minute', (SELECT count(*) FROM j WHERE t_ms IS NOT NULL AND g_ms IS NOT NULL
                   AND fmin_ms <> t_ms - t_ms % 60000),
  'bad_rate', (SELECT count(*) FROM j WHERE t_ms IS NOT NULL AND g_ms IS NOT NULL
                 AND (funding_rate <> rate::numeric OR funding_rate::text <> rate)),
  'bad_mark', (SELECT count(*) FROM j WHERE t_ms IS NOT NULL AND g_ms IS NOT NULL
                 AND (mark_price::text IS DISTINCT FROM nullif(mark, ''))),
  'null_marks', (SELECT count(*) FROM got WHERE mark_price IS NULL),
  'empty_marks', (SELECT count(*) FROM truth WHERE coalesce(mark, '') = ''),
  'min_gap_s', (SELECT min(d) FROM (SELECT fmin_ms - lag(fmin_ms) OVER (ORDER BY fmin_ms) AS d FROM got) x) / 1000,
  'sample', (SELECT json_agg(x) FROM (SELECT * FROM j WHERE g_ms IS NULL OR t_ms IS NULL
               OR fmin_ms <> t_ms - t_ms % 60000 OR funding_rate::text <> rate
               OR mark_price::text IS DISTINCT FROM nullif(mark, '') ORDER BY coalesce(t_ms, g_ms) LIMIT 3) x)
)::text;
EOS
	my $r = comparison_json($node, $sql, "$name: comparison query failed", 120)
	  or return undef;
	my $ok = 1;
	$ok &= is($r->{truth}, $ntruth, "$name: truth loaded ($ntruth events)");
	$ok &= ok($ntruth > 0, "$name: truth not empty");
	$ok &= is($r->{got}, $r->{truth}, "$name: stored rows = truth events ($r->{got})");
	$ok &= is($r->{missing} + $r->{extra}, 0,
		"$name: every event stored, nothing else (missing $r->{missing}, extra $r->{extra})");
	$ok &= is($r->{distinct_minutes}, $r->{got}, "$name: every event stored once");
	$ok &= is($r->{bad_minute}, 0, "$name: funding_time = the sent time rounded down to the minute");
	$ok &= is($r->{bad_rate}, 0, "$name: funding_rate exact (decimal string kept)");
	$ok &= is($r->{bad_mark}, 0, "$name: mark_price exact, NULL where the exchange sent \"\"");
	$ok &= is($r->{null_marks}, $r->{empty_marks}, "$name: $r->{null_marks} NULL mark prices");
	unless ($ok)
	{
		diag("$name: " . encode_json($r));
	}
	return $r;
}

sub updated_sig
{
	return $node->safe_psql('postgres',
		"SELECT count(*) || '/' || coalesce(max(updated_at)::text, '') || '/' || "
		  . "coalesce(sum(xmin::text::bigint), 0) FROM mdfeed.funding_rates");
}

#--------------------------------------------------------------------------
# A: exact
#--------------------------------------------------------------------------
my $new_onboard = (grep { $_->{symbol} eq 'NEWUSDT' } @{ fake_symbols($fake) })[0]{onboardDate};
my @a = (
	[ 'BTCUSDT', ts_ms('2023-06-01'), ts_ms('2024-06-01') ],
	[ 'ETHUSDT', ts_ms('2024-07-01'), ts_ms('2025-07-01') ],
	[ 'NEWUSDT', $new_onboard - 86_400_000, $T0 ],
);
my @a_ids = map { backfill_funding(@$_) } @a;
for my $i (0 .. $#a)
{
	job_is($node, $a_ids[$i], 'succeeded', "A: $a[$i][0] funding job succeeded", 60);
}
my %a_res;
for my $i (0 .. $#a)
{
	my $sym = $a[$i][0];
	my $r = compare_funding($sym, "A: $sym");
	$a_res{$sym} = $r;
	my $j = job_row($node, $a_ids[$i]);
	is($j->{rows_written}, $r->{truth}, "A: $sym job counted $r->{truth} rows written");
	is($j->{progress}, 1, "A: $sym progress = 1");
	cmp_ok($j->{requests}, '>=', int($r->{truth} / 1000) + 1, "A: $sym pages of at most 1000 ($j->{requests} requests)");
}
cmp_ok($a_res{BTCUSDT}{null_marks}, '>', 100, 'A: BTCUSDT has NULL mark prices before 2023-11-01');
cmp_ok($a_res{BTCUSDT}{null_marks}, '<', $a_res{BTCUSDT}{got}, 'A: ... and mark prices after');
is($a_res{BTCUSDT}{min_gap_s}, 8 * 3600, 'A: BTCUSDT events 8 h apart');
is($a_res{ETHUSDT}{min_gap_s}, 4 * 3600, 'A: ETHUSDT events 4 h apart after its switch');
is($a_res{NEWUSDT}{min_gap_s}, 4 * 3600, 'A: NEWUSDT events 4 h apart');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.funding_rates WHERE symbol = 'ETHUSDT' AND funding_time < '2025-01-01' "
		  . "AND extract(hour FROM funding_time AT TIME ZONE 'UTC')::int % 8 <> 0"), '0',
	'A: ETHUSDT events before 2025 on the 8 h grid');
cmp_ok($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.funding_rates WHERE symbol = 'ETHUSDT' AND funding_time >= '2025-01-01' "
		  . "AND extract(hour FROM funding_time AT TIME ZONE 'UTC')::int % 8 <> 0"), '>', 300,
	'A: ETHUSDT events from 2025 on the 4 h grid too');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.funding_rates WHERE funding_time <> date_trunc('minute', exchange_time, 'UTC') "
		  . "OR exchange_time - funding_time > interval '1 second'"), '0',
	'A: every exchange_time is within a second past its funding_time minute');

#--------------------------------------------------------------------------
# B: a second run writes nothing
#--------------------------------------------------------------------------
my $sig0 = updated_sig();
my @b_ids = map { my $id = $node->safe_psql('postgres',
		"SELECT mdfeed_backfill_funding('$_->[0]', " . ms_sql($_->[1]) . ", " . ms_sql($_->[2]) . ")");
	track_job($node, $id) } @a;
for my $i (0 .. $#a)
{
	job_is($node, $b_ids[$i], 'succeeded', "B: $a[$i][0] second run succeeded", 60);
	is(job_row($node, $b_ids[$i])->{rows_written}, 0, "B: $a[$i][0] second run wrote nothing");
}
is(updated_sig(), $sig0, 'B: no row touched (count, max(updated_at), xmin unchanged)');

#--------------------------------------------------------------------------
# C: faults
#--------------------------------------------------------------------------
reset_fake($fake);
my @kinds = qw(status_5xx status_429 truncate truncate_json garbage reset);
set_faults($fake, {
	(map { $_ => 0.1 } @kinds),
	script => [@kinds],
	paths => ['/fapi/v1/fundingRate'],
	seed => 5 });
my @c = (
	[ 'BTCUSDT', ts_ms('2019-09-01'), ts_ms('2023-06-01') ],
	[ 'ETHUSDT', ts_ms('2025-07-01'), $T0 ],
	[ 'NEWUSDT', $T0 - 3 * 86_400_000, $T0 ],
);
my $c_t0 = time();
my @c_ids = map { backfill_funding(@$_) } @c;
for my $i (0 .. $#c)
{
	job_is($node, $c_ids[$i], 'succeeded', "C: $c[$i][0] funding job succeeded despite faults", 120);
}
note sprintf('C: took %d s', time() - $c_t0);
my $c_st = fake_stats($fake);
clear_faults($fake);
note 'C: fake stats ' . JSON::PP->new->canonical->encode($c_st);
for my $k (@kinds)
{
	ok(($c_st->{faults}{$k} // 0) > 0, "C: the fake injected $k ($c_st->{faults}{$k})");
}
my $retries = $node->safe_psql('postgres',
	"SELECT sum(retries) FROM mdfeed.jobs WHERE id IN (" . join(',', @c_ids) . ")");
ok($retries > 0, "C: the jobs counted retries ($retries)");
compare_funding($_, "C: $_") for qw(BTCUSDT ETHUSDT NEWUSDT);
is(fake_418($fake, $c_st), 0, 'C: no 418');
is($c_st->{endpoint_limited_429}{funding}, 0, 'C: no funding-limit 429');
is(fake_429_rate_limited($fake, $c_st), 0, 'C: no weight-limit 429');

#--------------------------------------------------------------------------
# D: the exchange's funding limit is lower than the extension assumes
#--------------------------------------------------------------------------
{
	my $LIMIT = 8;
	my $now = now_ms();
	# put the fake's 5-minute window end 20 s from now
	my $off = (280_000 - $now % 300_000) % 300_000;
	$off -= 300_000 if $off > 150_000;
	fake_config($fake, { funding_limit => $LIMIT, clock_offset_ms => $off });
	reset_fake($fake);
	my $win_end = $now + 20_000;
	my @d;
	for my $m (1 .. 12)
	{
		push @d, [ 'ETHUSDT', ts_ms(sprintf('2020-%02d-01', $m)),
			$m == 12 ? ts_ms('2021-01-01') : ts_ms(sprintf('2020-%02d-01', $m + 1)) ];
	}
	my @d_ids = map { backfill_funding(@$_) } @d;
	for my $i (0 .. $#d)
	{
		job_is($node, $d_ids[$i], 'succeeded', "D: ETHUSDT 2020-" . ($i + 1) . " succeeded", 90);
	}
	my $done = now_ms();
	my $st = fake_stats($fake);
	note 'D: fake stats ' . JSON::PP->new->canonical->encode($st);
	my $n429 = $st->{endpoint_limited_429}{funding};
	SKIP:
	{
		# on a very slow machine the requests may straddle the window's end
		skip "D: the fake's limit of $LIMIT was not reached before its window ended", 2 unless $n429 >= 1;
		cmp_ok($n429, '<=', 2,
			"D: the limit was reached ($n429 funding-limit 429s); the workers then waited for Retry-After "
			  . '(at most one 429 per worker)');
		ok($done >= $win_end - 1000, 'D: the jobs finished after the window ended (they waited)');
	}
	is(fake_418($fake, $st), 0, 'D: no 418');
	compare_funding('ETHUSDT', 'D: ETHUSDT');
	fake_config($fake, { funding_limit => 500, clock_offset_ms => 0 });
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server alive');
unlike(log_contents($node), qr/server process .* was terminated by signal|PANIC/,
	'no crashed backend in the server log');

finish();
