
# Copyright (c) mdfeed authors
#
# mdfeed.api_key and mdfeed.api_secret: set in postgresql.conf and changed on
# reload (and through ALTER SYSTEM), they never reach the server log; roles
# other than superusers (members of pg_read_all_settings included) can
# neither read nor set them; superusers can read them.  Every form of
# statement that sets or names them (failing or not, simple or extended
# protocol, in PL/pgSQL and in CONTEXT lines) keeps their values out of the
# log at log_statement = none (the defaults) and at log_statement = all,
# while statements that only name them, and all others, are logged intact.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

use MdfeedTest;

my $fake = start_fake();
my $node = new_node('secrets', $fake, log_min_messages => 'debug2');

my %v = (
	key1 => 'KEY1-vmQ3xT8rLp2ZsW9aYb4n',
	secret1 => 'SEC1-h7Gk2Pq9Zr4Tx6Lw8Nc3',
	key2 => 'KEY2-Jd5Fs1Mv7Qa3Xe9Rb2Uk',
	secret2 => 'SEC2-Wn4Yc8Hp6Lt2Vz0Ds5Ga',
	key3 => 'KEY3-Bq7Rm2Xs9Kf4Tn1Pz6Hc');

# wait until the postmaster and a fresh backend both see $want as the value
sub reload_and_wait
{
	my ($want) = @_;
	$node->reload;
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		# compare in perl: no secret value in any SQL text sent
		my $got = $node->safe_psql('postgres', 'SHOW mdfeed.api_key');
		return 1 if $got eq $want;
		usleep(100_000);
	}
	return 0;
}

# 1. set in postgresql.conf, reload
$node->append_conf('postgresql.conf',
	"mdfeed.api_key = '$v{key1}'\nmdfeed.api_secret = '$v{secret1}'\n");
ok(reload_and_wait($v{key1}), 'superuser sees api_key from postgresql.conf after reload');
is($node->safe_psql('postgres', 'SHOW mdfeed.api_secret'), $v{secret1},
	'superuser sees api_secret');
is($node->safe_psql('postgres', "SELECT current_setting('mdfeed.api_key')"), $v{key1},
	'superuser: current_setting(api_key)');

# a backfill with the keys set: workers must not log them either
my $id = backfill($node, 'BTCUSDT', '1h', ts_ms('2024-01-01'), ts_ms('2024-01-03'));
job_is($node, $id, 'succeeded', 'backfill with api_key set succeeded');

# 2. change them, reload again
$node->append_conf('postgresql.conf',
	"mdfeed.api_key = '$v{key2}'\nmdfeed.api_secret = '$v{secret2}'\n");
ok(reload_and_wait($v{key2}), 'changed api_key visible after second reload');
is($node->safe_psql('postgres', 'SHOW mdfeed.api_secret'), $v{secret2},
	'changed api_secret visible after second reload');
$id = backfill($node, 'BTCUSDT', '1h', ts_ms('2024-01-03'), ts_ms('2024-01-05'));
job_is($node, $id, 'succeeded', 'backfill with changed api_key succeeded');

# 3. non-superusers
$node->safe_psql('postgres', q{
	CREATE ROLE alice LOGIN;
	CREATE ROLE bob LOGIN;
	GRANT pg_read_all_settings TO bob;
});

for my $role (qw(alice bob))
{
	my $label = $role eq 'bob' ? "$role (pg_read_all_settings)" : $role;
	for my $q (
		'SHOW mdfeed.api_key',
		'SHOW mdfeed.api_secret',
		"SELECT current_setting('mdfeed.api_key')",
		"SELECT current_setting('mdfeed.api_secret')",
		"SELECT current_setting('mdfeed.api_key', true)",
		"SELECT name || '=' || coalesce(setting, '<null>') || '/' || coalesce(reset_val, '<null>') || '/' || coalesce(boot_val, '<null>') FROM pg_settings WHERE name LIKE 'mdfeed.api%'",
		"SELECT name || '=' || coalesce(setting, '<null>') FROM pg_show_all_settings() WHERE name LIKE 'mdfeed.api%'",
		"SELECT name || '=' || coalesce(setting, '<null>') FROM pg_file_settings WHERE name LIKE 'mdfeed.api%'",
		'SHOW ALL')
	{
		my ($ret, $out, $err) = $node->psql('postgres', $q,
			extra_params => [ '-U', $role ]);
		my $all = "$out\n$err";
		my $leak = grep { index($all, $_) >= 0 } values %v;
		ok(!$leak, "$label: '$q' shows no secret")
		  or diag("ret $ret, out: $out, err: $err");
	}
	for my $q (
		"SET mdfeed.api_key = 'x-attempt-$role'",
		"SELECT set_config('mdfeed.api_secret', 'y-attempt-$role', false)",
		"ALTER ROLE $role SET mdfeed.api_key = 'z-attempt-$role'",
		"ALTER SYSTEM SET mdfeed.api_key = 'w-attempt-$role'")
	{
		my ($ret, $out, $err) = $node->psql('postgres', $q,
			extra_params => [ '-U', $role ]);
		isnt($ret, 0, "$label: '$q' refused");
		like($err, qr/permission denied|must be superuser/, "$label: '$q' says why")
		  or diag("err: $err");
	}
}
is($node->safe_psql('postgres', 'SHOW mdfeed.api_key'), $v{key2},
	'api_key unchanged by the refused attempts');

