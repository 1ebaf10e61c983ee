
# Copyright (c) mdfeed authors
#
# Liquid symbols and auto-tracking.
#  - mdfeed_liquid_symbols() equals the fake's board (fake_binance.py ticker):
#    TRADING perpetuals only (no delivery contract, no SETTLING symbol),
#    ranked by quoteVolume descending, ties by symbol, quote volumes exact;
#    min_quote_volume (inclusive) and top_n variants; one ticker request of
#    weight 40 per call.
#  - mdfeed.auto_track_top_n via ALTER SYSTEM + pg_reload_conf(): the watch
#    worker ranks at once into mdfeed.auto_tracked; the symbols appear in
#    mdfeed.tracked with source 'auto' (a whitelisted one keeps source
#    'whitelist'), are streamed and synced.
#  - a new board plus a settings change re-ranks; min_quote_volume can leave
#    fewer than top_n; leavers stop streaming and keep their data.
#  - the blacklist wins: a blacklisted top symbol leaves at once and the next
#    one takes its place at the re-rank.
#  - auto_track_top_n = 0 empties the auto set, data kept.
#  - bad input is an error.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;
use IPC::Run;
use Math::BigFloat;

use MdfeedTest;

my $NSYN = 40;
my $fake = start_fake(args => [ '--synthetic', $NSYN ]);
my $node = new_node('liquidity', $fake,
	'mdfeed.intervals' => "'1h'",
	'mdfeed.sync_lookback' => "'3h'",
	'mdfeed.derivatives_enabled' => 'off');

my $FAKE_PY = src_root() . '/test/fake_exchange/fake_binance.py';

# the TRADING perpetuals the fake lists
my %perp = map { $_->{symbol} => 1 }
  grep { $_->{status} eq 'TRADING' && $_->{contractType} eq 'PERPETUAL' } @{ fake_symbols($fake) };

