
# Copyright (c) mdfeed authors
#
# The CoinDCX fake and its TAP helpers, before any CoinDCX code in mdfeed:
#  - start_cdx_fake serves the REST hosts; stop_fake makes an outage and
#    restart_cdx_fake brings it back on the same port;
#  - rows built from the fake's REST answers, stored as PostgreSQL numeric
#    from the JSON numbers' own text (exponent forms included), equal the
#    truth through compare_cdx_with_truth, NULL quote volume included;
#  - the comparison sees a changed row, a missing row and a changed scale;
#  - the name helpers give the tables, channels and exchanges the issue names.
# The tables are created here, in a database without the extension.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;

use MdfeedTest;

my $cdx = start_cdx_fake(config => { ws_futures_interval_ms => 250 });
my $node = new_node('cdx', undef, _no_extension => 1);

is(cdx_table('futures', '1h'), 'mdfeed.cdx_candles_1h', 'futures table name');
is(cdx_table('spot', '1d'), 'mdfeed.cdx_spot_candles_1d', 'spot table name');
is(cdx_table('futures', '1M'), 'mdfeed.cdx_candles_1mo', 'monthly table name');
is(cdx_channel('futures', 'B-BTC_USDT', '1m'), 'B-BTC_USDT_1m-futures', 'futures channel');
is(cdx_channel('spot', 'I-BTC_INR', '1m'), 'I-BTC_INR_1m', 'spot channel');
is(cdx_exchange('spot'), 'coindcx_spot', 'spot exchange name');
is(cdx_resolution('4h'), '240', 'futures REST resolution of 4h');
my %s = cdx_settings($cdx);
is($s{'mdfeed.coindcx_socket_url'}, "'ws://127.0.0.1:$cdx->{port}'", 'socket setting');
is($s{'mdfeed.coindcx_api_url'}, $s{'mdfeed.coindcx_public_url'}, 'one fake serves both REST hosts');

$node->safe_psql('postgres', <<'EOS');
CREATE SCHEMA mdfeed;
CREATE TABLE mdfeed.cdx_candles_1h (id bigint GENERATED ALWAYS AS IDENTITY, symbol text NOT NULL,
  open_time timestamptz NOT NULL, close_time timestamptz NOT NULL, open numeric, high numeric,
  low numeric, close numeric, volume numeric, quote_volume numeric, closed boolean NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(), UNIQUE (symbol, open_time));
CREATE TABLE mdfeed.cdx_spot_candles_1d (LIKE mdfeed.cdx_candles_1h INCLUDING ALL);
EOS

my $http = HTTP::Tiny->new(timeout => 15);
my $day = ts_ms('2025-03-03');

# rows of a REST answer, with each number's own text
sub rest_rows
{
	my ($body) = @_;
	my @rows;
	while ($body =~ /\{"open":([^,]+),"high":([^,]+),"low":([^,]+),"volume":([^,]+),"close":([^,]+),"time":(\d+)\}/g)
	{
		push @rows, { open => $1, high => $2, low => $3, volume => $4, close => $5, time => $6 };
	}
	return @rows;
}

sub store
{
	my ($tab, $pair, $iv_ms, @rows) = @_;
	my $values = join(",\n", map {
		"('$pair', " . ms_sql($_->{time}) . ", " . ms_sql($_->{time} + $iv_ms - 1)
		  . ", '$_->{open}', '$_->{high}', '$_->{low}', '$_->{close}', '$_->{volume}', true)" } @rows);
	$node->safe_psql('postgres',
		"INSERT INTO $tab (symbol, open_time, close_time, open, high, low, close, volume, closed) VALUES $values");
}

# futures, a pair whose prices come in exponent form
my $r = $http->get("$cdx->{url}/market_data/candlesticks?pair=B-PEPE_USDT&from="
	  . ($day / 1000) . "&to=" . ($day / 1000 + 86400 - 1) . "&resolution=60&pcode=f");
is($r->{status}, 200, 'candlesticks answered');
my @rows = rest_rows($r->{content});
is(scalar(@rows), 24, '24 hourly bars');
like($rows[0]{open}, qr/^\d(\.\d+)?e-7$/, 'prices in exponent form, as JavaScript writes them');
store('mdfeed.cdx_candles_1h', 'B-PEPE_USDT', 3_600_000, @rows);
my $c = compare_cdx_with_truth($node, $cdx, 'futures', 'B-PEPE_USDT', '1h', $day, $day + 86_400_000,
	'futures REST rows');
is($c->{truth}, 24, 'the truth has the 24 bars');

