
# Copyright (c) mdfeed authors
#
# The parsers on what the exchange really sends:
#  - every kline frame captured from fstream.binance.com
#    (shared/exchange-data/binance-usdm/ws-kline-frames.jsonl) through
#    mdfeed.parse_binance_stream, compared field by field with the JSON;
#  - REST klines bodies as the fake serves them through
#    mdfeed.parse_binance_klines, compared with the fake's truth;
#  - malformed input: a clean ERROR, never a crash;
#  - exchange-info.json, if an SQL function parses it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;

use MdfeedTest;

my $data = shared_dir() . '/exchange-data/binance-usdm';
my $frames_file = "$data/ws-kline-frames.jsonl";
unless (-f $frames_file)
{
	if ($ENV{CI})
	{
		fail("$frames_file missing (shared/ must sit beside the repository in CI)");
		done_testing();
		exit 1;
	}
	plan skip_all => "$frames_file not found (set MDFEED_SHARED or put shared/ beside the repository)";
}

my $fake = start_fake();
my $node = new_node('parser', $fake);

# decimal strings -> canonical form, for numeric equality
sub canon
{
	my ($s) = @_;
	return undef unless defined $s;
	$s = "$s";
	my $neg = $s =~ s/^-//;
	$s =~ s/^0+(?=\d)//;
	if ($s =~ /\./)
	{
		$s =~ s/0+$//;
		$s =~ s/\.$//;
	}
	$s = '0' if $s eq '' || $s eq '0';
	return ($neg && $s ne '0' ? '-' : '') . $s;
}

sub dq
{
	my ($s) = @_;
	my $tag = 'f';
	$tag .= 'x' while index($s, "\$$tag\$") >= 0;
	return "\$$tag\$$s\$$tag\$";
}

