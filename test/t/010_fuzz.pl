
# Copyright (c) mdfeed authors
#
# Robustness: every parser the workers use, fed thousands of mutated real
# answers, must never crash, hang, leak or raise anything but a clean error.
# A crashing worker restarts the whole cluster, so this matters.
#
#  A. A deterministic seeded generator mutates real captures
#     (shared/exchange-data/binance-usdm and coindcx) and answers the fakes
#     serve (Binance's REST; CoinDCX's REST and socket.io frames, the
#     latter read from its socket): truncations, byte flips, huge numbers,
#     deep nesting, invalid UTF-8, NUL bytes, wrong types, the JSON text
#     inside a CoinDCX event mutated and wrapped again, and every body fed
#     to every parser of every exchange.  They run in batches through
#     mdfeed.parse_answer in one session.  Each case parses or fails with
#     SQLSTATE 22P02; none takes more than 2 s; the same backend answers
#     throughout; its memory stays flat.
#  B. Backfill workers fetch from the fake while its garbage, truncation and
#     mutate switches are on: no backend dies, and once the faults are
#     cleared the jobs finish exact vs the truth.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

use MdfeedTest;

my $t_start = time();
my $data = shared_dir() . '/exchange-data/binance-usdm';
unless (-f "$data/ws-kline-frames.jsonl" && -f "$data/exchange-info.json")
{
	if ($ENV{CI})
	{
		fail("$data missing (shared/ must sit beside the repository in CI)");
		done_testing();
		exit 1;
	}
	plan skip_all => "$data not found (set MDFEED_SHARED or put shared/ beside the repository)";
}

my $cdx_data = shared_dir() . '/exchange-data/coindcx';
my $fake = start_fake();
# the fake CoinDCX only answers the seed requests: the node is not pointed at it
my $cdx = start_cdx_fake(config => { ws_futures_interval_ms => 100, ws_spot_interval_ms => 100 });
my $node = new_node('fuzz', $fake, cdx_settings(undef),
	'mdfeed.rest_max_retries' => 100,
	'mdfeed.http_timeout' => "'3s'");

#--------------------------------------------------------------------------
# The generator: a xorshift64* PRNG, so the cases do not depend on Perl's
# rand() and are the same on every machine.
#--------------------------------------------------------------------------
my $SEED = 20261201;
my $state = $SEED;
my $M52 = (1 << 52) - 1;    # masks that make >> under 'use integer' logical
my $M37 = (1 << 37) - 1;

sub rnd
{
	my ($n) = @_;
	use integer;
	$state ^= ($state >> 12) & $M52;
	$state ^= $state << 25;
	$state ^= ($state >> 27) & $M37;
	my $v = ($state * 2685821657736338717) >> 33;
	$v &= 0x7FFFFFFF;
	no integer;
	return $v % $n;
}

sub pick { my @a = @_; return $a[ rnd(scalar @a) ]; }

