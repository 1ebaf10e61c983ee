
# Copyright (c) mdfeed authors

=pod

=head1 NAME

MdfeedTest - helpers for mdfeed's TAP tests

=head1 SYNOPSIS

  use MdfeedTest;

  my $fake = start_fake();                      # the fake Binance exchange
  my $node = new_node('main', $fake);           # PostgreSQL + mdfeed, extension created
  my $id   = backfill($node, 'BTCUSDT', '1h', ts_ms('2024-01-01'), ts_ms('2024-02-01'));
  is(wait_job($node, $id, 60), 'succeeded', 'backfill done');
  compare_with_truth($node, $fake, 'BTCUSDT', '1h', $from_ms, $to_ms, 'exact');
  finish();                                      # diagnostics on failure + done_testing

Tests run as the postgres user with the current directory at the root of the
source tree (PGXS prove_installcheck); this module finds the fake exchange
relative to its own location (test/perl/../fake_exchange).

=cut

package MdfeedTest;

use strict;
use warnings;

use Exporter 'import';
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use POSIX qw(floor);
use Time::HiRes qw(usleep);
use Time::Local qw(timegm);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
	truth_table_sql
	facts_model_sql
  src_root shared_dir start_fake new_node
  backfill wait_job job_row job_is poll_job
  compare_with_truth truth_csv oi_truth align_down next_open candle_table
  ts_ms now_ms ms_sql
  fake_stats fake_klines_requests fake_rows_served fake_429_rate_limited
  fake_429_injected fake_418 set_faults clear_faults reset_fake fake_config fake_symbols
  log_tail log_contents diag_state track_job finish query_json comparison_json worker_pids
  wait_workers
);

my $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/../..');
my $PYTHON = '/usr/bin/python3';
my $FAKE = "$ROOT/test/fake_exchange/fake_binance.py";

# One universe for the whole test, even if it runs across midnight UTC: the
# fake server and the truth CLIs count NEWUSDT's listing from this day.
$ENV{FAKE_BINANCE_TODAY_MS} //= int(Time::HiRes::time() * 1000);

my @fakes;    # started fake exchanges, killed at END
my @nodes;    # nodes, for diagnostics
my @jobs;     # [node, id] of jobs created through backfill()

# repository root (the directory holding Makefile, src/, test/)
sub src_root { return $ROOT; }

# shared/ beside the repository (or $MDFEED_SHARED)
sub shared_dir
{
	return $ENV{MDFEED_SHARED} if $ENV{MDFEED_SHARED};
	my $d = "$ROOT/../shared";
	return -d $d ? abs_path($d) : $d;
}

#--------------------------------------------------------------------------
# Time helpers
#--------------------------------------------------------------------------

# ts_ms('2024-01-01 00:30:00') -> epoch ms (UTC)
sub ts_ms
{
	my ($s) = @_;
	my ($y, $mo, $d, $h, $mi, $se) =
	  $s =~ /^(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d))?)?/
	  or die "bad timestamp '$s'";
	return timegm($se // 0, $mi // 0, $h // 0, $d, $mo - 1, $y) * 1000;
}

sub now_ms { return int(Time::HiRes::time() * 1000); }

# SQL expression for an epoch-ms value as timestamptz (exact)
sub ms_sql
{
	my ($ms) = @_;
	return "('epoch'::timestamptz + interval '1 millisecond' * $ms)";
}

my %IV_MS = (
	'1m' => 60_000, '3m' => 180_000, '5m' => 300_000, '15m' => 900_000,
	'30m' => 1_800_000, '1h' => 3_600_000, '2h' => 7_200_000,
	'4h' => 14_400_000, '6h' => 21_600_000, '8h' => 28_800_000,
	'12h' => 43_200_000, '1d' => 86_400_000, '3d' => 259_200_000);
my $WEEK = 7 * 86_400_000;
my $WEEK_OFF = 4 * 86_400_000;    # 1970-01-05 was a Monday

# open time of the candle of interval $iv containing $t (ms), as Binance has it
sub align_down
{
	my ($iv, $t) = @_;
	if (my $d = $IV_MS{$iv}) { return $t - ($t % $d); }
	if ($iv eq '1w') { return $t - (($t - $WEEK_OFF) % $WEEK); }
	die "bad interval $iv" unless $iv eq '1M';
	my @g = gmtime(floor($t / 1000));
	return timegm(0, 0, 0, 1, $g[4], $g[5] + 1900) * 1000;
}

sub next_open
{
	my ($iv, $o) = @_;
	if (my $d = $IV_MS{$iv}) { return $o + $d; }
	if ($iv eq '1w') { return $o + $WEEK; }
	my @g = gmtime(floor($o / 1000));
	my ($y, $m) = ($g[5] + 1900, $g[4] + 1);
	($y, $m) = $m == 12 ? ($y + 1, 1) : ($y, $m + 1);
	return timegm(0, 0, 0, 1, $m - 1, $y) * 1000;
}

sub candle_table
{
	my ($iv) = @_;
	return $iv eq '1M' ? 'mdfeed.candles_1mo' : "mdfeed.candles_$iv";
}

#--------------------------------------------------------------------------
# The fake exchange
#--------------------------------------------------------------------------

=pod

=item start_fake(%opts)

Starts test/fake_exchange/fake_binance.py serve on a free port.  Options:
weight_limit, faults (hashref), args (arrayref of extra arguments), name.
Returns a hashref {port, pid, url, log, name}.  Killed at END.

=cut

# _spawn_fake($what, $name, $script, \@args, %extra) starts a fake exchange
# script's server (serve --port-file), waits for its port and returns the
# fake's hash; $what names it in messages.
sub _spawn_fake
{
	my ($what, $name, $script, $args, %extra) = @_;
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	my $portfile = "$dir/${name}_$$.port";
	my $log = "$PostgreSQL::Test::Utils::log_path/"
	  . File::Basename::basename($0, '.pl') . "_$name.log";
	unlink $portfile;

	die "$what not found at $script" unless -f $script;
	my @cmd = ($PYTHON, $script, 'serve', @$args, '--port-file', $portfile);

	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	my $fake = { pid => $pid, log => $log, name => $name, cmd => \@cmd, %extra };
	push @fakes, $fake;

	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		if (-s $portfile)
		{
			open my $fh, '<', $portfile or die;
			my $p = <$fh>;
			close $fh;
			if (defined $p && $p =~ /^(\d+)/)
			{
				$fake->{port} = $1;
				last;
			}
		}
		if (waitpid($pid, POSIX::WNOHANG()) == $pid)
		{
			$fake->{pid} = undef;
			die "$what exited at start (status $?); log:\n"
			  . (-f $log ? slurp_file($log) : '');
		}
		usleep(50_000);
	}
	die "$what did not write $portfile within 30 s; log:\n"
	  . (-f $log ? slurp_file($log) : '')
	  unless $fake->{port};
	$fake->{url} = "http://127.0.0.1:$fake->{port}";
	note "$what $name: pid $pid, $fake->{url}, log $log";
	return $fake;
}

