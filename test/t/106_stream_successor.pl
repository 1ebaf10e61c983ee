
# Copyright (c) mdfeed authors
#
# Binance closes a connection after 24 hours; mdfeed replaces one before
# that (mdfeed.stream_max_connection_age) with a successor, and stops the old
# one only once the successor carries every stream.  Here connections are
# replaced every 12 s while the fake would close them at 25 s:
#  - the fake never has to close one, the worker counts no reconnect;
#  - at every moment the fake carries all 6 subscriptions;
#  - a planned replacement queues no REST sync (there is no hole to fill);
#  - the 1m candles that close meanwhile are written by the stream within
#    5 s of their close, equal to the truth.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my @syms = qw(BTCUSDT ETHUSDT);
my $fake = start_fake(args => [ '--ws-max-lifetime', '25' ]);
my $node = new_node('successor', $fake,
	'mdfeed.stream_max_connection_age' => "'12s'",
	'mdfeed.sync_lookback' => "'30min'",
	'mdfeed.gap_lookback' => "'30min'");

is($node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])"), '2',
	'whitelisted 2 symbols');
ok(wait_stream($node, 6, 30, 1), 'streaming 6 streams on 1 connection');
# the first connection's own repairs (at its opening, and once its SUBSCRIBE
# is answered) come and go before the count of jobs starts
usleep(3_000_000);
ok(wait_jobs_settled($node, 60, "kind = 'candles'"), 'startup sync done');

my $w0 = stream_worker($node);
my $ws0 = fake_ws($fake);
my $t0 = now_ms();
my $max_job = $node->safe_psql('postgres', 'SELECT max(id) FROM mdfeed.jobs');

# watch the fake for 40 s, and until 4 s past a minute boundary
my $until = align_down('1m', $t0 + 4000) + 64_000;
$until = $t0 + 40_000 if $until < $t0 + 40_000;
my ($min_subs, $max_open, $samples) = (1e9, 0, 0);
while (now_ms() < $until)
{
	my $ws = fake_ws($fake);
	$min_subs = $ws->{subscriptions} if $ws->{subscriptions} < $min_subs;
	$max_open = $ws->{connections_open} if $ws->{connections_open} > $max_open;
	$samples++;
	usleep(100_000);
}
my $t1 = now_ms();
my $ws1 = fake_ws($fake);
my $w1 = stream_worker($node);
my $replaced = $ws1->{connections_total} - $ws0->{connections_total};
note "fake ws counters: " . encode_json($ws1);

ok($replaced >= 2, "the connection was replaced $replaced times in " . int(($t1 - $t0) / 1000) . " s");
is($ws1->{lifetime_closes}, 0, 'the fake never closed a connection for its age');
is($min_subs, 6, "the fake carried all 6 subscriptions at every one of $samples samples");
ok($max_open <= 2, "at most 2 connections at once ($max_open)");
is($w1->{reconnects}, $w0->{reconnects}, 'the stream worker counted no reconnect');
is($w1->{connections}, 1, 'one connection in the end');
is($w1->{streams}, 6, 'carrying 6 streams');
# a replacement queues no sync of its pairs; only the check of the newest
# closed candles after its SUBSCRIBE may, when it runs just after a close
# (which would be 6 jobs per replacement otherwise)
my $n_jobs = $node->safe_psql('postgres',
	"SELECT count(*) FROM mdfeed.jobs WHERE kind = 'candles' AND id > $max_job AND origin = 'stream'");
ok($n_jobs <= 4, "the replacements queued no REST sync of their pairs ($n_jobs jobs)");

# every 1m candle that closed while connections were being replaced
my $first = align_down('1m', $t0) + 60_000;
my $last = align_down('1m', $t1);
for my $s (@syms)
{
	my ($n_late, $n) = split /\|/, $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE updated_at > close_time + interval '5 s'), count(*) "
		  . "FROM mdfeed.candles_1m WHERE symbol = '$s' AND closed "
		  . "AND open_time >= @{[ms_sql($first - 60_000)]} AND open_time < @{[ms_sql($last)]}");
	ok($n >= 1, "$s: $n 1m candles closed during the replacements");
	is($n_late, 0, "$s: each was written within 5 s of its close");
	compare_with_truth($node, $fake, $s, '1m', align_down('1m', $t0) - 20 * 60_000, $last,
		"$s 1m across the replacements");
}

unlike(log_contents($node), qr/PANIC|terminated by signal|refused a request/,
	'no crash or refused request in the server log');

finish();