# seeds: [what, body] of real and fake-served answers
my @seeds;
{
	open my $fh, '<', "$data/ws-kline-frames.jsonl" or die $!;
	my @frames = grep { /\S/ } map { s/\r?\n$//r } <$fh>;
	close $fh;
	push @seeds, [ 'stream', $_ ] for @frames;
	push @seeds, [ 'stream', '{"result":null,"id":1}' ];
	my $info = slurp_file("$data/exchange-info.json");
	$info =~ s/\s+$//;
	push @seeds, [ 'exchange_info', $info ], [ 'weight_limit', $info ];

	# a smaller real excerpt (two symbols) for the bulk of the mutations
	my $j = decode_json($info);
	$j->{symbols} = [ @{ $j->{symbols} }[ 0 .. 1 ] ];
	my $small = JSON::PP->new->canonical->encode($j);
	push @seeds, [ 'exchange_info', $small ], [ 'weight_limit', $small ];

	my $http = HTTP::Tiny->new(timeout => 15);
	my $get = sub {
		my ($path) = @_;
		my $r = $http->get("$fake->{url}$path");
		die "GET $path: $r->{status}" unless defined $r->{content} && length $r->{content};
		return $r->{content};
	};
	my $t0 = ts_ms('2024-01-01');
	push @seeds, [ 'klines', $get->("/fapi/v1/klines?symbol=BTCUSDT&interval=1h&startTime=$t0&limit=6") ];
	push @seeds, [ 'tickers', $get->('/fapi/v1/ticker/24hr') ];
	push @seeds, [ 'funding', $get->("/fapi/v1/fundingRate?symbol=ETHUSDT&startTime=$t0&limit=6") ];
	my $oi0 = now_ms() - 3 * 86_400_000;
	push @seeds, [ 'open_interest',
		$get->("/futures/data/openInterestHist?symbol=BTCUSDT&period=1h&startTime=$oi0&limit=6") ];
	push @seeds, [ 'server_time', $get->('/fapi/v1/time') ];
	push @seeds, [ 'error', $get->('/fapi/v1/klines?symbol=NOPE&interval=1m') ];
	push @seeds, [ 'error', '{"msg":"parameter \'startTime\' is invalid.","code":-1130}' ];
	push @seeds, [ 'ban',
		'{"code":-1003,"msg":"Way too many requests; IP(127.0.0.1) banned until 1700000000000. Please use the websocket for live updates to avoid bans."}' ];
}
my @whats = qw(klines stream exchange_info weight_limit server_time tickers funding
  open_interest error ban);
my %seen_what = map { $_->[0] => 1 } @seeds;
is(join(',', sort grep { !$seen_what{$_} } @whats), '', 'a seed for every parser');

my @huge = ('1e400', '9' x 400, '-0', '1e-400', '-1e400', '-' . ('9' x 400),
	'18446744073709551616', '-9223372036854775809', '9223372036854775807',
	'1.7976931348623157e309', '0.' . ('0' x 400) . '1', '1E+999', '-0.0');
my @huge_str = map { "\"$_\"" } ('1e400', '9' x 400, '1e999', '9.9e999', '-1e-999',
	('9' x 60) . '.' . ('9' x 60) . 'e-999', ('9' x 60) . 'e999', '-0', 'NaN', 'Infinity',
	'1e', '.5', '5.', '+1', ' 1', '1 ', '0x10', '');
my @wrong = ('null', 'true', 'false', '{}', '[]', '"x"', '1.5', '0', '-1', '""', '[[]]', '{"a":1}');
my @bad_utf8 = ("\xc3", "\xff", "\xfe\xff", "\xed\xa0\x80", "\xc0\xaf", "\xe2\x82", "\xf8\x88\x80\x80\x80",
	"\xf4\x90\x80\x80", "\x80");
my @escapes = ('\u0000', '\ud800', '\udc00\ud800', '\u00', '\x41', '\uZZZZ', '\\');

# value tokens of a JSON text: [start, length] of strings and numbers
sub tokens
{
	my ($s) = @_;
	my @t;
	while ($s =~ /("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)/g)
	{
		push @t, [ $-[1], $+[1] - $-[1] ];
	}
	return @t;
}

sub replace_token
{
	my ($s, $toks, $with) = @_;
	return $with unless @$toks;
	my $t = $toks->[ rnd(scalar @$toks) ];
	return substr($s, 0, $t->[0]) . $with . substr($s, $t->[0] + $t->[1]);
}

sub insert_at
{
	my ($s, $pos, $ins) = @_;
	return substr($s, 0, $pos) . $ins . substr($s, $pos);
}

# mutate($body): one random mutation; returns [kind, new body]
my %token_cache;

sub mutate
{
	my ($s) = @_;
	my $len = length $s;
	$token_cache{$s} //= [ tokens($s) ] if $len > 1000;
	my @toks = $len > 1000 ? @{ $token_cache{$s} } : tokens($s);
	my @strs = grep { substr($s, $_->[0], 1) eq '"' } @toks;
	my $k = rnd(12);
	if ($k == 0)
	{
		return [ 'truncate', substr($s, 0, rnd($len + 1)) ];
	}
	if ($k == 1)
	{
		my $n = 1 + rnd(8);
		for (1 .. $n)
		{
			my $p = rnd($len);
			substr($s, $p, 1) = chr(ord(substr($s, $p, 1)) ^ (1 << rnd(8)));
		}
		return [ 'byte flips', $s ];
	}
	if ($k == 2)
	{
		my $p = rnd($len);
		substr($s, $p, 1) = chr(rnd(256));
		return [ 'random byte', $s ];
	}
	return [ 'huge number', replace_token($s, \@toks, pick(@huge)) ] if $k == 3;
	return [ 'huge number string', replace_token($s, \@toks, pick(@huge_str)) ] if $k == 4;
	if ($k == 5)
	{
		my $d = pick(31, 32, 33, 1000, 100_000);
		my $v = ('[' x $d) . (rnd(2) ? (']' x $d) : '');
		return [ "nesting $d", rnd(2) ? $v . $s : replace_token($s, \@toks, $v) ];
	}
	if ($k == 6)
	{
		my $d = pick(32, 33, 50_000);
		return [ "object nesting $d", replace_token($s, \@toks, ('{"a":' x $d) . '1' . ('}' x $d)) ];
	}
	if ($k == 7)
	{
		my $b = pick(@bad_utf8);
		my $t = @strs ? $strs[ rnd(scalar @strs) ] : [ rnd($len), 1 ];
		return [ 'invalid UTF-8', insert_at($s, $t->[0] + 1, $b) ];
	}
	if ($k == 8)
	{
		return [ 'NUL byte', insert_at($s, rnd($len + 1), "\0") ] if rnd(2);
		my $t = @strs ? $strs[ rnd(scalar @strs) ] : [ rnd($len), 1 ];
		return [ 'escaped NUL or bad escape', insert_at($s, $t->[0] + 1, pick(@escapes)) ];
	}
	return [ 'wrong type', replace_token($s, \@toks, pick(@wrong)) ] if $k == 9;
	if ($k == 10)
	{
		# a string value made long, or a key dropped
		return [ 'long string', replace_token($s, \@toks, '"' . ('A' x (1 + rnd(5000))) . '"') ]
		  if rnd(2);
		return [ 'dropped field', replace_token($s, \@toks, '') ];
	}
	# two mutations at once
	my $m1 = mutate($s);
	my $m2 = mutate($m1->[1]);
	return [ "$m1->[0] + $m2->[0]", $m2->[1] ];
}

my @cases;    # [what, kind, body]
for my $sd (@seeds)
{
	my ($what, $body) = @$sd;
	my $len = length $body;
	my $big = $len > 3000;

	# the seed itself, every parser on it, and truncations
	push @cases, [ $what, 'seed', $body ];
	push @cases, [ $_, "seed of $what", $body ] for grep { $_ ne $what } @whats;
	if ($big)
	{
		push @cases, [ $what, 'truncate', substr($body, 0, rnd($len)) ] for 1 .. 20;
	}
	elsif ($what eq 'stream' && $sd != $seeds[0] && $sd != $seeds[1])
	{
		push @cases, [ $what, 'truncate', substr($body, 0, rnd($len)) ] for 1 .. 10;
	}
	else
	{
		# every offset
		push @cases, [ $what, 'truncate', substr($body, 0, $_) ] for 0 .. $len - 1;
	}
	my $n = $big ? 40 : ($what eq 'stream' ? 100 : 600);
	push @cases, [ $what, @{ mutate($body) } ] for 1 .. $n;
}
# a few kinds of garbage for every parser
for my $what (@whats)
{
	for my $g ('', ' ', "\0", "\0\0\0", "\xff\xfe", ('[' x 100_000), ('{"a":' x 100_000),
		'<html>502 Bad Gateway</html>', '1e400', '9' x 400, '"' . ("\xc3" x 10) . '"', 'null',
		"[\"\0\"]", '[1,2,3] x', '{"code":1e400,"msg":"x"}', '{"code":-1,"msg":"' . ("\xe2\x82\xac" x 300) . '"}')
	{
		push @cases, [ $what, 'garbage', $g ];
	}
}
$_ = [ 'binance', @$_ ] for @cases;    # [exchange, what, kind, body] from here on

#--------------------------------------------------------------------------
# CoinDCX: seeds from the fake CoinDCX (REST answers, and the frames its
# socket sends) and from the captures; generated after Binance's, so that
# those cases stay as they were
#--------------------------------------------------------------------------

# cdx_socket($fake, \@channels, $want, $timeout): the text messages the
# fake CoinDCX sends a socket.io client (Engine.IO 4) that connects and
# joins the channels, until $want candlestick frames of each came.  A
# minimal WebSocket client: no library for one is packaged.
sub cdx_socket
{
	my ($fk, $channels, $want, $timeout) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fk->{port}, Proto => 'tcp',
		Timeout => 5) or die "connect to the fake CoinDCX: $!";
	binmode $s;
	syswrite($s, "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:$fk->{port}\r\n"
		  . "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: bWRmZWVkIGZ1enogdGVzdA==\r\n"
		  . "Sec-WebSocket-Version: 13\r\n\r\n");
	my $buf = '';
	my $deadline = time() + $timeout;
	my $sel = IO::Select->new($s);
	my $fill = sub {
		my $left = $deadline - time();
		die "fake CoinDCX socket: nothing within $timeout s\n" if $left <= 0 || !$sel->can_read($left);
		my $n = sysread($s, $buf, 65536, length $buf);
		die "fake CoinDCX socket closed\n" unless $n;
	};
	$fill->() until $buf =~ /\r\n\r\n/;
	$buf =~ s/\A(.*?)\r\n\r\n//s;
	my $head = $1;
	die "fake CoinDCX socket: no upgrade: $head\n" unless $head =~ m{\AHTTP/1\.1 101};
	my $send = sub {
		my ($text) = @_;
		my $len = length $text;
		my $mask = "\x13\x57\x9b\xdf";
		my $hdr = chr(0x81) . ($len < 126 ? chr(0x80 | $len) : chr(0x80 | 126) . pack('n', $len));
		syswrite($s, $hdr . $mask . ($text ^ substr($mask x (int($len / 4) + 1), 0, $len)));
	};
	# the next text message (server frames are not masked; pings answered)
	my $next = sub {
		while (1)
		{
			if (length($buf) >= 2)
			{
				my ($b0, $b1) = unpack('CC', $buf);
				my ($len, $off) = ($b1 & 0x7f, 2);
				($len, $off) = (unpack('n', substr($buf, 2, 2)), 4) if $len == 126 && length($buf) >= 4;
				($len, $off) = (unpack('Q>', substr($buf, 2, 8)), 10) if $len == 127 && length($buf) >= 10;
				if ($len < 126 || $off > 2)
				{
					if (length($buf) >= $off + $len)
					{
						my $payload = substr($buf, $off, $len);
						substr($buf, 0, $off + $len) = '';
						my $op = $b0 & 0x0f;
						return $payload if $op == 1;
						die "fake CoinDCX socket: close frame\n" if $op == 8;
						if ($op == 9)
						{
							my $m = "\0\0\0\0";
							syswrite($s, chr(0x8a) . chr(0x80 | length $payload) . $m . $payload);
						}
						next;
					}
				}
			}
			$fill->();
		}
	};
	my @got = ($next->());    # 0{"sid":..,"pingInterval":..}
	$send->('40');
	my $m;
	do { $m = $next->(); push @got, $m; } until $m =~ /^40/;
	$send->(qq{42["join",{"channelName":"$_"}]}) for @$channels;
	my %n;
	while (grep { ($n{$_} // 0) < $want } @$channels)
	{
		$m = $next->();
		if ($m eq '2')
		{
			$send->('3');
			next;
		}
		push @got, $m;
		for my $ch (@$channels)
		{
			$n{$ch}++ if index($m, qq{\\"channel\\":\\"$ch\\"}) >= 0;
		}
	}
	close $s;
	return @got;
}

# seeds: [exchange, what, body]
my @cdx_seeds;
{
	my $http = HTTP::Tiny->new(timeout => 15);
	my $get = sub {
		my ($path, $status) = @_;
		my $r = $http->get("$cdx->{url}$path");
		die "GET $path: $r->{status} $r->{content}"
		  unless $r->{status} == ($status // 200) && length($r->{content} // '');
		return $r->{content};
	};
	my $to = int(ts_ms('2024-01-01') / 1000);
	my $t0 = ts_ms('2024-01-01');
	push @cdx_seeds,
	  [ 'coindcx', 'klines', $get->('/market_data/candlesticks?pair=B-BTC_USDT&from=' . ($to - 6 * 3600)
			  . "&to=$to&resolution=60&pcode=f") ],
	  [ 'coindcx', 'klines', $get->('/market_data/candlesticks?pair=B-PEPE_USDT&from=' . ($to - 360)
			  . "&to=$to&resolution=1&pcode=f") ],
	  [ 'coindcx_spot', 'klines', $get->('/market_data/candles?pair=B-BTC_USDT&interval=1h&startTime='
			  . ($t0 - 6 * 3_600_000) . "&endTime=$t0&limit=6") ],
	  [ 'coindcx_spot', 'klines', $get->('/market_data/candles?pair=B-BTTC_USDT&interval=1m&startTime='
			  . ($t0 - 6 * 60_000) . "&endTime=$t0&limit=6") ],
	  [ 'coindcx', 'exchange_info', $get->('/exchange/v1/derivatives/futures/data/active_instruments'
			  . '?margin_currency_short_name%5B%5D=USDT&margin_currency_short_name%5B%5D=INR') ],
	  [ 'coindcx', 'error', $get->('/market_data/candlesticks?pair=B-BTC_USDT&resolution=60', 400) ],
	  [ 'coindcx', 'error', $get->('/exchange/v1/no_such_path', 404) ],
	  [ 'coindcx_spot', 'error', $get->('/market_data/candles?pair=B-BTC_USDT&interval=5m', 422) ],
	  [ 'coindcx_spot', 'error', $get->('/market_data/candles?pair=B-NOPE_USDT&interval=1m', 422) ];
	my $md = $get->('/exchange/v1/markets_details');
	push @cdx_seeds, [ 'coindcx_spot', 'exchange_info', $md ];
	# a smaller piece of it (two markets) for the bulk of the mutations
	my $j = decode_json($md);
	my $small = '[' . join(',', map { JSON::PP->new->canonical->encode($_) } @$j[ 0 .. 1 ]) . ']';
	push @cdx_seeds, [ 'coindcx_spot', 'exchange_info', $small ];

	# the socket: the handshake and candlestick frames of both markets
	my $t_sock = time();
	my @frames = cdx_socket($cdx,
		[ 'B-BTC_USDT_1m-futures', 'B-PEPE_USDT_1m-futures', 'B-BTC_USDT_1m', 'B-BTTC_USDT_1m' ], 2, 20);
	note sprintf('fuzz: %d socket messages in %.1f s', scalar(@frames), time() - $t_sock);
	my %seen;
	for my $f (@frames)
	{
		next if $seen{$f}++;
		if ($f =~ /^42\["candlestick"/)
		{
			push @cdx_seeds, [ $f =~ /-futures\\"/ ? 'coindcx' : 'coindcx_spot', 'stream', $f ];
		}
		else
		{
			push @cdx_seeds, [ 'coindcx', 'stream', $f ], [ 'coindcx_spot', 'stream', $f ];
		}
	}

	# the captures, the socket ones in their wire envelope
	if (-d $cdx_data)
	{
		my $cap = sub { my $t = slurp_file("$cdx_data/$_[0]"); $t =~ s/\s+\z//; return $t; };
		my $wrap = sub {
			return '42["candlestick",{"event":"candlestick","data":'
			  . JSON::PP->new->allow_nonref->encode($_[0]) . '}]';
		};
		push @cdx_seeds,
		  [ 'coindcx', 'klines', $cap->('rest-futures-candlesticks.tradex-fixture.json') ],
		  [ 'coindcx_spot', 'klines', $cap->('rest-spot-candles.ccxt-comment.json') ],
		  [ 'coindcx_spot', 'exchange_info', $cap->('rest-markets-details.EXCERPT.tradex-verify.json') ],
		  [ 'coindcx', 'exchange_info', $cap->('DOC-EXAMPLE.active-instruments.txt') =~ s/,\s*\]/]/r ],
		  [ 'coindcx', 'stream', $wrap->($cap->('ws-futures-candlestick-data.tradex.as-published.json')) ],
		  [ 'coindcx_spot', 'stream', $wrap->($cap->('ws-spot-candlestick-data.tradex.as-published.json')) ],
		  [ 'coindcx_spot', 'stream', '42["new-trade",' . $cap->('ws-spot-new-trade-envelope.tradex.json') . ']' ];
		push @cdx_seeds, [ 'coindcx', 'error', $_ ]
		  for grep { /\S/ } split /\n/, $cap->('rest-error-bodies.jsonl');
	}
}
my @cdx_parsers = map { my $e = $_; map { [ $e, $_ ] } qw(klines stream exchange_info error) }
  qw(coindcx coindcx_spot);
{
	my %have = map { ("$_->[0] $_->[1]", 1) } @cdx_seeds;
	is(join(',', grep { !$have{$_} } map { "$_->[0] $_->[1]" } @cdx_parsers), '',
		'a seed for every CoinDCX parser');
	is(scalar(grep { $_->[1] eq 'stream' && $_->[2] =~ /^42\["candlestick"/ } @cdx_seeds) >= 8 ? 1 : 0, 1,
		'candlestick frames of both markets read from the fake\'s socket');
}

# mutate_inner($frame): a socket.io event whose data (JSON text) is mutated
# and wrapped again: the envelope stays valid (unless the mutation left
# bytes that are not UTF-8), the second parse gets the garbage
my %inner_of;

sub mutate_inner
{
	my ($frame) = @_;
	my ($name, $inner) = @{ $inner_of{$frame} //= do {
			my ($n, $d) = $frame =~ /\A42\["([\w-]+)",\{"event":"[\w-]+","data":("(?:[^"\\]|\\.)*")\}\]\z/s;
			my $t = defined $d ? JSON::PP->new->allow_nonref->decode($d) : undef;
			utf8::encode($t) if defined $t;    # the bytes of the JSON text
			[ $n, $t ];
		} };
	return undef unless defined $inner;
	my $m = mutate($inner);
	# a JSON string of those bytes: quotes, backslashes and control
	# characters escaped, everything else as it is
	(my $text = $m->[1]) =~ s/(["\\])/\\$1/g;
	$text =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
	return [ "inner $m->[0]", qq{42["$name",\{"event":"$name","data":"$text"\}]} ];
}

my $n_binance = scalar @cases;
my $t_gen = time();
for my $sd (@cdx_seeds)
{
	my ($ex, $what, $body) = @$sd;
	my $len = length $body;
	# the seed itself, every parser of every exchange on it
	push @cases, [ $ex, $what, 'seed', $body ];
	push @cases, map { [ @$_, "seed of $ex $what", $body ] } grep { "$_->[0] $_->[1]" ne "$ex $what" } @cdx_parsers;
	push @cases, map { [ 'binance', $_, "seed of $ex $what", $body ] } @whats;
	# truncations: every offset of the short ones, a sample of the others
	if ($len <= 1200)
	{
		push @cases, [ $ex, $what, 'truncate', substr($body, 0, $_) ] for 0 .. $len - 1;
	}
	else
	{
		push @cases, [ $ex, $what, 'truncate', substr($body, 0, rnd($len)) ] for 1 .. 40;
	}
	my $n = $len > 3000 ? 40 : ($what eq 'stream' ? 150 : 300);
	push @cases, [ $ex, $what, @{ mutate($body) } ] for 1 .. $n;
	if ($what eq 'stream' && $body =~ /^42\["candlestick"/)
	{
		for (1 .. 150)
		{
			my $m = mutate_inner($body) or last;
			push @cases, [ $ex, $what, @$m ];
		}
	}
}
# Binance's seeds through CoinDCX's parsers
push @cases, map { my $sd = $_; map { [ @$_, "seed of binance $sd->[0]", $sd->[1] ] } @cdx_parsers } @seeds;
# the garbage for every CoinDCX parser, and some of the socket's own
for my $p (@cdx_parsers)
{
	for my $g ('', ' ', "\0", "\0\0\0", "\xff\xfe", ('[' x 100_000), ('{"a":' x 100_000),
		'<html>502 Bad Gateway</html>', '1e400', '9' x 400, '"' . ("\xc3" x 10) . '"', 'null',
		"[\"\0\"]", '[1,2,3] x', '{"code":1e400,"message":"x"}', '{"code":422,"message":"' . ("\xe2\x82\xac" x 300) . '"}',
		'4', '42', '42[', '42[]', '42[""]', '42["candlestick"]', '42["candlestick",null]',
		'42["candlestick",{"data":' . ('[' x 100_000) . '}]',
		'42["candlestick",{"data":"' . ('[' x 100_000) . '"}]',
		'42["candlestick",{"data":"' . ('{\"a\":' x 50_000) . '1' . ('}' x 50_000) . '"}]',
		'42["candlestick",{"data":"\u0000"}]', '42["candlestick",{"data":"\ud800"}]',
		'42' . ('9' x 20) . '["candlestick",{}]', '42/' . ('a' x 100_000) . ',["candlestick",{}]',
		'451-["candlestick",{"_placeholder":true,"num":0}]', '0{"pingInterval":1e400,"pingTimeout":-1}',
		'0' . ('{"a":' x 50_000), '44{"message":"' . ("\xc3" x 5) . '"}', '2' . ('x' x 100_000))
	{
		push @cases, [ @$p, 'garbage', $g ];
	}
}
my $n_cdx = scalar(@cases) - $n_binance;
note sprintf('fuzz: CoinDCX cases generated in %.1f s', time() - $t_gen);

my $ncases = scalar @cases;
note sprintf('fuzz: %d cases (%d of them CoinDCX\'s) generated from %d seeds (seed %d) in %.1f s',
	$ncases, $n_cdx, scalar(@seeds) + scalar(@cdx_seeds), $SEED, time() - $t_start);

#--------------------------------------------------------------------------
# A. run them through one session
#--------------------------------------------------------------------------
my $file = "$PostgreSQL::Test::Utils::tmp_check/fuzz_cases_$$.copy";
{
	open my $fh, '>', $file or die "$file: $!";
	for my $i (0 .. $#cases)
	{
		my ($ex, $what, $kind, $body) = @{ $cases[$i] };
		$kind =~ s/[\t\n\\]/ /g;
		utf8::encode($body) if utf8::is_utf8($body);
		print $fh "$i\t$ex\t$what\t$kind\t\\\\x" . unpack('H*', $body) . "\n";
	}
	close $fh;
}

# one psql session, fed statements one at a time
my ($in, $out, $err) = ('', '', '');
my $psql = IPC::Run::start(
	[ 'psql', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err,
	IPC::Run::timeout(180));
my $marker = 0;

sub sql
{
	my ($q) = @_;
	$marker++;
	$out = '';
	$err = '';
	$in .= "$q\n\\echo __done_$marker\n";
	$psql->pump until $out =~ /__done_$marker\n/;
	(my $r = $out) =~ s/__done_$marker\n//;
	chomp $r;
	diag("psql: $err") if $err =~ /ERROR|FATAL/;
	return $r;
}

my $pid = sql('SELECT pg_backend_pid();');
like($pid, qr/^\d+$/, "fuzz session backend pid $pid");
sql(<<'EOS');
SET statement_timeout = '60s';
-- not temporary: temp tables' local buffers are private memory, which would
-- blur the memory measurement below
CREATE UNLOGGED TABLE fuzz_case (id int PRIMARY KEY, exchange text, what text, kind text, body bytea);
CREATE UNLOGGED TABLE fuzz_result (id int, sqlstate text, message text, ms float8, n bigint);
CREATE FUNCTION pg_temp.fuzz_batch(lo int, hi int) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
	c record;
	t0 timestamptz;
	st text;
	msg text;
	n bigint;
BEGIN
	FOR c IN SELECT * FROM fuzz_case WHERE id BETWEEN lo AND hi ORDER BY id LOOP
		t0 := clock_timestamp();
		n := NULL;
		BEGIN
			n := mdfeed.parse_answer(c.exchange, c.what, c.body);
			st := '00000';
			msg := NULL;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		END;
		INSERT INTO fuzz_result
		VALUES (c.id, st, msg, extract(epoch FROM clock_timestamp() - t0) * 1000, n);
	END LOOP;
END
$f$;
EOS
is(sql("\\copy fuzz_case FROM '$file'\nSELECT count(*) FROM fuzz_case;"), $ncases,
	"$ncases cases loaded");

sub rss_anon
{
	open my $fh, '<', "/proc/$pid/status" or return undef;
	my ($kb) = map { /^RssAnon:\s+(\d+)/ ? $1 : () } <$fh>;
	close $fh;
	return $kb;
}

sub ctx_bytes
{
	return sql('SELECT sum(total_bytes) FROM pg_backend_memory_contexts;');
}

# warm-up pass, then the measured passes; batches of 500 cases
my $batch = 500;
my $t_fuzz = time();
my $max_batch_s = 0;
my @rss;
my @ctx;
my $passes = 4;
for my $pass (1 .. $passes)
{
	sql('TRUNCATE fuzz_result;');
	for (my $lo = 0; $lo < $ncases; $lo += $batch)
	{
		my $t = time();
		sql(sprintf('SELECT pg_temp.fuzz_batch(%d, %d);', $lo, $lo + $batch - 1));
		$max_batch_s = time() - $t if time() - $t > $max_batch_s;
	}
	push @rss, rss_anon();
	push @ctx, ctx_bytes();
	note sprintf('fuzz pass %d: RssAnon %s kB, memory contexts %s bytes', $pass, $rss[-1] // '?',
		$ctx[-1]);
}
my $fuzz_s = time() - $t_fuzz;
my $ran = $ncases * $passes;
note sprintf('fuzz: %d cases run (%d distinct x %d passes) in %.1f s, longest batch %.2f s',
	$ran, $ncases, $passes, $fuzz_s, $max_batch_s);

is(sql('SELECT count(*) FROM fuzz_result;'), $ncases, 'every case of the last pass has an outcome');
is(sql('SELECT pg_backend_pid();'), $pid, 'the same backend answers after the fuzzing (no crash)');

my $by_state = sql("SELECT string_agg(sqlstate || ' ' || n, ', ' ORDER BY sqlstate) FROM "
	  . "(SELECT sqlstate, count(*) n FROM fuzz_result GROUP BY 1) s;");
note "fuzz outcomes by SQLSTATE: $by_state";
my $bad = sql(q{SELECT string_agg(format('case %s (%s %s, %s, %s bytes): %s %s; body begins %s',
		r.id, c.exchange, c.what, c.kind, length(c.body), r.sqlstate, r.message,
		encode(substr(c.body, 1, 120), 'escape')), E'\n' ORDER BY r.id)
	FROM (SELECT * FROM fuzz_result WHERE sqlstate NOT IN ('00000', '22P02') ORDER BY id LIMIT 20) r
	JOIN fuzz_case c USING (id);});
is($bad, '', 'every case parses or fails cleanly with SQLSTATE 22P02');
my $nok = sql("SELECT count(*) FROM fuzz_result WHERE sqlstate = '00000';");
my $nerr = sql("SELECT count(*) FROM fuzz_result WHERE sqlstate = '22P02';");
ok($nok > 100 && $nerr > 1000, "both outcomes occur ($nok parsed, $nerr refused)");
note 'fuzz outcomes by exchange: ' . sql(q{SELECT string_agg(format('%s %s %s', exchange, sqlstate, n), ', '
	ORDER BY exchange, sqlstate) FROM (SELECT c.exchange, r.sqlstate, count(*) n FROM fuzz_result r
	JOIN fuzz_case c USING (id) GROUP BY 1, 2) s;});
my ($cdx_ok, $cdx_err) = split /\|/, sql(q{SELECT count(*) FILTER (WHERE r.sqlstate = '00000') || '|' ||
	count(*) FILTER (WHERE r.sqlstate = '22P02') FROM fuzz_result r JOIN fuzz_case c USING (id)
	WHERE c.exchange LIKE 'coindcx%';});
ok($cdx_ok > 100 && $cdx_err > 1000, "CoinDCX's parsers: both outcomes occur ($cdx_ok parsed, $cdx_err refused)");
# the mutated JSON text inside valid envelopes reaches the second parse
my ($in_ok, $in_err) = split /\|/, sql(q{SELECT count(*) FILTER (WHERE r.sqlstate = '00000' AND r.n = 1) || '|' ||
	count(*) FILTER (WHERE r.message ~ '(futures|spot) (candlestick event|bar)|candlestick data')
	FROM fuzz_result r JOIN fuzz_case c USING (id) WHERE c.kind LIKE 'inner %';});
ok($in_ok > 20 && $in_err > 200, "mutated event data: $in_ok still one bar, $in_err refused by the inner parse");

# the seeds themselves parse
is(sql(q{SELECT string_agg(c.id || ' ' || c.exchange || ' ' || c.what || ': ' || r.message, '; ')
	FROM fuzz_case c JOIN fuzz_result r USING (id)
	WHERE c.kind = 'seed' AND r.sqlstate <> '00000';}), '', 'every unmutated seed parses');
# and CoinDCX's are what they seem: candles, instruments, one bar a frame
is(sql(q{SELECT string_agg(c.id || ' ' || c.exchange || ' ' || c.what || ': ' || r.n, '; ')
	FROM fuzz_case c JOIN fuzz_result r USING (id)
	WHERE c.kind = 'seed' AND c.exchange LIKE 'coindcx%' AND NOT CASE
		WHEN c.what IN ('klines', 'exchange_info') THEN r.n > 0
		WHEN c.what = 'stream' AND position('\x34325b2263616e646c65737469636b22'::bytea IN c.body) = 1 THEN r.n >= 1
		ELSE r.n IS NOT NULL END;}), '',
	'every CoinDCX klines and instruments seed has rows, every candlestick frame a bar');

my $slow = sql(q{SELECT coalesce(max(ms), 0)::int FROM fuzz_result;});
ok($slow < 2000, "no case takes 2 s or more (slowest $slow ms)");
my $slowest = sql(q{SELECT c.exchange || ' ' || c.what || ' ' || c.kind || ' ' || length(c.body) FROM fuzz_result r
	JOIN fuzz_case c USING (id) ORDER BY r.ms DESC LIMIT 1;});
note "slowest case: $slowest ($slow ms)";

SKIP:
{
	skip 'no /proc/<pid>/status RssAnon', 1 unless defined $rss[0] && defined $rss[-1];
	# passes 1 and 2 warm up (malloc arenas, caches); a leak of even 64
	# bytes a case would show as 2 * 64 * $ncases bytes over passes 3 and 4
	my $grow = $rss[-1] - $rss[1];
	ok($grow < 1024, "backend memory flat: RssAnon grew $grow kB over "
		  . ($passes - 2) * $ncases . ' cases after the warm-up');
}
ok($ctx[-1] - $ctx[1] < 262_144,
	'memory contexts flat: ' . ($ctx[-1] - $ctx[1]) . ' bytes more after the warm-up');

$in .= "\\q\n";
$psql->finish;
unlink $file;

#--------------------------------------------------------------------------
# B. the workers against the fake's garbage, truncation and mutations
#--------------------------------------------------------------------------
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'mdfeed launcher'");
my $pm_pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
set_faults($fake, { garbage => 0.1, truncate_json => 0.1, mutate => 0.35, seed => 11 });
reset_fake($fake);
my @jobs = (
	[ 'BTCUSDT', '1m', ts_ms('2024-01-01'), ts_ms('2024-01-06') ],
	[ 'ETHUSDT', '15m', ts_ms('2024-02-01'), ts_ms('2024-05-01') ],
);
my @ids = map { backfill($node, @$_) } @jobs;
my $funding = track_job($node, $node->safe_psql('postgres',
	"SELECT mdfeed_backfill_funding('ETHUSDT', " . ms_sql(ts_ms('2023-01-01')) . ', '
	  . ms_sql(ts_ms('2025-06-01')) . ')'));
# faults on until the fake has mutated a dozen answers (or 15 s have passed)
my $deadline = time() + 15;
my $st;
while (time() < $deadline)
{
	$st = fake_stats($fake);
	my $m = 0;
	$m += $_ for values %{ $st->{mutations} // {} };
	last if $m >= 12;
	usleep(200_000);
}
my $mutated = 0;
$mutated += $_ for values %{ $st->{mutations} // {} };
ok($mutated >= 6, "the fake mutated $mutated answers while the workers fetched ("
	  . JSON::PP->new->canonical->encode($st->{mutations} // {}) . ')');
ok(($st->{faults}{garbage} // 0) > 0 && ($st->{faults}{truncate_json} // 0) > 0,
	"garbage ($st->{faults}{garbage}) and truncated JSON ($st->{faults}{truncate_json}) served");
clear_faults($fake);
for my $i (0 .. $#jobs)
{
	my ($sym, $iv) = @{ $jobs[$i] };
	job_is($node, $ids[$i], 'succeeded', "garbage: $sym $iv backfill succeeded", 40);
}
job_is($node, $funding, 'succeeded', 'garbage: ETHUSDT funding backfill succeeded', 40);
for my $i (0 .. $#jobs)
{
	my ($sym, $iv, $from, $to) = @{ $jobs[$i] };
	compare_with_truth($node, $fake, $sym, $iv, $from, $to, "garbage: $sym $iv");
}
is($node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'mdfeed launcher'"), $launcher,
	"the launcher ($launcher) is the same process: no cluster restart");
is($node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"),
	$pm_pid, 'the checkpointer is the same process: shared memory was never reset');
my $log = log_contents($node);
unlike($log, qr/terminated by signal|was terminated|PANIC|server process .* exited with exit code [^0]/,
	'no crashed backend or worker in the server log');
unlike($log, qr/invalid byte sequence|invalid input syntax for type numeric/,
	'no worker stored something PostgreSQL rejects');

note sprintf('010_fuzz: %d parser cases run; the whole test took %.1f s', $ran, time() - $t_start);
finish();
