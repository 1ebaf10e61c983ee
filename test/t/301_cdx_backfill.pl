
# Copyright (c) mdfeed authors
#
# CoinDCX backfills against the fake CoinDCX, Binance beside it:
#  1. the API: an interval an exchange does not offer is an immediate error
#     naming the exchange and listing what it offers; whitelisting a pair the
#     exchange does not list (active_instruments for futures, markets_details
#     for spot) is an error naming it; mdfeed.instruments holds what each
#     CoinDCX market lists; mdfeed.budgets has a row per exchange;
#  2. backfills of futures (1m 5m 15m 30m 1h 4h 8h 1d) and spot (1m 15m 1h
#     1d) equal the fake's truth row for row, exact decimals, quote_volume
#     NULL (REST sends none), the listing bar first, nothing at or after
#     to; futures and spot B-BTC_USDT are different series in different
#     tables, and mdfeed.candles shows them under their exchange;
#  3. the same backfills again change nothing and ask for (almost) nothing;
#  4. a range reaching now: exactly the forming bar has closed = false;
#  5. a pair listed 10 days ago, a delisted pair, an unknown spot pair;
#  6. every REST fault at once (5xx, resets, garbage, truncated bodies,
#     mutated bodies, slow and stalled answers), each one scripted once so
#     that every kind certainly happens: the jobs succeed and equal the
#     truth; then the rate limiter's 429 (Retry-After 1-2 s) for a request
#     of each market: retried soon after, holding back CoinDCX only
#     (mdfeed.budgets), while a Binance backfill beside never sees a hold;
#     Binance's data equals its truth throughout.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;
use HTTP::Tiny;

use MdfeedTest;

my $t_start = time();
my $bn = start_fake();
# a 2 s rate window: the fake's 429s say Retry-After 1-2 s, not up to 60
my $cdx = start_cdx_fake(config => { rate_window_s => 2 });
my $node = new_node('cdxbf', $bn, cdx_settings($cdx),
	'mdfeed.rest_max_retries' => 60,
	'mdfeed.http_timeout' => "'3s'");

my $D = 86_400_000;
my $H = 3_600_000;
my %pairs = map { ("$_->{market}|$_->{pair}" => $_) } @{ _pairs() };

sub _pairs
{
	my $r = HTTP::Tiny->new(timeout => 10)->get("$cdx->{url}/_fake/pairs");
	die "GET /_fake/pairs: $r->{status}" unless $r->{success};
	my $j = decode_json($r->{content});
	return ref $j eq 'ARRAY' ? $j : $j->{pairs};
}

sub sq { my ($sql) = @_; return $node->safe_psql('postgres', $sql); }