# 4. ALTER SYSTEM by a superuser: the statement is logged (log_statement = all)
#    and the reload announces the change; neither may show the value
$node->safe_psql('postgres', "ALTER SYSTEM SET mdfeed.api_key = '$v{key3}'");
ok(reload_and_wait($v{key3}), 'api_key set through ALTER SYSTEM visible after reload');
$node->safe_psql('postgres', 'SELECT 1');    # let the log catch up

# 5. the server log
my $log = log_contents($node);
like($log, qr/mdfeed\.api_key/, 'the server log mentions mdfeed.api_key (the checks below look at real lines)');
for my $k (sort keys %v)
{
	my $pos = index($log, $v{$k});
	ok($pos < 0, "server log never contains $k")
	  or diag('line: ' . (grep { index($_, $v{$k}) >= 0 } split /\n/, $log)[0]);
}
# the secret values must not leak through a prefix either
for my $k (sort keys %v)
{
	my $part = substr($v{$k}, 5, 12);
	ok(index($log, $part) < 0, "server log has no fragment of $k");
}

# 6. every form of statement that sets or names a secret, per logging mode.
#    Values carry a marker per mode and form, with quotes and escapes inside
#    so that a scrubber stopping at the first quote leaks the rest.
my %modes = (
	none => '-c log_statement=none -c log_min_duration_statement=-1',
	duration => '-c log_statement=none -c log_min_duration_statement=0 '
	  . '-c log_parameter_max_length=-1',
	all => '-c log_statement=all -c log_min_duration_statement=0 '
	  . '-c log_parameter_max_length=-1 -c log_parameter_max_length_on_error=-1');

$node->safe_psql('postgres', q{
	CREATE ROLE carol;
	CREATE DATABASE spare;
	CREATE FUNCTION inner_fail(t text) RETURNS void LANGUAGE plpgsql
	  AS $f$ BEGIN RAISE EXCEPTION 'inner failed'; END $f$;
	CREATE FUNCTION note() RETURNS int LANGUAGE plpgsql
	  AS $f$ BEGIN RAISE LOG 'a note'; RETURN 1; END $f$;
});

# run sql in one session of the mode: as one query string, or split by psql
sub run_sql
{
	my ($mode, $sql, $one_string) = @_;
	local $ENV{PGOPTIONS} = $modes{$mode};
	my @cmd = ('psql', '-X', '-q', '-d', $node->connstr('postgres'));
	my ($in, $out, $err) = $one_string ? ('', '', '') : ($sql, '', '');
	push @cmd, $one_string ? ('-c', $sql) : ('-f', '-');
	IPC::Run::run(\@cmd, '<', \$in, '>', \$out, '2>', \$err);
	return "$out$err";
}

# the extended protocol, through pgbench: name and value are parameters
sub run_extended
{
	my ($mode, $script, %vars) = @_;
	local $ENV{PGOPTIONS} = $modes{$mode};
	my $file = $node->basedir . "/extended.sql";
	open my $fh, '>', $file or die "cannot write $file: $!";
	print $fh "$script\n";
	close $fh;
	my @cmd = ('pgbench', '-n', '-M', 'extended', '-t', '1',
		'-h', $node->host, '-p', $node->port,
		(map { ('-D', "$_=$vars{$_}") } sort keys %vars), '-f', $file, 'postgres');
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return "$out$err";
}

