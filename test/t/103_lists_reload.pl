
# Copyright (c) mdfeed authors
#
# The symbol lists and mdfeed.intervals drive the stream's subscriptions
# live, without a restart or a new connection:
#  - whitelist / blacklist / unlist add and remove subscriptions at the fake
#    exchange; the blacklist wins over the whitelist; a symbol the exchange
#    does not list is an error naming it, and nothing is added;
#  - ALTER SYSTEM SET mdfeed.intervals + pg_reload_conf() swaps streams;
#  - 300 symbols x 3 intervals = 900 streams spread over 5 connections of at
#    most 200 streams, at most 10 client messages a second per connection
#    (the fake closes a connection that breaks either limit), even when the
#    lists change many times a second.
# No backfill worker: this test is about subscriptions only.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $fake = start_fake(args => [ '--synthetic', '300' ]);
my $node = new_node('lists', $fake,
	'mdfeed.backfill_workers' => 0,
	'mdfeed.sync_lookback' => "'10min'");

sub tracked
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(symbol, ',' ORDER BY symbol), '') FROM mdfeed.tracked");
}

# max(updated_at) of a symbol's rows in a candle table, in microseconds
sub last_update
{
	my ($sym, $iv) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce((extract(epoch FROM max(updated_at)) * 1000000)::bigint, 0) FROM "
		  . candle_table($iv) . " WHERE symbol = '$sym'");
}

# true when the symbol's rows of that interval keep being written
sub still_updated
{
	my ($sym, $iv, $secs) = @_;
	my $a = last_update($sym, $iv);
	return wait_until(sub { last_update($sym, $iv) > $a }, $secs // 3, 0.2) ? 1 : 0;
}

my $w0 = wait_until(sub { stream_worker($node) }, 30);
ok($w0, 'stream worker running');
my $pm_start = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# whitelist
is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])"), '2',
	'whitelisted BTCUSDT and ETHUSDT');
is(tracked(), 'BTCUSDT,ETHUSDT', 'both tracked');
ok(wait_fake_subs($fake, 6, 20), 'the fake has 6 subscriptions (2 symbols x 1m,15m,1h)');
my $w = wait_stream($node, 6, 20, 1);
ok($w, 'mdfeed.workers: 6 streams, 1 connection');
ok(still_updated('ETHUSDT', '1m'), 'ETHUSDT 1m is being written');

# unknown symbols: an error naming them, nothing added
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'NOPEUSDT', 'XYZUSDT'])");
	isnt($ret, 0, 'whitelisting symbols the exchange does not list fails');
	like($err, qr/ERROR:.*binance does not list NOPEUSDT, XYZUSDT/, 'the error names both unknown symbols');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM mdfeed.symbol_lists'), '2',
		'nothing was added to the lists');
	($ret, $out, $err) = $node->psql('postgres', "SELECT mdfeed_whitelist(ARRAY['NOPEUSDT'])");
	like($err, qr/ERROR:.*NOPEUSDT/, 'a single unknown symbol is named too');
}

# blacklist wins over whitelist
is($node->safe_psql('postgres', "SELECT mdfeed_blacklist(ARRAY['ETHUSDT'])"), '1', 'blacklisted ETHUSDT');
is(tracked(), 'BTCUSDT', 'ETHUSDT is no longer tracked although whitelisted');
ok(wait_fake_subs($fake, 3, 20), 'the fake has 3 subscriptions left');
ok(wait_stream($node, 3, 20, 1), 'mdfeed.workers: 3 streams');
usleep(1_500_000);
ok(!still_updated('ETHUSDT', '1m', 2.5), 'ETHUSDT 1m is no longer written');
ok(still_updated('BTCUSDT', '1m'), 'BTCUSDT 1m still is');
{
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT mdfeed_whitelist(ARRAY['ETHUSDT'])");
	is($out, '0', 'whitelisting ETHUSDT again adds nothing');
	like($err, qr/NOTICE:.*ETHUSDT stays untracked: blacklisted/, 'and says the blacklist wins');
	usleep(1_500_000);
	is(tracked(), 'BTCUSDT', 'ETHUSDT still untracked');
	is(fake_ws($fake)->{subscriptions}, 3, 'still 3 subscriptions at the fake');
}

# unlist removes a symbol from both lists
is($node->safe_psql('postgres', "SELECT mdfeed_unlist(ARRAY['ETHUSDT'])"), '2',
	'mdfeed_unlist(ETHUSDT) removed it from both lists');