sub start_fake
{
	my (%o) = @_;
	my $name = $o{name} // "fake" . scalar(@fakes);
	my @args = ('--port', '0');
	push @args, '--weight-limit', $o{weight_limit} if defined $o{weight_limit};
	push @args, '--faults', encode_json($o{faults}) if $o{faults};
	push @args, @{ $o{args} } if $o{args};
	return _spawn_fake('fake exchange', $name, $FAKE, \@args);
}

sub _http { return HTTP::Tiny->new(timeout => 15); }

sub _fake_call
{
	my ($fake, $method, $path, $body) = @_;
	my %opt;
	if (defined $body)
	{
		$opt{content} = ref $body ? encode_json($body) : $body;
		$opt{headers} = { 'Content-Type' => 'application/json' };
	}
	my $r = _http()->request($method, "$fake->{url}$path", \%opt);
	die "fake $method $path: $r->{status} $r->{reason} $r->{content}"
	  unless $r->{success};
	return decode_json($r->{content});
}

sub fake_stats { my ($fake) = @_; return _fake_call($fake, 'GET', '/_fake/stats'); }
sub fake_symbols { my ($fake) = @_; return _fake_call($fake, 'GET', '/_fake/symbols'); }

sub fake_klines_requests
{
	my ($fake, $st) = @_;
	$st //= fake_stats($fake);
	return $st->{requests}{'/fapi/v1/klines'} // 0;
}
sub fake_rows_served { my ($fake, $st) = @_; $st //= fake_stats($fake); return $st->{klines_rows} // 0; }
sub fake_429_rate_limited { my ($fake, $st) = @_; $st //= fake_stats($fake); return $st->{rate_limited_429} // 0; }
sub fake_429_injected { my ($fake, $st) = @_; $st //= fake_stats($fake); return $st->{injected_429} // 0; }
sub fake_418 { my ($fake, $st) = @_; $st //= fake_stats($fake); return $st->{banned_418} // 0; }

# set_faults($fake, {status_5xx => 0.1, ...}) replaces the whole fault set
sub set_faults
{
	my ($fake, $f) = @_;
	return _fake_call($fake, 'POST', '/_fake/faults', $f // {});
}
sub clear_faults { my ($fake) = @_; return set_faults($fake, {}); }

# reset_fake: zero the counters and rate-limit windows (faults stay)
sub reset_fake { my ($fake) = @_; return _fake_call($fake, 'POST', '/_fake/reset', {}); }

sub fake_config
{
	my ($fake, $cfg) = @_;
	return $cfg ? _fake_call($fake, 'POST', '/_fake/config', $cfg)
	  : _fake_call($fake, 'GET', '/_fake/config');
}

# truth_table_sql($csv): SQL that loads truth_csv's rows into a temporary
# table truth (symbol, open_time_ms, close_time_ms, then the values in
# truth_csv's order), for comparisons done in SQL
sub truth_table_sql
{
	my ($csv) = @_;
	return <<"EOS";
CREATE TEMP TABLE truth (symbol text, open_time_ms bigint, close_time_ms bigint,
  open numeric, high numeric, low numeric, close numeric, volume numeric,
  quote_volume numeric, trades bigint, taker_buy_base_volume numeric,
  taker_buy_quote_volume numeric);
COPY truth FROM STDIN WITH (FORMAT csv);
$csv\\.
EOS
}

# truth_csv(symbol, iv, start_ms, end_ms): CSV of closed candles in [start, end)
# @MdfeedTest::TRUTH_ARGS: extra arguments of every truth call, for a fake
# started with its own universe (('--symbols', 'AUSDT,BUSDT'))
our @TRUTH_ARGS = ();

sub truth_csv
{
	my ($sym, $iv, $start, $end) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $PYTHON, $FAKE, 'truth', @TRUTH_ARGS, $sym, $iv, $start, $end ],
		'>', \$out, '2>', \$err)
	  or die "fake_binance.py truth $sym $iv $start $end failed: $err";
	# tolerate a header line
	$out =~ s/\A[^\n]*[A-Za-z_]+_ms[^\n]*\n//;
	return $out;
}

# oi_truth(symbol, period, start_ms, end_ms, now_ms, archive): CSV of the
# fake's open-interest statistics (symbol, ts_ms, sum, value) in [start,
# end) as the exchange had them at now; archive: as the daily metrics
# archives give them, beyond REST's window
sub oi_truth
{
	my ($sym, $period, $start, $end, $now, $archive) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $PYTHON, $FAKE, 'oi', $sym, $period, $start, $end - 1, '--now', $now,
			($archive ? ('--archive') : ()) ],
		'>', \$out, '2>', \$err)
	  or die "fake_binance.py oi $sym $period $start $end failed: $err";
	return $out;
}

my $diag_done = 0;

END
{
	my $exit = $?;
	local $?;
	# a test that died before finish(): still show what state things were in
	if (!$diag_done && @nodes && ($exit != 0 || !Test::More->builder->is_passing))
	{
		eval { diag_state(); };
	}
	stop_fake($_) for @fakes;
}

#--------------------------------------------------------------------------
# Nodes
#--------------------------------------------------------------------------

=pod

=item new_node($name, $fake, %conf)

Creates, configures and starts a node that preloads mdfeed and points it at
the fake, then creates the extension in database postgres and waits for the
backfill workers.  %conf holds extra postgresql.conf settings (name => value,
value written as is, so quote strings: 'mdfeed.api_key' => "'x'").  Special
keys: _no_extension => 1 (do not CREATE EXTENSION), _no_wait => 1.

=cut

sub new_node
{
	my ($name, $fake, %conf) = @_;
	my $no_ext = delete $conf{_no_extension};
	my $no_wait = delete $conf{_no_wait};
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $url = $fake ? $fake->{url} : 'http://127.0.0.1:9';
	my $ws = $fake ? "ws://127.0.0.1:$fake->{port}/market" : 'ws://127.0.0.1:9/market';
	my %c = (
		shared_preload_libraries => "'mdfeed'",
		'mdfeed.database' => "'postgres'",
		'mdfeed.binance_rest_url' => "'$url'",
		'mdfeed.binance_ws_url' => "'$ws'",
		# no archives unless a test asks: data.binance.vision is out of reach
		'mdfeed.binance_archive_url' => "''",
		'mdfeed.job_poll_interval' => "'500ms'",
		'mdfeed.http_timeout' => "'10s'",
		max_worker_processes => 16,
		restart_after_crash => 'on',
		log_min_messages => 'debug1',
		log_line_prefix => "'%m [%p] %b %q%a '",
		%conf);
	$node->append_conf('postgresql.conf',
		join('', map { "$_ = $c{$_}\n" } sort keys %c));
	$node->start;
	push @nodes, $node;
	unless ($no_ext)
	{
		$node->safe_psql('postgres', 'CREATE EXTENSION mdfeed');
		unless ($no_wait)
		{
			my $n = $c{'mdfeed.backfill_workers'} // 2;
			wait_workers($node, $n, 60)
			  or diag("only "
				  . scalar(worker_pids($node))
				  . " of $n backfill workers started within 60 s\n"
				  . log_tail($node, 40));
		}
	}
	return $node;
}

# pids of running backfill workers
sub worker_pids
{
	my ($node) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'mdfeed backfill worker' ORDER BY pid"
	);
	return () if $ret != 0;
	return grep { /^\d+$/ } split /\n/, $out;
}