# the board (symbol => quoteVolume string) at an epoch, with pins applied
sub board
{
	my ($epoch, $pins) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', $FAKE_PY, 'ticker', '--synthetic', $NSYN,
			'--board-epoch', $epoch ], '>', \$out, '2>', \$err)
	  or die "fake_binance.py ticker failed: $err";
	my %b;
	for my $l (grep { length } split /\n/, $out)
	{
		my ($s, $qv) = split /,/, $l;
		$b{$s} = $qv;
	}
	%b = (%b, %{ $pins // {} });
	return \%b;
}

# the ranking mdfeed_liquid_symbols must return: "symbol|qv|rank" lines
sub truth_rank
{
	my ($board, $min, $top, $exclude) = @_;
	my $m = Math::BigFloat->new($min // 0);
	my @s = grep { $perp{$_} && !($exclude && $exclude->{$_}) && Math::BigFloat->new($board->{$_}) >= $m }
	  keys %$board;
	@s = sort {
		Math::BigFloat->new($board->{$b}) <=> Math::BigFloat->new($board->{$a}) or $a cmp $b
	} @s;
	my @r;
	for my $i (0 .. $#s)
	{
		last if defined $top && $i >= $top;
		push @r, "$s[$i]|$board->{$s[$i]}|" . ($i + 1);
	}
	return \@r;
}

sub liquid
{
	my ($args) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT symbol || '|' || quote_volume || '|' || rank FROM mdfeed_liquid_symbols($args) ORDER BY rank");
	return [ grep { length } split /\n/, $out ];
}

sub auto_set
{
	my $out = try_sql($node,
		"SELECT symbol || '|' || quote_volume || '|' || rank FROM mdfeed.auto_tracked ORDER BY rank");
	return defined $out ? [ grep { length } split /\n/, $out ] : undef;
}

sub tracked
{
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(symbol || ':' || source, ',' ORDER BY symbol), '') FROM mdfeed.tracked");
}

# waits until mdfeed.auto_tracked equals $want (arrayref of lines)
sub wait_auto
{
	my ($want, $timeout) = @_;
	my $w = join(',', @$want);
	my $got;
	my $ok = wait_until(sub { $got = auto_set(); defined $got && join(',', @$got) eq $w }, $timeout // 20, 0.2);
	diag('auto_tracked: ' . join(',', @{ $got // [] }) . "\nwanted:       $w") unless $ok;
	return $ok;
}

sub expected_tracked
{
	my ($auto, $white, $black) = @_;
	my %src = map { (split /\|/)[0] => 'auto' } @$auto;
	$src{$_} = 'whitelist' for @$white;
	delete $src{$_} for @{ $black // [] };
	return join(',', map { "$_:$src{$_}" } sort keys %src);
}

sub reload_with
{
	my (%set) = @_;
	$node->safe_psql('postgres', join('', map { "ALTER SYSTEM SET $_ = $set{$_};\n" } sort keys %set)
		  . "SELECT pg_reload_conf();");
}

sub symbols_of { return map { (split /\|/)[0] } @{ $_[0] }; }

sub candle_rows
{
	my ($sym) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.candles_1h WHERE symbol = '$sym'");
}

#--------------------------------------------------------------------------
# mdfeed_liquid_symbols equals the board
#--------------------------------------------------------------------------
my $b0 = board(0);
ok(exists $b0->{BTCUSDT_261225} && !$perp{BTCUSDT_261225},
	'the board lists a delivery contract (which must be left out)');
ok(!exists $b0->{OLDUSDT}, 'the board does not list the SETTLING symbol');

my $all = truth_rank($b0);
is(scalar(@$all), $NSYN + 4, "truth: " . ($NSYN + 4) . " trading perpetuals");

# the watch worker's exchange-info refreshes (weight 1) may come in between
sub one_call
{
	my ($args, $name) = @_;
	my $st0 = fake_stats($fake);
	my $got = liquid($args);
	my $st1 = fake_stats($fake);
	my %d;
	for my $p (keys %{ $st1->{requests} })
	{
		$d{$p} = $st1->{requests}{$p} - ($st0->{requests}{$p} // 0);
	}
	my $other = 0;
	$other += $d{$_} for grep { $_ ne '/fapi/v1/ticker/24hr' && $_ ne '/fapi/v1/exchangeInfo' } keys %d;
	is($d{'/fapi/v1/ticker/24hr'} // 0, 1, "$name: exactly one ticker request");
	is($st1->{weight_total} - $st0->{weight_total} - ($d{'/fapi/v1/exchangeInfo'} // 0), 40,
		"$name: the ticker request weighed 40 (the whole board, no symbol)")
	  if $other == 0;
	return $got;
}

is_deeply(one_call('', 'default'), $all, 'mdfeed_liquid_symbols() equals the board, row for row');
ok(!grep({ /^(BTCUSDT_261225|OLDUSDT)\|/ } @$all), 'no delivery contract, no SETTLING symbol');

# min_quote_volume is inclusive: the 10th symbol's exact volume keeps 10
my $min10 = (split /\|/, $all->[9])[1];
is_deeply(one_call("$min10", 'min'), truth_rank($b0, $min10), "min_quote_volume = $min10 (the 10th's volume)");
is(scalar(@{ liquid("$min10") }), 10, 'min_quote_volume is inclusive: 10 rows');
is_deeply(one_call('0, 5', 'top_n'), truth_rank($b0, 0, 5), 'top_n = 5');
is_deeply(liquid("$min10, 4"), truth_rank($b0, $min10, 4), 'min and top_n = 4');
is_deeply(liquid("$min10, 25"), truth_rank($b0, $min10, 25), 'min and top_n = 25 (min wins: 10 rows)');
is_deeply(liquid("top_n => 3"), truth_rank($b0, 0, 3), 'named argument top_n => 3');
is_deeply(liquid("1e15"), [], 'a minimum above every volume: no rows');

# a role with the grants the README gives
$node->safe_psql('postgres', q{
CREATE ROLE analyst LOGIN;
GRANT USAGE ON SCHEMA mdfeed TO analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO analyst;
GRANT EXECUTE ON FUNCTION mdfeed_liquid_symbols(numeric, integer, text) TO analyst;
});
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET ROLE analyst; SELECT symbol || '|' || quote_volume || '|' || rank FROM mdfeed_liquid_symbols(0, 5) ORDER BY rank");
	is($ret, 0, 'a role granted EXECUTE on mdfeed_liquid_symbols (as the README says) can call it')
	  or diag($err);
	is_deeply([ grep { length } split /\n/, $out // '' ], truth_rank($b0, 0, 5), '... and gets the board');
}

# ties broken by symbol; pins are exact strings
{
	my %pins = (S0010USDT => '99999999999.50', S0003USDT => '99999999999.50', S0007USDT => '99999999999.49',
		S0020USDT => '99999999999.5');
	fake_config($fake, { quote_volumes => \%pins });
	my $b = board(0, \%pins);
	my $got = liquid('0, 6');
	is_deeply($got, truth_rank($b, 0, 6), 'pinned volumes: ranking equals the board');
	my @ties = grep { /^S00(03|10)USDT\|/ } @$got;
	is(scalar(@ties), 2, 'both tied symbols present');
	ok(@ties == 2 && (split /\|/, $ties[0])[0] eq 'S0003USDT'
		  && (split /\|/, $ties[1])[2] == (split /\|/, $ties[0])[2] + 1,
		'a tie is broken by symbol (S0003USDT before S0010USDT)');
	fake_config($fake, { quote_volumes => {} });
}

#--------------------------------------------------------------------------
# auto-tracking
#--------------------------------------------------------------------------
is($node->safe_psql('postgres', 'SELECT count(*) FROM mdfeed.auto_tracked'), '0',
	'auto_track_top_n = 0: nothing auto-tracked');
# a whitelisted symbol that is also at the top keeps source 'whitelist'
my $top1 = (symbols_of($all))[0];
my @white = ($top1, 'S0039USDT');
$node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['" . join("','", @white) . "'])");

my $ticker0 = fake_stats($fake)->{requests}{'/fapi/v1/ticker/24hr'} // 0;
reload_with('mdfeed.auto_track_top_n' => 3);
my $want = truth_rank($b0, 0, 3);
ok(wait_auto($want, 20), 'auto_track_top_n = 3 + reload: the watch worker ranks at once');
is_deeply(auto_set(), $want, 'mdfeed.auto_tracked is the top 3 of the board (symbol, exact volume, rank)');
is(tracked(), expected_tracked($want, \@white),
	"mdfeed.tracked: top 3 with source 'auto' beside the whitelist ($top1 stays 'whitelist')");
ok((fake_stats($fake)->{requests}{'/fapi/v1/ticker/24hr'} // 0) - $ticker0 >= 1,
	'the ranking fetched the board');

# streamed and synced
my @auto0 = symbols_of($want);
my %trk = map { $_ => 1 } @auto0, @white;
my $ntrk = scalar(keys %trk);
ok(wait_fake_subs($fake, $ntrk, 30), "streamed: the fake has $ntrk subscriptions (1h)");
ok(wait_jobs_settled($node, 60), 'sync jobs settled');
for my $s (@auto0)
{
	my $j = $node->safe_psql('postgres',
		"SELECT count(*) FILTER (WHERE state = 'succeeded') || '/' || count(*) FROM mdfeed.jobs "
		  . "WHERE symbol = '$s' AND kind = 'candles' AND origin = 'sync'");
	like($j, qr{^([1-9]\d*)/\1$}, "$s: sync jobs queued and succeeded ($j)");
	ok(candle_rows($s) > 0, "$s: candles stored");
}
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.jobs WHERE kind <> 'candles'"), '0',
	'derivatives_enabled = off: no open-interest or funding job');

#--------------------------------------------------------------------------
# a new board: nothing moves until the settings change, then it follows
#--------------------------------------------------------------------------
fake_config($fake, { board_epoch => 1 });
my $b1 = board(1);
my $all1 = truth_rank($b1);
isnt(join(',', symbols_of(truth_rank($b1, 0, 3))), join(',', @auto0), 'epoch 1 has another top 3');
is_deeply(liquid(''), $all1, 'mdfeed_liquid_symbols() follows the new board at once');
reload_with('mdfeed.auto_track_min_quote_volume' => 1);
$want = truth_rank($b1, 1, 3);
ok(wait_auto($want, 20), 'a settings change re-ranks: auto_tracked follows the new board');
is_deeply(auto_set(), $want, 'auto_tracked = the new top 3');
is(tracked(), expected_tracked($want, \@white), 'mdfeed.tracked follows');
my @auto1 = symbols_of($want);
my %left = map { $_ => 1 } @auto0;
delete $left{$_} for @auto1, @white;
%trk = map { $_ => 1 } @auto1, @white;
$ntrk = scalar(keys %trk);
ok(wait_fake_subs($fake, $ntrk, 30), "the stream follows: $ntrk subscriptions");
for my $s (sort keys %left)
{
	ok(candle_rows($s) > 0, "$s left the auto set and keeps its candles");
}

# min_quote_volume leaves fewer than top_n
my $min2 = (split /\|/, $all1->[1])[1];
reload_with('mdfeed.auto_track_min_quote_volume' => $min2);
$want = truth_rank($b1, $min2, 3);
is(scalar(@$want), 2, "truth: 2 symbols have at least $min2");
ok(wait_auto($want, 20), 'auto_track_min_quote_volume = the 2nd volume: 2 auto-tracked (inclusive)');
is_deeply(auto_set(), $want, 'auto_tracked = the 2 symbols above the minimum');

#--------------------------------------------------------------------------
# the blacklist wins
#--------------------------------------------------------------------------
reload_with('mdfeed.auto_track_min_quote_volume' => 2);
$want = truth_rank($b1, 2, 3);
ok(wait_auto($want, 20), 'minimum lowered: the top 3 again');
my $victim = (symbols_of($want))[0];
$victim = (symbols_of($want))[1] if grep { $_ eq $victim } @white;
$node->safe_psql('postgres', "SELECT mdfeed_blacklist(ARRAY['$victim'])");
unlike(tracked(), qr/\b$victim:/, "blacklisted $victim leaves mdfeed.tracked at once");
sleep(3);
note 'after the blacklist, before a re-rank: auto_tracked = ' . join(',', @{ auto_set() // [] });
reload_with('mdfeed.auto_track_min_quote_volume' => 3);
$want = truth_rank($b1, 3, 3, { $victim => 1 });
# auto_tracked keeps the board rank: the next one comes in with its own rank
$want = [ map { my ($s, $q) = split /\|/; my ($r) = grep { (split /\|/, $_)[0] eq $s } @{ truth_rank($b1, 3) };
		$r } @$want ];
ok(wait_auto($want, 20), "re-rank: $victim is left out and the next one takes its place");
is_deeply(auto_set(), $want, 'auto_tracked = the top 3 the blacklist allows, with their board ranks');
unlike(join(',', @{ auto_set() // [] }), qr/\b$victim\|/, "$victim is not in auto_tracked");
is(tracked(), expected_tracked($want, \@white, [$victim]), 'mdfeed.tracked: 3 auto beside the whitelist');

#--------------------------------------------------------------------------
# off again: the auto set empties, data kept
#--------------------------------------------------------------------------
my @before_off = symbols_of($want);
my %rows_before = map { $_ => candle_rows($_) } @before_off;
reload_with('mdfeed.auto_track_top_n' => 0);
ok(wait_auto([], 20), 'auto_track_top_n = 0: mdfeed.auto_tracked empties');
is(tracked(), expected_tracked([], \@white, [$victim]), 'mdfeed.tracked = the whitelist only');
for my $s (@before_off)
{
	cmp_ok(candle_rows($s), '>=', $rows_before{$s}, "$s keeps its candles");
}
my %w = map { $_ => 1 } @white;
ok(wait_fake_subs($fake, scalar(grep { $_ ne $victim } keys %w), 30), 'only the whitelist is streamed');

#--------------------------------------------------------------------------
# a failed ranking is tried again: one failed ticker request must not leave
# the auto set stale until the hourly re-rank
#--------------------------------------------------------------------------
set_faults($fake, { script => ['status_5xx'], paths => ['/fapi/v1/ticker/24hr'] });
reload_with('mdfeed.auto_track_top_n' => 2);
$want = truth_rank($b1, 3, 2, { $victim => 1 });
$want = [ map { my ($s) = split /\|/; my ($r) = grep { (split /\|/, $_)[0] eq $s } @{ truth_rank($b1, 3) }; $r } @$want ];
ok(wait_auto($want, 30),
	'auto_track_top_n = 2 while the first ticker request fails: the ranking is tried again');
is(fake_stats($fake)->{faults}{status_5xx}, 1, 'the fake failed one ticker request');
clear_faults($fake);
reload_with('mdfeed.auto_track_top_n' => 0);
ok(wait_auto([], 20), 'auto_track_top_n = 0 again');

#--------------------------------------------------------------------------
# bad input
#--------------------------------------------------------------------------
for my $case (
	[ '0, 0',    qr/top_n must be at least 1, not 0/ ],
	[ '0, -3',   qr/top_n must be at least 1, not -3/ ],
	[ '-1',      qr/min_quote_volume must not be negative, not -1/ ],
	[ '-0.01, 5', qr/min_quote_volume must not be negative/ ])
{
	my ($args, $re) = @$case;
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM mdfeed_liquid_symbols($args)");
	isnt($ret, 0, "mdfeed_liquid_symbols($args) fails");
	like($err, qr/ERROR:.*$re/, "mdfeed_liquid_symbols($args): the error says why");
}
for my $case ([ 'mdfeed.auto_track_top_n', '-1' ], [ 'mdfeed.auto_track_min_quote_volume', '-5' ])
{
	my ($ret, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET $case->[0] = $case->[1]");
	isnt($ret, 0, "ALTER SYSTEM SET $case->[0] = $case->[1] is refused");
	like($err, qr/ERROR:.*outside the valid range/, "$case->[0] = $case->[1]: out of range");
}
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server alive');
unlike(log_contents($node), qr/server process .* was terminated by signal|PANIC/,
	'no crashed backend in the server log');

finish();
