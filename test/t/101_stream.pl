
# Copyright (c) mdfeed authors
#
# Live candles: two whitelisted symbols are streamed.
#  - the startup sync fills exactly mdfeed.sync_lookback (2 h here) of every
#    (symbol, interval) of mdfeed.intervals, equal to the exchange's truth;
#    it alone makes that first fill (one 'sync' job a pair), whether the
#    stream connects before the watch worker looks or after;
#  - the forming candle is stored with closed = false and keeps changing;
#  - 1m candles that close while streaming are written within seconds of
#    their close, equal to the truth row for row;
#  - LISTEN mdfeed_candles gets a JSON payload for each such candle;
#  - a symbol whose SUBSCRIBE lands after a close still gets that candle
#    closed within seconds.
# Tracking starts a second before a minute boundary, so that the startup sync
# and the subscriptions straddle a close; then waits for one more boundary.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my @syms = qw(BTCUSDT ETHUSDT);
my @ivs = qw(1m 15m 1h);
my $lookback_ms = 2 * 3_600_000;

my $fake = start_fake();
my $node = new_node('stream', $fake,
	'mdfeed.sync_lookback' => "'2h'",
	'mdfeed.gap_lookback' => "'2h'");

ok(wait_until(sub { worker_row($node, 'stream') && worker_row($node, 'watch') }, 30),
	'stream and watch workers are running');

# Track the symbols a second before a minute boundary, every run: the
# connection, its subscriptions and the startup sync then straddle a close,
# which must neither be lost nor left forming.
my $first_close = align_down('1m', now_ms() + 3000) + 60_000;
usleep(($first_close - 1000 - now_ms()) * 1000);
my $t_track = now_ms();
is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])"),
	'2', 'mdfeed_whitelist adds 2 symbols');
is($node->safe_psql('postgres', 'SELECT string_agg(symbol, \',\' ORDER BY symbol) FROM mdfeed.tracked'),
	'BTCUSDT,ETHUSDT', 'mdfeed.tracked lists both');