is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['ETHUSDT'])"), '1', 'whitelisted ETHUSDT again');
is(tracked(), 'BTCUSDT,ETHUSDT', 'both tracked again');
ok(wait_fake_subs($fake, 6, 20), 'the fake has 6 subscriptions again');
ok(still_updated('ETHUSDT', '1m', 5), 'ETHUSDT 1m is written again');

# mdfeed.intervals, reloaded
$node->safe_psql('postgres', "ALTER SYSTEM SET mdfeed.intervals = '1m,5m'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(wait_fake_subs($fake, 4, 20), "after reloading intervals = '1m,5m' the fake has 4 subscriptions");
ok(wait_stream($node, 4, 20, 1), 'mdfeed.workers: 4 streams');
ok(wait_until(sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM mdfeed.candles_5m WHERE NOT closed "
				  . "AND open_time = mdfeed.interval_floor('5m', now())") == 2
		}, 10),
	'the forming 5m candle of both symbols is stored');
ok(still_updated('BTCUSDT', '5m'), 'BTCUSDT 5m is being written');
usleep(1_500_000);
ok(!still_updated('BTCUSDT', '15m', 2.5), 'BTCUSDT 15m is no longer written');
ok(!still_updated('ETHUSDT', '1h', 0.5), 'ETHUSDT 1h is no longer written');
$w = stream_worker($node);
is($w->{pid}, $w0->{pid}, 'the same stream worker all along');
is($w->{reconnects}, 0, 'no reconnect');
my $ws = fake_ws($fake);
is($ws->{connections_total}, 1, 'one connection at the fake all along: changes went as (UN)SUBSCRIBE');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $pm_start, 'no server restart');

# 300 symbols x 3 intervals
$node->safe_psql('postgres', "ALTER SYSTEM SET mdfeed.intervals = '1m,15m,1h'");
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
is($node->safe_psql('postgres', "SELECT mdfeed_unlist(ARRAY['BTCUSDT', 'ETHUSDT'])"), '2', 'unlisted both');
ok(wait_fake_subs($fake, 0, 20), 'no subscription left');
ok(wait_until(sub { fake_ws($fake)->{connections_open} == 0 }, 20), 'the idle connection was closed');
reset_fake($fake);

my @syn = map { sprintf('S%04dUSDT', $_) } 0 .. 299;
my $arr = "ARRAY['" . join("','", @syn) . "']";
is($node->safe_psql('postgres', "SELECT mdfeed_whitelist($arr)"), '300', 'whitelisted 300 symbols');
is($node->safe_psql('postgres', 'SELECT count(*) FROM mdfeed.tracked'), '300', '300 tracked');
ok(wait_fake_subs($fake, 900, 60), 'the fake has 900 subscriptions');
$w = wait_stream($node, 900, 30, 5);
ok($w, 'mdfeed.workers: 900 streams on 5 connections')
  or diag(encode_json(stream_worker($node) // {}));
$ws = fake_ws($fake);
is($ws->{connections_open}, 5, 'the fake has 5 open connections (<= 200 streams each)');
is($ws->{connections_total}, 5, 'no connection was closed by the fake (200 streams, 10 messages/s)');
is($ws->{rate_drops}, 0, 'no connection sent more than 10 messages in a second');
ok(wait_until(sub {
			$node->safe_psql('postgres',
				"SELECT count(DISTINCT (symbol, \"interval\")) FROM mdfeed.candles "
				  . "WHERE symbol LIKE 'S%USDT' AND updated_at > now() - interval '3 s'") == 900
		}, 15),
	'all 900 streams deliver candles');

# the lists change 20 times a second: subscriptions follow, the client
# message rate stays under the limit
{
	my $sql = join("\n", map { "SELECT mdfeed_blacklist(ARRAY['$syn[$_]']), pg_sleep(0.05);" } 0 .. 29);
	$node->safe_psql('postgres', $sql);
}
ok(wait_fake_subs($fake, 810, 30), '30 symbols blacklisted one by one: 810 subscriptions');
ok(wait_stream($node, 810, 20, 5), 'mdfeed.workers: 810 streams');
$node->safe_psql('postgres', "SELECT mdfeed_unlist($arr)");
ok(wait_fake_subs($fake, 0, 30), 'all unlisted: no subscription');
$ws = fake_ws($fake);
is($ws->{rate_drops}, 0, 'still no connection over 10 messages/s');
is($ws->{connections_total}, 5, 'and no connection lost');
$w = stream_worker($node);
is($w->{reconnects}, 0, 'the stream worker never reconnected');
is($w->{pid}, $w0->{pid}, 'nor restarted');
unlike(log_contents($node), qr/refused a request|Max streams|PANIC/,
	'the exchange refused no request; no crash');

finish();
