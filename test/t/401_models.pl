
# Copyright (c) mdfeed authors
#
# Models: users' functions run on every closed candle.
#  - a role needs a grant to register one, and a superuser cannot: models
#    run as the role that registers them (current_user inside is that role);
#  - replay: models registered with from_time run on every closed candle
#    since then, and their outputs equal the same computation done in SQL
#    over the fake's truth, row for row (the bundled realized-volatility
#    model, and a model of the test's own that sums its window exactly);
#  - a model on a symbol nobody tracks has its history backfilled for it,
#    and one on a symbol listed recently skips the candles with fewer than
#    window_size candles before them;
#  - live: each close gets its output within seconds, with a NOTIFY, and
#    never one for the forming candle;
#  - pg_ctl stop -m fast takes well under 3 s with the model worker busy;
#  - after that fast stop halfway through a replay and a restart across a
#    close, and after a SIGKILL of the model worker halfway through another
#    replay, every candle has exactly one run (runs = outputs) and the
#    outputs still equal the truth;
#  - a failing model (an error, a timeout, a table its owner cannot read) is
#    paused after mdfeed.model_max_failures with its error, what it wrote is
#    rolled back, and the other models go on;
#  - a rewritten candle has the outputs that used it computed again, and a
#    deleted and backfilled one brings them back to the truth.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use JSON::PP;

use MdfeedTest;

my $fake = start_fake();
my $node = new_node('models', $fake,
	'mdfeed.intervals' => "'1m'",
	'mdfeed.sync_lookback' => "'3h'",
	'mdfeed.gap_lookback' => "'3h'",
	'mdfeed.model_max_failures' => 3,
	'mdfeed.model_timeout' => "'300ms'");

# ---- roles and the test's own models ----
$node->safe_psql('postgres', <<'EOS');
CREATE ROLE alice LOGIN;
CREATE ROLE mallory LOGIN;
GRANT USAGE ON SCHEMA mdfeed TO alice, mallory;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO alice, mallory;
GRANT EXECUTE ON FUNCTION mdfeed_register_model(text, regprocedure, text, text[], integer, timestamptz, text),
                          mdfeed_unregister_model(text), mdfeed_pause_model(text),
                          mdfeed_resume_model(text), mdfeed_rerun_model(text, timestamptz, timestamptz, text[])
  TO alice;