# every pair subscribed, on one connection
my $w = wait_stream($node, 6, 30, 1);
ok($w, 'stream worker carries 6 streams on 1 connection')
  or diag(encode_json(stream_worker($node) // {}));
my $ws = wait_fake_subs($fake, 6, 30);
ok($ws, 'the fake exchange has 6 subscriptions')
  or diag(encode_json(fake_ws($fake)));

# startup sync: one 'sync' job per pair, all succeeded
ok(wait_until(sub {
			try_sql($node, "SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'sync' AND state = 'succeeded'") == 6
		}, 60),
	'6 startup sync jobs succeeded')
  or diag($node->safe_psql('postgres', 'SELECT row_to_json(j) FROM mdfeed.jobs j ORDER BY id'));
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'sync' AND state <> 'succeeded'"),
	'0', 'no sync job failed');

my %sync;
for my $l (split /\n/,
	$node->safe_psql('postgres',
		"SELECT symbol, \"interval\", (extract(epoch FROM from_time) * 1000)::bigint, "
		  . "(extract(epoch FROM to_time) * 1000)::bigint, (extract(epoch FROM created_at) * 1000)::bigint, id "
		  . "FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'sync' ORDER BY id"))
{
	my ($s, $iv, $f, $t, $c, $id) = split /\|/, $l;
	ok(!$sync{"$s|$iv"}, "one sync job for $s $iv");
	$sync{"$s|$iv"} = { from => $f, to => $t, created => $c, id => $id };
}

# The first fill of a new pair is the watch worker's sync, whoever looks
# first: the stream's repair on connect leaves a pair with no closed candle
# alone, the gap watchdog one the sync has not seen, and nothing queues what
# a queued or running job will fetch.  So no other job was queued before the
# sync, and none starts where the sync does.
for my $s (@syms)
{
	for my $iv (@ivs)
	{
		my $j = $sync{"$s|$iv"} or next;
		my $others = $node->safe_psql('postgres',
			"SELECT coalesce(string_agg(format('%s %s [%s, %s)', id, origin, from_time, to_time), '; '), '') "
			  . "FROM mdfeed.jobs WHERE kind = 'candles' AND symbol = '$s' AND \"interval\" = '$iv' "
			  . "AND id <> $j->{id} AND (id < $j->{id} OR from_time <= " . ms_sql($j->{from}) . ")");
		is($others, '', "$s $iv: the sync alone made the first fill");
	}
}

# the lookback window, exactly: from the candle containing now - 2 h (the
# job's now), every closed candle up to the present equals the truth, and
# nothing older was written
for my $s (@syms)
{
	for my $iv (@ivs)
	{
		my $j = $sync{"$s|$iv"};
		next unless ok($j, "sync job of $s $iv exists");
		is($j->{from}, align_down($iv, $j->{created} - $lookback_ms),
			"$s $iv: sync starts at the candle containing now - sync_lookback");
		is($j->{to}, next_open($iv, align_down($iv, $j->{created})),
			"$s $iv: sync ends after the forming candle");
		my $tab = candle_table($iv);
		# a candle that has just closed may still be forming for as long as
		# the stream takes to write its close (under 5 s, checked below)
		my ($min, $max, $forming, $stale) = split /\|/,
		  $node->safe_psql('postgres',
			"SELECT (extract(epoch FROM min(open_time)) * 1000)::bigint, "
			  . "(extract(epoch FROM max(open_time)) * 1000)::bigint, "
			  . "count(*) FILTER (WHERE NOT closed AND close_time >= now()), "
			  . "count(*) FILTER (WHERE NOT closed AND close_time < now() - interval '5 s') "
			  . "FROM $tab WHERE symbol = '$s'");
		is($min, $j->{from}, "$s $iv: oldest stored candle is the first of the lookback window");
		ok($max <= align_down($iv, now_ms()), "$s $iv: no candle from the future");
		ok($forming <= 1, "$s $iv: at most one candle still forming ($forming)");
		is($stale, 0, "$s $iv: no candle that closed over 5 s ago is stored as forming");
		compare_with_truth($node, $fake, $s, $iv, $j->{from},
			align_down($iv, now_ms() - 5000), "startup sync $s $iv");
	}
}

# the forming candle: closed = false, and updated while it forms
{
	my $snap = sub {
		my %r;
		for my $l (split /\n/,
			$node->safe_psql('postgres',
				"SELECT symbol, (extract(epoch FROM open_time) * 1000)::bigint, closed, "
				  . "(extract(epoch FROM updated_at) * 1000000)::bigint, volume, trades, close, high, low "
				  . "FROM mdfeed.candles_1m WHERE open_time = mdfeed.interval_floor('1m', now())"))
		{
			my ($s, $o, $c, $u, @v) = split /\|/, $l;
			$r{$s} = { open => $o, closed => $c, updated => $u, values => join('|', @v) };
		}
		return \%r;
	};
	avoid_minute_edge(3, 54);
	my $a = $snap->();
	is(scalar(keys %$a), 2, 'a row for the forming 1m candle of both symbols');
	is(join(',', map { $a->{$_}{closed} } sort keys %$a), 'f,f', 'the forming candles have closed = false');
	my $changed = wait_until(
		sub {
			my $b = $snap->();
			my $n = 0;
			for my $s (@syms)
			{
				next unless $a->{$s} && $b->{$s} && $a->{$s}{open} == $b->{$s}{open};
				$n++ if $b->{$s}{updated} > $a->{$s}{updated}
				  && $b->{$s}{values} ne $a->{$s}{values}
				  && $b->{$s}{closed} eq 'f';
			}
			# one symbol is enough: the fake's minute may hold no trade for a
			# while (or none at all), as a real market's may, and then its
			# forming candle rightly does not change
			return $n >= 1;
		},
		4, 0.25);
	ok($changed, 'a forming candle was updated (updated_at and values changed, still closed = false)')
	  or diag(encode_json({ before => $a, after => $snap->() }));
}

# NOTIFY mdfeed_candles for the candles the stream closes
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN mdfeed_candles');

# The same close, for a symbol added to the open connection whose SUBSCRIBE
# the exchange takes 8 s over: its startup sync stores the forming candle 6 s
# before the close, and the closing event goes out before the subscription
# is in place.  The stream checks the newest closed candle once the exchange
# has answered the SUBSCRIBE (2 s after), and the candle is stored closed
# within seconds, long before the gap watchdog (which leaves the newest 15 s
# alone) would see it.
my $boundary = align_down('1m', now_ms() + 10_000) + 60_000;
my $closed_open = $boundary - 60_000;
fake_config($fake, { ws_subscribe_delay_ms => 8000 });
usleep(($boundary - 6000 - now_ms()) * 1000);
my $t_new = now_ms();
is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['NEWUSDT'])"), '1',
	'whitelisted NEWUSDT ' . ($boundary - $t_new) . ' ms before a close, SUBSCRIBE delayed 8 s');
note 'waiting for the 1m candle ' . iso_ms($closed_open) . ' to close';
usleep(($boundary - now_ms()) * 1000) if now_ms() < $boundary;

my %got;
my $notes = '';
my $all = wait_until(
	sub {
		my $out = $listener->query_safe('SELECT 1');
		$notes .= $out;
		while ($notes =~ /Asynchronous notification "mdfeed_candles" with payload "(.*?)" received/g)
		{
			my $p = eval { decode_json($1) };
			next unless $p;
			$got{"$p->{symbol}|$p->{interval}|$p->{open_time}"} = $p;
		}
		return (grep { $got{"$_|1m|" . iso_ms($closed_open)} } @syms) == 2;
	},
	10, 0.2);
my $t_notified = now_ms();
ok($all, 'NOTIFY mdfeed_candles announced the closed 1m candle of both symbols')
  or diag("notifications: $notes");
