
# Copyright (c) mdfeed authors
#
# mdfeed.api_key and mdfeed.api_secret: set in postgresql.conf and changed on
# reload (and through ALTER SYSTEM), they never reach the server log; roles
# other than superusers (members of pg_read_all_settings included) can
# neither read nor set them; superusers can read them.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
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

finish();
