
# Copyright (c) mdfeed authors
#
# Robustness: every parser the workers use, fed thousands of mutated real
# answers, must never crash, hang, leak or raise anything but a clean error.
# A crashing worker restarts the whole cluster, so this matters.
#
#  A. A deterministic seeded generator mutates real captures
#     (shared/exchange-data/binance-usdm) and answers the fake serves:
#     truncations, byte flips, huge numbers, deep nesting, invalid UTF-8,
#     NUL bytes, wrong types, and every body fed to every parser.  They run
#     in batches through mdfeed.parse_answer in one session.  Each case
#     parses or fails with SQLSTATE 22P02; none takes more than 2 s; the
#     same backend answers throughout; its memory stays flat.
#  B. Backfill workers fetch from the fake while its garbage, truncation and
#     mutate switches are on: no backend dies, and once the faults are
#     cleared the jobs finish exact vs the truth.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
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

my $fake = start_fake();
my $node = new_node('fuzz', $fake,
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
my $ncases = scalar @cases;
note sprintf('fuzz: %d cases generated from %d seeds (seed %d) in %.1f s',
	$ncases, scalar @seeds, $SEED, time() - $t_start);

#--------------------------------------------------------------------------
# A. run them through one session
#--------------------------------------------------------------------------
my $file = "$PostgreSQL::Test::Utils::tmp_check/fuzz_cases_$$.copy";
{
	open my $fh, '>', $file or die "$file: $!";
	for my $i (0 .. $#cases)
	{
		my ($what, $kind, $body) = @{ $cases[$i] };
		$kind =~ s/[\t\n\\]/ /g;
		print $fh "$i\t$what\t$kind\t\\\\x" . unpack('H*', $body) . "\n";
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
CREATE UNLOGGED TABLE fuzz_case (id int PRIMARY KEY, what text, kind text, body bytea);
CREATE UNLOGGED TABLE fuzz_result (id int, sqlstate text, message text, ms float8);
CREATE FUNCTION pg_temp.fuzz_batch(lo int, hi int) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
	c record;
	t0 timestamptz;
	st text;
	msg text;
BEGIN
	FOR c IN SELECT * FROM fuzz_case WHERE id BETWEEN lo AND hi ORDER BY id LOOP
		t0 := clock_timestamp();
		BEGIN
			PERFORM mdfeed.parse_answer('binance', c.what, c.body);
			st := '00000';
			msg := NULL;
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
		END;
		INSERT INTO fuzz_result
		VALUES (c.id, st, msg, extract(epoch FROM clock_timestamp() - t0) * 1000);
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
my $bad = sql(q{SELECT string_agg(format('case %s (%s, %s, %s bytes): %s %s; body begins %s',
		r.id, c.what, c.kind, length(c.body), r.sqlstate, r.message,
		encode(substr(c.body, 1, 120), 'escape')), E'\n' ORDER BY r.id)
	FROM (SELECT * FROM fuzz_result WHERE sqlstate NOT IN ('00000', '22P02') ORDER BY id LIMIT 20) r
	JOIN fuzz_case c USING (id);});
is($bad, '', 'every case parses or fails cleanly with SQLSTATE 22P02');
my $nok = sql("SELECT count(*) FROM fuzz_result WHERE sqlstate = '00000';");
my $nerr = sql("SELECT count(*) FROM fuzz_result WHERE sqlstate = '22P02';");
ok($nok > 100 && $nerr > 1000, "both outcomes occur ($nok parsed, $nerr refused)");

# the seeds themselves parse
is(sql(q{SELECT string_agg(c.id || ' ' || c.what || ': ' || r.message, '; ')
	FROM fuzz_case c JOIN fuzz_result r USING (id)
	WHERE c.kind = 'seed' AND r.sqlstate <> '00000';}), '', 'every unmutated seed parses');

my $slow = sql(q{SELECT coalesce(max(ms), 0)::int FROM fuzz_result;});
ok($slow < 2000, "no case takes 2 s or more (slowest $slow ms)");
my $slowest = sql(q{SELECT c.what || ' ' || c.kind || ' ' || length(c.body) FROM fuzz_result r
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