ok($t_notified - $boundary < 10_000,
	sprintf('... within %.1f s of the close', ($t_notified - $boundary) / 1000));
my $p = $got{'BTCUSDT|1m|' . iso_ms($closed_open)};
is_deeply($p,
	{ exchange => 'binance', symbol => 'BTCUSDT', interval => '1m', open_time => iso_ms($closed_open) },
	'the payload is {exchange, symbol, interval, open_time}')
  if $p;
$listener->quit;

# the closed candles written by the stream: close within a few seconds
# after their close time (the REST repairs wait longer), equal to the truth
my $first_live = align_down('1m', $t_track);
for my $s (@syms)
{
	my $late = $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE updated_at > close_time + interval '5 s'), count(*) "
		  . "FROM mdfeed.candles_1m WHERE symbol = '$s' AND closed "
		  . "AND open_time >= @{[ms_sql($first_live)]} AND open_time < @{[ms_sql($boundary)]}");
	my ($n_late, $n) = split /\|/, $late;
	ok($n >= 1, "$s: $n 1m candles closed while streaming");
	is($n_late, 0, "$s: each was written within 5 s of its close");
	compare_with_truth($node, $fake, $s, '1m', $first_live, $boundary, "streamed $s 1m");
	compare_with_truth($node, $fake, $s, '1m', $sync{"$s|1m"}{from}, $boundary, "all $s 1m");
}

# NEWUSDT, subscribed too late for the close
{
	my $closed_sql = "SELECT closed FROM mdfeed.candles_1m WHERE symbol = 'NEWUSDT' AND open_time = "
	  . ms_sql($closed_open);
	ok(wait_until(sub { try_sql($node, $closed_sql) eq 't' }, $boundary / 1000 + 14 - Time::HiRes::time(), 0.2),
		'NEWUSDT: the candle that closed before the subscription took effect is stored closed');
	note 'NEWUSDT: stored closed by ' . (now_ms() - $boundary) . ' ms after its close';

	# Who closed it depends on when the first fill ran, and both ways are
	# right: a fill that ended before the close stored the candle forming,
	# and then the stream's check after the SUBSCRIBE must have queued a
	# repair; a fill that ran later fetched it closed itself.  Either way the
	# first fill is one 'sync' job.
	my $fill;
	ok(wait_until(
			sub {
				$fill = $node->safe_psql('postgres',
					"SELECT count(*), bool_and(state NOT IN ('queued', 'running')), "
					  . "(extract(epoch FROM max(finished_at)) * 1000)::bigint "
					  . "FROM mdfeed.jobs WHERE kind = 'candles' AND symbol = 'NEWUSDT' "
					  . "AND \"interval\" = '1m' AND origin = 'sync'");
				return $fill =~ /^\d+\|t\|/;
			},
			30, 0.2),
		'NEWUSDT: its first fill ended');
	my ($nfill, $ended, $fill_end) = split /\|/, $fill;
	is($nfill, 1, 'NEWUSDT: one first-fill (sync) job');
	my $nstream = $node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND symbol = 'NEWUSDT' "
		  . "AND \"interval\" = '1m' AND origin = 'stream' AND created_at >= " . ms_sql($t_new));
	if (($fill_end // $boundary) < $boundary)
	{
		ok($nstream >= 1,
			'NEWUSDT: the first fill ended ' . ($boundary - $fill_end)
			  . " ms before the close, and the stream's check queued the repair");
	}
	else
	{
		note 'NEWUSDT: the first fill ended ' . ($fill_end - $boundary)
		  . " ms after the close; the stream queued $nstream repairs";
	}
	fake_config($fake, { ws_subscribe_delay_ms => 0 });
	ok(wait_fake_subs($fake, 9, 20), 'the fake has 9 subscriptions');
	compare_with_truth($node, $fake, 'NEWUSDT', '1m', align_down('1m', $t_new) - 30 * 60_000, $boundary,
		'NEWUSDT 1m up to that close');
}

my $sw = stream_worker($node);
ok($sw->{messages} > 0, "mdfeed.workers: the stream worker counted $sw->{messages} messages");
is($sw->{reconnects}, 0, 'no reconnect');
is($sw->{malformed}, 0, 'no malformed message');
ok(defined $sw->{latency_p50_ms} && $sw->{latency_p50_ms} >= 0
	  && $sw->{latency_p99_ms} >= $sw->{latency_p50_ms} && $sw->{latency_p99_ms} < 5000,
	"latency columns are set (p50 $sw->{latency_p50_ms} ms, p99 $sw->{latency_p99_ms} ms)");
ok($sw->{last_message_at}, 'last_message_at is set');
is(fake_ws($fake)->{rate_drops}, 0, 'the fake dropped no connection for its message rate');
unlike(log_contents($node), qr/PANIC|terminated by signal|refused a request/,
	'no crash or refused request in the server log');

finish();