#--------------------------------------------------------------------------
# 1. real WebSocket frames
#--------------------------------------------------------------------------
open my $fh, '<', $frames_file or die "$frames_file: $!";
my @lines = grep { /\S/ } map { s/\r?\n$//r } <$fh>;
close $fh;
is(scalar(@lines), 67, '67 captured kline frames');

my $values = join(",\n", map { "($_, " . dq($lines[$_]) . ")" } 0 .. $#lines);
my $out = $node->safe_psql('postgres', <<"EOS");
SELECT json_build_object('i', v.i, 'stream', p.stream,
  'event_ms', (extract(epoch FROM p.event_time) * 1000)::bigint,
  'symbol', p.symbol, 'interval', p."interval",
  'open_ms', (extract(epoch FROM p.open_time) * 1000)::bigint,
  'close_ms', (extract(epoch FROM p.close_time) * 1000)::bigint,
  'open', p.open::text, 'high', p.high::text, 'low', p.low::text, 'close', p.close::text,
  'volume', p.volume::text, 'quote_volume', p.quote_volume::text,
  'tbb', p.taker_buy_base_volume::text, 'tbq', p.taker_buy_quote_volume::text,
  'trades', p.trades, 'closed', p.closed)::text
FROM (VALUES $values) AS v(i, f), LATERAL mdfeed.parse_binance_stream(v.f) p
ORDER BY v.i
EOS
my @rows = map { decode_json($_) } grep { length } split /\n/, $out;
my %by_i;
push @{ $by_i{ $_->{i} } }, $_ for @rows;

my ($n_one, $n_equal, $n_text_equal, $n_closed) = (0, 0, 0, 0);
my @bad;
for my $i (0 .. $#lines)
{
	my $f = decode_json($lines[$i]);
	my $d = $f->{data};
	my $k = $d->{k};
	my $got = $by_i{$i} // [];
	if (@$got != 1)
	{
		push @bad, "frame $i: " . scalar(@$got) . " rows";
		next;
	}
	$n_one++;
	my $r = $got->[0];
	my %want = (
		stream => $f->{stream}, event_ms => $d->{E}, symbol => $k->{s},
		interval => $k->{i}, open_ms => $k->{t}, close_ms => $k->{T},
		trades => $k->{n}, closed => ($k->{x} ? 1 : 0));
	my %num = (open => 'o', high => 'h', low => 'l', close => 'c', volume => 'v',
		quote_volume => 'q', tbb => 'V', tbq => 'Q');
	my @diff;
	for my $c (sort keys %want)
	{
		my $g = $r->{$c};
		$g = ($g ? 1 : 0) if $c eq 'closed';
		push @diff, "$c: got " . ($g // 'NULL') . ", want $want{$c}"
		  unless defined $g && "$g" eq "$want{$c}";
	}
	my $text_ok = 1;
	for my $c (sort keys %num)
	{
		my $w = $k->{ $num{$c} };
		push @diff, "$c: got " . ($r->{$c} // 'NULL') . ", want $w"
		  unless defined $r->{$c} && canon($r->{$c}) eq canon($w);
		$text_ok = 0 unless defined $r->{$c} && $r->{$c} eq $w;
	}
	$n_closed++ if $r->{closed};
	if (@diff) { push @bad, "frame $i: " . join('; ', @diff); }
	else { $n_equal++; }
	$n_text_equal++ if $text_ok;
}
is($n_one, scalar(@lines), 'every frame parses to exactly one row');
is($n_equal, scalar(@lines), 'every row equals its frame (times in ms, decimals as numeric)')
  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
is($n_text_equal, scalar(@lines), 'decimal strings kept exactly as sent (scale included)');
is($n_closed, 4, '4 closed candles (x = true)');

# an unwrapped (raw /ws) event parses too, with no stream name
{
	my $f = decode_json($lines[0]);
	my $raw = JSON::PP->new->canonical->encode($f->{data});
	my ($ret, $o, $e) = $node->psql('postgres',
		"SELECT count(*), max(symbol), bool_and(stream IS NULL) FROM mdfeed.parse_binance_stream(" . dq($raw) . ")");
	is($o, "1|$f->{data}{k}{s}|t", 'a raw (unwrapped) kline event parses to one row, stream NULL')
	  or diag("ret $ret: $o $e");
}

#--------------------------------------------------------------------------
# 2. malformed frames: a clean ERROR, the server stays up
#--------------------------------------------------------------------------
my $good = $lines[0];
my $frame = decode_json($good);
sub mutate
{
	my ($fn) = @_;
	my $f = decode_json($good);
	$fn->($f->{data}{k}, $f->{data}, $f);
	return JSON::PP->new->canonical->encode($f);
}

my @garbage = (
	[ 'empty string', '' ],
	[ 'truncated frame', substr($good, 0, int(length($good) / 2)) ],
	[ 'truncated by one byte', substr($good, 0, length($good) - 1) ],
	[ 'not JSON', 'hello' ],
	[ 'JSON null', 'null' ],
	[ 'JSON array', '[1,2,3]' ],
	[ 'JSON number', '42' ],
	[ 'trailing garbage', $good . '}}]' ],
	[ 'k is a string', mutate(sub { $_[1]{k} = 'kline' }) ],
	[ 'k missing', mutate(sub { delete $_[1]{k} }) ],
	[ 'open time missing', mutate(sub { delete $_[0]{t} }) ],
	[ 'open time a word', mutate(sub { $_[0]{t} = 'soon' }) ],
	[ 'open price missing', mutate(sub { delete $_[0]{o} }) ],
	[ 'open price an object', mutate(sub { $_[0]{o} = { a => 1 } }) ],
	[ 'open price a word', mutate(sub { $_[0]{o} = 'cheap' }) ],
	[ 'open price empty', mutate(sub { $_[0]{o} = '' }) ],
	[ 'trades a word', mutate(sub { $_[0]{n} = 'many' }) ],
	[ 'closed a word', mutate(sub { $_[0]{x} = 'maybe' }) ],
	[ 'NaN price', mutate(sub { $_[0]{o} = 'NaN' }) ],
	[ 'Infinity price', mutate(sub { $_[0]{c} = 'Infinity' }) ],
	[ '-Infinity volume', mutate(sub { $_[0]{v} = '-Infinity' }) ],
	[ 'nan lower case', mutate(sub { $_[0]{h} = 'nan' }) ],
	[ 'huge open time', mutate(sub { $_[0]{t} = '1' . ('0' x 30) }) ],
	[ 'huge trades count', mutate(sub { $_[0]{n} = '9' x 25 }) ],
	[ 'negative open time', mutate(sub { $_[0]{t} = -1e15 }) ],
	[ 'bad interval', mutate(sub { $_[0]{i} = '7m' }) ],
);
# numbers that are JSON numbers instead of strings, too large for a double
push @garbage, [ 'huge JSON number as trades', do { my $s = $good; $s =~ s/"n":(\d+)/"n":1e400/; $s } ];

for my $g (@garbage)
{
	my ($what, $text) = @$g;
	my ($ret, $o, $e) = $node->psql('postgres',
		"SELECT * FROM mdfeed.parse_binance_stream(" . dq($text) . ")");
	ok($ret == 3 && $e =~ /ERROR/, "garbage ($what): clean ERROR")
	  or diag("ret $ret, out: $o, err: $e");
	unlike($e, qr/server closed the connection|terminated abnormally|PANIC/,
		"garbage ($what): the backend did not crash");
}
# well-formed frames that are not kline events: no row, and no error (the
# documented contract of parse_binance_stream: the stream worker must be able
# to skip them)
for my $g (
	[ 'aggTrade event',
		'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1626992741424,"s":"BTCUSDT","a":1,"p":"31000.10","q":"0.010","f":1,"l":1,"T":1626992741420,"m":true}}' ],
	[ 'markPriceUpdate event',
		'{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","E":1626992741424,"s":"BTCUSDT","p":"31000.1","i":"31001.2","P":"31000.0","r":"0.0001","T":1626998400000}}' ],
	[ 'SUBSCRIBE reply', '{"result":null,"id":1}' ])
{
	my ($what, $text) = @$g;
	my ($ret, $o, $e) = $node->psql('postgres',
		"SELECT count(*) FROM mdfeed.parse_binance_stream(" . dq($text) . ")");
	is("$ret|$o", '0|0', "non-kline frame ($what): no row, no error")
	  or diag("err: $e");
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server up after the garbage');
unlike(log_contents($node), qr/terminated by signal|PANIC|was terminated/,
	'no crashed backend in the server log');

#--------------------------------------------------------------------------
# 3. REST klines bodies (fake pages) through parse_binance_klines
#--------------------------------------------------------------------------
{
	my $start = ts_ms('2024-01-01');
	my ($pages, $err) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', src_root() . '/test/fake_exchange/fake_binance.py',
			'pages', 'BTCUSDT', '1h', $start, 1000, '--limit', 499 ],
		'>', \$pages, '2>', \$err) or die "pages: $err";
	my @bodies = grep { length } split /\n/, $pages;
	is(scalar(@bodies), 3, 'fake pages: 3 bodies of up to 499 rows');
	my $csv = truth_csv('BTCUSDT', '1h', $start, $start + 1000 * 3_600_000);
	my $vals = join(",\n", map { "($_, " . dq($bodies[$_]) . ")" } 0 .. $#bodies);
	my ($ret, $o, $e) = $node->psql('postgres', <<"EOS");
@{[truth_table_sql($csv)]}
CREATE TEMP TABLE parsed AS
  SELECT 'BTCUSDT'::text AS symbol, (extract(epoch FROM p.open_time) * 1000)::bigint AS open_time_ms,
    (extract(epoch FROM p.close_time) * 1000)::bigint AS close_time_ms,
    p.open, p.high, p.low, p.close, p.volume, p.quote_volume, p.trades,
    p.taker_buy_base_volume, p.taker_buy_quote_volume
  FROM (VALUES $vals) v(i, b), LATERAL mdfeed.parse_binance_klines(v.b, '1h') p;
SELECT (SELECT count(*) FROM truth), (SELECT count(*) FROM parsed),
  (SELECT count(*) FROM (SELECT * FROM truth EXCEPT SELECT * FROM parsed) a),
  (SELECT count(*) FROM (SELECT * FROM parsed EXCEPT SELECT * FROM truth) b);
EOS
	is($o, '1000|1000|0|0', 'parse_binance_klines: 1000 rows equal to truth')
	  or diag("ret $ret: $o $e");

	for my $g (
		[ 'empty', '' ],
		[ 'truncated', substr($bodies[0], 0, 1000) ],
		[ 'error object', '{"code":-1121,"msg":"Invalid symbol."}' ],
		[ 'short row', '[[1704067200000,"1.0","1.0"]]' ],
		[ 'NaN price', '[[1704067200000,"NaN","1","1","1","1",1704070799999,"1",1,"1","1","0"]]' ],
		[ 'price as object', '[[1704067200000,{},"1","1","1","1",1704070799999,"1",1,"1","1","0"]]' ])
	{
		my ($what, $text) = @$g;
		my ($r, $o2, $e2) = $node->psql('postgres',
			"SELECT * FROM mdfeed.parse_binance_klines(" . dq($text) . ", '1h')");
		ok($r == 3 && $e2 =~ /ERROR/, "klines garbage ($what): clean ERROR")
		  or diag("ret $r, out: $o2, err: $e2");
	}
	my ($r, $o2) = $node->psql('postgres', "SELECT count(*) FROM mdfeed.parse_binance_klines('[]', '1h')");
	is($o2, '0', "klines '[]': zero rows");
	is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server up after klines garbage');
}

#--------------------------------------------------------------------------
# 4. exchange-info.json, if an SQL function parses it
#--------------------------------------------------------------------------
SKIP:
{
	my $fn = $node->safe_psql('postgres', q{
		SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname IN ('mdfeed', 'public') AND p.proname ~ 'exchange_?info'
		  AND p.pronargs = 1 LIMIT 1});
	skip 'no SQL function parses exchangeInfo', 2 unless $fn;
	my $info = slurp_file("$data/exchange-info.json");
	my $name = $fn =~ s/\(.*//r;
	my ($ret, $o, $e) = $node->psql('postgres',
		"SELECT count(*) FROM $name(" . dq($info) . ")");
	is($ret, 0, "$fn parses the real exchange-info.json") or diag($e);
	ok(($o // 0) > 0, "$fn returns rows ($o)");
}

finish();