# every form: [id, how, sql]; \@1 and \@2 stand for parts of the form's marker
my @forms = (
	[ 'system_txn', 'one', q{BEGIN; ALTER SYSTEM SET mdfeed.api_secret = '@1''@2'; COMMIT} ],
	[ 'system_txn_split', 'split', q{BEGIN; ALTER SYSTEM SET mdfeed.api_secret = E'@1\'@2\\\\'; COMMIT;} ],
	[ 'system_syntax', 'one', q{ALTER SYSTEM SET mdfeed.api_key = '@1' '@2'} ],
	[ 'system_syntax_bare', 'one', q{ALTER SYSTEM SET mdfeed.api_key = @1 @2} ],
	[ 'unterminated', 'one', q{SET mdfeed.api_key = '@1''@2} ],
	[ 'unterminated_dollar', 'one', q{SET mdfeed.api_key = $t$ @1 $t} ],
	[ 'set', 'one', q{SET mdfeed.api_key = '@1''@2'; SELECT 1/0} ],
	[ 'set_ok', 'one', q{SET mdfeed.api_key = '@1''@2'} ],
	[ 'set_split', 'split', q{SET mdfeed.api_key = '@1''@2'; SELECT 1/0;} ],
	[ 'set_local', 'one', q{BEGIN; SET LOCAL mdfeed.api_secret TO $$@1$$; SELECT 1/0} ],
	[ 'set_session', 'one', q{SET SESSION mdfeed.api_key = $t$@1 $$ @2$t$; SELECT 1/0} ],
	[ 'set_bare', 'one', q{SET mdfeed.api_key TO @1; SELECT 1/0} ],
	[ 'set_list', 'one', q{SET mdfeed.api_key = @1, '@2'; SELECT 1/0} ],
	[ 'set_ident', 'one', q{SET mdfeed.api_key = "@1""@2"; SELECT 1/0} ],
	[ 'set_comment', 'one', q{SET mdfeed.api_key = '@1' /* was @2 */; SELECT 1/0} ],
	[ 'reset', 'one', q{SET mdfeed.api_key = '@1'; RESET mdfeed.api_key; SELECT 1/0} ],
	[ 'case', 'one', q{SET MDFEED.Api_Key = '@1'; SELECT 1/0} ],
	[ 'quoted', 'one', q{SET "mdfeed"."api_key" = '@1'; SELECT 1/0} ],
	[ 'quoted_upper', 'one', q{SET "MDFEED"."API_SECRET" = '@1'; SELECT 1/0} ],
	[ 'quoted_whole', 'one', q{SET "mdfeed.api_secret" = '@1'; SELECT 1/0} ],
	[ 'spaced', 'one', q{SET mdfeed /* x */ . api_key = E'@1\'@2'; SELECT 1/0} ],
	[ 'unicode_ident', 'one', q{SET mdfeed.U&"api\005fkey" = U&'@1'; SELECT 1/0} ],
	[ 'set_config', 'one', q{SELECT set_config('mdfeed.api_key', '@1''@2', false), 1/0} ],
	[ 'set_config_split', 'split', q{SELECT set_config('mdfeed.api_key', '@1''@2', false); SELECT 1/0;} ],
	[ 'set_config_upper', 'one', q{SELECT set_config('MDFEED.API_SECRET', $$@1$$, false), 1/0} ],
	[ 'set_config_escaped_name', 'one', q{SELECT set_config(E'mdfeed.api\x5fkey', '@1', false), 1/0} ],
	[ 'set_config_unicode_name', 'one', q{SELECT set_config(U&'mdfeed.api!005fsecret' UESCAPE '!', '@1', false), 1/0} ],
	[ 'set_config_syntax', 'one', q{SELECT set_config('mdfeed.api_key', '@1' '@2', false)} ],
	[ 'prepare', 'one', q{PREPARE p(text, text) AS SELECT set_config($1, $2, false); EXECUTE p('mdfeed.api_key', '@1''@2'); SELECT 1/0} ],
	[ 'alter_role', 'one', q{ALTER ROLE carol SET mdfeed.api_key = '@1'; SELECT 1/0} ],
	[ 'alter_role_db', 'one', q{ALTER ROLE carol IN DATABASE spare SET mdfeed.api_secret TO @1; SELECT 1/0} ],
	[ 'alter_db', 'one', q{ALTER DATABASE spare SET mdfeed.api_key = $q$@1$q$; SELECT 1/0} ],
	[ 'do_execute', 'one', q{DO $$ BEGIN EXECUTE 'SET mdfeed.api_key = ' || quote_literal('@1'); PERFORM 1/0; END $$} ],
	[ 'do_execute_ctx', 'one', q{DO $d$ BEGIN EXECUTE 'SELECT set_config(''mdfeed.api_secret'', ''@1'', true), 1/0'; END $d$} ],
	[ 'plpgsql_ctx', 'split', q{CREATE OR REPLACE FUNCTION outer_f() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN PERFORM inner_fail(set_config('mdfeed.api_secret', '@1', true)); END $f$; SELECT outer_f();} ],
	# LOG ranks above ERROR for log_min_error_statement: a LOG in a
	# statement prints its STATEMENT line too
	[ 'raise_log', 'one', q{SELECT note(), set_config('mdfeed.api_key', '@1''@2', false)} ],
	[ 'scs_off', 'split', q{SET standard_conforming_strings = off; SELECT set_config('mdfeed.api_key', 'a\' @1 ', false), 1/0;} ],
	[ 'plpgsql_execute_ctx', 'split', q{CREATE OR REPLACE FUNCTION exec_f() RETURNS void LANGUAGE plpgsql AS $f$ BEGIN EXECUTE 'SELECT set_config(''mdfeed.api_key'', ''@1'', true) WHERE 1/0 = 1'; END $f$; SELECT exec_f();} ]);

my @extended = (
	[ 'extended', 'SELECT set_config(:n, :v, false);', n => 'mdfeed.api_key' ],
	[ 'extended_error', 'SELECT set_config(:n, :v, false), 1/0;', n => 'mdfeed.api_secret' ],
	[ 'extended_named', q{SELECT set_config('mdfeed.api_key', :v, false), 1/0;} ]);

my @harmless = (
	'SHOW mdfeed.api_key',
	"SELECT current_setting('mdfeed.api_key')",
	"SELECT current_setting('MDFEED.API_SECRET', true)",
	'SELECT 1 /* mdfeed.api_key */',
	'RESET mdfeed.api_secret');
my @public = (
	q{SELECT 'pUbLiC-1''x', E'pUbLiC-2\'y', "a""b" FROM (SELECT 1 AS "a""b") s},
	q{SET application_name = 'pUbLiC-3'});

my $n = 0;
for my $mode (sort keys %modes)
{
	for my $f (@forms)
	{
		my ($id, $how, $sql) = @$f;
		my $m = "sEcReT_${mode}_${id}_Z";
		$sql =~ s/\@(\d)/${m}$1/g;
		run_sql($mode, $sql, $how eq 'one');
	}
	for my $f (@extended)
	{
		my ($id, $script, %vars) = @$f;
		run_extended($mode, $script, %vars, v => "sEcReT_${mode}_${id}_Z1'2");
	}
	# a bare number as the value
	run_sql($mode, 'SET mdfeed.api_key = 9182736455' . (++$n) . '; SELECT 1/0', 1);
	run_sql($mode, $_, 1) for @harmless, @public;
	run_sql($mode, q{SELECT 'pUbLiC-4', 1/0}, 1);
	run_sql($mode, q{SELECT current_setting('mdfeed.api_key', 1/0)}, 1);
	# PostgreSQL prints no STATEMENT line here, nor does mdfeed
	local $modes{$mode} = "$modes{$mode} -c log_min_error_statement=panic";
	run_sql($mode, q{SET mdfeed.api_key /* quiet-} . $mode . q{ */ = 'x'; SELECT 1/0}, 1);
}
$node->safe_psql('postgres', 'SELECT 1');

$log = log_contents($node);
for my $mode (sort keys %modes)
{
	for my $id ((map { $_->[0] } @forms), (map { $_->[0] } @extended))
	{
		my $m = "sEcReT_${mode}_${id}_Z";
		ok(index($log, $m) < 0, "log_statement = $mode: $id keeps its value out of the log")
		  or diag('line: ' . (grep { index($_, $m) >= 0 } split /\n/, $log)[0]);
	}
}
for my $i (1 .. $n)
{
	ok(index($log, "9182736455$i") < 0, "bare number value $i kept out of the log");
}
ok(index($log, 'sEcReT') < 0, 'no secret marker anywhere in the log')
  or diag('line: ' . (grep { /sEcReT/ } split /\n/, $log)[0]);

# what is still logged, readable
for my $sql (@harmless, @public)
{
	like($log, qr/LOG:  statement: \Q$sql\E\n/, "logged intact: $sql");
}
like($log, qr/STATEMENT:  \QSELECT current_setting('mdfeed.api_key', 1\/0)\E\n/,
	'a failing statement that only names a secret keeps its STATEMENT line');
like($log, qr/STATEMENT:  \QSELECT 'pUbLiC-4', 1\/0\E\n/,
	'a failing statement naming no secret keeps its STATEMENT line');
like($log, qr/DETAIL:  Statement, with mdfeed's secrets masked: \QBEGIN; ALTER SYSTEM SET mdfeed.api_secret = '********'; COMMIT\E\n/,
	'a failing statement naming a secret is logged masked');
like($log, qr/syntax error at or near "\*{8}"/, 'syntax error fragments are masked');
unlike($log, qr/quiet-none/, 'no statement appended where log_min_error_statement hides it');
like($log, qr/\Qduration: \E[0-9.]+ ms  statement: \QSET mdfeed.api_key = '********'\E\n/,
	'log_min_duration_statement logs the statement, masked');
my $params = q{DETAIL:  parameters: $1 = 'mdfeed.api_key', $2 = '********'};
like($log, qr/\Q$params\E/,
	'extended protocol parameters are logged, the value masked');
like($log, qr/\QSQL statement "SELECT set_config('mdfeed.api_secret', '********', true), 1\/0"\E/,
	'CONTEXT keeps the SQL statement, its value masked');

finish();
