
# Copyright (c) mdfeed authors
#
# Collection of open interest and funding for tracked symbols
# (mdfeed.derivatives_enabled, on by default):
#  - whitelisting a symbol queues an open-interest job (the 30 days the
#    exchange keeps) and a funding job (mdfeed.sync_lookback back) with
#    origin 'sync'; both succeed and equal the truth;
#  - auto-tracked symbols get the same;
#  - one job of each kind per newly tracked symbol, however many passes of
#    the watch worker see it before the jobs end;
#  - at server start the watch worker queues them again, from the newest
#    stored row on, when a whole hour (when rows come) has begun since;
#  - with derivatives_enabled = off a newly tracked symbol gets candles only;
#  - bad input to mdfeed_backfill_funding / mdfeed_backfill_open_interest
#    is an error naming the problem, and queues nothing; a symbol the
#    exchange does not list fails the job with the exchange's message.

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
my $NSYN = 6;
my $fake = start_fake(args => [ '--synthetic', $NSYN ]);
my $node = new_node('derivs', $fake,
	'mdfeed.intervals' => "'1h'",
	'mdfeed.sync_lookback' => "'2d'");

my $FAKE_PY = src_root() . '/test/fake_exchange/fake_binance.py';

sub cli
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', $FAKE_PY, @args, '--synthetic', $NSYN ], '>', \$out, '2>', \$err)
	  or die "fake_binance.py @args failed: $err";
	return $out;
}

# the derivative jobs of a symbol: kind => [job rows]
sub deriv_jobs
{
	my ($sym, $cond) = @_;
	my @rows = query_json($node,
		"SELECT row_to_json(j)::text FROM (SELECT id, kind, origin, state, rows_written, error, detail, "
		  . "(extract(epoch FROM from_time) * 1000)::bigint AS from_ms, "
		  . "(extract(epoch FROM to_time) * 1000)::bigint AS to_ms, "
		  . "(extract(epoch FROM started_at) * 1000)::bigint AS started_ms, "
		  . "(extract(epoch FROM created_at) * 1000)::bigint AS created_ms "
		  . "FROM mdfeed.jobs WHERE symbol = '$sym' AND kind <> 'candles'"
		  . ($cond ? " AND ($cond)" : '') . " ORDER BY id) j");
	my %k;
	push @{ $k{ $_->{kind} } }, $_ for @rows;
	return \%k;
}

