
# Copyright (c) mdfeed authors
#
# CoinDCX live: whitelisted futures and spot pairs stream over socket.io.
# Two servers, each with its own fake CoinDCX:
#  - 'eio4' has the bare socket URL (mdfeed appends /socket.io/?EIO=4...):
#    Engine.IO 4, the server pings and mdfeed answers; it tracks futures
#    B-BTC_USDT, B-ETH_USDT and spot B-BTC_USDT, I-BTC_INR at 1m and 15m;
#  - 'eio3' is given a URL that already has /socket.io/ and EIO=3, used as
#    given: Engine.IO 3, mdfeed pings; it tracks futures B-BTC_USDT and spot
#    I-BTC_INR at 1m.
# Checked:
#  - each market has its stream worker (mdfeed.workers.exchange coindcx /
#    coindcx_spot), joined to exactly the right channel names (none silent);
#  - the heartbeat goes the version's way, with no timeout;
#  - forming bars are stored with closed = false and keep changing;
#  - at a 1m close, NOTIFY mdfeed_candles names the exchange, and the
#    closed bar equals the truth (from REST, quote_volume NULL) within
#    about 10 s of its close;
#  - a channel made silent across that close (silent_channels) is reported
#    in the log and in mdfeed.workers.last_error and rejoined, and its bar
#    is repaired;
#  - 'eio3' has drops (ws_drop, and an abort a second before the close)
#    and garbage (ws_garbage) across the same close; 'eio4' then has every
#    connection closed (POST /_fake/drop): both reconnect;
#  - afterwards nothing is missing and every (market, pair, interval)
#    equals the truth over all it has stored.

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
my $SILENCE = 5;    # mdfeed.stream_silence_timeout, s
my $cfg = {
	ws_futures_interval_ms => 250, ws_spot_interval_ms => 500,
	ping_interval_ms => 2500, ping_timeout_ms => 2500 };
my $bn = start_fake();
my $cdx = start_cdx_fake(name => 'cdx4', config => $cfg);
my $cdx3 = start_cdx_fake(name => 'cdx3', config => $cfg);
my %common = (
	'mdfeed.sync_lookback' => "'30min'",
	'mdfeed.gap_lookback' => "'30min'",
	'mdfeed.gap_check_interval' => "'2s'",
	'mdfeed.stream_silence_timeout' => "'${SILENCE}s'");
my $node = new_node('eio4', $bn, cdx_settings($cdx), %common, 'mdfeed.intervals' => "'1m,15m'");
my %s3 = cdx_settings($cdx3);
$s3{'mdfeed.coindcx_socket_url'} = "'ws://127.0.0.1:$cdx3->{port}/socket.io/?EIO=3&transport=websocket'";
my $node3 = new_node('eio3', $bn, %s3, %common, 'mdfeed.intervals' => "'1m'",
	'mdfeed.backfill_workers' => 1);

# what each server tracks: [exchange, market, pair, interval]
my @track4 = map {
	my ($m, $p) = @$_;
	map { [ cdx_exchange($m), $m, $p, $_ ] } qw(1m 15m)
} ([ 'futures', 'B-BTC_USDT' ], [ 'futures', 'B-ETH_USDT' ], [ 'spot', 'B-BTC_USDT' ], [ 'spot', 'I-BTC_INR' ]);
my @track3 = ([ 'coindcx', 'futures', 'B-BTC_USDT', '1m' ], [ 'coindcx_spot', 'spot', 'I-BTC_INR', '1m' ]);
my $silent_ch = cdx_channel('futures', 'B-ETH_USDT', '1m');

sub sql { my ($n, $s) = @_; return $n->safe_psql('postgres', $s); }

#--------------------------------------------------------------------------
# tracking, workers, channels, startup sync
#--------------------------------------------------------------------------
is(sql($node, "SELECT mdfeed_whitelist(ARRAY['B-BTC_USDT', 'B-ETH_USDT'], 'coindcx')"), '2',
	'eio4: whitelisted 2 futures pairs');