#--------------------------------------------------------------------------
# 1. the API
#--------------------------------------------------------------------------
{
	my $jobs0 = sq('SELECT count(*) FROM mdfeed.jobs');

	my $e = sql_error($node,
		"SELECT mdfeed_backfill('B-BTC_USDT', '3m', '2024-01-01', '2024-01-02', 'coindcx')");
	ok(defined $e, 'coindcx 3m backfill is an error');
	$e //= '';
	like($e, qr/ERROR:[^\n]*\bcoindcx\b[^\n]*3m|ERROR:[^\n]*3m[^\n]*\bcoindcx\b/m,
		'the error names coindcx and the interval');
	like($e, qr/1m, 5m, 15m, 30m, 1h, 4h, 8h, 1d/, 'and lists what coindcx offers')
	  or diag($e);
	unlike($e, qr/offers[^\n]*\b3m\b/, 'which is not 3m');

	$e = sql_error($node,
		"SELECT mdfeed_backfill('I-BTC_INR', '5m', '2024-01-01', '2024-01-02', 'coindcx_spot')");
	ok(defined $e, 'coindcx_spot 5m backfill is an error');
	$e //= '';
	like($e, qr/ERROR:[^\n]*\bcoindcx_spot\b/m, 'the error names coindcx_spot');
	like($e, qr/\b1m, 15m, 1h, 1d\b/, 'and lists what coindcx_spot offers')
	  or diag($e);
	unlike($e, qr/offers[^\n]*\b(5m|4h|30m)\b/, 'which is neither 5m, 30m nor 4h');

	$e = sql_error($node,
		"SELECT mdfeed_backfill('B-BTC_USDT', '4h', '2024-01-01', '2024-01-02', 'coindcx_spot')");
	like($e // '', qr/ERROR:[^\n]*\bcoindcx_spot\b/m, 'coindcx_spot 4h is an error too');
	is(sq('SELECT count(*) FROM mdfeed.jobs'), $jobs0, 'no job was queued by the refused backfills');

	# instruments: what each market lists
	sq("SELECT mdfeed.refresh_instruments('coindcx')");
	sq("SELECT mdfeed.refresh_instruments('coindcx_spot')");
	my $want_fut = join(',', sort map { $_->{pair} }
		  grep { $_->{market} eq 'futures' && $_->{status} eq 'active' } values %pairs);
	my $want_spot = join(',', sort map { $_->{pair} }
		  grep { $_->{market} eq 'spot' && $_->{status} eq 'active' } values %pairs);
	is(sq("SELECT string_agg(symbol, ',' ORDER BY symbol COLLATE \"C\") FROM mdfeed.instruments "
			  . "WHERE exchange = 'coindcx' AND tradable"),
		$want_fut, "mdfeed.instruments: coindcx's tradable pairs are the active instruments ($want_fut)");
	is(sq("SELECT string_agg(symbol, ',' ORDER BY symbol COLLATE \"C\") FROM mdfeed.instruments "
			  . "WHERE exchange = 'coindcx_spot' AND tradable"),
		$want_spot, "mdfeed.instruments: coindcx_spot's tradable pairs are the spot markets");
	is(sq("SELECT count(*) FROM mdfeed.instruments WHERE exchange = 'coindcx' AND symbol = 'B-OLD_USDT' AND tradable"),
		'0', 'the inactive B-OLD_USDT is not tradable on coindcx');

	# whitelisting what the exchange does not list
	$e = sql_error($node, "SELECT mdfeed_whitelist(ARRAY['B-BTC_USDT', 'B-NOPE_USDT'], 'coindcx')");
	ok(defined $e, 'whitelisting an unknown futures pair fails');
	my ($line) = ($e // '') =~ /(ERROR:[^\n]*)/;
	$line //= '';
	like($line, qr/\bcoindcx\b.*B-NOPE_USDT/, 'the error names coindcx and the unknown pair')
	  or diag($e);
	unlike($line, qr/B-BTC_USDT/, 'and not the listed pair');
	$e = sql_error($node, "SELECT mdfeed_whitelist(ARRAY['B-OLD_USDT'], 'coindcx')");
	like($e // '', qr/ERROR:[^\n]*B-OLD_USDT/m, 'an inactive futures pair (not in active_instruments) is refused, named');
	$e = sql_error($node, "SELECT mdfeed_whitelist(ARRAY['I-NOPE_INR'], 'coindcx_spot')");
	like($e // '', qr/ERROR:[^\n]*\bcoindcx_spot\b[^\n]*I-NOPE_INR/m, 'an unknown spot pair is refused, named');
	$e = sql_error($node, "SELECT mdfeed_whitelist(ARRAY['B-PEPE_USDT'], 'coindcx_spot')");
	like($e // '', qr/ERROR:[^\n]*B-PEPE_USDT/m, 'a futures-only pair is not a coindcx_spot pair');
	$e = sql_error($node, "SELECT mdfeed_whitelist(ARRAY['I-BTC_INR'], 'coindcx')");
	like($e // '', qr/ERROR:[^\n]*I-BTC_INR/m, 'a spot-only pair is not a coindcx pair');
	is(sq('SELECT count(*) FROM mdfeed.symbol_lists'), '0', 'nothing was added to the lists');

	my $b = sq("SELECT string_agg(DISTINCT exchange, ',' ORDER BY exchange) FROM mdfeed.budgets");
	like($b, qr/^binance,coindcx(,coindcx_spot)?$/, "mdfeed.budgets has rows per exchange ($b)");
}

#--------------------------------------------------------------------------
# 2. backfills equal the truth
#--------------------------------------------------------------------------
my @cases = (
	# market, pair, interval, from, to   (from and to may be unaligned)
	[ 'futures', 'B-BTC_USDT',  '1m',  ts_ms('2024-03-01'),       ts_ms('2024-03-03') ],
	[ 'futures', 'B-ETH_USDT',  '5m',  ts_ms('2024-03-01'),       ts_ms('2024-03-02') ],
	[ 'futures', 'B-ID_USDT',   '15m', ts_ms('2024-02-01'),       ts_ms('2024-02-04') ],
	[ 'futures', 'B-ETH_USDT',  '30m', ts_ms('2024-02-01'),       ts_ms('2024-02-08') ],
	[ 'futures', 'B-ETH_USDT',  '1h',  ts_ms('2024-01-01 00:30'), ts_ms('2024-03-01') ],
	[ 'futures', 'B-ID_USDT',   '4h',  ts_ms('2023-03-01'),       ts_ms('2024-01-01') ],
	[ 'futures', 'B-BTC_USDT',  '8h',  ts_ms('2023-06-01'),       ts_ms('2024-01-01') ],
	[ 'futures', 'B-BTC_USDT',  '1d',  ts_ms('2022-05-01'),       ts_ms('2024-07-01 12:00') ],
	[ 'futures', 'B-PEPE_USDT', '1d',  ts_ms('2023-05-01'),       ts_ms('2025-01-01') ],
	[ 'spot',    'I-BTC_INR',   '1m',  ts_ms('2024-03-01'),       ts_ms('2024-03-03') ],
	[ 'spot',    'B-ETH_USDT',  '15m', ts_ms('2024-02-01 00:07'), ts_ms('2024-02-08') ],
	[ 'spot',    'B-BTTC_USDT', '1h',  ts_ms('2024-01-01'),       ts_ms('2024-03-01') ],
	[ 'spot',    'B-BTC_USDT',  '1d',  ts_ms('2021-01-01'),       ts_ms('2024-07-01 12:00') ],
	[ 'spot',    'KC-LYX_USDT', '1d',  ts_ms('2023-02-01'),       ts_ms('2024-06-01') ],
);

my $st0 = fake_stats($cdx);
my $t0 = time();
my @ids = map { backfill_on($node, cdx_exchange($_->[0]), @$_[ 1 .. 4 ]) } @cases;
for my $i (0 .. $#cases)
{
	my ($m, $p, $iv) = @{ $cases[$i] };
	job_is($node, $ids[$i], 'succeeded', cdx_exchange($m) . " $p $iv backfill succeeded", 90);
}
note sprintf('%d CoinDCX backfills took %d s', scalar(@cases), time() - $t0);

for my $i (0 .. $#cases)
{
	my ($m, $p, $iv, $from, $to) = @{ $cases[$i] };
	my $ex = cdx_exchange($m);
	compare_cdx_with_truth($node, $cdx, $m, $p, $iv, $from, $to, "$ex $p $iv");
	my $j = job_row($node, $ids[$i]);
	my $stored = sq("SELECT count(*) FROM " . cdx_table($m, $iv) . " WHERE symbol = '$p' AND open_time >= "
		  . ms_sql(align_down($iv, $from)) . " AND open_time < " . ms_sql($to));
	is($j->{rows_written}, $stored, "$ex $p $iv: jobs.rows_written = rows stored ($stored)");
	is($j->{progress}, 1, "$ex $p $iv: progress = 1");
	ok($j->{requests} > 0, "$ex $p $iv: requests > 0 ($j->{requests})");
	ok(!defined $j->{error}, "$ex $p $iv: no error") or diag("error: $j->{error}");
	is("$j->{exchange}/$j->{symbol}/$j->{interval}", "$ex/$p/$iv", "$ex $p $iv: the job's exchange, symbol, interval");
}

# first bars: align_down(from), or the listing bar when from is before it
my %first = (
	'futures|B-ETH_USDT|1h'  => ts_ms('2024-01-01'),
	'futures|B-BTC_USDT|1d'  => $pairs{'futures|B-BTC_USDT'}{onboard_ms},
	'futures|B-PEPE_USDT|1d' => align_down('1d', $pairs{'futures|B-PEPE_USDT'}{onboard_ms}),
	'futures|B-ID_USDT|4h'   => align_down('4h', $pairs{'futures|B-ID_USDT'}{onboard_ms}),
	'spot|B-ETH_USDT|15m'    => ts_ms('2024-02-01'),
	'spot|KC-LYX_USDT|1d'    => align_down('1d', $pairs{'spot|KC-LYX_USDT'}{onboard_ms}),
);
for my $k (sort keys %first)
{
	my ($m, $p, $iv) = split /\|/, $k;
	is(sq("SELECT (extract(epoch FROM min(open_time)) * 1000)::bigint FROM " . cdx_table($m, $iv)
			  . " WHERE symbol = '$p'"),
		$first{$k}, "$m $p $iv: the first bar is " . iso_ms($first{$k}));
}
is(sq("SELECT count(*) FROM mdfeed.cdx_candles_1d WHERE symbol = 'B-BTC_USDT' AND open_time >= "
		  . ms_sql(ts_ms('2024-07-02'))),
	'0', 'futures 1d: nothing at or after to');

# futures and spot B-BTC_USDT: two series, each in its own table, shown
# under its own exchange in mdfeed.candles, with no Binance-only columns
{
	my $fut = cdx_truth('futures', 'B-BTC_USDT', '1d', ts_ms('2023-01-01'), ts_ms('2024-07-01'));
	my $spot = cdx_truth('spot', 'B-BTC_USDT', '1d', ts_ms('2023-01-01'), ts_ms('2024-07-01'));
	my $n_fut = sq("SELECT count(*) FROM mdfeed.cdx_candles_1d WHERE symbol = 'B-BTC_USDT'");
	my $n_spot = sq("SELECT count(*) FROM mdfeed.cdx_spot_candles_1d WHERE symbol = 'B-BTC_USDT'");
	is(sq("SELECT string_agg(exchange || ':' || n || ':' || odd, ',' ORDER BY exchange) FROM ("
			  . "SELECT exchange, count(*) AS n, count(*) FILTER (WHERE trades IS NOT NULL OR taker_buy_base_volume IS NOT NULL "
			  . "OR taker_buy_quote_volume IS NOT NULL OR quote_volume IS NOT NULL) AS odd "
			  . "FROM mdfeed.candles WHERE \"interval\" = '1d' AND symbol = 'B-BTC_USDT' GROUP BY exchange) s"),
		"coindcx:$n_fut:0,coindcx_spot:$n_spot:0",
		'mdfeed.candles shows futures and spot B-BTC_USDT under coindcx and coindcx_spot, trades, taker and quote volumes NULL');
	my $same = sq("SELECT count(*) FROM mdfeed.cdx_candles_1d f JOIN mdfeed.cdx_spot_candles_1d s USING (symbol, open_time) "
		  . "WHERE symbol = 'B-BTC_USDT' AND (f.open, f.close, f.volume) = (s.open, s.close, s.volume)");
	my $both = sq("SELECT count(*) FROM mdfeed.cdx_candles_1d f JOIN mdfeed.cdx_spot_candles_1d s USING (symbol, open_time) "
		  . "WHERE symbol = 'B-BTC_USDT'");
	ok($both > 300 && $same == 0, "the two B-BTC_USDT series differ on each of the $both days both have");
	ok($fut->[0]{close} ne $spot->[0]{close}, '(as the fake\'s truths do)');
	is(sq("SELECT count(*) FROM mdfeed.candles WHERE exchange = 'binance' AND symbol LIKE '%-%'"), '0',
		'no CoinDCX row in a Binance table');
}

#--------------------------------------------------------------------------
# 3. the same backfills again: nothing changes, (almost) nothing is asked
#--------------------------------------------------------------------------
{
	my $snap_sql = join(' UNION ALL ',
		map {
			my ($m, $p, $iv) = @$_;
			my $t = cdx_table($m, $iv);
			"SELECT '$t $p' AS t, count(*) AS n, md5(string_agg(xmin::text || '/' || updated_at::text, ',' ORDER BY open_time)) AS h "
			  . "FROM $t WHERE symbol = '$p'"
		} @cases) . ' ORDER BY 1';
	my $snap1 = sq($snap_sql);
	my $st1 = fake_stats($cdx);
	my @ids2 = map { backfill_on($node, cdx_exchange($_->[0]), @$_[ 1 .. 4 ]) } @cases;
	for my $i (0 .. $#cases)
	{
		my ($m, $p, $iv) = @{ $cases[$i] };
		if (job_is($node, $ids2[$i], 'succeeded', "second $m $p $iv backfill succeeded", 60))
		{
			is(job_row($node, $ids2[$i])->{rows_written}, 0, "second $m $p $iv backfill: rows_written = 0");
		}
	}
	is(sq($snap_sql), $snap1, 'the second backfills left every stored row untouched (xmin, updated_at)');
	my $st2 = fake_stats($cdx);
	my $req = 0;
	my $rows = 0;
	for my $path ('/market_data/candlesticks', '/market_data/candles')
	{
		$req += cdx_requests($cdx, $path, $st2) - cdx_requests($cdx, $path, $st1);
	}
	$rows += ($st2->{rows}{$_} // 0) - ($st1->{rows}{$_} // 0) for qw(candlesticks candles);
	my $first_req = 0;
	$first_req += cdx_requests($cdx, $_, $st1) - cdx_requests($cdx, $_, $st0)
	  for ('/market_data/candlesticks', '/market_data/candles');
	note "first round: $first_req candle requests; second round: $req requests, $rows rows served";
	ok($req <= scalar(@cases), "second round: at most one candle request a job ($req for " . scalar(@cases) . ')');
	ok($rows <= 2 * scalar(@cases), "second round re-downloaded (almost) no rows ($rows)");
}

#--------------------------------------------------------------------------
# 4. a range reaching now: exactly the forming bar has closed = false
#--------------------------------------------------------------------------
for my $c ([ 'futures', 'B-ETH_USDT', '4h', 10 * $D ], [ 'spot', 'I-ETH_INR', '1h', 3 * $D ])
{
	my ($m, $p, $iv, $back) = @$c;
	my $ex = cdx_exchange($m);
	# keep clear of the interval's boundary while the job runs
	my $len = iv_ms($iv);
	my $into = now_ms() % $len;
	if ($into < 5_000 || $len - $into < 30_000)
	{
		my $sleep = $into < 5_000 ? 5_000 - $into : $len - $into + 5_000;
		note "sleeping " . ($sleep / 1000) . " s past a $iv boundary";
		usleep($sleep * 1000);
	}
	my $submit = now_ms();
	my $from = align_down($iv, $submit) - $back;
	my $id = backfill_on($node, $ex, $p, $iv, $from, undef);
	job_is($node, $id, 'succeeded', "$ex $p $iv up to now() succeeded", 60);
	my $forming = align_down($iv, $submit);
	my $n = $back / $len;
	my $r = sq("SELECT count(*) FILTER (WHERE NOT closed), "
		  . "bool_and(open_time = " . ms_sql($forming) . ") FILTER (WHERE NOT closed), "
		  . "max(open_time) = " . ms_sql($forming) . ", count(*) "
		  . "FROM " . cdx_table($m, $iv) . " WHERE symbol = '$p' AND open_time >= " . ms_sql($from));
	is($r, '1|t|t|' . ($n + 1), "$ex $p $iv: exactly the forming bar (the newest) has closed = false, $n closed before it")
	  or diag("count(not closed)|is forming|newest is forming|count = $r");
	compare_cdx_with_truth($node, $cdx, $m, $p, $iv, $from, $forming, "$ex $p $iv up to now");
}

#--------------------------------------------------------------------------
# 5. listing and delisting edges, an unknown spot pair
#--------------------------------------------------------------------------
{
	# B-NEW_USDT, listed 10 days ago (at 08:00), asked from 30 days back
	my $onboard = $pairs{'futures|B-NEW_USDT'}{onboard_ms};
	my $to = align_down('1h', now_ms()) - $D;
	my $from = $to - 30 * $D;
	my $id = backfill_on($node, 'coindcx', 'B-NEW_USDT', '1h', $from, $to);
	job_is($node, $id, 'succeeded', 'B-NEW_USDT from before its listing succeeded');
	is(sq("SELECT (extract(epoch FROM min(open_time)) * 1000)::bigint FROM mdfeed.cdx_candles_1h WHERE symbol = 'B-NEW_USDT'"),
		align_down('1h', $onboard), 'B-NEW_USDT: the first bar is the listing bar');
	compare_cdx_with_truth($node, $cdx, 'futures', 'B-NEW_USDT', '1h', $from, $to, 'coindcx B-NEW_USDT 1h');
	my $req0 = cdx_requests($cdx, '/market_data/candlesticks');
	$id = backfill_on($node, 'coindcx', 'B-NEW_USDT', '1h', $from, $to);
	job_is($node, $id, 'succeeded', 'second B-NEW_USDT backfill succeeded');
	is(job_row($node, $id)->{rows_written}, 0, 'second B-NEW_USDT backfill: rows_written = 0');
	my $req = cdx_requests($cdx, '/market_data/candlesticks') - $req0;
	ok($req <= 1, "second B-NEW_USDT backfill: at most one request, the time before the listing is not asked again ($req)");

	# B-OLD_USDT: delisted 30 days ago; a range over its end has the bars there are
	my $end = $pairs{'futures|B-OLD_USDT'}{end_ms};
	$from = align_down('1d', $end) - 60 * $D;
	$to = align_down('1d', $end) + 10 * $D;
	$id = backfill_on($node, 'coindcx', 'B-OLD_USDT', '1d', $from, $to);
	job_is($node, $id, 'succeeded', 'B-OLD_USDT over its delisting succeeded', 30);
	compare_cdx_with_truth($node, $cdx, 'futures', 'B-OLD_USDT', '1d', $from, $to, 'coindcx B-OLD_USDT 1d');

	# an unknown spot pair: the exchange's 422 names it; refused at once or
	# a failed job, never retried for ever, and nothing stored
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT mdfeed_backfill('I-NOPE_INR', '1h', '2024-01-01', '2024-01-02', 'coindcx_spot')");
	if ($ret != 0)
	{
		like($err, qr/ERROR:[^\n]*I-NOPE_INR/m, 'an unknown spot pair: the backfill is refused, naming it');
	}
	else
	{
		track_job($node, $out);
		job_is($node, $out, 'failed', 'an unknown spot pair: the job failed', 30);
		like(job_row($node, $out)->{error} // '', qr/I-NOPE_INR|Invalid pair/,
			"the job's error carries the exchange's words");
	}
	is(sq("SELECT count(*) FROM mdfeed.cdx_spot_candles_1h WHERE symbol = 'I-NOPE_INR'"), '0', 'I-NOPE_INR: no rows');
}

#--------------------------------------------------------------------------
# 6. every REST fault at once; then 429s, which hold back CoinDCX only
#--------------------------------------------------------------------------
my $bq = "SELECT coalesce(max(rate_limited), 0) || '|' || coalesce(bool_or(blocked_until > now()), false) "
  . "FROM mdfeed.budgets WHERE exchange = ";

# watch_budgets(@ids): polls mdfeed.budgets until the jobs end (or $secs
# pass); returns (CoinDCX seen held back, Binance seen held back, most 429s
# Binance counted)
sub watch_budgets
{
	my ($secs, @ids) = @_;
	my ($cdx_held, $bn_held, $bn_429) = (0, 0, 0);
	my $left = scalar(@ids);
	my $deadline = time() + $secs;
	while ($left > 0 && time() < $deadline)
	{
		my $s = try_sql($node,
			"SELECT coalesce(bool_or(blocked_until > now()) FILTER (WHERE exchange LIKE 'coindcx%'), false), "
			  . "coalesce(bool_or(blocked_until > now()) FILTER (WHERE exchange = 'binance'), false), "
			  . "coalesce(max(rate_limited) FILTER (WHERE exchange = 'binance'), 0), "
			  . "(SELECT count(*) FROM mdfeed.jobs WHERE id IN (" . join(',', @ids)
			  . ") AND state IN ('queued', 'running')) FROM mdfeed.budgets");
		if (defined $s && $s =~ /^(\w)\|(\w)\|(\d+)\|(\d+)$/)
		{
			$cdx_held ||= $1 eq 't';
			$bn_held ||= $2 eq 't';
			$bn_429 = $3 if $3 > $bn_429;
			$left = $4;
		}
		usleep(100_000);
	}
	return ($cdx_held, $bn_held, $bn_429);
}

{
	my @kinds = qw(status_5xx reset garbage truncate truncate_json mutate stall slow);
	my %faults = (
		status_5xx => 0.05, reset => 0.05, garbage => 0.05,
		truncate => 0.05, truncate_json => 0.05, mutate => 0.1,
		slow => 0.1, slow_ms => 200, stall => 0.03, stall_ms => 5000,
		seed => 11,
		# the first requests get one of each, so that every kind happens
		script => [@kinds]);
	my @f_cases = (
		[ 'futures', 'B-BTC_USDT',  '5m',  ts_ms('2024-01-01'), ts_ms('2024-02-01') ],
		[ 'futures', 'B-PEPE_USDT', '1h',  ts_ms('2024-01-01'), ts_ms('2024-07-01') ],
		[ 'futures', 'B-ID_USDT',   '1m',  ts_ms('2024-05-01'), ts_ms('2024-05-03') ],
		[ 'spot',    'I-ETH_INR',   '1m',  ts_ms('2024-04-01'), ts_ms('2024-04-04') ],
		[ 'spot',    'B-BTTC_USDT', '15m', ts_ms('2024-03-01'), ts_ms('2024-05-01') ],
		[ 'spot',    'B-ETH_USDT',  '1h',  ts_ms('2023-01-01'), ts_ms('2023-06-01') ],
	);
	is(sq("$bq 'binance'"), '0|false', 'binance: no 429 and no hold before the faults');
	reset_fake($cdx);
	set_faults($cdx, \%faults);

	my $t = time();
	my @fids = map { backfill_on($node, cdx_exchange($_->[0]), @$_[ 1 .. 4 ]) } @f_cases;
	my $bid = backfill($node, 'BTCUSDT', '1m', ts_ms('2024-02-01'), ts_ms('2024-02-06'));
	my (undef, $bn_held, $bn_429) = watch_budgets(120, @fids, $bid);
	for my $i (0 .. $#f_cases)
	{
		my ($m, $p, $iv) = @{ $f_cases[$i] };
		job_is($node, $fids[$i], 'succeeded', "faults: " . cdx_exchange($m) . " $p $iv backfill succeeded", 10);
	}
	job_is($node, $bid, 'succeeded', 'faults: the Binance backfill beside them succeeded', 10);
	note sprintf('faults: backfills took %d s (the Binance one %.1f s)', time() - $t, job_seconds($node, $bid) // -1);
	my $st = fake_stats($cdx);
	clear_faults($cdx);
	note 'faults: fake CoinDCX stats ' . JSON::PP->new->canonical->encode($st);

	for my $k (@kinds)
	{
		ok(($st->{faults}{$k} // 0) > 0, "faults: the fake injected $k (" . ($st->{faults}{$k} // 0) . ' times)');
	}
	my $retries = 0;
	for my $i (0 .. $#f_cases)
	{
		my ($m, $p, $iv, $from, $to) = @{ $f_cases[$i] };
		compare_cdx_with_truth($node, $cdx, $m, $p, $iv, $from, $to, 'faults: ' . cdx_exchange($m) . " $p $iv");
		my $j = job_row($node, $fids[$i]);
		$retries += $j->{retries};
		is($j->{progress}, 1, "faults: $p $iv progress = 1");
	}
	ok($retries > 0, "faults: the CoinDCX jobs counted $retries retries");
	compare_with_truth($node, $bn, 'BTCUSDT', '1m', ts_ms('2024-02-01'), ts_ms('2024-02-06'), 'faults: binance BTCUSDT 1m beside them');
	ok(!$bn_held && $bn_429 == 0, 'faults: mdfeed.budgets never showed binance held back or throttled');
}

# 429s: the fake's rate limiter answer (Retry-After: 1 or 2 s here, as the
# window is 2 s), once for a candles request of each market
{
	reset_fake($cdx);
	set_faults($cdx, { script => [ 'status_429', 'status_429' ],
		paths => [ '/market_data/candlesticks', '/market_data/candles' ] });
	my $t = Time::HiRes::time();
	my @ids = (backfill_on($node, 'coindcx', 'B-ETH_USDT', '1h', ts_ms('2023-01-01'), ts_ms('2023-02-01')),
		backfill_on($node, 'coindcx_spot', 'I-BTC_INR', '1h', ts_ms('2023-01-01'), ts_ms('2023-02-01')));
	# a Binance backfill queued just behind them
	my $bid = backfill($node, 'ETHUSDT', '1m', ts_ms('2024-02-01'), ts_ms('2024-02-04'));
	my ($cdx_held, $bn_held, $bn_429) = watch_budgets(150, @ids, $bid);
	job_is($node, $ids[0], 'succeeded', '429: the coindcx backfill succeeded', 10);
	job_is($node, $ids[1], 'succeeded', '429: the coindcx_spot backfill succeeded', 10);
	job_is($node, $bid, 'succeeded', '429: the Binance backfill beside them succeeded', 10);
	my $st = fake_stats($cdx);
	clear_faults($cdx);
	is($st->{injected_429}, 2, 'the fake answered two candle requests with its 429');
	my ($s0, $s1, $sb) = map { job_seconds($node, $_) // 999 } @ids, $bid;
	note sprintf('429: coindcx %.1f s, coindcx_spot %.1f s, binance %.1f s', $s0, $s1, $sb);
	ok($s0 <= 15 && $s1 <= 15,
		sprintf('429: retried soon after the Retry-After of 1-2 s (%.1f s and %.1f s, limit 15 s)', $s0, $s1));
	ok($sb <= 10, sprintf('429: the Binance backfill was not held up (%.1f s)', $sb));
	compare_cdx_with_truth($node, $cdx, 'futures', 'B-ETH_USDT', '1h', ts_ms('2023-01-01'), ts_ms('2023-02-01'), '429: coindcx B-ETH_USDT 1h');
	compare_cdx_with_truth($node, $cdx, 'spot', 'I-BTC_INR', '1h', ts_ms('2023-01-01'), ts_ms('2023-02-01'), '429: coindcx_spot I-BTC_INR 1h');
	compare_with_truth($node, $bn, 'ETHUSDT', '1m', ts_ms('2024-02-01'), ts_ms('2024-02-04'), '429: binance ETHUSDT 1m');

	my $cdx_limited = sq("SELECT coalesce(max(rate_limited), 0) FROM mdfeed.budgets WHERE exchange LIKE 'coindcx%'");
	ok($cdx_limited >= 2, "mdfeed.budgets: CoinDCX counted the 429s ($cdx_limited)");
	ok($cdx_held, 'mdfeed.budgets showed CoinDCX held back (blocked_until ahead) after a 429');
	ok(!$bn_held, 'mdfeed.budgets never showed binance held back');
	is($bn_429, 0, 'binance counted no 429');
	is(sq("$bq 'binance'"), '0|false', 'binance: still no 429 and no hold');
	is(fake_429_rate_limited($bn), 0, 'the Binance fake never rate-limited us');
	is($st->{rate_limited_429}, 0, "the CoinDCX fake's own limiter never refused us (only injected 429s)");
	note 'budgets: ' . sq("SELECT string_agg(format('%s %s: requests %s, throttled %s, rate_limited %s', exchange, limit_name, "
		  . "requests, throttled, rate_limited), '; ' ORDER BY exchange, limit_name) FROM mdfeed.budgets");
}

ok(sq('SELECT 1') eq '1', 'server alive');
unlike(log_contents($node), qr/PANIC|terminated by signal/, 'no crashed backend in the server log');
note 'test took ' . (time() - $t_start) . ' s';

finish();