# waits until $sym has an open-interest and a funding job of origin 'sync'
# (beyond those in %$seen) and both ended; returns {kind => job}
sub wait_sync_derivs
{
	my ($sym, $seen, $timeout) = @_;
	my $cond = "origin = 'sync'" . (@$seen ? " AND id NOT IN (" . join(',', @$seen) . ")" : '');
	my $k;
	wait_until(
		sub {
			$k = deriv_jobs($sym, $cond);
			return 0 unless $k->{open_interest} && $k->{funding};
			return !grep { $_->{state} =~ /queued|running/ } @{ $k->{open_interest} }, @{ $k->{funding} };
		},
		$timeout // 60, 0.3);
	return $k;
}

sub compare_funding
{
	my ($sym, $from, $to, $now, $name) = @_;
	my $csv = cli('funding', $sym, $from, $to - 1, '--now', $now);
	my $n = () = $csv =~ /\n/g;
	my $got = $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(format('%s,%s,%s,%s', symbol, (extract(epoch FROM exchange_time) * 1000)::bigint, "
		  . "funding_rate, coalesce(mark_price::text, '')), E'\\n' ORDER BY exchange_time), '') "
		  . "FROM mdfeed.funding_rates WHERE symbol = '$sym' AND exchange_time >= "
		  . ms_sql($from) . " AND exchange_time < " . ms_sql($to));
	$got .= "\n" if length $got;
	is($got, $csv, "$name: funding rows equal the truth ($n events)");
	return $n;
}

sub compare_oi
{
	my ($sym, $from, $to, $now, $name) = @_;
	my $csv = cli('oi', $sym, '1h', $from, $to - 1, '--now', $now);
	my $n = () = $csv =~ /\n/g;
	my $got = $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(format('%s,%s,%s,%s', symbol, (extract(epoch FROM ts) * 1000)::bigint, "
		  . "sum_open_interest, sum_open_interest_value), E'\\n' ORDER BY ts), '') "
		  . "FROM mdfeed.open_interest_1h WHERE symbol = '$sym' AND ts >= " . ms_sql($from)
		  . " AND ts < " . ms_sql($to));
	$got .= "\n" if length $got;
	is($got, $csv, "$name: open-interest rows equal the truth ($n hours)");
	return $n;
}

# checks the sync jobs of $sym, tracked at $since, ended well and stored the
# truth.  Tracking it queues one job of each kind, however many passes of
# the watch worker see it first (none queues what a job already fetches, or
# a range that holds nothing new); only the hourly collection, 30 s after
# the next hour, may queue more.
sub check_sync
{
	my ($sym, $k, $name, $since) = @_;
	my $hourly = align_down('1h', $since) + $HOUR + 30_000;
	my @oi = grep { $_->{created_ms} < $hourly } @{ $k->{open_interest} // [] };
	my @fu = grep { $_->{created_ms} < $hourly } @{ $k->{funding} // [] };
	my ($oi, $fu) = ($oi[0], $fu[0]);
	ok($oi && $fu, "$name: an open-interest and a funding job with origin 'sync' were queued")
	  or return;
	is(scalar(@oi), 1, "$name: one open-interest job")
	  or diag(encode_json(\@oi));
	is(scalar(@fu), 1, "$name: one funding job")
	  or diag(encode_json(\@fu));
	note "$name: the hourly collection queued more"
	  if @{ $k->{open_interest} } > @oi || @{ $k->{funding} } > @fu;
	is($oi->{state}, 'succeeded', "$name: the open-interest job succeeded")
	  or diag(encode_json($oi));
	is($fu->{state}, 'succeeded', "$name: the funding job succeeded")
	  or diag(encode_json($fu));
	my $noi = compare_oi($sym, $oi->{from_ms}, $oi->{to_ms}, $oi->{started_ms}, $name);
	my $nfu = compare_funding($sym, $fu->{from_ms}, $fu->{to_ms}, $fu->{started_ms}, $name);
	return ($oi, $fu, $noi, $nfu);
}

#--------------------------------------------------------------------------
# a whitelisted symbol
#--------------------------------------------------------------------------
my $t_white = now_ms();
$node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT'])");
my $k = wait_sync_derivs('BTCUSDT', [], 60);
my ($oi, $fu, $noi, $nfu) = check_sync('BTCUSDT', $k, 'whitelisted BTCUSDT', $t_white);
if ($oi)
{
	ok(abs($oi->{from_ms} - ($t_white - 30 * $DAY)) < 120_000,
		'open interest from 30 days back (all the exchange keeps)');
	ok(abs($fu->{from_ms} - ($t_white - 2 * $DAY)) < 120_000,
		'funding from mdfeed.sync_lookback (2 days) back');
	ok($noi >= 30 * 24 - 1, "about 30 days of open interest ($noi hours)");
	ok($nfu >= 5, "2 days of funding ($nfu events)");
	is($oi->{rows_written}, $noi, 'the open-interest job counted its rows');
	is($fu->{rows_written}, $nfu, 'the funding job counted its rows');
}

#--------------------------------------------------------------------------
# auto-tracked symbols
#--------------------------------------------------------------------------
my @top = grep { $_ ne 'BTCUSDT' } split /\n/,
  $node->safe_psql('postgres', 'SELECT symbol FROM mdfeed_liquid_symbols(0, 2) ORDER BY rank');
ok(@top >= 1, "the top 2 of the board beside the whitelist: @top");
my $t_auto = now_ms();
$node->safe_psql('postgres',
	"ALTER SYSTEM SET mdfeed.auto_track_top_n = 2; SELECT pg_reload_conf();");
for my $s (@top)
{
	my $ka = wait_sync_derivs($s, [], 60);
	check_sync($s, $ka, "auto-tracked $s", $t_auto);
}
is($node->safe_psql('postgres',
		"SELECT string_agg(symbol || ':' || source, ',' ORDER BY symbol) FROM mdfeed.tracked WHERE source = 'auto'"),
	join(',', map { "$_:auto" } sort @top),
	'the auto-tracked symbols are in mdfeed.tracked');

#--------------------------------------------------------------------------
# server start: collection again, from the newest stored row
#--------------------------------------------------------------------------
my @old = split /\n/, $node->safe_psql('postgres',
	"SELECT id FROM mdfeed.jobs WHERE kind <> 'candles' ORDER BY id");
my $last_fu = $node->safe_psql('postgres',
	"SELECT (extract(epoch FROM max(exchange_time)) * 1000)::bigint FROM mdfeed.funding_rates WHERE symbol = 'BTCUSDT'");
my $last_oi = $node->safe_psql('postgres',
	"SELECT (extract(epoch FROM max(ts)) * 1000)::bigint FROM mdfeed.open_interest_1h WHERE symbol = 'BTCUSDT'");
my $t_restart = now_ms();
$node->restart;
# the watch worker's first pass, derivatives included, has ended once it is
# idle; its jobs then end too
my $kr;
ok(wait_until(
		sub {
			my $w = worker_row($node, 'watch');
			return 0 unless $w && $w->{state} =~ /^idle/;
			$kr = deriv_jobs('BTCUSDT', "origin = 'sync' AND id NOT IN (" . join(',', @old) . ")");
			my @all = (@{ $kr->{funding} // [] }, @{ $kr->{open_interest} // [] });
			return !grep { $_->{state} =~ /queued|running/ } @all;
		},
		60, 0.3),
	'after a restart: the watch worker passed, and its collection jobs for BTCUSDT ended');
my ($fu2) = @{ $kr->{funding} // [] };
# funding comes on whole hours: a range holding none has nothing to collect
my $next_fu = align_down('1h', $last_fu) + $HOUR;
if (!$fu2)
{
	ok($next_fu >= $t_restart,
		'after a restart: no funding job, as no hour began since the newest stored event ('
		  . iso_ms($last_fu) . ')');
}
else
{
	is($fu2->{state}, 'succeeded', 'after a restart: the funding job succeeded');
	is($fu2->{from_ms}, $last_fu + 1, 'after a restart: funding from just after the newest stored event');
	compare_funding('BTCUSDT', $fu->{from_ms}, $fu2->{to_ms}, $fu2->{started_ms},
		'after a restart: BTCUSDT');
}
my ($oi2) = @{ $kr->{open_interest} // [] };
if ($oi2)
{
	# only when a new hour began since the first collection
	is($oi2->{from_ms}, $last_oi + $HOUR, 'after a restart: open interest from the hour after the newest stored');
	is($oi2->{state}, 'succeeded', 'after a restart: the open-interest job succeeded');
}
else
{
	note 'no new open-interest job: the newest hour was stored already';
}

#--------------------------------------------------------------------------
# derivatives_enabled = off
#--------------------------------------------------------------------------
$node->safe_psql('postgres',
	"ALTER SYSTEM SET mdfeed.derivatives_enabled = off; SELECT pg_reload_conf();");
usleep(1_500_000);
my $quiet = (grep { my $s = $_; !grep { $_ eq $s } @top } qw(NEWUSDT ETHUSDT S0000USDT))[0];
$node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['$quiet'])");
ok(wait_until(
		sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM mdfeed.jobs WHERE symbol = '$quiet' AND kind = 'candles' AND origin = 'sync'") > 0;
		},
		30),
	"derivatives_enabled = off: whitelisted $quiet gets its candle sync");
ok(wait_jobs_settled($node, 60), 'jobs settled');
sleep(2);
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.jobs WHERE symbol = '$quiet' AND kind <> 'candles'"),
	'0', "derivatives_enabled = off: no open-interest or funding job for $quiet");

#--------------------------------------------------------------------------
# bad input
#--------------------------------------------------------------------------
my $njobs = $node->safe_psql('postgres', 'SELECT count(*) FROM mdfeed.jobs');
for my $f (qw(mdfeed_backfill_funding mdfeed_backfill_open_interest))
{
	for my $case (
		[ "NULL, now() - interval '1 day'",                  qr/symbol must not be null/ ],
		[ "'btcusdt', now() - interval '1 day'",             qr/invalid symbol "btcusdt"/ ],
		[ "'BTC USDT', now() - interval '1 day'",            qr/invalid symbol/ ],
		[ "'BTCUSDT', NULL",                                 qr/from_time must not be null/ ],
		[ "'BTCUSDT', now() - interval '1 day', NULL",       qr/to_time must not be null/ ],
		[ "'BTCUSDT', now(), now() - interval '1 day'",      qr/is not before to_time/ ],
		[ "'BTCUSDT', '2024-01-01', '2024-01-01'",           qr/is not before to_time/ ],
		[ "'BTCUSDT', '-infinity'",                          qr/must be finite/ ],
		[ "'BTCUSDT', '2024-01-01', '2024-02-01', 'kraken'", qr/unknown exchange "kraken"/ ],
		[ "'BTCUSDT', '2024-01-01', '2024-02-01', NULL",     qr/exchange must not be null/ ])
	{
		my ($args, $re) = @$case;
		my ($ret, $out, $err) = $node->psql('postgres', "SELECT $f($args)");
		isnt($ret, 0, "$f($args) fails");
		like($err, qr/ERROR:.*$re/, "$f($args): the error names the problem");
	}
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM mdfeed.jobs'), $njobs, 'bad input queued nothing');

for my $f (qw(mdfeed_backfill_funding mdfeed_backfill_open_interest))
{
	my $id = $node->safe_psql('postgres', "SELECT $f('NOPEUSDT', now() - interval '1 day')");
	track_job($node, $id);
	job_is($node, $id, 'failed', "$f('NOPEUSDT'): the job fails", 60);
	like(job_row($node, $id)->{error} // '', qr/binance rejected the request: Invalid symbol\. \(code -1121\)/,
		"$f('NOPEUSDT'): with the exchange's message");
}

# a role with the grants the README gives
$node->safe_psql('postgres', q{
CREATE ROLE analyst LOGIN;
GRANT USAGE ON SCHEMA mdfeed TO analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO analyst;
GRANT EXECUTE ON FUNCTION mdfeed_wait(bigint, interval), mdfeed_cancel(bigint),
  mdfeed_backfill_open_interest(text, timestamptz, timestamptz, text),
  mdfeed_backfill_funding(text, timestamptz, timestamptz, text) TO analyst;
});
for my $f (qw(mdfeed_backfill_funding mdfeed_backfill_open_interest))
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET ROLE analyst; SELECT $f('ETHUSDT', now() - interval '3 days', now() - interval '1 day')");
	is($ret, 0, "analyst (README grants) can call $f") or diag($err);
	next unless $ret == 0 && $out =~ /^(\d+)$/;
	my $id = track_job($node, $1);
	($ret, $out, $err) = $node->psql('postgres', "SET ROLE analyst; SELECT mdfeed_wait($id, '60 s')");
	is($out, 'succeeded', "analyst: $f job succeeded (mdfeed_wait)") or diag($err);
	is($node->safe_psql('postgres', "SELECT requested_by FROM mdfeed.jobs WHERE id = $id"), 'analyst',
		"analyst: requested_by records the caller");
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server alive');
unlike(log_contents($node), qr/server process .* was terminated by signal|PANIC/,
	'no crashed backend in the server log');

finish();