sub wait_workers
{
	my ($node, $n, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		return 1 if scalar(worker_pids($node)) >= $n;
		usleep(200_000);
	}
	return 0;
}

sub log_contents
{
	my ($node) = @_;
	return -f $node->logfile ? slurp_file($node->logfile) : '';
}

sub log_tail
{
	my ($node, $n) = @_;
	$n //= 40;
	my @l = split /\n/, log_contents($node);
	@l = @l[ -$n .. -1 ] if @l > $n;
	@l = map { length($_) > 400 ? substr($_, 0, 400) . ' [...]' : $_ } @l;
	return "--- last lines of " . $node->logfile . ":\n" . join("\n", @l) . "\n";
}

# comparison_json($node, $sql, $what, $timeout): runs a comparison script
# whose last line is one JSON object and returns it decoded; when the script
# fails, that is a failed test named $what, and undef is returned
sub comparison_json
{
	my ($node, $sql, $what, $timeout) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, timeout => $timeout);
	if ($ret != 0)
	{
		fail($what);
		diag($err);
		return undef;
	}
	return decode_json((split /\n/, $out)[-1]);
}

# run a query returning one json value per line; returns list of decoded values
sub query_json
{
	my ($node, $sql) = @_;
	my $out = $node->safe_psql('postgres', $sql);
	return map { decode_json($_) } grep { length } split /\n/, $out;
}

#--------------------------------------------------------------------------
# Jobs
#--------------------------------------------------------------------------

sub track_job { my ($node, $id) = @_; push @jobs, [ $node, $id ]; return $id; }

=pod

=item backfill($node, $symbol, $iv, $from_ms, $to_ms)

Queues a backfill through mdfeed_backfill and returns the job id.  $to_ms
undef means the default (now()).

=cut

sub backfill
{
	my ($node, $sym, $iv, $from, $to) = @_;
	my $sql = "SELECT mdfeed_backfill('$sym', '$iv', " . ms_sql($from)
	  . (defined $to ? ", " . ms_sql($to) : '') . ")";
	my $id = $node->safe_psql('postgres', $sql);
	return track_job($node, $id);
}

# the job's row as a hashref (times as text, plus *_ms for cursor_time)
sub job_row
{
	my ($node, $id) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT row_to_json(j)::text FROM (SELECT *, "
		  . "(extract(epoch FROM cursor_time) * 1000)::bigint AS cursor_ms "
		  . "FROM mdfeed.jobs WHERE id = $id) j");
	return undef if $ret != 0 || $out eq '';
	return decode_json($out);
}

=pod

=item wait_job($node, $id, $timeout)

Waits with mdfeed_wait (in slices, surviving crash restarts) until the job
ends or $timeout seconds pass; returns the final (or current) state.

=cut

sub wait_job
{
	my ($node, $id, $timeout) = @_;
	$timeout //= 60;
	my $deadline = Time::HiRes::time() + $timeout;
	my $state = '';
	while (1)
	{
		my $left = $deadline - Time::HiRes::time();
		last if $left <= 0;
		my $slice = $left > 10 ? 10 : $left;
		$slice = sprintf('%.3f', $slice);
		my ($ret, $out, $err) = $node->psql('postgres',
			"SELECT mdfeed_wait($id, '$slice s')",
			timeout => $slice + 30);
		if (defined $ret && $ret == 0)
		{
			$state = $out;
			return $state if $state =~ /^(succeeded|failed|canceled)$/;
		}
		else
		{
			# server restarting, or mdfeed_wait missing/broken: fall back to polling
			my ($r2, $o2) = $node->psql('postgres',
				"SELECT state FROM mdfeed.jobs WHERE id = $id");
			if (defined $r2 && $r2 == 0)
			{
				$state = $o2;
				return $state if $state =~ /^(succeeded|failed|canceled)$/;
				note "mdfeed_wait($id) failed: $err" if $err && $err !~ /connect/;
			}
			usleep(300_000);
		}
	}
	return $state;
}