CREATE SCHEMA secret;
GRANT USAGE ON SCHEMA secret TO alice;
CREATE TABLE secret.data (x int);
INSERT INTO secret.data VALUES (42);
CREATE SCHEMA alice AUTHORIZATION alice;
SET ROLE alice;
CREATE TABLE alice.side (x int);
CREATE FUNCTION alice.slowfacts(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN alice.facts(symbol, "interval", candles); END $$;
CREATE FUNCTION alice.whoami(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT jsonb_build_object('user', current_user::text) $$;
CREATE FUNCTION alice.fails(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO alice.side VALUES (1);
  RAISE EXCEPTION 'boom on %', symbol;
END $$;
CREATE FUNCTION alice.slow(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN '{}'; END $$;
CREATE FUNCTION alice.spy(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('x', (SELECT x FROM secret.data)) $$;
CREATE FUNCTION alice.wrong(symbol text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
RESET ROLE;
GRANT EXECUTE ON FUNCTION mdfeed.model_realized_volatility(text, text, mdfeed.candle[]) TO alice;
EOS
$node->safe_psql('postgres', 'SET ROLE alice; ' . facts_model_sql('alice'));

# ---- who may register ----
like(sql_error($node, "SET ROLE mallory; SELECT mdfeed_register_model('m', 'mdfeed.model_realized_volatility(text,text,mdfeed.candle[])', '1m')"),
	qr/permission denied for function mdfeed_register_model/, 'a role without the grant cannot register a model');
like(sql_error($node, "SELECT mdfeed_register_model('m', 'alice.facts(text,text,mdfeed.candle[])', '1m')"),
	qr/models are not run as a superuser/, 'a superuser cannot register a model');
like(sql_error($node, "SET ROLE alice; SELECT mdfeed_register_model('m', 'alice.wrong(text,mdfeed.candle[])', '1m')"),
	qr/cannot be a model.*\n.*does not take \(text, text, mdfeed\.candle\[\]\)/s,
	'a function of the wrong signature is refused, with what is wrong');

# ---- replay from history ----
$node->safe_psql('postgres', "SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT'])");
my $t0 = now_ms();
my $from = align_down('1m', $t0) - 90 * 60_000;	# 90 candles of history
ok(wait_no_gaps_on($node, [ map { [ 'binance', $_, '1m', $from - 40 * 60_000 ] } qw(BTCUSDT ETHUSDT) ], 90),
	'the startup sync stored the history the models need');

sub as_alice
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', "SET ROLE alice; $sql");
}
my $from_sql = ms_sql($from);
as_alice("SELECT mdfeed_register_model('vol', 'mdfeed.model_realized_volatility(text,text,mdfeed.candle[])', '1m', NULL, 30, $from_sql)");
as_alice("SELECT mdfeed_register_model('facts', 'alice.facts(text,text,mdfeed.candle[])', '1m', ARRAY['BTCUSDT'], 20, $from_sql)");
# nobody tracks DOGEUSDT: the model has its history backfilled
as_alice("SELECT mdfeed_register_model('hist', 'alice.facts(text,text,mdfeed.candle[])', '1m', ARRAY['DOGEUSDT'], 20, $from_sql)");
as_alice("SELECT mdfeed_register_model('who', 'alice.whoami(text,text,mdfeed.candle[])', '1m', ARRAY['ETHUSDT'], 1, $from_sql)");
# NEWUSDT was listed 10 days ago: its first hours have no full window
my $new_onboard = $node->safe_psql('postgres',
	"SELECT (extract(epoch FROM onboard_date) * 1000)::bigint FROM mdfeed.instruments WHERE exchange = 'binance' AND symbol = 'NEWUSDT'");
ok($new_onboard > 0, 'the fake lists NEWUSDT with its listing date');
as_alice("SELECT mdfeed_register_model('young', 'alice.facts(text,text,mdfeed.candle[])', '1h', ARRAY['NEWUSDT'], 5, "
	  . ms_sql($new_onboard - 3 * 3_600_000) . ")");
is($node->safe_psql('postgres', "SELECT owner::text || ' ' || function FROM mdfeed.models WHERE name = 'facts'"),
	'alice alice.facts(text,text,mdfeed.candle[])', 'the model is recorded with its owner and qualified function');

ok(wait_until(sub { worker_row($node, 'model') }, 30), 'a model worker started once a model was registered');

# caught_up: every symbol of the model has run on every closed candle
sub caught_up
{
	my ($model, $timeout) = @_;
	my $last = '';
	my $ok = wait_until(
		sub {
			$last = try_sql($node,
				"SELECT coalesce(bool_and(p.next_open >= mdfeed.interval_floor(m.\"interval\", now()) AND p.rerun_from IS NULL), false) "
				  . "FROM mdfeed.model_progress p JOIN mdfeed.models m ON m.name = p.model WHERE m.name = '$model'") // '';
			return $last eq 't';
		},
		$timeout // 90, 0.5);
	diag("$model not caught up:\n" . (try_sql($node, "SELECT * FROM mdfeed.model_progress WHERE model = '$model'") // '')
		  . "\n" . (try_sql($node, "SELECT name, state, runs, failures, last_error FROM mdfeed.models WHERE name = '$model'") // ''))
	  unless $ok;
	return $ok;
}

# compare_model: the model's outputs for [from, the candle forming now)
# against the same computation in SQL over the truth; kind 'facts' or 'vol'
sub compare_model
{
	my ($model, $sym, $iv, $w, $from_ms, $kind, $name) = @_;
	my $ivms = iv_ms($iv);
	my $end = align_down($iv, now_ms());
	my $csv = truth_csv($sym, $iv, $from_ms - ($w + 1) * $ivms, $end);
	my $expect = $kind eq 'vol'
	  ? "jsonb_build_object('volatility', stddev_samp(ret) OVER r, 'returns', count(ret) OVER r, 'close', close)"
	  : "jsonb_build_object('n', count(*) OVER w, 'first', first_value(open_time_ms) OVER w, 'last', open_time_ms, "
	  . "'sum_close', sum(close) OVER w, 'max_high', max(high) OVER w, 'min_low', min(low) OVER w, "
	  . "'sum_volume', sum(volume) OVER w, 'trades', sum(trades) OVER w, 'quote', sum(quote_volume) OVER w, 'all_closed', true)";
	my $sql = <<"EOS";
@{[truth_table_sql($csv)]}
CREATE TEMP TABLE expected AS
  SELECT open_time_ms, $expect AS output, row_number() OVER (ORDER BY open_time_ms) AS rn
  FROM (SELECT *, ln(close::float8 / lag(close::float8) OVER (ORDER BY open_time_ms)) AS ret FROM truth) t
  WINDOW w AS (ORDER BY open_time_ms ROWS BETWEEN @{[$w - 1]} PRECEDING AND CURRENT ROW),
         r AS (ORDER BY open_time_ms ROWS BETWEEN @{[$w - 2]} PRECEDING AND CURRENT ROW);
DELETE FROM expected WHERE rn < $w OR open_time_ms < $from_ms;
CREATE TEMP TABLE got AS
  SELECT (extract(epoch FROM open_time) * 1000)::bigint AS open_time_ms, output
  FROM mdfeed.model_outputs
  WHERE model = '$model' AND symbol = '$sym' AND "interval" = '$iv' AND open_time >= @{[ms_sql($from_ms)]}
    AND open_time < @{[ms_sql($end)]};
SELECT json_build_object(
  'expected', (SELECT count(*) FROM expected),
  'got', (SELECT count(*) FROM got),
  'missing', (SELECT count(*) FROM (SELECT open_time_ms, output FROM expected EXCEPT SELECT * FROM got) x),
  'extra', (SELECT count(*) FROM (SELECT * FROM got EXCEPT SELECT open_time_ms, output FROM expected) x),
  'forming', (SELECT count(*) FROM mdfeed.model_outputs WHERE model = '$model' AND open_time >= @{[ms_sql($end)]}),
  'sample', (SELECT json_agg(x) FROM (SELECT e.open_time_ms, e.output AS expected, g.output AS got
             FROM expected e LEFT JOIN got g USING (open_time_ms)
             WHERE g.output IS DISTINCT FROM e.output ORDER BY 1 LIMIT 2) x))::jsonb::text;
EOS
	my $r = comparison_json($node, $sql, "$name: comparison query failed", 120) or return undef;
	my $ok = ok($r->{expected} > 0, "$name: there is something to compare ($r->{expected} candles)");
	$ok &= is($r->{got}, $r->{expected}, "$name: one output per closed candle");
	$ok &= is($r->{missing} + $r->{extra}, 0, "$name: outputs equal the SQL computation over the truth");
	$ok &= is($r->{forming}, 0, "$name: no output for the candle forming now");
	diag("$name: " . encode_json($r)) unless $ok;
	return $r;
}

# runs_equal_outputs: nothing ran twice (models without reruns)
sub runs_equal_outputs
{
	my ($model, $name) = @_;
	my ($runs, $outs) = split /\|/, $node->safe_psql('postgres',
		"SELECT m.runs, (SELECT count(*) FROM mdfeed.model_outputs o WHERE o.model = m.name) FROM mdfeed.models m WHERE m.name = '$model'");
	is($runs, $outs, "$name: $model ran once per output ($runs runs, $outs outputs)");
}

ok(caught_up('vol', 90), 'vol caught up with history');
ok(caught_up('facts', 60), 'facts caught up');
ok(caught_up('hist', 120), 'hist caught up: DOGEUSDT was backfilled for it');
ok(caught_up('young', 120), 'young caught up');
compare_model('vol', $_, '1m', 30, $from, 'vol', "replay vol $_") for qw(BTCUSDT ETHUSDT);
compare_model('facts', 'BTCUSDT', '1m', 20, $from, 'facts', 'replay facts BTCUSDT');
compare_model('hist', 'DOGEUSDT', '1m', 20, $from, 'facts', 'replay hist DOGEUSDT');
compare_model('young', 'NEWUSDT', '1h', 5, $new_onboard - 3 * 3_600_000, 'facts', 'listing young NEWUSDT');
is($node->safe_psql('postgres',
		"SELECT count(*) > 0 AND bool_and(requested_by = 'alice' AND requester = 'alice'::regrole AND detail = 'history for model hist') "
		  . "FROM mdfeed.jobs WHERE symbol = 'DOGEUSDT'"),
	't', 'DOGEUSDT history was backfilled as a job of alice, for the model');
runs_equal_outputs($_, 'replay') for qw(vol facts young hist);
as_alice("SELECT mdfeed_unregister_model('hist')");
is($node->safe_psql('postgres', "SELECT DISTINCT output->>'user' FROM mdfeed.model_outputs WHERE model = 'who'"),
	'alice', 'a model runs as the role that registered it');
runs_equal_outputs($_, 'replay') for qw(vol facts young hist);

# ---- failing models, next to the others ----
my $recent = ms_sql(align_down('1m', now_ms()) - 10 * 60_000);
as_alice("SELECT mdfeed_register_model('fails', 'alice.fails(text,text,mdfeed.candle[])', '1m', ARRAY['BTCUSDT'], 3, $recent)");
as_alice("SELECT mdfeed_register_model('slow', 'alice.slow(text,text,mdfeed.candle[])', '1m', ARRAY['BTCUSDT'], 3, $recent)");
as_alice("SELECT mdfeed_register_model('spy', 'alice.spy(text,text,mdfeed.candle[])', '1m', ARRAY['BTCUSDT'], 3, $recent)");
ok(wait_until(sub { $node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.models WHERE name IN ('fails', 'slow', 'spy') AND state = 'paused'") eq '3' }, 60),
	'the three failing models are paused');
my %fail = map { my @f = split /\|/; ($f[0] => \@f) } split /\n/, $node->safe_psql('postgres',
	"SELECT name, failures, last_error, runs FROM mdfeed.models WHERE name IN ('fails', 'slow', 'spy')");
is($fail{fails}[1], 3, 'fails failed mdfeed.model_max_failures (3) times before it was paused');
like($fail{fails}[2], qr/^BTCUSDT 1m \d{4}-\d\d-\d\dT\d\d:\d\d:00Z: boom on BTCUSDT$/,
	'its last error names the candle and says what the model raised');
like($fail{slow}[2], qr/longer than mdfeed.model_timeout \(300 ms\)/, 'a run over mdfeed.model_timeout fails');
like($fail{spy}[2], qr/permission denied for table data/, 'a model cannot read what its owner cannot');
is(join(',', map { $fail{$_}[3] } qw(fails slow spy)), '0,0,0', 'no failed run counted as a run');
is($node->safe_psql('postgres', 'SELECT count(*) FROM alice.side'), '0', "what a failed run wrote is rolled back");
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.model_outputs WHERE model IN ('fails', 'slow', 'spy')"),
	'0', 'failed runs have no output');
like(log_contents($node), qr/paused model "fails" after 3 failed runs in a row on BTCUSDT 1m/,
	'the pause is logged, with the model and the candle');

# ---- live closes ----
my $bg = $node->background_psql('postgres');
$bg->query_safe('LISTEN mdfeed_models');
my $live_from = align_down('1m', now_ms()) + 60_000;	# the candle forming now closes next
wait_next_minute();
wait_next_minute();
ok(caught_up('vol', 30) && caught_up('facts', 30), 'both closes have their outputs');
my $lat = $node->safe_psql('postgres',
	"SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 2) || '|' || round(max(s)::numeric, 2) FROM ("
	  . " SELECT extract(epoch FROM computed_at - (open_time + interval '1 minute')) AS s FROM mdfeed.model_outputs"
	  . " WHERE model IN ('vol', 'facts') AND \"interval\" = '1m' AND open_time >= " . ms_sql($live_from) . ") x");
my ($lat50, $latmax) = split /\|/, $lat;
diag("live close to output: p50 $lat50 s, max $latmax s");
ok(defined $latmax && $latmax < 10, "every live close had its outputs within 10 s (p50 $lat50 s, max $latmax s)");
my %notes;
collect_notifications($bg, \%notes, undef, 'mdfeed_models');
my @want = map { my $m = $_; map { "$m|binance|$_|1m|" . iso_ms($live_from) } ($m eq 'vol' ? qw(BTCUSDT ETHUSDT) : qw(BTCUSDT)) } qw(vol facts);
is(scalar(grep { $notes{$_} } @want), scalar(@want), 'NOTIFY mdfeed_models named each live output')
  or diag('got: ' . join(', ', sort keys %notes));
is((grep { $notes{$_} } @want)[0] ? $notes{ $want[0] }{outputs} : undef, 1, 'a live close notifies one output');
$bg->quit;
compare_model('vol', 'BTCUSDT', '1m', 30, $from, 'vol', 'live vol BTCUSDT');
compare_model('facts', 'BTCUSDT', '1m', 20, $from, 'facts', 'live facts BTCUSDT');

# ---- a fast shutdown with the model worker busy, and a restart across a close ----
# slowfacts sleeps 20 ms a run: its replay of ~95 candles is under way
as_alice("SELECT mdfeed_register_model('busy', 'alice.slowfacts(text,text,mdfeed.candle[])', '1m', ARRAY['ETHUSDT'], 20, $from_sql)");
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT runs FROM mdfeed.models WHERE name = 'busy'") >= 10 }, 30),
	'busy is replaying');
my $t_stop = Time::HiRes::time();
$node->stop('fast');
my $stop_s = Time::HiRes::time() - $t_stop;
diag(sprintf('pg_ctl stop -m fast with the model worker busy: %.2f s', $stop_s));
ok($stop_s < 3, sprintf('pg_ctl stop -m fast with the model worker busy took %.2f s', $stop_s));
wait_next_minute();
usleep(2_000_000);
$node->start;
ok(caught_up('vol', 90) && caught_up('facts', 90) && caught_up('busy', 90),
	'after a restart across a close the models caught up');
compare_model('busy', 'ETHUSDT', '1m', 20, $from, 'facts', 'after the fast stop busy ETHUSDT');
runs_equal_outputs('busy', 'after the fast stop');
as_alice("SELECT mdfeed_unregister_model('busy')");
compare_model('vol', $_, '1m', 30, $from, 'vol', "after restart vol $_") for qw(BTCUSDT ETHUSDT);
compare_model('facts', 'BTCUSDT', '1m', 20, $from, 'facts', 'after restart facts BTCUSDT');
runs_equal_outputs($_, 'after restart') for qw(vol facts);

# ---- SIGKILL of the model worker in the middle of a replay ----
# a model slow enough (20 ms a run, ~95 runs) to be killed halfway through
as_alice("SELECT mdfeed_register_model('slowfacts', 'alice.slowfacts(text,text,mdfeed.candle[])', '1m', ARRAY['BTCUSDT'], 20, $from_sql)");
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT runs FROM mdfeed.models WHERE name = 'slowfacts'") >= 20 }, 30),
	'slowfacts is replaying');
my $pid = worker_row($node, 'model')->{pid};
my $before_kill = $node->safe_psql('postgres', "SELECT runs FROM mdfeed.models WHERE name = 'slowfacts'");
kill 'KILL', $pid;
ok(wait_until(sub { my $w = worker_row($node, 'model'); $w && $w->{pid} != $pid }, 60),
	"the server recovered from the SIGKILL ($before_kill runs committed before it) and a new model worker runs");
ok(caught_up('slowfacts', 90) && caught_up('vol', 90), 'after the SIGKILL the models caught up');
compare_model('slowfacts', 'BTCUSDT', '1m', 20, $from, 'facts', 'after SIGKILL slowfacts BTCUSDT');
compare_model('vol', 'BTCUSDT', '1m', 30, $from, 'vol', 'after SIGKILL vol BTCUSDT');
runs_equal_outputs($_, 'after SIGKILL') for qw(slowfacts vol facts);
as_alice("SELECT mdfeed_unregister_model('slowfacts')");

# ---- a rewritten candle, then a repair ----
my $t_bad = align_down('1m', now_ms()) - 30 * 60_000;
my $t_edit = now_ms();
$node->safe_psql('postgres',
	"UPDATE mdfeed.candles_1m SET close = close + 1000 WHERE symbol = 'BTCUSDT' AND open_time = " . ms_sql($t_bad));
my $changed = wait_until(sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FROM mdfeed.model_outputs o WHERE model = 'facts' AND symbol = 'BTCUSDT' "
			  . "AND open_time >= " . ms_sql($t_bad) . " AND open_time < " . ms_sql($t_bad + 20 * 60_000)
			  . " AND (output->>'sum_close')::numeric = (SELECT sum(close) FROM mdfeed.candles_1m c WHERE c.symbol = 'BTCUSDT' "
			  . "  AND c.open_time > o.open_time - interval '20 minutes' AND c.open_time <= o.open_time)") eq '20' },
	30);
ok($changed, 'a rewritten candle: the 20 outputs whose windows held it were computed again');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM mdfeed.model_outputs WHERE model = 'facts' AND symbol = 'BTCUSDT' AND open_time >= "
		  . ms_sql($t_bad + 20 * 60_000) . " AND open_time < " . ms_sql($t_bad + 25 * 60_000)
		  . " AND computed_at > " . ms_sql($t_edit)),
	'0', 'outputs whose windows did not hold it were not');
$node->safe_psql('postgres', "DELETE FROM mdfeed.candles_1m WHERE symbol = 'BTCUSDT' AND open_time = " . ms_sql($t_bad));
my $job = backfill_on($node, 'binance', 'BTCUSDT', '1m', $t_bad, $t_bad + 60_000);
job_is($node, $job, 'succeeded', 'the deleted candle was backfilled', 60);
ok(caught_up('facts', 60), 'facts caught up after the repair');
compare_model('facts', 'BTCUSDT', '1m', 20, $from, 'facts', 'after the repair facts BTCUSDT');

# ---- a rerun asked for ----
my $runs_sql = "SELECT runs - (SELECT count(*) FROM mdfeed.model_outputs WHERE model = 'vol') FROM mdfeed.models WHERE name = 'vol'";
my $runs0 = $node->safe_psql('postgres', $runs_sql);
is(as_alice("SELECT mdfeed_rerun_model('vol', " . ms_sql($from + 10 * 60_000) . ', ' . ms_sql($from + 20 * 60_000) . ')'),
	'2', 'mdfeed_rerun_model schedules both symbols');
ok(caught_up('vol', 30), 'the rerun is done');
is($node->safe_psql('postgres', $runs_sql) - $runs0, 20,
	'it ran again on the 10 candles of each symbol in [from_time, to_time), and on nothing else (runs beyond outputs)');
compare_model('vol', 'ETHUSDT', '1m', 30, $from, 'vol', 'after the rerun vol ETHUSDT');

# ---- pause, resume, unregister ----
is($node->safe_psql('postgres', "SET ROLE alice; SELECT mdfeed_resume_model('fails'); SELECT state FROM mdfeed.models WHERE name = 'fails'"),
	"\nactive", 'mdfeed_resume_model makes a paused model active');
ok(wait_until(sub { $node->safe_psql('postgres', "SELECT state || ' ' || failures FROM mdfeed.models WHERE name = 'fails'") eq 'paused 6' }, 30),
	'it fails again, and is paused after 3 more failures: resuming reset its count');
like(sql_error($node, "SET ROLE mallory; SELECT mdfeed_unregister_model('vol')"), qr/permission denied/,
	'another role cannot drop a model');
as_alice("SELECT mdfeed_unregister_model(n) FROM unnest(ARRAY['fails', 'slow', 'spy', 'who']) n");
is($node->safe_psql('postgres', "SELECT count(*) FROM mdfeed.model_outputs WHERE model IN ('fails', 'slow', 'spy', 'who')"),
	'0', 'unregistering drops the outputs');

finish();
