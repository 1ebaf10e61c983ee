
# Copyright (c) mdfeed authors
#
# Operations (issues 7.8 and 8):
#  a. mdfeed.enabled = off and a reload stop every worker but the launcher,
#     which holds no database connection, so DROP DATABASE of
#     mdfeed.database needs no FORCE;
#  b. while that database is gone, the launcher says so once and waits, no
#     FATAL every 10 s;
#  c. created again (database, extension, reload), the workers come back;
#  d. a schema older than the library (CREATE EXTENSION ... VERSION '1.0'),
#     or newer: only the watch worker (the probe) runs, the message is
#     logged once with its hint, and the workers start after the update;
#  e. DROP EXTENSION stops them, CREATE EXTENSION starts them;
#  f. pg_ctl stop -m fast stays quick, the probe waiting or not.
# No exchange is needed: the URLs point at 127.0.0.1:9.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

use MdfeedTest;

# the version this build installs and needs
my ($default) = slurp_file(src_root() . '/mdfeed.control') =~ /default_version\s*=\s*'([^']+)'/;
my $db = 'mdfeed_ops';
my $node = new_node('ops', undef, 'mdfeed.database' => "'$db'", _no_extension => 1);

# wait_for($code, $timeout): polls $code until it returns true
sub wait_for
{
	my ($code, $timeout) = @_;
	my $deadline = Time::HiRes::time() + $timeout;
	while (Time::HiRes::time() < $deadline)
	{
		return 1 if $code->();
		usleep(200_000);
	}
	return 0;
}

# the mdfeed processes: { backend_type => count }, and those in $db
sub procs
{
	my %n;
	my $out = $node->safe_psql('postgres',
		"SELECT backend_type, coalesce(datname, '-') FROM pg_stat_activity "
		  . "WHERE backend_type LIKE 'mdfeed%'");
	for (split /\n/, $out)
	{
		my ($type, $dat) = split /\|/;
		$n{$type}++;
		$n{in_db}++ if $dat eq $db;
	}
	$n{$_} //= 0 for ('mdfeed launcher', 'mdfeed backfill worker',
		'mdfeed watch worker', 'mdfeed stream worker', 'in_db');
	return \%n;
}

# one stream worker per exchange with streams: binance, coindcx, coindcx_spot
my $nstream = 3;
sub all_running
{
	my $p = procs();
	return $p->{'mdfeed backfill worker'} == 2
	  && $p->{'mdfeed watch worker'} == 1
	  && $p->{'mdfeed stream worker'} == $nstream
	  && $p->{in_db} == 3 + $nstream;
}

sub only_probe
{
	my $p = procs();
	return $p->{'mdfeed watch worker'} == 1
	  && $p->{'mdfeed backfill worker'} == 0
	  && $p->{'mdfeed stream worker'} == 0;
}

sub none_but_launcher
{
	my $p = procs();
	return $p->{'mdfeed launcher'} == 1 && $p->{in_db} == 0
	  && $p->{'mdfeed backfill worker'} + $p->{'mdfeed watch worker'}
	  + $p->{'mdfeed stream worker'} == 0;
}

sub set_enabled
{
	my ($on) = @_;
	$node->append_conf('postgresql.conf', "mdfeed.enabled = $on\n");
	$node->reload;
}

# the server log from byte $off on
sub log_since { my ($off) = @_; return slurp_file($node->logfile, $off); }
sub count_of { my ($re, $s) = @_; my @m = $s =~ /$re/g; return scalar @m; }

sub launcher_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'mdfeed launcher'");
}

# the database is missing at the start: said once, no FATAL (nor at any
# start: the launcher reads pg_database before any relcache init file exists)
ok(wait_for(sub { log_contents($node) =~ /database "$db" does not exist; mdfeed waits for it/ }, 10),
	'at the start, the launcher says the database does not exist');

# the database appears after the server started: the launcher looks again
# at the reload
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION mdfeed');
$node->reload;
ok(wait_for(\&all_running, 60), 'the workers run in mdfeed.database')
  or diag(explain(procs()) . log_tail($node, 40));
is($node->safe_psql('postgres',
	"SELECT datid IS NULL FROM pg_stat_activity WHERE backend_type = 'mdfeed launcher'"),
	't', 'the launcher is connected to no database');
my $launcher = launcher_pid();

# a. off: every worker stops within a few seconds, DROP DATABASE works
set_enabled('off');
my $t = Time::HiRes::time();
ok(wait_for(\&none_but_launcher, 10), 'mdfeed.enabled = off stops every worker')
  or diag(explain(procs()));
my $dt = Time::HiRes::time() - $t;
ok($dt < 5, sprintf('they stopped in %.1f s (< 5 s)', $dt));
my ($ret, $out, $err) = $node->psql($db, 'SELECT count(*) FROM mdfeed.workers');
like($err, qr/mdfeed is disabled/, 'mdfeed.workers says that mdfeed is disabled');
is($out, '1', 'mdfeed.workers lists the launcher alone');
($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE $db");
is($ret, 0, 'DROP DATABASE without FORCE succeeds') or diag($err);

# b. on again, the database gone: said once, no FATAL, the launcher waits
my $off = -s $node->logfile;
set_enabled('on');
sleep(12);
$node->reload;    # looks again at once, says nothing new
sleep(13);
my $log = log_since($off);
is(count_of(qr/database "$db" does not exist; mdfeed waits for it/, $log), 1,
	'"does not exist" logged exactly once in 25 s');
unlike($log, qr/FATAL/, 'no FATAL while the database is gone');
is(launcher_pid(), $launcher, 'the same launcher still runs');
ok(none_but_launcher(), 'no worker started without the database');

# c. the database and the extension back: the workers come back
$off = -s $node->logfile;
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, 'CREATE EXTENSION mdfeed');
set_enabled('on');
ok(wait_for(\&all_running, 30), 'the workers are back in the new database')
  or diag(explain(procs()) . log_tail($node, 40));
