
# Copyright (c) mdfeed authors
#
# Backfills against a misbehaving exchange.
#  A. Every kind of REST fault (5xx, 429, truncated bodies, truncated JSON,
#     garbage, connection resets, slow and stalled answers) at once: the jobs
#     still succeed and the candles are exact.
#  B. An exchange announcing a tiny weight limit (60 a minute) in
#     exchangeInfo: the workers spread the work over minutes and never get
#     a rate-limit 429, let alone a 418 ban.
# B is started first and runs while A does, since it must wait for a new
# clock minute anyway.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

#--------------------------------------------------------------------------
# B: tiny weight limit (set up first, checked last)
#--------------------------------------------------------------------------
my $fake_b = start_fake(name => 'wl60', weight_limit => 60);
my $node_b = new_node('weightlimit', $fake_b);
my @b_cases = (
	[ 'BTCUSDT', '1m', ts_ms('2024-05-01'), ts_ms('2024-05-06') ],
	[ 'ETHUSDT', '1m', ts_ms('2024-05-01'), ts_ms('2024-05-06') ],
);
my $b_st0 = fake_stats($fake_b);
my $b_t0 = time();
my @b_ids = map { backfill($node_b, @$_) } @b_cases;

#--------------------------------------------------------------------------
# A: every fault at once
#--------------------------------------------------------------------------
my $fake_a = start_fake(name => 'faulty');
my $node_a = new_node('faults', $fake_a,
	'mdfeed.rest_max_retries' => 60,
	'mdfeed.http_timeout' => "'3s'");

my %faults = (
	status_5xx => 0.1,
	status_429 => 0.1,
	truncate => 0.1,
	truncate_json => 0.1,
	garbage => 0.1,
	reset => 0.1,
	slow => 0.15,
	slow_ms => 200,
	stall => 0.03,
	stall_ms => 6000,
	seed => 7);
set_faults($fake_a, \%faults);
reset_fake($fake_a);

my @a_cases = (
	[ 'BTCUSDT', '1m',  ts_ms('2024-02-01'), ts_ms('2024-02-11') ],
	[ 'ETHUSDT', '15m', ts_ms('2024-01-01'), ts_ms('2024-06-01') ],
);
my $a_t0 = time();
my @a_ids = map { backfill($node_a, @$_) } @a_cases;
for my $i (0 .. $#a_cases)
{
	my ($sym, $iv) = @{ $a_cases[$i] };
	job_is($node_a, $a_ids[$i], 'succeeded', "faults: $sym $iv backfill succeeded", 150);
}
note sprintf('faults: backfills took %d s', time() - $a_t0);
my $a_st = fake_stats($fake_a);
clear_faults($fake_a);
note 'faults: fake stats ' . JSON::PP->new->canonical->encode($a_st);

for my $i (0 .. $#a_cases)
{
	my ($sym, $iv, $from, $to) = @{ $a_cases[$i] };
	compare_with_truth($node_a, $fake_a, $sym, $iv, $from, $to, "faults: $sym $iv");
	my $j = job_row($node_a, $a_ids[$i]);
	ok($j->{retries} > 0, "faults: $sym $iv job counted retries ($j->{retries})");
	is($j->{progress}, 1, "faults: $sym $iv progress = 1");
}
for my $f (qw(status_5xx status_429 truncate truncate_json garbage reset slow))
{
	ok(($a_st->{faults}{$f} // 0) > 0,
		"faults: the fake injected $f (" . ($a_st->{faults}{$f} // 0) . " times)");
}
is(fake_418($fake_a, $a_st), 0, 'faults: no 418 ban');
is(fake_429_rate_limited($fake_a, $a_st), 0, 'faults: no rate-limit 429 (only injected ones)');
ok($node_a->safe_psql('postgres', 'SELECT 1') eq '1', 'faults: server alive');
unlike(log_contents($node_a), qr/server process .* was terminated by signal|PANIC/,
	'faults: no crashed backend in the server log');

#--------------------------------------------------------------------------
# B: results
#--------------------------------------------------------------------------
for my $i (0 .. $#b_cases)
{
	my ($sym, $iv) = @{ $b_cases[$i] };
	job_is($node_b, $b_ids[$i], 'succeeded', "weight limit: $sym $iv backfill succeeded", 150);
}
my $b_secs = time() - $b_t0;
note "weight limit: backfills took $b_secs s";
my $b_st = fake_stats($fake_b);
note 'weight limit: fake stats ' . JSON::PP->new->canonical->encode($b_st);
for my $i (0 .. $#b_cases)
{
	my ($sym, $iv, $from, $to) = @{ $b_cases[$i] };
	compare_with_truth($node_b, $fake_b, $sym, $iv, $from, $to, "weight limit: $sym $iv");
}
my $weight = $b_st->{weight_total} - $b_st0->{weight_total};
ok($weight > 48,
	"weight limit: the work needed more than one minute's allowance ($weight > 0.8 * 60)");
is(fake_429_rate_limited($fake_b, $b_st), 0, 'weight limit: no rate-limit 429');
is(fake_418($fake_b, $b_st), 0, 'weight limit: no 418 ban');
ok($b_secs < 150, "weight limit: done within 150 s ($b_secs s)");

finish();