# poll_job($node, $id, $sql_condition_on_jobs_row, $timeout): true when it holds
sub poll_job
{
	my ($node, $id, $cond, $timeout) = @_;
	my $deadline = Time::HiRes::time() + ($timeout // 60);
	while (Time::HiRes::time() < $deadline)
	{
		my ($ret, $out) = $node->psql('postgres',
			"SELECT ($cond) FROM mdfeed.jobs WHERE id = $id");
		return 1 if defined $ret && $ret == 0 && $out eq 't';
		usleep(100_000);
	}
	return 0;
}

# job_is($node, $id, $state, $name, $timeout): wait and check, with diagnostics
sub job_is
{
	my ($node, $id, $want, $name, $timeout) = @_;
	my $got = wait_job($node, $id, $timeout // 60);
	my $ok = is($got, $want, $name);
	unless ($ok)
	{
		diag("job $id: " . encode_json(job_row($node, $id) // {}));
		diag(log_tail($node, 30));
	}
	return $ok;
}

#--------------------------------------------------------------------------
# Truth
#--------------------------------------------------------------------------

=pod

=item compare_with_truth($node, $fake, $symbol, $iv, $from_ms, $to_ms, $name, %opt)

Loads the fake's closed truth candles with open_time in [align_down(from), to)
into a temporary table and checks, for rows with closed = true in the same
range: counts equal (and > 0 unless allow_empty), truth EXCEPT stored and
stored EXCEPT truth empty over every column (numbers compared as numeric,
times as epoch ms).  Unless allow_open, also checks that no row in the range
has closed = false.  Returns a hashref of the figures.  A range with an
undefined end (a job that does not exist) is a failure, never a comparison
from 1970.

=cut

sub compare_with_truth
{
	my ($node, $fake, $sym, $iv, $from, $to, $name, %opt) = @_;
	unless (defined $from && defined $to)
	{
		fail("$name: a range to compare (from " . ($from // 'undefined') . ', to ' . ($to // 'undefined') . ')');
		return undef;
	}
	my $start = align_down($iv, $from);
	my $csv = truth_csv($sym, $iv, $start, $to);
	my $ntruth = () = $csv =~ /\n/g;
	my $tab = candle_table($iv);
	my $sql = <<"EOS";
@{[truth_table_sql($csv)]}
CREATE TEMP VIEW got AS
  SELECT symbol, (extract(epoch FROM open_time) * 1000)::bigint AS open_time_ms,
    (extract(epoch FROM close_time) * 1000)::bigint AS close_time_ms,
    open, high, low, close, volume, quote_volume, trades,
    taker_buy_base_volume, taker_buy_quote_volume
  FROM $tab
  WHERE symbol = '$sym' AND closed
    AND open_time >= @{[ms_sql($start)]} AND open_time < @{[ms_sql($to)]};
CREATE TEMP VIEW missing AS SELECT * FROM truth EXCEPT SELECT * FROM got;
CREATE TEMP VIEW extra AS SELECT * FROM got EXCEPT SELECT * FROM truth;
CREATE TEMP VIEW text_diff AS
  SELECT t.open_time_ms FROM truth t JOIN got g USING (open_time_ms)
  WHERE (t.open::text, t.high::text, t.low::text, t.close::text, t.volume::text,
         t.quote_volume::text, t.taker_buy_base_volume::text, t.taker_buy_quote_volume::text)
    IS DISTINCT FROM
        (g.open::text, g.high::text, g.low::text, g.close::text, g.volume::text,
         g.quote_volume::text, g.taker_buy_base_volume::text, g.taker_buy_quote_volume::text);
SELECT json_build_object(
  'truth', (SELECT count(*) FROM truth),
  'got', (SELECT count(*) FROM got),
  'missing', (SELECT count(*) FROM missing),
  'extra', (SELECT count(*) FROM extra),
  'text_diff', (SELECT count(*) FROM text_diff),
  'open_rows', (SELECT count(*) FROM $tab WHERE symbol = '$sym' AND NOT closed
     AND open_time >= @{[ms_sql($start)]} AND open_time < @{[ms_sql($to)]}),
  'missing_sample', (SELECT json_agg(m) FROM (SELECT * FROM missing ORDER BY open_time_ms LIMIT 3) m),
  'extra_sample', (SELECT json_agg(e) FROM (SELECT * FROM extra ORDER BY open_time_ms LIMIT 3) e))::jsonb::text;
EOS
	my $r = comparison_json($node, $sql, "$name: truth comparison query failed", 300)
	  or return undef;
	my $ok = 1;
	$ok &&= is($r->{truth}, $ntruth, "$name: truth loaded ($ntruth rows)");
	$ok &&= ok($r->{truth} > 0, "$name: truth not empty") unless $opt{allow_empty};
	$ok &= is($r->{got}, $r->{truth}, "$name: closed row count equals truth");
	$ok &= is($r->{missing} + $r->{extra}, 0,
		"$name: rows equal truth in every column (missing $r->{missing}, extra $r->{extra})");
	$ok &= is($r->{text_diff}, 0,
		"$name: decimal strings kept exactly as sent (scale included)");
	$ok &= is($r->{open_rows}, 0, "$name: no row with closed = false")
	  unless $opt{allow_open};
	unless ($ok)
	{
		diag("$name: comparison: " . encode_json($r));
		diag("$name: range [$start, $to) = ["
			  . scalar(gmtime($start / 1000)) . ", "
			  . scalar(gmtime($to / 1000)) . ")");
	}
	return $r;
}

#--------------------------------------------------------------------------
# Diagnostics
#--------------------------------------------------------------------------

sub diag_state
{
	for my $j (@jobs)
	{
		my ($node, $id) = @$j;
		my $row = eval { job_row($node, $id) };
		diag("job $id: " . ($row ? encode_json($row) : '(unavailable)'));
	}
	for my $f (@fakes)
	{
		next unless $f->{pid};
		my $st = eval { fake_stats($f) };
		diag("fake $f->{name} stats: " . ($st ? JSON::PP->new->canonical->encode($st) : "unavailable: $@"));
	}
	for my $node (@nodes)
	{
		diag(log_tail($node, 60));
	}
}

# finish(): diagnostics if anything failed, then done_testing
sub finish
{
	diag_state() unless Test::More->builder->is_passing;
	$diag_done = 1;
	done_testing();
}

1;

#--------------------------------------------------------------------------
# Live candles (stream and watch workers): helpers for test/t/1*.pl.
# Appended; nothing above is changed.
#--------------------------------------------------------------------------

push @EXPORT, qw(
  wait_until try_sql worker_row stream_worker wait_stream fake_ws
  wait_fake_subs avoid_minute_edge wait_next_minute pair_gaps
  jobs_pending wait_jobs_settled wait_no_gaps iso_ms iv_ms
);

# interval length in ms (fixed-length intervals only)
sub iv_ms { my ($iv) = @_; return $IV_MS{$iv} // die "no fixed length for $iv"; }

# 1700000000000 -> '2023-11-14T22:13:20Z' (the NOTIFY payload's format)
sub iso_ms
{
	my ($ms) = @_;
	my @g = gmtime(floor($ms / 1000));
	return sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ',
		$g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1], $g[0]);
}

# wait_until($code, $timeout_s, $step_s): calls $code until it returns a
# true value and returns it; undef after the timeout (errors count as false)
sub wait_until
{
	my ($code, $timeout, $step) = @_;
	my $deadline = Time::HiRes::time() + ($timeout // 30);
	while (1)
	{
		my $v = eval { $code->() };
		return $v if $v;
		return undef if Time::HiRes::time() >= $deadline;
		usleep(int(($step // 0.2) * 1_000_000));
	}
}

# try_sql($node, $sql): the output, or undef when the query fails (say,
# while the server restarts)
sub try_sql
{
	my ($node, $sql) = @_;
	my ($ret, $out) = $node->psql('postgres', $sql);
	return (defined $ret && $ret == 0) ? $out : undef;
}

# worker_row($node, $role, $exchange): the mdfeed.workers row of the first
# worker of that role (of that exchange, if given), as a hashref, or undef
sub worker_row
{
	my ($node, $role, $exchange) = @_;
	my $ex = defined $exchange ? " AND exchange = '$exchange'" : '';
	my $out = try_sql($node,
		"SELECT row_to_json(w)::text FROM mdfeed.workers w WHERE role = '$role'$ex ORDER BY pid LIMIT 1");
	return undef unless defined $out && $out ne '';
	return decode_json($out);
}

# stream_worker($node, $exchange): the stream worker of an exchange
# (default binance: there is one per exchange)
sub stream_worker
{
	my ($node, $exchange) = @_;
	return worker_row($node, 'stream', $exchange // 'binance');
}

# wait_stream($node, $streams, $timeout, $connections): waits until the
# stream worker carries $streams streams on $connections open connections
# (default: ceil($streams / 200)); returns its mdfeed.workers row or undef
sub wait_stream
{
	my ($node, $n, $timeout, $nconn) = @_;
	$nconn //= int(($n + 199) / 200);
	return wait_until(
		sub {
			my $w = stream_worker($node);
			return ($w && $w->{streams} == $n && $w->{connections} == $nconn) ? $w : undef;
		},
		$timeout // 30);
}

# the fake's WebSocket counters
sub fake_ws { my ($fake) = @_; return fake_stats($fake)->{ws}; }

# wait_fake_subs($fake, $n, $timeout): waits until the fake's open
# connections carry $n subscriptions in all; returns its ws counters or undef
sub wait_fake_subs
{
	my ($fake, $n, $timeout) = @_;
	return wait_until(
		sub {
			my $ws = fake_ws($fake);
			return $ws->{subscriptions} == $n ? $ws : undef;
		},
		$timeout // 30);
}

# avoid_minute_edge($lo, $hi): if the second of the minute is not within
# [$lo, $hi], sleeps until it is $lo (checks that must not race a 1m close)
sub avoid_minute_edge
{
	my ($lo, $hi) = @_;
	$lo //= 5;
	$hi //= 50;
	my $s = (Time::HiRes::time() * 1000 % 60_000) / 1000;
	return if $s >= $lo && $s <= $hi;
	my $wait = $s < $lo ? $lo - $s : 60 - $s + $lo;
	usleep(int($wait * 1_000_000));
}

# wait_next_minute($after_s): sleeps until $after_s seconds past the next
# minute boundary; returns that boundary in ms
sub wait_next_minute
{
	my ($after) = @_;
	my $b = align_down('1m', now_ms()) + 60_000;
	my $wait = $b + ($after // 0) * 1000 - now_ms();
	usleep(int($wait * 1000)) if $wait > 0;
	return $b;
}

# pair_gaps($node, $symbol, $iv, $from_sql, $to_sql): mdfeed_gaps as a
# list of {start_ms, end_ms, missing, none}; undef when the query fails
sub pair_gaps
{
	my ($node, $sym, $iv, $from, $to) = @_;
	return ex_pair_gaps($node, 'binance', $sym, $iv, $from, $to);
}

# jobs queued or running (optionally matching an SQL condition)
sub jobs_pending
{
	my ($node, $cond) = @_;
	return try_sql($node,
		"SELECT count(*) FROM mdfeed.jobs WHERE state IN ('queued', 'running')"
		  . ($cond ? " AND ($cond)" : ''));
}

# wait_jobs_settled($node, $timeout, $cond): waits until no job (matching
# $cond) is queued or running
sub wait_jobs_settled
{
	my ($node, $timeout, $cond) = @_;
	return wait_until(
		sub {
			my $n = jobs_pending($node, $cond);
			return defined $n && $n eq '0';
		},
		$timeout // 60, 0.3);
}

# wait_no_gaps($node, [[sym, iv], ...], $from_ms, $timeout, $grace_s):
# waits until mdfeed_gaps reports nothing for every pair between $from_ms
# and the candle that closed at least $grace_s (default 3) seconds ago.
# Returns 1, or 0 with a diagnostic of what was still missing.
sub wait_no_gaps
{
	my ($node, $pairs, $from, $timeout, $grace) = @_;
	return wait_no_gaps_on($node, [ map { [ 'binance', @$_, $from ] } @$pairs ], $timeout, $grace);
}

1;

#--------------------------------------------------------------------------
# CoinDCX: the fake CoinDCX exchange (test/fake_exchange/fake_coindcx.py,
# its own process and port) and truth comparisons for mdfeed.cdx_candles_<iv>
# (futures, exchange 'coindcx') and mdfeed.cdx_spot_candles_<iv> (spot,
# exchange 'coindcx_spot').  Appended; nothing above is changed.
#
# The generic helpers above work on this fake too, since it has the same
# control endpoints: fake_stats, set_faults, clear_faults, reset_fake,
# fake_config, and the fake is killed at END and shown in diag_state like the
# Binance one.
#
#   my $bn  = start_fake();
#   my $cdx = start_cdx_fake(config => { ws_futures_interval_ms => 250 });
#   my $node = new_node('main', $bn, cdx_settings($cdx));
#   ... mdfeed_backfill('B-BTC_USDT', '1h', from, to, 'coindcx') ...
#   compare_cdx_with_truth($node, $cdx, 'futures', 'B-BTC_USDT', '1h', $from, $to, 'backfill');
#--------------------------------------------------------------------------

push @EXPORT, qw(
  start_cdx_fake stop_fake restart_cdx_fake cdx_settings cdx_truth cdx_truth_json
  cdx_table cdx_exchange cdx_channel cdx_resolution compare_cdx_with_truth
  cdx_fake_ws cdx_requests wait_cdx_channels cdx_server_now
);

my $CDX_FAKE = "$ROOT/test/fake_exchange/fake_coindcx.py";

=pod

=item start_cdx_fake(%opts)

Starts fake_coindcx.py serve on a free port (or on port => N, to come back
on the same port after stop_fake).  Options: faults (hashref), config
(hashref of /_fake/config keys, applied at start), args (arrayref of extra
arguments), name.  Returns a hashref {port, pid, url, socket_url, log, name,
opts}: url serves all three CoinDCX hosts, socket_url is the ws:// base for
mdfeed.coindcx_socket_url.  Killed at END.

=cut

sub start_cdx_fake
{
	my (%o) = @_;
	my $name = $o{name} // "cdx" . scalar(@fakes);
	my @args = ('--port', $o{port} // 0);
	push @args, '--faults', encode_json($o{faults}) if $o{faults};
	push @args, '--config', encode_json($o{config}) if $o{config};
	push @args, @{ $o{args} } if $o{args};
	my $fake = _spawn_fake('fake CoinDCX', $name, $CDX_FAKE, \@args, opts => {%o}, cdx => 1);
	$fake->{socket_url} = "ws://127.0.0.1:$fake->{port}";
	return $fake;
}

=pod

=item stop_fake($fake)

Stops a fake exchange (either side) started by this module: SIGTERM, then
SIGKILL after 5 s.  Its port then refuses connections: an outage.

=cut

sub stop_fake
{
	my ($fake) = @_;
	return unless $fake->{pid};
	kill 'TERM', $fake->{pid};
	my $t = time() + 5;
	while (time() < $t)
	{
		last if waitpid($fake->{pid}, POSIX::WNOHANG()) == $fake->{pid};
		usleep(50_000);
	}
	if (kill(0, $fake->{pid}))
	{
		kill 'KILL', $fake->{pid};
		waitpid($fake->{pid}, 0);
	}
	$fake->{pid} = undef;
}

# restart_cdx_fake($fake): stop it and start it again on the same port with
# the same options; returns the new fake (the old hashref is updated too)
sub restart_cdx_fake
{
	my ($fake) = @_;
	stop_fake($fake);
	my $new;
	for my $try (1 .. 50)    # the port can take a moment to be free again
	{
		$new = eval { start_cdx_fake(%{ $fake->{opts} }, port => $fake->{port}, name => $fake->{name}) };
		if ($new)
		{
			# the old hashref, already listed, stands for the new process
			@fakes = grep { $_ != $new } @fakes;
			last;
		}
		usleep(100_000);
	}
	die "could not restart fake CoinDCX on port $fake->{port}: $@" unless $new;
	%$fake = %$new;
	return $fake;
}

# cdx_settings($fake): postgresql.conf settings pointing mdfeed's CoinDCX
# URLs at the fake (or at a closed port without one), for new_node's %conf
sub cdx_settings
{
	my ($fake) = @_;
	my $url = $fake ? $fake->{url} : 'http://127.0.0.1:9';
	my $ws = $fake ? $fake->{socket_url} : 'ws://127.0.0.1:9';
	return (
		'mdfeed.coindcx_public_url' => "'$url'",
		'mdfeed.coindcx_api_url' => "'$url'",
		'mdfeed.coindcx_socket_url' => "'$ws'");
}

# cdx_exchange('futures'|'spot') -> 'coindcx' | 'coindcx_spot'
sub cdx_exchange
{
	my ($market) = @_;
	return $market eq 'spot' ? 'coindcx_spot' : $market eq 'futures' ? 'coindcx' : die "bad market $market";
}

# cdx_table('futures'|'spot', $iv) -> mdfeed.cdx_candles_<iv> | mdfeed.cdx_spot_candles_<iv>
sub cdx_table
{
	my ($market, $iv) = @_;
	my $s = $iv eq '1M' ? '1mo' : $iv;
	return $market eq 'spot' ? "mdfeed.cdx_spot_candles_$s"
	  : $market eq 'futures' ? "mdfeed.cdx_candles_$s" : die "bad market $market";
}

# cdx_channel($market, $pair, $iv): the socket.io channel name
sub cdx_channel
{
	my ($market, $pair, $iv) = @_;
	return $market eq 'spot' ? "${pair}_$iv" : "${pair}_$iv-futures";
}

# cdx_resolution($iv): the futures REST resolution of an mdfeed interval
my %CDX_RES = ('1m' => '1', '5m' => '5', '15m' => '15', '30m' => '30', '1h' => '60',
	'4h' => '240', '8h' => '480', '1d' => '1D', '1M' => '1M');
sub cdx_resolution { my ($iv) = @_; return $CDX_RES{$iv} // die "no CoinDCX resolution for $iv"; }

# cdx_server_now($fake): the fake's clock in ms (clock_offset_ms applied)
sub cdx_server_now
{
	my ($fake) = @_;
	my $off = $fake ? (fake_config($fake)->{clock_offset_ms} // 0) : 0;
	return now_ms() + $off;
}

=pod

=item cdx_truth_json($market, $pair, $iv, $start_ms, $end_ms, %opt)

=item cdx_truth($market, $pair, $iv, $start_ms, $end_ms, %opt)

The fake's truth for closed bars with open time in [start, end): the JSON
lines of fake_coindcx.py truth, or an arrayref of hashrefs {market, pair,
interval, open_time, close_time, open, high, low, close, volume,
quote_volume (undef), ws_quote_volume}, prices and volumes as the exact
decimal strings to store.  %opt: now => ms (default: the real clock).

=cut

sub cdx_truth_json
{
	my ($market, $pair, $iv, $start, $end, %opt) = @_;
	my @cmd = ($PYTHON, $CDX_FAKE, 'truth', $market, $pair, $iv, $start, $end);
	push @cmd, '--now', $opt{now} if defined $opt{now};
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err)
	  or die "fake_coindcx.py truth $market $pair $iv $start $end failed: $err";
	return $out;
}

sub cdx_truth
{
	my $out = cdx_truth_json(@_);
	return [ map { decode_json($_) } grep { length } split /\n/, $out ];
}

# the fake's socket counters, request count of one path
sub cdx_fake_ws { my ($fake) = @_; return fake_stats($fake)->{ws}; }
sub cdx_requests
{
	my ($fake, $path, $st) = @_;
	$st //= fake_stats($fake);
	return $st->{requests}{$path} // 0;
}

# wait_cdx_channels($fake, $n, $timeout, $channel): waits until the fake's
# open connections have $n channels joined in all (silent ones included), or,
# with $channel, until that channel is joined on $n connections; returns the
# ws counters or undef
sub wait_cdx_channels
{
	my ($fake, $n, $timeout, $channel) = @_;
	return wait_until(
		sub {
			my $ws = cdx_fake_ws($fake);
			my $got = defined $channel ? ($ws->{channels}{$channel} // 0) : $ws->{channels_joined};
			return $got == $n ? $ws : undef;
		},
		$timeout // 30);
}

=pod

=item compare_cdx_with_truth($node, $fake, $market, $pair, $iv, $from_ms, $to_ms, $name, %opt)

Like compare_with_truth, for cdx_table($market, $iv) (columns id, symbol,
open_time, close_time, open, high, low, close, volume, quote_volume, closed,
updated_at): loads the truth of closed bars with open time in
[align_down(from), to) and checks, for the rows with closed = true in that
range: counts equal (and > 0 unless allow_empty), truth EXCEPT stored and
stored EXCEPT truth empty, and the decimal text kept exactly.  Unless
allow_open, no row in the range may have closed = false.  symbol is the
pair (B-BTC_USDT).

%opt: quote_volume => 'null' (default: the exchange's REST sends none, so
NULL), 'ws' (the socket's value for the final bar, as sent) or 'any' (not
compared); now => ms for the truth (default: the fake's clock when $fake is
given); allow_empty, allow_open; figures_only => 1 runs no check and only
returns the figures.  Returns a hashref of the figures {truth, got, missing,
extra, text_diff, open_rows, missing_sample, extra_sample, truth_rows}.

=cut

sub compare_cdx_with_truth
{
	my ($node, $fake, $market, $pair, $iv, $from, $to, $name, %opt) = @_;
	unless (defined $from && defined $to)
	{
		fail("$name: a range to compare (from " . ($from // 'undefined') . ', to ' . ($to // 'undefined') . ')');
		return undef;
	}
	my $qmode = $opt{quote_volume} // 'null';
	die "quote_volume must be null, ws or any" unless $qmode =~ /^(null|ws|any)$/;
	my $now = $opt{now} // ($fake ? cdx_server_now($fake) : undef);
	my $start = align_down($iv, $from);
	my $rows = cdx_truth($market, $pair, $iv, $start, $to, defined $now ? (now => $now) : ());
	my $csv = '';
	for my $r (@$rows)
	{
		my $qv = $qmode eq 'ws' ? $r->{ws_quote_volume} : '';
		$csv .= join(',', $pair, $r->{open_time}, $r->{close_time},
			@$r{qw(open high low close volume)}, $qv) . "\n";
	}
	my $ntruth = scalar(@$rows);
	my $tab = cdx_table($market, $iv);
	my $qcol = $qmode eq 'any' ? '' : ', quote_volume';
	my $qtext = $qmode eq 'any' ? '' : ', t.quote_volume::text';
	my $qtext_g = $qmode eq 'any' ? '' : ', g.quote_volume::text';
	my $range = "open_time >= @{[ms_sql($start)]} AND open_time < @{[ms_sql($to)]}";
	my $sql = <<"EOS";
CREATE TEMP TABLE truth (symbol text, open_time_ms bigint, close_time_ms bigint,
  open numeric, high numeric, low numeric, close numeric, volume numeric, quote_volume numeric);
COPY truth FROM STDIN WITH (FORMAT csv);
$csv\\.
CREATE TEMP VIEW got AS
  SELECT symbol, (extract(epoch FROM open_time) * 1000)::bigint AS open_time_ms,
    round(extract(epoch FROM close_time) * 1000)::bigint AS close_time_ms,
    open, high, low, close, volume$qcol
  FROM $tab
  WHERE symbol = '$pair' AND closed AND $range;
CREATE TEMP VIEW want AS
  SELECT symbol, open_time_ms, close_time_ms, open, high, low, close, volume$qcol FROM truth;
CREATE TEMP VIEW missing AS SELECT * FROM want EXCEPT SELECT * FROM got;
CREATE TEMP VIEW extra AS SELECT * FROM got EXCEPT SELECT * FROM want;
CREATE TEMP VIEW text_diff AS
  SELECT t.open_time_ms FROM want t JOIN got g USING (open_time_ms)
  WHERE (t.open::text, t.high::text, t.low::text, t.close::text, t.volume::text$qtext)
    IS DISTINCT FROM
        (g.open::text, g.high::text, g.low::text, g.close::text, g.volume::text$qtext_g);
SELECT json_build_object(
  'truth', (SELECT count(*) FROM truth),
  'got', (SELECT count(*) FROM got),
  'missing', (SELECT count(*) FROM missing),
  'extra', (SELECT count(*) FROM extra),
  'text_diff', (SELECT count(*) FROM text_diff),
  'open_rows', (SELECT count(*) FROM $tab WHERE symbol = '$pair' AND NOT closed AND $range),
  'missing_sample', (SELECT json_agg(m) FROM (SELECT * FROM missing ORDER BY open_time_ms LIMIT 3) m),
  'extra_sample', (SELECT json_agg(e) FROM (SELECT * FROM extra ORDER BY open_time_ms LIMIT 3) e))::jsonb::text;
EOS
	my $r = comparison_json($node, $sql, "$name: truth comparison query failed", 300)
	  or return undef;
	$r->{truth_rows} = $ntruth;
	return $r if $opt{figures_only};
	my $ok = 1;
	$ok &&= is($r->{truth}, $ntruth, "$name: truth loaded ($ntruth rows)");
	$ok &&= ok($r->{truth} > 0, "$name: truth not empty") unless $opt{allow_empty};
	$ok &= is($r->{got}, $r->{truth}, "$name: closed row count equals truth");
	$ok &= is($r->{missing} + $r->{extra}, 0,
		"$name: rows equal truth in every column (missing $r->{missing}, extra $r->{extra})");
	$ok &= is($r->{text_diff}, 0, "$name: decimals kept exactly (scale included)");
	$ok &= is($r->{open_rows}, 0, "$name: no row with closed = false")
	  unless $opt{allow_open};
	unless ($ok)
	{
		diag("$name: comparison: " . encode_json($r));
		diag("$name: $tab $pair range [$start, $to) = ["
			  . scalar(gmtime($start / 1000)) . ", "
			  . scalar(gmtime($to / 1000)) . ")");
	}
	return $r;
}

1;

#--------------------------------------------------------------------------
# Helpers that take the exchange, for test/t/301..303 (CoinDCX beside
# Binance).  Appended; nothing above is changed.
#--------------------------------------------------------------------------

push @EXPORT, qw(
  backfill_on ex_pair_gaps wait_no_gaps_on sql_error
  collect_notifications job_seconds
);

# backfill_on($node, $exchange, $symbol, $iv, $from_ms, $to_ms): like
# backfill() on that exchange ($to_ms undef: now()); returns the job id
sub backfill_on
{
	my ($node, $ex, $sym, $iv, $from, $to) = @_;
	my $id = $node->safe_psql('postgres',
		"SELECT mdfeed_backfill('$sym', '$iv', " . ms_sql($from) . ", "
		  . (defined $to ? ms_sql($to) : 'now()') . ", '$ex')");
	return track_job($node, $id);
}

# sql_error($node, $sql): undef when the statement succeeds, else its stderr
# (ERROR, DETAIL and HINT lines)
sub sql_error
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql);
	return $ret == 0 ? undef : ($err // '');
}

# ex_pair_gaps($node, $exchange, $symbol, $iv, $from_sql, $to_sql): like
# pair_gaps, of that exchange's table family
sub ex_pair_gaps
{
	my ($node, $ex, $sym, $iv, $from, $to) = @_;
	my $out = try_sql($node,
		"SELECT (extract(epoch FROM gap_start) * 1000)::bigint, (extract(epoch FROM gap_end) * 1000)::bigint, "
		  . "missing, exchange_has_none FROM mdfeed_gaps('$sym', '$iv', $from, $to, '$ex') ORDER BY gap_start");
	return undef unless defined $out;
	my @g;
	for my $l (grep { length } split /\n/, $out)
	{
		my ($s, $e, $m, $n) = split /\|/, $l;
		push @g, { start_ms => $s, end_ms => $e, missing => $m, none => ($n eq 't' ? 1 : 0) };
	}
	return \@g;
}

# wait_no_gaps_on($node, [[exchange, symbol, iv, from_ms], ...], $timeout,
# $grace_s): waits until mdfeed_gaps reports nothing for every pair between
# its from_ms and the candle that closed at least $grace_s (default 3)
# seconds ago.  Returns 1, or 0 with a diagnostic of what was still missing.
sub wait_no_gaps_on
{
	my ($node, $pairs, $timeout, $grace) = @_;
	$grace //= 3;
	my $left = '';
	my $ok = wait_until(
		sub {
			$left = '';
			for my $p (@$pairs)
			{
				my ($ex, $sym, $iv, $from) = @$p;
				my $g = ex_pair_gaps($node, $ex, $sym, $iv, ms_sql($from),
					"mdfeed.interval_floor('$iv', now() - interval '$grace s')");
				return 0 unless defined $g;
				$left .= "$ex $sym $iv: " . encode_json($g) . "\n" if @$g;
			}
			return $left eq '';
		},
		$timeout // 60, 0.5);
	diag("still missing:\n$left") unless $ok;
	return $ok ? 1 : 0;
}

# collect_notifications($bgpsql, \%got, \$raw, $channel): reads what a
# background psql that ran LISTEN $channel (default mdfeed_candles) has
# received; adds each decoded payload to %got under
# "exchange|symbol|interval|open_time" ("model|..." for mdfeed_models;
# value: the payload) and the text to $raw
sub collect_notifications
{
	my ($bg, $got, $raw, $channel) = @_;
	$channel //= 'mdfeed_candles';
	my @key = $channel eq 'mdfeed_models' ? qw(model exchange symbol interval open_time)
	  : qw(exchange symbol interval open_time);
	my $out = $bg->query_safe('SELECT 1');
	$$raw .= $out if $raw;
	while ($out =~ /Asynchronous notification "\Q$channel\E" with payload "(.*?)" received/g)
	{
		my $p = eval { decode_json($1) };
		next unless $p && ref $p eq 'HASH';
		$got->{ join('|', map { $p->{$_} // '' } @key) } = $p;
	}
	return $got;
}

# job_seconds($node, $id): finished_at - created_at of a job, in seconds
# (fractional), or undef while it has not finished
sub job_seconds
{
	my ($node, $id) = @_;
	my $out = try_sql($node,
		"SELECT extract(epoch FROM finished_at - created_at) FROM mdfeed.jobs WHERE id = $id");
	return (defined $out && $out ne '') ? $out + 0 : undef;
}

# facts_model_sql($schema): CREATE FUNCTION of a model, $schema.facts, that
# sums its window exactly and names its first and last candle: what the
# model tests compare with the same sums done in SQL over the truth
sub facts_model_sql
{
	my ($schema) = @_;
	return <<"EOS";
CREATE FUNCTION $schema.facts(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql STABLE AS \$\$
  SELECT jsonb_build_object(
    'n', count(*),
    'first', (extract(epoch FROM (candles[1]).open_time) * 1000)::bigint,
    'last', (extract(epoch FROM (candles[cardinality(candles)]).open_time) * 1000)::bigint,
    'sum_close', sum(c.close), 'max_high', max(c.high), 'min_low', min(c.low),
    'sum_volume', sum(c.volume), 'trades', sum(c.trades), 'quote', sum(c.quote_volume),
    'all_closed', bool_and(c.close_time < now()))
  FROM unnest(candles) c
\$\$;
EOS
}

1;