like(log_since($off), qr/database "$db" exists now/, 'the launcher says it found the database');

# d. a schema older than the library: only the probe runs, said once
set_enabled('off');
ok(wait_for(\&none_but_launcher, 10), 'off again');
($ret, $out, $err) = $node->psql('postgres', "DROP DATABASE $db");
is($ret, 0, 'DROP DATABASE again') or diag($err);
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, "CREATE EXTENSION mdfeed VERSION '1.0'");
$off = -s $node->logfile;
set_enabled('on');
ok(wait_for(\&only_probe, 30), 'schema 1.0: the probe runs') or diag(explain(procs()));
my $others = 0;
for (1 .. 40)
{
	my $p = procs();
	$others += $p->{'mdfeed backfill worker'} + $p->{'mdfeed stream worker'};
	usleep(200_000);
}
is($others, 0, 'schema 1.0: no backfill or stream worker starts in 8 s');
$log = log_since($off);
is(count_of(qr/Run ALTER EXTENSION mdfeed UPDATE\./, $log), 1,
	'schema 1.0: "Run ALTER EXTENSION mdfeed UPDATE." logged once');
like($log, qr/extension mdfeed in database "$db" has version 1\.0, but the loaded mdfeed library needs version \Q$default\E/,
	'schema 1.0: the message names both versions');
unlike($log, qr/ERROR|FATAL|exited; restarting/, 'schema 1.0: no error loop');
is($node->safe_psql($db,
	"SELECT state FROM mdfeed_workers() WHERE role = 'watch'"),
	'waiting for schema update', 'schema 1.0: the probe says what it waits for');
($ret, $out, $err) = $node->psql($db, "SELECT mdfeed.refresh_instruments('binance')");
like($err, qr/HINT:  Run ALTER EXTENSION mdfeed UPDATE\./,
	'schema 1.0: refreshing the instruments by hand says to update, too');

$node->safe_psql($db, 'ALTER EXTENSION mdfeed UPDATE');
is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'mdfeed'"),
	$default, "updated to $default");
ok(wait_for(\&all_running, 15), 'after ALTER EXTENSION mdfeed UPDATE the workers run')
  or diag(explain(procs()) . log_tail($node, 40));

# d'. a schema newer than the library (as if a newer build's ALTER EXTENSION
# UPDATE had run): the workers stop, the hint names the build to install
$off = -s $node->logfile;
$node->safe_psql($db, "UPDATE pg_extension SET extversion = '9.9' WHERE extname = 'mdfeed'");
ok(wait_for(\&only_probe, 15), 'schema 9.9: only the probe runs') or diag(explain(procs()));
$log = log_since($off);
is(count_of(qr/Install the mdfeed build for version 9\.9/, $log), 1,
	'schema 9.9: the hint to install the matching build is logged once');
$node->safe_psql($db, "UPDATE pg_extension SET extversion = '$default' WHERE extname = 'mdfeed'");
ok(wait_for(\&all_running, 15), "schema $default again: the workers run");

# e. DROP EXTENSION stops them, CREATE EXTENSION starts them
$node->safe_psql($db, 'DROP EXTENSION mdfeed');
ok(wait_for(\&only_probe, 15), 'DROP EXTENSION stops every worker but the probe')
  or diag(explain(procs()));

# f. a fast stop is quick while the probe waits for the extension
$t = Time::HiRes::time();
ok($node->stop('fast', fail_ok => 1), 'pg_ctl stop -m fast succeeded (probe waiting)');
$dt = Time::HiRes::time() - $t;
ok($dt < 5, sprintf('stop -m fast returned in %.1f s (< 5 s), probe waiting', $dt));
$node->start;
ok(wait_for(\&only_probe, 30), 'after the start, the probe waits for the extension');
$node->safe_psql($db, 'CREATE EXTENSION mdfeed');
ok(wait_for(\&all_running, 15), 'CREATE EXTENSION starts them')
  or diag(explain(procs()) . log_tail($node, 40));

$t = Time::HiRes::time();
ok($node->stop('fast', fail_ok => 1), 'pg_ctl stop -m fast succeeded (running)');
$dt = Time::HiRes::time() - $t;
ok($dt < 5, sprintf('stop -m fast returned in %.1f s (< 5 s), workers running', $dt));
$node->start;

$log = log_contents($node);
unlike($log, qr/PANIC|terminated by signal/, 'no crash in the server log');
# the only FATALs: workers told to stop, and the stop's own
my @fatal = grep { !/FATAL:  terminating (background worker "[^"]*"|connection) due to administrator command/ }
  ($log =~ /^.*FATAL:.*$/mg);
is(scalar(@fatal), 0, 'no FATAL but terminations in the whole log') or diag(join("\n", @fatal));

finish();