is(sql($node, "SELECT mdfeed_whitelist(ARRAY['B-BTC_USDT', 'I-BTC_INR'], 'coindcx_spot')"), '2',
	'eio4: whitelisted 2 spot pairs');
is(sql($node3, "SELECT mdfeed_whitelist(ARRAY['B-BTC_USDT'], 'coindcx')"), '1', 'eio3: whitelisted a futures pair');
is(sql($node3, "SELECT mdfeed_whitelist(ARRAY['I-BTC_INR'], 'coindcx_spot')"), '1', 'eio3: whitelisted a spot pair');
is(sql($node, "SELECT string_agg(exchange || ':' || symbol, ',' ORDER BY exchange, symbol) FROM mdfeed.tracked"),
	'coindcx:B-BTC_USDT,coindcx:B-ETH_USDT,coindcx_spot:B-BTC_USDT,coindcx_spot:I-BTC_INR',
	'eio4: mdfeed.tracked lists the four, each under its exchange');

my %want4 = map { (cdx_channel($_->[1], $_->[2], $_->[3]) => 1) } @track4;
my %want3 = map { (cdx_channel($_->[1], $_->[2], $_->[3]) => 1) } @track3;
my $ws4 = wait_cdx_channels($cdx, scalar(keys %want4), 30);
ok($ws4, 'eio4: the fake has ' . scalar(keys %want4) . ' channels joined')
  or diag(encode_json(cdx_fake_ws($cdx)));
