# Copyright (c) mdfeed authors
#
# The CoinDCX parsers on what CoinDCX really sends
# (shared/exchange-data/coindcx, see its README.md), through SQL:
#  1. REST futures candlesticks (the Tradex fixture, 24 bars) through
#     mdfeed.parse_klines('coindcx', body, '5m'): every row, every value
#     equal to the JSON number's own text, close = open + 5m - 1 ms,
#     ascending; the documentation's example likewise;
#  2. REST spot candles through mdfeed.parse_klines('coindcx_spot', ...):
#     the ccxt row, the documentation's example (not JSON as printed: a clean
#     ERROR; with its comments removed: its row), newest-first input out
#     ascending;
#  3. the socket captures in the wire envelope
#     42["candlestick",{"event":"candlestick","data":"<JSON text>"}] through
#     mdfeed.parse_stream, field by field (futures open_time in seconds,
#     decimals with their scale, the spot pair from the channel name);
#  4. the handshake, client joins and other events: no row, no error;
#  5. the error bodies through mdfeed.parse_answer(.., 'error', ..);
#  6. instruments: the markets_details excerpt and the documentation's
#     active_instruments through parse_answer(.., 'exchange_info', ..), and
#     through mdfeed.refresh_instruments from a one-file HTTP server (the
#     stored rows, field by field; whitelisting a pair CoinDCX does not list);
#  7. malformed variants: truncations, NUL bytes, invalid UTF-8, data that is
#     no string or no JSON, 1e400 in string fields, exponents in REST
#     numbers (3.1e-7 is exactly 0.00000031): each a clean ERROR or the
#     exact value, and the server stays up.
# Some checks were adapter bugs when they were written (trades 0 instead of
# NULL, json-c's lenient syntax, clamped integers, close times past the
# limit, the hint's setting): fixed since, they guard against their return.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time);

use MdfeedTest;

my $t_start = time();
my $data = shared_dir() . '/exchange-data/coindcx';
my $fixture_file = "$data/rest-futures-candlesticks.tradex-fixture.json";
unless (-f $fixture_file)
{
	if ($ENV{CI})
	{
		fail("$fixture_file missing (shared/ must sit beside the repository in CI)");
		done_testing();
		exit 1;
	}
	plan skip_all => "$fixture_file not found (set MDFEED_SHARED or put shared/ beside the repository)";
}

sub capture
{
	my ($name) = @_;
	my $s = slurp_file("$data/$name");
	$s =~ s/\s+\z//;
	return $s;
}

sub lines_of { return grep { /\S/ } split /\r?\n/, capture($_[0]); }

#--------------------------------------------------------------------------
# A one-file HTTP server standing in for api.coindcx.com: it answers GET
# <path> with the file $srv_dir/<last part of the path> (404 if absent), so
# that mdfeed.refresh_instruments reads the captures as a worker would.
#--------------------------------------------------------------------------
my $srv_dir = "$PostgreSQL::Test::Utils::tmp_check/cdx_api_$$";
mkdir $srv_dir or die "$srv_dir: $!";
my $listen = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0,
	Proto => 'tcp', ReuseAddr => 1) or die "listen: $!";
my $srv_port = $listen->sockport;
my $srv_pid = fork();
die "fork: $!" unless defined $srv_pid;
if ($srv_pid == 0)
{
	while (my $c = $listen->accept)
	{
		my $req = '';
		while ($req !~ /\r?\n\r?\n/)
		{
			my $n = sysread($c, my $buf, 4096);
			last unless $n;
			$req .= $buf;
		}
		my ($path) = $req =~ m{^GET (\S+)};
		$path //= '';
		$path =~ s/\?.*//;
		(my $name = $path) =~ s{.*/}{};
		my $f = "$srv_dir/$name";
		my ($status, $body) = (404, '{"status":"error","message":"not_found","code":404}');
		if ($name ne '' && -f $f)
		{
			open my $fh, '<:raw', $f or die;
			local $/;
			$body = <$fh>;
			close $fh;
			$status = 200;
		}
		print $c "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n"
		  . 'Content-Length: ' . length($body) . "\r\nConnection: close\r\n\r\n$body";
		close $c;
	}
	POSIX::_exit(0);
}
close $listen;
END
{
	local $?;
	if ($srv_pid)
	{
		kill 'TERM', $srv_pid;
		waitpid($srv_pid, 0);
	}
}

sub serve
{
	my ($name, $body) = @_;
	my $f = "$srv_dir/$name";
	if (defined $body)
	{
		open my $fh, '>:raw', "$f.tmp" or die "$f: $!";
		print $fh $body;
		close $fh;
		rename "$f.tmp", $f or die;
	}
	else { unlink $f; }
}

my $node = new_node('cdxparse', undef, cdx_settings(undef),
	'mdfeed.coindcx_api_url' => "'http://127.0.0.1:$srv_port'");

# dollar quoting that cannot clash with the text
sub dq
{
	my ($s) = @_;
	my $tag = 'f';
	$tag .= 'x' while index($s, "\$$tag\$") >= 0;
	return "\$$tag\$$s\$$tag\$";
}

# bytea literal of raw bytes
sub bx { return "'\\x" . unpack('H*', $_[0]) . "'::bytea"; }

# psql returning (ret, out, err)
sub q3
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return ($ret, $out // '', $err // '');
}

sub no_crash
{
	my ($err, $what) = @_;
	return unlike($err, qr/server closed the connection|terminated abnormally|PANIC/,
		"$what: the backend did not crash");
}

# clean_error($sql, $what, $like, $state, $one): the statement fails with a
# clean ERROR matching $like (of SQLSTATE $state if given), and the backend
# lives (with $one, all of it as a single check)
sub clean_error
{
	my ($sql, $what, $like, $state, $one) = @_;
	my ($ret, $out, $err) = q3("\\set VERBOSITY verbose\n$sql");
	my $ok = ok($ret == 3 && $err =~ /ERROR:\s+(\w{5}):/ && (!$state || $1 eq $state)
		  && (!$like || $err =~ $like), "$what: clean ERROR" . ($state ? " ($state)" : ''));
	diag("ret $ret, out: $out, err: $err") unless $ok;
	no_crash($err, $what) unless $one;
	return $ok;
}

