
# Copyright (c) mdfeed authors
#
# Models on CoinDCX, futures and spot: the same model registered on each
# market has its history backfilled through the CoinDCX adapter and runs on
# every closed candle; its outputs equal the same computation in SQL over
# the fake's truth (with trades and quote volume NULL, as CoinDCX's REST
# candles have none); then a live close of each gets its output.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $bn = start_fake();
my $cdx = start_cdx_fake();
my $node = new_node('cdxmodels', $bn, cdx_settings($cdx));

$node->safe_psql('postgres', <<'EOS');
CREATE ROLE carol LOGIN;
GRANT USAGE ON SCHEMA mdfeed TO carol;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO carol;
GRANT EXECUTE ON FUNCTION mdfeed_register_model(text, regprocedure, text, text[], integer, timestamptz, text) TO carol;
CREATE SCHEMA carol AUTHORIZATION carol;
SET ROLE carol;
EOS
$node->safe_psql('postgres', 'SET ROLE carol; ' . facts_model_sql('carol'));

my %case = (
	futures => { symbol => 'B-BTC_USDT', model => 'cdx_fut' },
	spot => { symbol => 'I-BTC_INR', model => 'cdx_spot' });
ok(wait_until(sub {
			$node->safe_psql('postgres',
				"SELECT count(*) FROM mdfeed.instruments WHERE (exchange, symbol) IN "
				  . "(('coindcx', 'B-BTC_USDT'), ('coindcx_spot', 'I-BTC_INR'))") eq '2' }, 60),
	'the watch worker listed the CoinDCX instruments');

my $w = 10;
my $from = align_down('1m', now_ms()) - 40 * 60_000;
for my $m (sort keys %case)
{
	my $c = $case{$m};
	$node->safe_psql('postgres', "SET ROLE carol; SELECT mdfeed_register_model('$c->{model}', "
		  . "'carol.facts(text,text,mdfeed.candle[])', '1m', ARRAY['$c->{symbol}'], $w, " . ms_sql($from) . ", '"
		  . cdx_exchange($m) . "')");
}

# caught_up: every closed candle of the model's symbol has its output
sub caught_up
{
	my ($model, $timeout) = @_;
	my $ok = wait_until(sub {
			try_sql($node, "SELECT bool_and(next_open >= mdfeed.interval_floor('1m', now())) "
				  . "FROM mdfeed.model_progress WHERE model = '$model'") eq 't' },
		$timeout, 0.5);
	diag(try_sql($node, "SELECT * FROM mdfeed.model_progress WHERE model = '$model'") . "\n"
		  . try_sql($node, "SELECT name, runs, failures, last_error FROM mdfeed.models WHERE name = '$model'"))
	  unless $ok;
	return $ok;
}

sub compare
{
	my ($m, $name) = @_;
	my $c = $case{$m};
	my $end = align_down('1m', now_ms());
	my $truth = cdx_truth($m, $c->{symbol}, '1m', $from - ($w + 1) * 60_000, $end);
	my $rows = join("\n", map { join(',', $_->{open_time}, $_->{open}, $_->{high}, $_->{low}, $_->{close}, $_->{volume}) } @$truth);
	my $sql = <<"EOS";
CREATE TEMP TABLE truth (open_time_ms bigint, open numeric, high numeric, low numeric, close numeric, volume numeric);
COPY truth FROM STDIN WITH (FORMAT csv);
$rows
\\.
CREATE TEMP TABLE expected AS
  SELECT open_time_ms, jsonb_build_object('n', count(*) OVER w, 'first', first_value(open_time_ms) OVER w,
    'last', open_time_ms, 'sum_close', sum(close) OVER w, 'max_high', max(high) OVER w, 'min_low', min(low) OVER w,
    'sum_volume', sum(volume) OVER w, 'trades', NULL, 'quote', NULL, 'all_closed', true) AS output,
    row_number() OVER (ORDER BY open_time_ms) AS rn
  FROM truth WINDOW w AS (ORDER BY open_time_ms ROWS BETWEEN @{[$w - 1]} PRECEDING AND CURRENT ROW);
DELETE FROM expected WHERE rn < $w OR open_time_ms < $from;
CREATE TEMP TABLE got AS
  SELECT (extract(epoch FROM open_time) * 1000)::bigint AS open_time_ms, output FROM mdfeed.model_outputs
  WHERE model = '$c->{model}' AND exchange = '@{[cdx_exchange($m)]}' AND open_time >= @{[ms_sql($from)]}
    AND open_time < @{[ms_sql($end)]};
SELECT json_build_object('expected', (SELECT count(*) FROM expected), 'got', (SELECT count(*) FROM got),
  'missing', (SELECT count(*) FROM (SELECT open_time_ms, output FROM expected EXCEPT SELECT * FROM got) x),
  'extra', (SELECT count(*) FROM (SELECT * FROM got EXCEPT SELECT open_time_ms, output FROM expected) x),
  'sample', (SELECT json_agg(x) FROM (SELECT e.open_time_ms, e.output AS expected, g.output AS got
             FROM expected e LEFT JOIN got g USING (open_time_ms)
             WHERE g.output IS DISTINCT FROM e.output ORDER BY 1 LIMIT 2) x))::jsonb::text;
EOS
	my $r = comparison_json($node, $sql, "$name: comparison query failed", 120) or return;
	ok($r->{expected} >= 30, "$name: there is something to compare ($r->{expected} candles)");
	is($r->{got}, $r->{expected}, "$name: one output per closed candle");
	is($r->{missing} + $r->{extra}, 0, "$name: outputs equal the SQL computation over the truth")
	  or diag(encode_json($r));
}

for my $m (sort keys %case)
{
	ok(caught_up($case{$m}{model}, 120), "$m: the model caught up, its history backfilled through the adapter");
	compare($m, "replay $m");
}

# a live close of each market
my $close = wait_next_minute(1);
for my $m (sort keys %case)
{
	ok(caught_up($case{$m}{model}, 90), "$m: the close at " . iso_ms($close) . " has its output");
	compare($m, "live $m");
}
is($node->safe_psql('postgres', "SELECT string_agg(exchange || ':' || count, ',' ORDER BY exchange) FROM "
	  . "(SELECT exchange, count(*) FROM mdfeed.jobs WHERE requested_by = 'carol' GROUP BY 1) x") =~ /^coindcx:\d+,coindcx_spot:\d+$/ ? 1 : 0,
	1, 'the history came from backfills of each market, queued for carol');

finish();