# the truth: exact decimals, no quote volume over REST
my $t = cdx_truth('futures', 'B-PEPE_USDT', '1h', $day, $day + 3_600_000);
is(scalar(@$t), 1, 'cdx_truth returns one bar');
like($t->[0]{open}, qr/^0\.000000\d+$/, 'truth open is the exact decimal');
ok(!defined $t->[0]{quote_volume}, 'truth quote_volume is NULL');
like($t->[0]{ws_quote_volume}, qr/^\d+\.\d{10}$/, 'the socket\'s quote volume keeps its 10 decimals');

# the socket's quote volume, stored as sent, compares in 'ws' mode
my $tt = cdx_truth('futures', 'B-PEPE_USDT', '1h', $day, $day + 86_400_000);
$node->safe_psql('postgres', join(";\n", map {
	"UPDATE mdfeed.cdx_candles_1h SET quote_volume = '$_->{ws_quote_volume}' WHERE symbol = 'B-PEPE_USDT' AND open_time = "
	  . ms_sql($_->{open_time}) } @$tt));
compare_cdx_with_truth($node, $cdx, 'futures', 'B-PEPE_USDT', '1h', $day, $day + 86_400_000,
	'socket quote volumes', quote_volume => 'ws');
compare_cdx_with_truth($node, $cdx, 'futures', 'B-PEPE_USDT', '1h', $day, $day + 86_400_000,
	'quote volumes not compared', quote_volume => 'any');

# what the comparison catches (its figures, without its checks)
$node->safe_psql('postgres', <<"EOS");
UPDATE mdfeed.cdx_candles_1h SET quote_volume = NULL;
UPDATE mdfeed.cdx_candles_1h SET close = close * 2 WHERE open_time = @{[ms_sql($day + 3_600_000)]};
DELETE FROM mdfeed.cdx_candles_1h WHERE open_time = @{[ms_sql($day + 7_200_000)]};
UPDATE mdfeed.cdx_candles_1h SET volume = volume::numeric(40, 2) WHERE open_time = @{[ms_sql($day + 10_800_000)]};
EOS
my $bad = compare_cdx_with_truth($node, $cdx, 'futures', 'B-PEPE_USDT', '1h', $day, $day + 86_400_000,
	'altered rows', figures_only => 1);
is($bad->{truth}, 24, 'the truth is complete');
is($bad->{got}, 23, 'the deleted row is seen');
is($bad->{missing}, 2, 'two truth rows are not stored as they are');
is($bad->{extra}, 1, 'the doubled close is an extra row');
is($bad->{text_diff}, 2, 'the doubled close and the volume with a changed scale differ in text');

# spot: newest first over REST, an INR book
$r = $http->get("$cdx->{url}/market_data/candles?pair=I-BTC_INR&interval=1d&startTime=$day&endTime="
	  . ($day + 9 * 86_400_000) . "&limit=10");
is($r->{status}, 200, 'spot candles answered');
@rows = rest_rows($r->{content});
is(scalar(@rows), 10, '10 daily bars');
ok($rows[0]{time} > $rows[-1]{time}, 'newest first');
store('mdfeed.cdx_spot_candles_1d', 'I-BTC_INR', 86_400_000, @rows);
compare_cdx_with_truth($node, $cdx, 'spot', 'I-BTC_INR', '1d', $day, $day + 10 * 86_400_000,
	'spot REST rows');

# an outage, then the same port again
my $port = $cdx->{port};
stop_fake($cdx);
is($http->get("$cdx->{url}/exchange/v1/markets")->{status}, 599, 'stopped: connections refused');
restart_cdx_fake($cdx);
is($cdx->{port}, $port, 'restarted on the same port');
$r = $http->get("$cdx->{url}/exchange/v1/derivatives/futures/data/active_instruments?margin_currency_short_name[]=USDT");
is($r->{status}, 200, 'answers again');
ok((grep { $_ eq 'B-BTC_USDT' } @{ decode_json($r->{content}) }), 'active instruments list B-BTC_USDT');
is(fake_config($cdx)->{ws_futures_interval_ms}, 250, 'the restart kept the start options');
is(cdx_requests($cdx, '/exchange/v1/derivatives/futures/data/active_instruments'), 1, 'stats of the new process');
set_faults($cdx, { status_5xx => 1 });
ok($http->get("$cdx->{url}/exchange/v1/markets")->{status} >= 500, 'set_faults works on the CoinDCX fake');
clear_faults($cdx);
is(cdx_fake_ws($cdx)->{connections_open}, 0, 'cdx_fake_ws');

finish();