my $P = JSON::PP->new->canonical;
my $ENV_HEAD = '42["candlestick",{"event":"candlestick","data":';

# the wire envelope of a candlestick event: data is the JSON text, as a string
sub envelope
{
	my ($text, $event) = @_;
	$event //= 'candlestick';
	return "42[\"$event\",{\"event\":\"$event\",\"data\":" . JSON::PP->new->allow_nonref->encode($text) . '}]';
}

# the columns of parse_stream as JSON, ms times, decimals as text
my $STREAM_COLS = q{json_build_object('stream', p.stream,
  'event_ms', (extract(epoch FROM p.event_time) * 1000)::bigint,
  'symbol', p.symbol, 'interval', p."interval",
  'open_ms', (extract(epoch FROM p.open_time) * 1000)::bigint,
  'close_ms', (extract(epoch FROM p.close_time) * 1000)::bigint,
  'open', p.open::text, 'high', p.high::text, 'low', p.low::text, 'close', p.close::text,
  'volume', p.volume::text, 'quote_volume', p.quote_volume::text,
  'tbb', p.taker_buy_base_volume::text, 'tbq', p.taker_buy_quote_volume::text,
  'trades', p.trades, 'closed', p.closed)::text};

sub stream_rows
{
	my ($ex, $frame) = @_;
	my ($ret, $out, $err) = q3("SELECT $STREAM_COLS FROM mdfeed.parse_stream('$ex', " . dq($frame) . ') p');
	return undef if $ret != 0;
	return [ map { decode_json($_) } grep { length } split /\n/, $out ];
}