is_deeply(($ws4 // cdx_fake_ws($cdx))->{channels}, \%want4,
	'eio4: exactly the channels <pair>_<iv>-futures and <pair>_<iv>, each on one connection');
my $ws3 = wait_cdx_channels($cdx3, 2, 30);
is_deeply(($ws3 // cdx_fake_ws($cdx3))->{channels}, \%want3, 'eio3: exactly its two channels');
is(cdx_fake_ws($cdx)->{joins_silent} + cdx_fake_ws($cdx3)->{joins_silent}, 0, 'no join of a channel that delivers nothing');

for my $c ([ $node, 'eio4', 'coindcx', 4 ], [ $node, 'eio4', 'coindcx_spot', 4 ],
	[ $node3, 'eio3', 'coindcx', 1 ], [ $node3, 'eio3', 'coindcx_spot', 1 ])
{
	my ($n, $name, $ex, $k) = @$c;
	my $w = wait_until(sub {
			my $w = stream_worker($n, $ex);
			return ($w && $w->{streams} == $k && $w->{connections} == 1) ? $w : undef;
		}, 30);
	ok($w, "$name: the $ex stream worker carries $k streams on 1 connection")
	  or diag(encode_json(stream_worker($n, $ex) // {}));
}

my %from;    # "exchange|pair|iv" -> from_ms of its sync job
for my $c ([ $node, 'eio4', \@track4 ], [ $node3, 'eio3', \@track3 ])
{
	my ($n, $name, $tr) = @$c;
	my $k = scalar(@$tr);
	ok(wait_until(sub {
				try_sql($n, "SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND origin = 'sync' "
					  . "AND exchange LIKE 'coindcx%' AND state = 'succeeded'") == $k
			}, 60),
		"$name: $k startup sync jobs succeeded")
	  or diag(sql($n, 'SELECT row_to_json(j) FROM mdfeed.jobs j ORDER BY id'));
	for my $t (@$tr)
	{
		my ($ex, $m, $p, $iv) = @$t;
		my $f = sql($n, "SELECT (extract(epoch FROM min(from_time)) * 1000)::bigint FROM mdfeed.jobs "
			  . "WHERE kind = 'candles' AND origin = 'sync' AND exchange = '$ex' AND symbol = '$p' AND \"interval\" = '$iv'");
		ok($f ne '', "$name: sync job of $ex $p $iv");
		$from{ "$name|$ex|$p|$iv" } = $f ne '' ? $f : now_ms() - 1_800_000;
	}
}

#--------------------------------------------------------------------------
# forming bars
#--------------------------------------------------------------------------
avoid_minute_edge(3, 48);
{
	my $snap = sub {
		my ($n, $tab) = @_;
		my %r;
		for my $l (split /\n/, sql($n,
				"SELECT symbol, closed, (extract(epoch FROM updated_at) * 1000000)::bigint, "
				  . "concat_ws('|', open, high, low, close, volume) FROM $tab "
				  . "WHERE open_time = mdfeed.interval_floor('1m', now())"))
		{
			my ($s, $c, $u, $v) = split /\|/, $l, 4;
			$r{$s} = { closed => $c, updated => $u, values => $v };
		}
		return \%r;
	};
	for my $c ([ $node, 'eio4', 'futures', [ 'B-BTC_USDT', 'B-ETH_USDT' ] ], [ $node, 'eio4', 'spot', [ 'B-BTC_USDT', 'I-BTC_INR' ] ],
		[ $node3, 'eio3', 'futures', ['B-BTC_USDT'] ], [ $node3, 'eio3', 'spot', ['I-BTC_INR'] ])
	{
		my ($n, $name, $m, $ps) = @$c;
		my $tab = cdx_table($m, '1m');
		my $a = wait_until(sub { my $a = $snap->($n, $tab); return (keys %$a) == @$ps ? $a : undef }, 5);
		ok($a, "$name: a row for the forming 1m bar of each $m pair in $tab")
		  or next;
		is(join(',', map { $a->{$_}{closed} } sort keys %$a), join(',', map { 'f' } @$ps),
			"$name: forming $m bars have closed = false");
		# a bar's values can stay put (a minute with no trade): with one pair
		# only, that is not checked
		next if @$ps < 2;
		my $changed = wait_until(sub {
				my $b = $snap->($n, $tab);
				return scalar grep {
					$b->{$_} && $b->{$_}{updated} > $a->{$_}{updated}
					  && $b->{$_}{values} ne $a->{$_}{values} && $b->{$_}{closed} eq 'f'
				} @$ps;
			}, 5, 0.25);
		ok($changed, "$name: a forming $m bar was updated (values and updated_at changed, still closed = false)")
		  or diag(encode_json({ before => $a, after => $snap->($n, $tab) }));
	}
	is(sql($node, "SELECT count(*) FILTER (WHERE NOT closed) FROM mdfeed.cdx_candles_15m WHERE open_time = mdfeed.interval_floor('15m', now())")
		  . '|' . sql($node, "SELECT count(*) FILTER (WHERE NOT closed) FROM mdfeed.cdx_spot_candles_15m WHERE open_time = mdfeed.interval_floor('15m', now())"),
		'2|2', 'eio4: the forming 15m bars too, futures and spot');
}

#--------------------------------------------------------------------------
# heartbeats, before any fault
#--------------------------------------------------------------------------
{
	my $ws = wait_until(sub { my $w = cdx_fake_ws($cdx); return $w->{engine_pongs_in} >= 2 ? $w : undef }, 10)
	  // cdx_fake_ws($cdx);
	note 'eio4 fake ws: ' . JSON::PP->new->canonical->encode({ map { $_ => $ws->{$_} } grep { !ref $ws->{$_} } keys %$ws });
	is("$ws->{eio4_connections}/$ws->{eio3_connections}", "$ws->{connections_total}/0",
		"eio4: every connection speaks Engine.IO 4 ($ws->{connections_total})");
	ok($ws->{engine_pongs_in} >= 2, "eio4: mdfeed answered the server's pings ($ws->{engine_pongs_in} pongs)");
	is($ws->{connections_open}, 2, 'eio4: two connections open, one per stream worker');
	is($ws->{ping_timeouts} + $ws->{heartbeat_direction_errors}, 0, 'eio4: no ping timeout, no heartbeat the wrong way');
	is($ws->{polling_handshakes} + $ws->{bad_handshakes}, 0, 'eio4: websocket handshakes only');

	$ws = wait_until(sub { my $w = cdx_fake_ws($cdx3); return $w->{engine_pings_in} >= 2 ? $w : undef }, 10)
	  // cdx_fake_ws($cdx3);
	note 'eio3 fake ws: ' . JSON::PP->new->canonical->encode({ map { $_ => $ws->{$_} } grep { !ref $ws->{$_} } keys %$ws });
	is("$ws->{eio3_connections}/$ws->{eio4_connections}", "$ws->{connections_total}/0",
		"eio3: every connection speaks Engine.IO 3, as the URL says ($ws->{connections_total})");
	ok($ws->{engine_pings_in} >= 2, "eio3: mdfeed pinged the server ($ws->{engine_pings_in} pings)");
	is($ws->{engine_pings_out}, 0, 'eio3: the server did not ping');
	is($ws->{connections_open}, 2, 'eio3: two connections open');
	is($ws->{ping_timeouts} + $ws->{heartbeat_direction_errors}, 0, 'eio3: no ping timeout, no heartbeat the wrong way');
	for my $c ([ $node, 'eio4' ], [ $node3, 'eio3' ])
	{
		my ($n, $name) = @$c;
		is(sql($n, "SELECT coalesce(sum(reconnects), 0) FROM mdfeed.workers WHERE role = 'stream' AND exchange LIKE 'coindcx%'"),
			'0', "$name: no reconnect so far");
	}
}

#--------------------------------------------------------------------------
# a close with a silent channel (eio4) and drops and garbage (eio3)
#--------------------------------------------------------------------------
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN mdfeed_candles');
my $B1 = align_down('1m', now_ms() + 17_000 - 1) + 60_000;    # the first close at least 17 s away
my $bar = $B1 - 60_000;
note 'the close: ' . iso_ms($B1);
usleep(($B1 - 16_000 - now_ms()) * 1000) if now_ms() < $B1 - 16_000;

my $log_at = length(log_contents($node));
my $joins0 = cdx_fake_ws($cdx)->{joins};
my $t_silent = now_ms();
set_faults($cdx, { silent_channels => [$silent_ch] });
set_faults($cdx3, { ws_drop => 0.2, ws_garbage => 0.08, seed => 5 });
# B-BTC_USDT's bars, 1m and 15m: a minute without trades leaves its 1m bar
# unchanged (the fake has such minutes), its 15m bar moves on
my $btc_upd_sql = "SELECT max(u) FROM (SELECT max(updated_at) AS u FROM mdfeed.cdx_candles_1m WHERE symbol = 'B-BTC_USDT' "
  . "UNION ALL SELECT max(updated_at) FROM mdfeed.cdx_candles_15m WHERE symbol = 'B-BTC_USDT') x";
my $btc_upd0 = sql($node, $btc_upd_sql);

# the silence is noticed, reported and the channel rejoined
my ($t_rejoin, $log_line, $last_error, $joins1);
wait_until(
	sub {
		my $log = substr(log_contents($node), $log_at);
		# the first line about the channel, whatever its words
		($log_line) = grep { /B-ETH_USDT/ && /stream/ && !/statement:/ } split /\n/, $log unless $log_line;
		my $w = stream_worker($node, 'coindcx');
		$last_error = $w->{last_error} if $w && ($w->{last_error} // '') ne '' && !defined $last_error;
		$joins1 = cdx_fake_ws($cdx)->{joins};
		$t_rejoin //= now_ms() if $joins1 > $joins0;
		return $log_line && defined $last_error && $t_rejoin;
	},
	($B1 - 1500 - now_ms()) / 1000, 0.3);
# eio3: its connection aborted a second before the close
usleep(($B1 - 1000 - now_ms()) * 1000) if now_ms() < $B1 - 1000;
HTTP::Tiny->new(timeout => 5)->post("$cdx3->{url}/_fake/drop",
	{ content => '{"how":"abort"}', headers => { 'Content-Type' => 'application/json' } });

note 'log: ' . ($log_line // '(nothing about B-ETH_USDT)');
note 'last_error: ' . ($last_error // '(empty)');
like($log_line // '', qr/silent/i, "eio4: the server log reports the silent channel, in a line with 'silent'");
like($log_line // '', qr/B-ETH_USDT/, 'eio4: ... naming the channel');
like($last_error // '', qr/silent/i, "eio4: so does mdfeed.workers.last_error of the coindcx stream worker");
like($last_error // '', qr/B-ETH_USDT/, 'eio4: ... naming the channel');
ok($t_rejoin && $t_rejoin - $t_silent <= ($SILENCE + 5) * 1000,
	sprintf('eio4: the channel was joined again %.1f s after it fell silent (fake joins %d -> %d)',
		(($t_rejoin // now_ms()) - $t_silent) / 1000, $joins0, $joins1 // -1));
ok(sql($node, "SELECT ($btc_upd_sql) > '$btc_upd0'") eq 't',
	'eio4: the other channels went on meanwhile');

# after the close: notifications and exact closed bars
my @closes = ([ 'coindcx', 'futures', 'B-BTC_USDT' ], [ 'coindcx_spot', 'spot', 'B-BTC_USDT' ], [ 'coindcx_spot', 'spot', 'I-BTC_INR' ]);
my %truth;
for my $c (@closes)
{
	my ($ex, $m, $p) = @$c;
	my $t = cdx_truth($m, $p, '1m', $bar, $B1, now => $B1 + 1);
	$truth{"$ex|$p"} = join('|', 't', @{ $t->[0] }{qw(open high low close volume)}, 't') if @$t;
}
is(scalar(keys %truth), 3, 'the truth of the three bars that close');
usleep(($B1 - now_ms()) * 1000) if now_ms() < $B1;
my (%notes, %exact_at);
my $raw = '';
my ($cleared4, $cleared3) = (0, 0);
my $deadline = $B1 + 20_000;
while (now_ms() < $deadline)
{
	if (!$cleared4 && now_ms() >= $B1 + 4000) { clear_faults($cdx); $cleared4 = 1; }
	if (!$cleared3 && now_ms() >= $B1 + 6000) { clear_faults($cdx3); $cleared3 = 1; }
	collect_notifications($listener, \%notes, \$raw);
	for my $c (@closes)
	{
		my ($ex, $m, $p) = @$c;
		next if $exact_at{"$ex|$p"};
		my $got = try_sql($node, "SELECT concat_ws('|', closed, open, high, low, close, volume, quote_volume IS NULL) FROM "
			  . cdx_table($m, '1m') . " WHERE symbol = '$p' AND open_time = " . ms_sql($bar));
		$exact_at{"$ex|$p"} = now_ms() if defined $got && defined $truth{"$ex|$p"} && $got eq $truth{"$ex|$p"};
	}
	last if $cleared3 && scalar(keys %exact_at) == @closes
	  && (grep { $notes{"$_->[0]|$_->[2]|1m|" . iso_ms($bar)} } @closes) == @closes;
	usleep(200_000);
}
clear_faults($cdx) unless $cleared4;
clear_faults($cdx3) unless $cleared3;
for my $c (@closes)
{
	my ($ex, $m, $p) = @$c;
	my $at = $exact_at{"$ex|$p"};
	ok($at && $at - $B1 <= 12_000,
		sprintf('eio4: %s %s 1m %s closed and equal to the truth %.1f s after its close', $ex, $p, iso_ms($bar),
			(($at // now_ms()) - $B1) / 1000));
	my $k = "$ex|$p|1m|" . iso_ms($bar);
	is_deeply($notes{$k}, { exchange => $ex, symbol => $p, interval => '1m', open_time => iso_ms($bar) },
		"eio4: NOTIFY mdfeed_candles {exchange: $ex, symbol: $p, interval: 1m, open_time}")
	  or diag("notifications: $raw");
}
note 'the silenced bar was ' . ($notes{"coindcx|B-ETH_USDT|1m|" . iso_ms($bar)} ? '' : 'not yet ') . 'notified';
$listener->quit;

# eio4: every connection closed by the server
{
	my $r0 = sql($node, "SELECT string_agg(exchange || ':' || reconnects, ',' ORDER BY exchange) FROM mdfeed.workers "
		  . "WHERE role = 'stream' AND exchange LIKE 'coindcx%'");
	my $r = HTTP::Tiny->new(timeout => 5)->post("$cdx->{url}/_fake/drop",
		{ content => '{"how":"close"}', headers => { 'Content-Type' => 'application/json' } });
	ok($r->{success}, 'eio4: the fake closed every connection');
	my $ok = wait_until(sub {
			my $a = stream_worker($node, 'coindcx');
			my $b = stream_worker($node, 'coindcx_spot');
			my $ws = cdx_fake_ws($cdx);
			return $a && $b && $a->{reconnects} >= 1 && $b->{reconnects} >= 1
			  && $a->{connections} == 1 && $b->{connections} == 1
			  && $ws->{channels_joined} == scalar(keys %want4) && $ws->{connections_open} == 2;
		}, 20, 0.3);
	ok($ok, "eio4: both stream workers reconnected and joined their channels again (reconnects were $r0)")
	  or diag(encode_json(cdx_fake_ws($cdx)));
}

# eio3: the drops and the garbage were met
{
	my $st = fake_stats($cdx3);
	note 'eio3 fake faults: ' . encode_json($st->{faults});
	ok($st->{ws}{drops} >= 1, "eio3: the fake dropped connections ($st->{ws}{drops}, ws_drop $st->{faults}{ws_drop})");
	ok($st->{faults}{ws_garbage} > 0, "eio3: the fake sent garbage ($st->{faults}{ws_garbage} frames)");
	my $w = sql($node3, "SELECT coalesce(sum(reconnects), 0) || '|' || coalesce(sum(malformed), 0) FROM mdfeed.workers "
		  . "WHERE role = 'stream' AND exchange LIKE 'coindcx%'");
	my ($rc, $mf) = split /\|/, $w;
	ok($rc >= 1, "eio3: the stream workers reconnected ($rc)");
	ok($mf >= 1, "eio3: and counted the malformed frames ($mf)");
	ok(wait_cdx_channels($cdx3, 2, 20), 'eio3: both channels joined again');
}

#--------------------------------------------------------------------------
# nothing missing, everything equal to the truth
#--------------------------------------------------------------------------
for my $c ([ $node, 'eio4', \@track4 ], [ $node3, 'eio3', \@track3 ])
{
	my ($n, $name, $tr) = @$c;
	ok(wait_no_gaps_on($n, [ map { [ $_->[0], $_->[2], $_->[3], $from{"$name|$_->[0]|$_->[2]|$_->[3]"} ] } @$tr ], 45, 12),
		"$name: mdfeed_gaps is empty for every pair, the close under faults included");
	ok(wait_jobs_settled($n, 45), "$name: no job left queued or running");
}
avoid_minute_edge(15, 58);
my $now = now_ms();
for my $c ([ $node, 'eio4', $cdx, \@track4 ], [ $node3, 'eio3', $cdx3, \@track3 ])
{
	my ($n, $name, $fk, $tr) = @$c;
	for my $t (@$tr)
	{
		my ($ex, $m, $p, $iv) = @$t;
		compare_cdx_with_truth($n, $fk, $m, $p, $iv, $from{"$name|$ex|$p|$iv"}, align_down($iv, $now - 15_000),
			"$name: $ex $p $iv, all stored", allow_empty => ($iv ne '1m'));
	}
	is(sql($n, "SELECT count(*) FROM mdfeed.jobs WHERE state <> 'succeeded'"), '0', "$name: every job succeeded");
	unlike(log_contents($n), qr/PANIC|terminated by signal/, "$name: no crash in the server log");
}
for my $ex (qw(coindcx coindcx_spot))
{
	my $w = stream_worker($node, $ex) // {};
	ok(($w->{messages} // 0) > 0, "eio4: the $ex stream worker counted $w->{messages} messages");
	is($w->{malformed}, 0, "eio4: no malformed frame on $ex (no garbage was sent there)");
}
note 'app pings (42["ping"]) received: eio4 ' . cdx_fake_ws($cdx)->{app_pings_in} . ', eio3 ' . cdx_fake_ws($cdx3)->{app_pings_in};
note 'test took ' . (time() - $t_start) . ' s';

finish();