# compare a parsed row with what it must be; returns the differences
sub row_diff
{
	my ($got, $want) = @_;
	my @d;
	for my $k (sort keys %$want)
	{
		my $g = $got->{$k};
		$g = ($g ? 'true' : 'false') if $k eq 'closed' && defined $g;
		my $w = $want->{$k};
		push @d, "$k: got " . ($g // 'NULL') . ', want ' . ($w // 'NULL')
		  unless (!defined $g && !defined $w) || (defined $g && defined $w && "$g" eq "$w");
	}
	return @d;
}

# the numbers of a compact JSON array of flat objects, as written: a list
# of hashes key => text
sub raw_rows
{
	my ($text) = @_;
	my @rows;
	while ($text =~ /\{([^{}]*)\}/g)
	{
		my %r;
		my $in = $1;
		$r{$1} = $2 while $in =~ /"(\w+)"\s*:\s*(-?[0-9][0-9.eE+-]*)/g;
		push @rows, \%r;
	}
	return @rows;
}

#--------------------------------------------------------------------------
# 1. REST futures candlesticks: the Tradex fixture
#--------------------------------------------------------------------------
my $fixture = capture('rest-futures-candlesticks.tradex-fixture.json');
my @fx = raw_rows($fixture);
is(scalar(@fx), 24, 'fixture: 24 bars');
is(scalar(@{ decode_json($fixture)->{data} }), 24, 'fixture: 24 bars by a JSON parser too');

# klines_check($ex, $body, $iv, $iv_ms, \@want_rows, $name): every row, in
# order, equal to the text of the numbers it came from
sub klines_check
{
	my ($ex, $body, $iv, $ivms, $want, $name) = @_;
	my $values = join(",\n", map {
			my $r = $want->[$_];
			sprintf("(%d, %s, '%s', '%s', '%s', '%s', '%s')", $_ + 1, $r->{time},
				@$r{qw(open high low close volume)})
		} 0 .. $#$want);
	my ($ret, $out, $err) = q3(<<"EOS");
SELECT json_build_object('n', p.ordinality,
  'open_ms', (extract(epoch FROM p.open_time) * 1000)::bigint,
  'close_ms', (extract(epoch FROM p.close_time) * 1000)::bigint,
  'open', p.open::text, 'high', p.high::text, 'low', p.low::text, 'close', p.close::text,
  'volume', p.volume::text, 'quote_volume', p.quote_volume::text,
  'tbb', p.taker_buy_base_volume::text, 'tbq', p.taker_buy_quote_volume::text,
  'trades', p.trades,
  'num_equal', (p.open, p.high, p.low, p.close, p.volume) =
    (w.open::numeric, w.high::numeric, w.low::numeric, w.close::numeric, w.volume::numeric))::text
FROM mdfeed.parse_klines('$ex', @{[dq($body)]}, '$iv') WITH ORDINALITY p
LEFT JOIN (VALUES $values) w(n, t, open, high, low, close, volume) ON w.n = p.ordinality
ORDER BY p.ordinality
EOS
	unless (is($ret, 0, "$name: parses"))
	{
		diag($err);
		return;
	}
	my @got = map { decode_json($_) } grep { length } split /\n/, $out;
	is(scalar(@got), scalar(@$want), "$name: " . scalar(@$want) . ' rows');
	my (@bad, $n_num, $n_text, $n_time, $n_null);
	($n_num, $n_text, $n_time, $n_null) = (0, 0, 0, 0);
	my $asc = 1;
	for my $i (0 .. $#got)
	{
		my ($g, $w) = ($got[$i], $want->[$i]);
		next unless $w;
		$n_num++ if $g->{num_equal};
		my @d = row_diff($g, { map { $_ => $w->{$_} } qw(open high low close volume) });
		push @bad, "row $i: " . join('; ', @d) if @d;
		$n_text++ unless @d;
		$n_time++ if $g->{open_ms} == $w->{time} && $g->{close_ms} == $w->{time} + $ivms - 1;
		$n_null++ unless defined $g->{quote_volume} || defined $g->{tbb} || defined $g->{tbq};
		$asc = 0 if $i > 0 && $g->{open_ms} <= $got[ $i - 1 ]{open_ms};
	}
	my $n = scalar(@$want);
	is($n_num, $n, "$name: every value equals its JSON number as numeric");
	is($n_text, $n, "$name: every value keeps the JSON number's own text (scale included)")
	  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
	is($n_time, $n, "$name: open_time is time, close_time is open + $iv - 1 ms");
	ok($asc, "$name: ascending by open time");
	is($n_null, $n, "$name: quote volume and taker volumes NULL (CoinDCX sends none)");
	{
		is(scalar(grep { defined $_->{trades} } @got), 0, "$name: trades NULL (CoinDCX sends none)");
	}
	return \@got;
}

klines_check('coindcx', $fixture, '5m', 300_000, \@fx, 'futures fixture');
# the fixture's bars are 5 minutes apart
is(scalar(grep { $fx[$_]{time} - $fx[ $_ - 1 ]{time} != 300_000 } 1 .. $#fx), 0,
	'fixture: bars 5 minutes apart');

# the documentation's futures example: valid JSON, daily bars, integers among the prices
{
	my $doc = capture('DOC-EXAMPLE.rest-futures-candlesticks.json');
	my @d = raw_rows($doc);
	is(scalar(@d), 2, 'futures doc example: 2 bars');
	klines_check('coindcx', $doc, '1d', 86_400_000, \@d, 'futures doc example');
}
# the futures answer read as spot (a bare array expected) is refused
clean_error("SELECT * FROM mdfeed.parse_klines('coindcx_spot', " . dq($fixture) . ", '1m')",
	'futures answer given to the spot parser', qr/not an array/, '22P02');

#--------------------------------------------------------------------------
# 2. REST spot candles
#--------------------------------------------------------------------------
{
	my $ccxt = capture('rest-spot-candles.ccxt-comment.json');
	klines_check('coindcx_spot', $ccxt, '1m', 60_000, [ raw_rows($ccxt) ], 'spot ccxt row');

	my $doc = capture('DOC-EXAMPLE.rest-spot-candles.txt');
	clean_error("SELECT * FROM mdfeed.parse_klines('coindcx_spot', " . dq($doc) . ", '1m')",
		'spot doc example as printed (comments, dots: not JSON)', qr/malformed CoinDCX spot klines answer/,
		'22P02');
	# the dots of "more rows" and the comma after the array go; then the comments
	(my $no_dots = $doc) =~ s/^[ \t]*\.[ \t]*\n//mg;
	$no_dots =~ s/^[ \t]*\.(?=\])//mg;
	$no_dots =~ s/\],\s*\z/]/;
	(my $fixed = $no_dots) =~ s{//[^\n]*}{}g;
	{
		clean_error("SELECT * FROM mdfeed.parse_klines('coindcx_spot', " . dq($no_dots) . ", '1m')",
			'spot doc example with its // comments (not JSON)', qr/malformed/, '22P02', 1);
	}
	ok(eval { decode_json($fixed); 1 }, 'spot doc example without its comments is JSON');
	klines_check('coindcx_spot', $fixed, '1m', 60_000, [ raw_rows($fixed) ], 'spot doc example, comments removed');

	# newest first, as the spot endpoint answers: out ascending, same rows
	my @rev = reverse @fx;
	my $newest_first = '[' . join(',', map {
			my $r = $_;
			'{' . join(',', map { "\"$_\":$r->{$_}" } qw(open high low volume close time)) . '}'
		} @rev) . ']';
	klines_check('coindcx_spot', $newest_first, '1m', 60_000, \@fx, 'spot, newest first');
	# one row, and none
	my ($ret, $out) = q3("SELECT count(*) FROM mdfeed.parse_klines('coindcx_spot', '[]', '1h')");
	is("$ret|$out", '0|0', "spot '[]': no row, no error");
	($ret, $out) = q3(q{SELECT count(*) FROM mdfeed.parse_klines('coindcx', '{"s":"ok","data":[]}', '1h')});
	is("$ret|$out", '0|0', 'futures {"s":"ok","data":[]}: no row, no error');
}

#--------------------------------------------------------------------------
# 3. socket candlestick events in the wire envelope
#--------------------------------------------------------------------------
my %frames;    # name => [exchange, frame]
{
	my %iv_ms = ('1m' => 60_000, '1h' => 3_600_000);

	# futures: data is an array of bars, times in seconds, no close flag
	for my $f ([ 'futures capture', 'ws-futures-candlestick-data.tradex.as-published.json' ],
		[ 'futures doc example', 'DOC-EXAMPLE.ws-futures-candlestick-data.json' ])
	{
		my ($name, $file) = @$f;
		my $text = capture($file);
		my $ev = decode_json($text);
		my $bar = $ev->{data}[0];
		my $frame = envelope($text);
		$frames{$name} = [ 'coindcx', $frame ];
		my $open_ms = $bar->{open_time} * 1000;
		my %want = (
			stream => $ev->{channel}, event_ms => $ev->{Ets}, symbol => $bar->{pair},
			interval => $bar->{duration}, open_ms => $open_ms,
			close_ms => $open_ms + $iv_ms{ $bar->{duration} } - 1,
			(map { $_ => $bar->{$_} } qw(open high low close volume quote_volume)),
			tbb => undef, tbq => undef, trades => undef, closed => 'false');
		my $rows = stream_rows('coindcx', $frame);
		ok($rows && @$rows == 1, "$name: one row") or next;
		my @d = row_diff($rows->[0], \%want);
		is(join('; ', @d), '', "$name: every field as sent (open_time seconds, decimals with their scale)");
		is($want{close_ms}, sprintf('%.0f', $bar->{close_time} * 1000),
			"$name: close_time is the bar's close_time ($bar->{close_time} s)");
		# the documentation shows data as an object: that parses the same
		my $obj = stream_rows('coindcx', $ENV_HEAD . $text . '}]');
		is_deeply($obj, $rows, "$name: data as an object (the documentation's form) gives the same row");
		# and the futures frame is no spot frame
		clean_error("SELECT * FROM mdfeed.parse_stream('coindcx_spot', " . dq($frame) . ')',
			"$name given to the spot parser", qr/spot candlestick event/, '22P02');
	}
	my $fut = decode_json(capture('ws-futures-candlestick-data.tradex.as-published.json'))->{data}[0];
	is($fut->{open}, '81006.80', 'the futures capture sends 81006.80');
	my $r = stream_rows('coindcx', $frames{'futures capture'}[1]);
	is($r->[0]{open}, '81006.80', 'and 81006.80 is what parse_stream gives (scale kept)');
	is($r->[0]{open_ms}, 1788458400000, 'open_time 1788458400 s is 2026-09-03 18:00:00 UTC');

	# spot: one flat object, times in ms, the pair only in the channel name
	for my $f ([ 'spot capture', 'ws-spot-candlestick-data.tradex.as-published.json' ],
		[ 'spot doc example', 'DOC-EXAMPLE.ws-spot-candlestick-data.json' ])
	{
		my ($name, $file) = @$f;
		my $text = capture($file);
		my $ev = decode_json($text);
		my $frame = envelope($text);
		$frames{$name} = [ 'coindcx_spot', $frame ];
		(my $pair = $ev->{channel}) =~ s/_\Q$ev->{i}\E$//;
		my %want = (
			stream => $ev->{channel}, symbol => $pair, interval => $ev->{i},
			open_ms => $ev->{t}, close_ms => $ev->{T},
			open => $ev->{o}, high => $ev->{h}, low => $ev->{l}, close => $ev->{c},
			volume => $ev->{v}, quote_volume => $ev->{q},
			tbb => undef, tbq => undef, trades => undef, closed => 'false');
		$want{event_ms} = $ev->{eT} if defined $ev->{eT};
		my $rows = stream_rows('coindcx_spot', $frame);
		ok($rows && @$rows == 1, "$name: one row") or next;
		my @d = row_diff($rows->[0], \%want);
		is(join('; ', @d), '', "$name: every field as sent (pair $pair from channel $ev->{channel})");
		is($ev->{T}, $ev->{t} + $iv_ms{ $ev->{i} } - 1, "$name: T is t + $ev->{i} - 1 ms in the capture");
		unless (defined $ev->{eT})
		{
			# no event time in the event: the time it was read
			my ($ret, $out) = q3("SELECT event_time BETWEEN now() - interval '1 minute' AND clock_timestamp() "
				  . "FROM mdfeed.parse_stream('coindcx_spot', " . dq($frame) . ')');
			is($out, 't', "$name: without eT, event_time is when it was read");
		}
		clean_error("SELECT * FROM mdfeed.parse_stream('coindcx', " . dq($frame) . ')',
			"$name given to the futures parser", qr/futures candlestick event/, '22P02');
	}
	my $spot = stream_rows('coindcx_spot', $frames{'spot capture'}[1]);
	is($spot->[0]{symbol}, 'B-BTC_USDT', 'spot symbol B-BTC_USDT comes from channel B-BTC_USDT_1m');

	# a spot bar the exchange marks closed is still a forming bar to mdfeed:
	# the socket's last snapshot is not the final bar (closes_final = false),
	# every closed bar is made exact over REST
	my $closed = capture('ws-spot-candlestick-data.tradex.as-published.json') =~ s/"x":false/"x":true/r;
	my $rows = stream_rows('coindcx_spot', envelope($closed));
	is($rows && $rows->[0]{closed} ? 'true' : 'false', 'false',
		'spot bar with x = true: closed false (bars are made final over REST)');

	# parse_answer counts the same rows from the bytes
	for my $name (sort keys %frames)
	{
		my ($ex, $frame) = @{ $frames{$name} };
		my ($ret, $out, $err) = q3("SELECT mdfeed.parse_answer('$ex', 'stream', " . bx($frame) . ')');
		is("$ret|$out", '0|1', "parse_answer('$ex', 'stream'): $name is one kline") or diag($err);
	}
}

#--------------------------------------------------------------------------
# 4. the handshake, joins and other events: no row, no error
#--------------------------------------------------------------------------
{
	my @other;
	push @other, [ "handshake $_", $_ ] for lines_of('socketio-handshake.futures-host.nemanull.txt');
	push @other, [ "client join frame $_", $_ ] for lines_of('ws-client-join-frames.txt');
	my %event_of = ('depth-snapshot' => 'depth-snapshot', 'depth-update' => 'depth-update');
	my @strings = lines_of('ws-futures-data-strings.nemanull.jsonl');
	for my $i (0 .. $#strings)
	{
		my $d = decode_json($strings[$i]);
		my $ev = $d->{type} ? $event_of{ $d->{type} } : $d->{prices} ? 'currentPrices@futures#update' : 'new-trade';
		push @other, [ "futures data string $i as a $ev event", envelope($strings[$i], $ev) ];
	}
	my $trade = capture('ws-spot-new-trade-envelope.tradex.json');
	push @other, [ 'spot new-trade envelope', qq{42["new-trade",$trade]} ];
	push @other, [ 'engine.io ping', '2' ], [ 'engine.io pong', '3' ], [ 'engine.io probe ping', '2probe' ],
	  [ 'engine.io noop', '6' ], [ 'socket.io connect without sid', '40' ],
	  [ 'event on another namespace', '42/admin,["candlestick",{"event":"candlestick","data":"x"}]' ],
	  [ 'ack', '43["candlestick",{}]' ];
	for my $ex ('coindcx', 'coindcx_spot')
	{
		for my $o (@other)
		{
			my ($what, $frame) = @$o;
			my ($ret, $out, $err) = q3("SELECT count(*) FROM mdfeed.parse_stream('$ex', " . dq($frame) . ')');
			is("$ret|$out", '0|0', "$ex: $what: no row, no error") or diag($err);
			($ret, $out, $err) = q3("SELECT mdfeed.parse_answer('$ex', 'stream', " . bx($frame) . ')');
			is("$ret|$out", '0|0', "$ex: parse_answer on $what: 0 rows") or diag($err);
		}
	}
	# the futures data strings as candlestick events are malformed candlesticks
	my ($l) = lines_of('ws-futures-data-strings.nemanull.jsonl');
	clean_error("SELECT * FROM mdfeed.parse_stream('coindcx', " . dq(envelope($l)) . ')',
		'a depth snapshot sent as a candlestick event', qr/without its bars/, '22P02');
}

#--------------------------------------------------------------------------
# 5. error bodies
#--------------------------------------------------------------------------
{
	my @bodies = lines_of('rest-error-bodies.jsonl');
	is(scalar(@bodies), 6, '6 error bodies');
	# {"ts":0,"vs":0,"asks":{},"bids":{}} is an empty book answered with 200:
	# no error answer; the others are
	my @want = (1, 1, 1, 1, 0, 1);
	for my $ex ('coindcx', 'coindcx_spot')
	{
		for my $i (0 .. $#bodies)
		{
			my ($ret, $out, $err) = q3("SELECT mdfeed.parse_answer('$ex', 'error', " . bx($bodies[$i]) . ')');
			is("$ret|$out", "0|$want[$i]", "$ex error body $i: " . ($want[$i] ? 'an error answer' : 'no error answer')
				  . " ($bodies[$i])") or diag($err);
			# and none of them is candles
			clean_error("SELECT mdfeed.parse_answer('$ex', 'klines', " . bx($bodies[$i]) . ')',
				"$ex error body $i as klines", undef, '22P02');
		}
	}
	clean_error("SELECT * FROM mdfeed.parse_klines('coindcx_spot', " . dq($bodies[0]) . ", '1m')",
		'spot 422 body through parse_klines', qr/not an array/);
	clean_error("SELECT * FROM mdfeed.parse_klines('coindcx', " . dq($bodies[2]) . ", '1m')",
		'futures 400 body through parse_klines', qr/not \{"s":"ok"/);
	# error answers that are not quite: code a string, message missing
	for my $b ('{"code":"422","message":"x"}', '{"code":422}', '{"message":"x"}', '[]', 'null')
	{
		my ($ret, $out, $err) = q3("SELECT mdfeed.parse_answer('coindcx', 'error', " . bx($b) . ')');
		is("$ret|$out", '0|0', "not an error answer: $b") or diag($err);
	}
	# a classifier: a body it cannot read is no error answer (or a clean ERROR)
	my ($ret, $out, $err) = q3(q{SELECT mdfeed.parse_answer('coindcx', 'error', '\x7b22636f6465223a3432322c226d657373616765223a22ff227d'::bytea)});
	ok(($ret == 0 && $out eq '0') || ($ret == 3 && $err =~ /ERROR/),
		'error body with invalid UTF-8: not an error answer or a clean ERROR') or diag("$ret $out $err");
}

#--------------------------------------------------------------------------
# 6. instruments
#--------------------------------------------------------------------------
my $md = capture('rest-markets-details.EXCERPT.tradex-verify.json');
my $ai = capture('DOC-EXAMPLE.active-instruments.txt');
(my $ai_fixed = $ai) =~ s/,\s*\]/\n]/;
{
	my ($ret, $out, $err) = q3("SELECT mdfeed.parse_answer('coindcx_spot', 'exchange_info', " . bx($md) . ')');
	is("$ret|$out", '0|4', 'markets_details excerpt: 4 markets') or diag($err);
	ok(!eval { decode_json($ai); 1 }, 'the documentation\'s active_instruments is not JSON as printed (trailing comma)');
	{
		clean_error("SELECT mdfeed.parse_answer('coindcx', 'exchange_info', " . bx($ai) . ')',
			'active_instruments as printed', qr/invalid JSON/, '22P02', 1);
	}
	ok(eval { decode_json($ai_fixed); 1 }, 'without its trailing comma it is');
	($ret, $out, $err) = q3("SELECT mdfeed.parse_answer('coindcx', 'exchange_info', " . bx($ai_fixed) . ')');
	is("$ret|$out", '0|12', 'active_instruments without the trailing comma: 12 pairs') or diag($err);

	# through refresh_instruments, as a worker reads them
	serve('markets_details', $md);
	serve('active_instruments', $ai_fixed);
	($ret, $out, $err) = q3("SELECT mdfeed.refresh_instruments('coindcx_spot')");
	is("$ret|$out", '0|4', 'refresh_instruments(coindcx_spot) from the excerpt: 4') or diag($err);
	is($node->safe_psql('postgres', q{
		SELECT string_agg(concat_ws(' ', symbol, status, tradable, contract_type, base_asset, quote_asset,
			tick_size, step_size), E'\n' ORDER BY symbol)
		FROM mdfeed.instruments WHERE exchange = 'coindcx_spot'}),
		join("\n",
			'B-XTZ_BTC active t spot XTZ BTC 0.00000001 0.1',
			'G-MLK_USDT active t spot MLK USDT 0.00001 0.01',
			'I-DOT_INR active t spot DOT INR 0.001 0.0001',
			'KC-LYX_USDT active t spot LYX USDT 0.0001 0.0001'),
		'markets_details stored: pair, status, target/base currency as base/quote asset, '
		  . 'tick 10^-base_currency_precision, step as sent');
	($ret, $out, $err) = q3("SELECT mdfeed.refresh_instruments('coindcx')");
	is("$ret|$out", '0|12', 'refresh_instruments(coindcx) from the documentation\'s list: 12') or diag($err);
	my @pairs = @{ decode_json($ai_fixed) };
	is($node->safe_psql('postgres', q{
		SELECT string_agg(concat_ws(' ', symbol, status, tradable, contract_type, base_asset, quote_asset),
			E'\n' ORDER BY symbol)
		FROM mdfeed.instruments WHERE exchange = 'coindcx'}),
		join("\n", map { my ($b, $q) = /^B-(\w+)_(\w+)$/; "$_ active t perpetual $b $q" } sort @pairs),
		'active_instruments stored: every pair, active, perpetual, assets from the name');

	# whitelisting a pair CoinDCX does not list names it
	($ret, $out, $err) = q3("SELECT mdfeed_whitelist(ARRAY['B-BTCDOM_USDT', 'B-NOPE_USDT'], 'coindcx')");
	ok($ret == 3 && $err =~ /ERROR:  coindcx does not list B-NOPE_USDT\n/,
		'whitelisting B-NOPE_USDT for coindcx: "coindcx does not list B-NOPE_USDT"') or diag($err);
	like($err, qr/HINT:  .*exchange = 'coindcx'/, 'the hint shows where coindcx\'s list is');
	($ret, $out, $err) = q3("SELECT mdfeed_whitelist(ARRAY['B-NOPE_USDT'], 'coindcx_spot')");
	ok($ret == 3 && $err =~ /ERROR:  coindcx_spot does not list B-NOPE_USDT\n/,
		'and for coindcx_spot: "coindcx_spot does not list B-NOPE_USDT"') or diag($err);
	is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.symbol_lists WHERE exchange LIKE 'coindcx%'"),
		'0', 'nothing whitelisted');

	# the documentation's list as printed: a clean refusal, nothing changed
	serve('active_instruments', $ai);
	($ret, $out, $err) = q3("SELECT mdfeed.refresh_instruments('coindcx')");
	{
		ok($ret == 3 && $err =~ /ERROR:  malformed exchange info from coindcx: invalid JSON/,
			'refresh_instruments on the list as printed: "malformed exchange info from coindcx: invalid JSON"')
		  or diag("ret $ret, out $out, err $err");
	}
	is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.instruments WHERE exchange = 'coindcx' AND tradable"),
		'12', 'the stored list is unchanged');

	# an API host that does not answer: the hint must name the setting that
	# was used
	serve('active_instruments', undef);
	($ret, $out, $err) = q3("SELECT mdfeed.refresh_instruments('coindcx')");
	like($err, qr/ERROR:  could not fetch the instruments of coindcx/, 'API answering 404: could not fetch');
	{
		like($err, qr/HINT:  Check mdfeed\.coindcx_api_url/, 'the hint names mdfeed.coindcx_api_url');
	}
	$node->safe_psql('postgres', "DELETE FROM mdfeed.instruments WHERE exchange LIKE 'coindcx%'");
}

#--------------------------------------------------------------------------
# 7. malformed variants: a clean ERROR, or the exact value
#--------------------------------------------------------------------------
my $fcap = capture('ws-futures-candlestick-data.tradex.as-published.json');
my $scap = capture('ws-spot-candlestick-data.tradex.as-published.json');
my $ffr = envelope($fcap);
my $sfr = envelope($scap);
{
	# REST bodies: text through parse_klines, bytes through parse_answer
	my @rest = (
		[ 'coindcx', 'truncated in half', substr($fixture, 0, int(length($fixture) / 2)) ],
		[ 'coindcx', 'truncated by one byte', substr($fixture, 0, length($fixture) - 1) ],
		[ 'coindcx', 'trailing garbage', $fixture . ']' ],
		[ 'coindcx', 'empty', '' ],
		[ 'coindcx', 's not ok', $fixture =~ s/"s":"ok"/"s":"error"/r ],
		[ 'coindcx', 'data an object', '{"s":"ok","data":{}}' ],
		[ 'coindcx', 'a price as a word', $fixture =~ s/"open":79702.2/"open":"cheap"/r ],
		[ 'coindcx', 'a price NaN', $fixture =~ s/"open":79702.2/"open":"NaN"/r ],
		[ 'coindcx', 'a price null', $fixture =~ s/"open":79702.2/"open":null/r ],
		[ 'coindcx', 'a price missing', $fixture =~ s/"open":79702.2,//r ],
		[ 'coindcx', 'a price 1e400', $fixture =~ s/"open":79702.2/"open":1e400/r ],
		[ 'coindcx', 'a price "1e400"', $fixture =~ s/"open":79702.2/"open":"1e400"/r ],
		[ 'coindcx', 'time as a string', $fixture =~ s/"time":1788642000000/"time":"1788642000000"/r ],
		[ 'coindcx', 'time as a float', $fixture =~ s/"time":1788642000000/"time":1788642000000.0/r ],
		[ 'coindcx', 'time negative', $fixture =~ s/"time":1788642000000/"time":-1/r ],
		[ 'coindcx', 'time 1e30', $fixture =~ s/"time":1788642000000/"time":1000000000000000000000000000000/r ],
		[ 'coindcx', 'rows out of order', $fixture =~ s/"time":1788642300000/"time":1788648900000/r ],
		[ 'coindcx', 'two rows at one time', $fixture =~ s/"time":1788642300000/"time":1788642000000/r ],
		[ 'coindcx_spot', 'spot: row not an object', '[[1717692120000,"1","1","1","1","1"]]' ],
		[ 'coindcx_spot', 'spot: deep nesting', ('[' x 10_000) . (']' x 10_000) ],
	);
	for my $r (@rest)
	{
		my ($ex, $what, $body) = @$r;
		clean_error("SELECT * FROM mdfeed.parse_klines('$ex', " . dq($body) . ", '1m')",
			"REST $ex, $what (parse_klines)", undef, '22P02');
		clean_error("SELECT mdfeed.parse_answer('$ex', 'klines', " . bx($body) . ')',
			"REST $ex, $what (parse_answer)", undef, '22P02');
	}
	# bytes text cannot carry
	my $mid = index($fixture, '79702.2');
	for my $b ([ 'a NUL byte', "\0" ], [ 'invalid UTF-8 \xff', "\xff" ], [ 'a cut UTF-8 sequence', "\xc3" ],
		[ 'an overlong /', "\xc0\xaf" ], [ 'a UTF-16 surrogate', "\xed\xa0\x80" ])
	{
		my ($what, $bytes) = @$b;
		my $body = substr($fixture, 0, 5) . $bytes . substr($fixture, 5);
		clean_error("SELECT mdfeed.parse_answer('coindcx', 'klines', " . bx($body) . ')',
			"REST futures with $what", undef, '22P02');
		my $sbody = '[{"open":1,"high":1,"low":1,"volume":1,"close":1,"time":1717692120000,"x":"' . $bytes . '"}]';
		clean_error("SELECT mdfeed.parse_answer('coindcx_spot', 'klines', " . bx($sbody) . ')',
			"REST spot with $what in a string", undef, '22P02');
	}
	clean_error("SELECT * FROM mdfeed.parse_klines('coindcx_spot', '[]', '5m')",
		'spot 5m (not offered)', qr/coindcx_spot does not offer interval "5m"/);

	# a bar whose prices disagree (open above high) is no candle: refused
	clean_error("SELECT * FROM mdfeed.parse_klines('coindcx', "
		  . dq('{"s":"ok","data":[{"open":3.1e-7,"high":1,"low":1,"volume":1,"close":1,"time":1788642000000}]}')
		  . ", '5m')", 'REST bar with open below low', qr/prices or volumes disagree/, '22P02');
	clean_error("SELECT * FROM mdfeed.parse_klines('coindcx_spot', "
		  . dq('[{"open":1.84467440737096e+19,"high":2074.83,"low":2064.93,"volume":1,"close":2070,"time":1717692120000}]')
		  . ", '1m')", 'REST bar with open above high (a corrupted number)', qr/prices or volumes disagree/, '22P02');

	# exponents in REST numbers: exact, through numeric
	my $exp = '{"s":"ok","data":[{"open":3.1e-7,"high":7E2,"low":1e-8,"volume":2.5e+3,"close":3.1E-7,"time":1788642000000},'
	  . '{"open":0.00000031,"high":1e99,"low":-0.0,"volume":0,"close":79683,"time":1788642300000}]}';
	my ($ret, $out, $err) = q3("SELECT string_agg(concat_ws(' ', open, high, low, close, volume), ' | ' ORDER BY open_time) "
		  . "FROM mdfeed.parse_klines('coindcx', " . dq($exp) . ", '5m')");
	is($out, '0.00000031 700 0.00000001 0.00000031 2500 | 0.00000031 1' . ('0' x 99) . ' 0.0 79683 0',
		'REST exponent numbers exact: 3.1e-7 is 0.00000031, 1e-8 0.00000001, 2.5e+3 2500, 1e99 as many zeros')
	  or diag($err);
	($ret, $out, $err) = q3("SELECT open = 0.00000031 AND open::text = '0.00000031' FROM mdfeed.parse_klines('coindcx', "
		  . dq('{"s":"ok","data":[{"open":3.1e-7,"high":1,"low":1e-8,"volume":1,"close":1,"time":1788642000000}]}') . ", '5m')");
	is($out, 't', '3.1e-7 becomes exactly 0.00000031') or diag($err);
	($ret, $out, $err) = q3("SELECT open::text FROM mdfeed.parse_klines('coindcx_spot', "
		  . dq('[{"open":3.1e-7,"high":1,"low":1e-8,"volume":1,"close":1,"time":1717692120000}]') . ", '1m')");
	is($out, '0.00000031', 'spot: 3.1e-7 becomes exactly 0.00000031') or diag($err);

	# JSON integers past 64 bits must not become another number
	{
		for my $big ('99999999999999999999', '18446744073709551616', '-9223372036854775809', '9' x 400)
		{
			my $b = $fixture =~ s/"volume":120.269/"volume":$big/r;
			my ($r2, $o2, $e2) = q3("SELECT volume::text FROM mdfeed.parse_klines('coindcx', " . dq($b) . ", '5m') LIMIT 1");
			ok(($r2 == 0 && $o2 eq $big) || ($r2 == 3 && $e2 =~ /ERROR:  malformed/),
				'REST volume ' . (length($big) > 30 ? '9 x 400' : $big) . ': exact or refused (got '
				  . ($r2 == 0 ? $o2 : 'an error') . ')');
		}
	}

	# socket frames: text through parse_stream, bytes through parse_answer
	my $fmut = sub {
		my ($fn) = @_;
		my $ev = decode_json($fcap);
		$fn->($ev->{data}[0], $ev);
		return envelope($P->encode($ev));
	};
	my $smut = sub {
		my ($fn) = @_;
		my $ev = decode_json($scap);
		$fn->($ev);
		return envelope($P->encode($ev));
	};
	my $inner = sub { my ($fr, $text) = @_; return $ENV_HEAD . JSON::PP->new->allow_nonref->encode($text) . '}]'; };
	my @ws = (
		[ 'coindcx', 'empty frame', '' ],
		[ 'coindcx', 'frame truncated in half', substr($ffr, 0, int(length($ffr) / 2)) ],
		[ 'coindcx', 'frame truncated by one byte', substr($ffr, 0, length($ffr) - 1) ],
		[ 'coindcx', 'frame with trailing garbage', $ffr . ']' ],
		[ 'coindcx', 'no Engine.IO type', substr($ffr, 2) ],
		[ 'coindcx', 'Engine.IO message without a Socket.IO type', '4' ],
		[ 'coindcx', 'event without arguments', '42["candlestick"]' ],
		[ 'coindcx', 'event name not a string', '42[1,{}]' ],
		[ 'coindcx', 'data missing', '42["candlestick",{"event":"candlestick"}]' ],
		[ 'coindcx', 'argument not an object', '42["candlestick","x"]' ],
		[ 'coindcx', 'data a number', $ENV_HEAD . '5}]' ],
		[ 'coindcx', 'data an array', $ENV_HEAD . '[]}]' ],
		[ 'coindcx', 'data null', $ENV_HEAD . 'null}]' ],
		[ 'coindcx', 'data not JSON', $inner->(undef, 'hello') ],
		[ 'coindcx', 'data empty', $inner->(undef, '') ],
		[ 'coindcx', 'data truncated', $inner->(undef, substr($fcap, 0, int(length($fcap) / 2))) ],
		[ 'coindcx', 'data JSON text of a string', $inner->(undef, '"x"') ],
		[ 'coindcx', 'data with an escaped NUL', $inner->(undef, $fcap =~ s/81006.80/81006.80\\u0000/r) ],
		[ 'coindcx', 'data with a lone surrogate in the pair', $inner->(undef, $fcap =~ s/"pair":"B-BTC_USDT"/"pair":"B-BTC_USDT\\ud800"/r) ],
		[ 'coindcx', 'data text with a NUL', $ffr =~ s/81006.80/81006.80\\u0000/r ],
		[ 'coindcx', 'bars empty', $fmut->(sub { $_[1]{data} = [] }) ],
		[ 'coindcx', 'bars an object', $fmut->(sub { $_[1]{data} = { a => 1 } }) ],
		[ 'coindcx', 'open "1e400"', $fmut->(sub { $_[0]{open} = '1e400' }) ],
		[ 'coindcx', 'close "-1e999"', $fmut->(sub { $_[0]{close} = '-1e999' }) ],
		[ 'coindcx', 'volume "NaN"', $fmut->(sub { $_[0]{volume} = 'NaN' }) ],
		[ 'coindcx', 'high "Infinity"', $fmut->(sub { $_[0]{high} = 'Infinity' }) ],
		[ 'coindcx', 'low empty', $fmut->(sub { $_[0]{low} = '' }) ],
		[ 'coindcx', 'open a JSON number', $fmut->(sub { $_[0]{open} = 81006.8 }) ],
		[ 'coindcx', 'quote_volume "1e400"', $fmut->(sub { $_[0]{quote_volume} = '1e400' }) ],
		[ 'coindcx', 'open_time in ms', $fmut->(sub { $_[0]{open_time} = 1788458400000 }) ],
		[ 'coindcx', 'open_time a string', $fmut->(sub { $_[0]{open_time} = '1788458400' }) ],
		[ 'coindcx', 'open_time negative', $fmut->(sub { $_[0]{open_time} = -60 }) ],
		[ 'coindcx', 'open_time missing', $fmut->(sub { delete $_[0]{open_time} }) ],
		[ 'coindcx', 'pair missing', $fmut->(sub { delete $_[0]{pair} }) ],
		[ 'coindcx', 'pair lower case', $fmut->(sub { $_[0]{pair} = 'b-btc_usdt' }) ],
		[ 'coindcx', 'duration 3m (not offered)', $fmut->(sub { $_[0]{duration} = '3m' }) ],
		[ 'coindcx', 'duration a word', $fmut->(sub { $_[0]{duration} = 'soon' }) ],
		[ 'coindcx', 'Ets a string', $fmut->(sub { $_[1]{Ets} = '1788458460708' }) ],
		[ 'coindcx', 'Ets 1e400', do { my $t = $fcap =~ s/"Ets":1788458460708/"Ets":1e400/r; $inner->(undef, $t) } ],
		[ 'coindcx_spot', 'spot: o "1e400"', $smut->(sub { $_[0]{o} = '1e400' }) ],
		[ 'coindcx_spot', 'spot: v "9.9e999"', $smut->(sub { $_[0]{v} = '9.9e999' }) ],
		[ 'coindcx_spot', 'spot: c a JSON number', $smut->(sub { $_[0]{c} = 81053.41 }) ],
		[ 'coindcx_spot', 'spot: q "NaN"', $smut->(sub { $_[0]{q} = 'NaN' }) ],
		[ 'coindcx_spot', 'spot: t missing', $smut->(sub { delete $_[0]{t} }) ],
		[ 'coindcx_spot', 'spot: t in seconds as a float', $smut->(sub { $_[0]{t} = 1788457500.5 }) ],
		[ 'coindcx_spot', 'spot: i 5m (not offered)', $smut->(sub { $_[0]{i} = '5m'; $_[0]{channel} = 'B-BTC_USDT_5m' }) ],
		[ 'coindcx_spot', 'spot: channel of another interval', $smut->(sub { $_[0]{channel} = 'B-BTC_USDT_1h' }) ],
		[ 'coindcx_spot', 'spot: channel only the interval', $smut->(sub { $_[0]{channel} = '_1m' }) ],
		[ 'coindcx_spot', 'spot: channel lower case', $smut->(sub { $_[0]{channel} = 'b-btc_usdt_1m' }) ],
		[ 'coindcx_spot', 'spot: channel missing', $smut->(sub { delete $_[0]{channel} }) ],
		[ 'coindcx_spot', 'spot: channel a number', $smut->(sub { $_[0]{channel} = 1 }) ],
	);
	for my $w (@ws)
	{
		my ($ex, $what, $frame) = @$w;
		clean_error("SELECT * FROM mdfeed.parse_stream('$ex', " . dq($frame) . ')',
			"socket $ex, $what (parse_stream)", undef, '22P02');
		clean_error("SELECT mdfeed.parse_answer('$ex', 'stream', " . bx($frame) . ')',
			"socket $ex, $what (parse_answer)", undef, '22P02');
	}
	for my $b ([ 'a NUL byte', "\0" ], [ 'invalid UTF-8 \xff', "\xff" ], [ 'a cut UTF-8 sequence', "\xe2\x82" ],
		[ 'a UTF-16 surrogate', "\xed\xa0\x80" ])
	{
		my ($what, $bytes) = @$b;
		for my $fr ([ 'coindcx', $ffr ], [ 'coindcx_spot', $sfr ])
		{
			my ($ex, $frame) = @$fr;
			my $p = index($frame, 'B-BTC_USDT');
			my $bad = substr($frame, 0, $p) . $bytes . substr($frame, $p);
			clean_error("SELECT mdfeed.parse_answer('$ex', 'stream', " . bx($bad) . ')',
				"socket $ex with $what in the data text", undef, '22P02');
		}
	}
	# the exponent form in a socket string is exact too
	my $r = stream_rows('coindcx_spot', $smut->(sub { $_[0]{o} = '3.1e-7'; $_[0]{l} = '1e-8' }));
	is($r && $r->[0]{open}, '0.00000031', 'socket "3.1e-7" becomes exactly 0.00000031');

	# times past what the store takes: refused, not accepted and then failing
	# in the store
	{
		for my $c (
			[ 'coindcx', 'klines', '{"s":"ok","data":[{"open":1,"high":1,"low":1,"volume":1,"close":1,"time":140737488355327}]}' ],
			[ 'coindcx_spot', 'klines', '[{"open":1,"high":1,"low":1,"volume":1,"close":1,"time":140737488355327}]' ],
			[ 'coindcx', 'stream', $fmut->(sub { $_[0]{open_time} = 140737488355; $_[0]{duration} = '1d' }) ],
			[ 'coindcx_spot', 'stream', $smut->(sub { $_[0]{t} = 140737488355327; $_[0]{i} = '1d'; $_[0]{channel} = 'B-BTC_USDT_1d' }) ])
		{
			my ($ex, $what, $body) = @$c;
			my ($r2, $o2, $e2) = q3("\\set VERBOSITY verbose\nSELECT mdfeed.parse_answer('$ex', '$what', " . bx($body) . ')');
			ok($r2 == 3 && $e2 =~ /ERROR:  22P02/, "$ex $what with the largest open time: a clean 22P02 refusal")
			  or diag("got: $e2");
		}
	}
}

is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server up after the malformed input');
unlike(log_contents($node), qr/terminated by signal|PANIC|was terminated/,
	'no crashed backend in the server log');

note sprintf('304_cdx_parser_captures took %.1f s', time() - $t_start);
finish();
