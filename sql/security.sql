--
-- Security and robustness (1.1): nothing that runs with raised privileges
-- resolves a name through the caller's search_path; bounded job ranges;
-- per-role caps; cancel rights by role OID; clear errors for bad input.
--
SET client_min_messages = warning;
-- job ids in this file do not depend on the tests before it
SELECT setval('mdfeed.jobs_id_seq', 1000) IS NOT NULL AS ids_from_1001;
CREATE ROLE regress_evil LOGIN;
CREATE SCHEMA evil AUTHORIZATION regress_evil;
GRANT USAGE ON SCHEMA mdfeed TO regress_evil;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO regress_evil;
GRANT EXECUTE ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text),
	mdfeed_wait(bigint, interval), mdfeed_cancel(bigint),
	mdfeed_gaps(text, text, timestamptz, timestamptz, text),
	mdfeed_whitelist(text[], text), mdfeed_blacklist(text[], text), mdfeed_unlist(text[], text),
	mdfeed_liquid_symbols(numeric, integer, text),
	mdfeed_backfill_open_interest(text, timestamptz, timestamptz, text),
	mdfeed_backfill_funding(text, timestamptz, timestamptz, text),
	mdfeed_workers() TO regress_evil;
RESET client_min_messages;

-- The attack: operators of its own for every type mdfeed compares, in a
-- schema put before pg_catalog.  Each one records who ran it and tries to
-- make its author a superuser.
SET ROLE regress_evil;
CREATE TABLE evil.ran (who name, fn text);
GRANT INSERT ON evil.ran TO PUBLIC;
DO $do$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['bigint', 'integer', 'text', 'name', 'oid', 'xid', 'timestamptz', 'boolean']
	LOOP
		EXECUTE format($f$
			CREATE FUNCTION evil.eq(a %1$s, b %1$s) RETURNS boolean LANGUAGE plpgsql AS $b$
			BEGIN
				INSERT INTO evil.ran VALUES (current_user, 'eq(%1$s)');
				BEGIN
					ALTER ROLE regress_evil SUPERUSER;
				EXCEPTION WHEN OTHERS THEN NULL;
				END;
				RETURN a OPERATOR(pg_catalog.=) b;
			END $b$$f$, t);
		EXECUTE format('CREATE OPERATOR evil.= (FUNCTION = evil.eq, LEFTARG = %1$s, RIGHTARG = %1$s)', t);
	END LOOP;
END
$do$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $b$
BEGIN
	INSERT INTO evil.ran VALUES (current_user, 'now()');
	RETURN pg_catalog.now();
END $b$;
CREATE FUNCTION evil.count(bigint) RETURNS bigint LANGUAGE sql AS $b$ SELECT 1::bigint $b$;
SET search_path = evil, pg_catalog, public;
SELECT mdfeed_backfill('BTCUSDT', '1h', '2024-01-01', '2024-01-02') AS job \gset
SELECT mdfeed_wait(:job, '0');
SELECT mdfeed_wait(999999, '0');
SELECT mdfeed_backfill_funding('BTCUSDT', '2024-01-01', '2024-01-02') > 0;
SELECT mdfeed_backfill_open_interest('BTCUSDT', '2024-01-01', '2024-01-02') > 0;
SELECT mdfeed_cancel(:job);
SELECT mdfeed_blacklist(ARRAY['XRPUSDT']);
SELECT mdfeed_unlist(ARRAY['XRPUSDT']);
SELECT mdfeed_whitelist(ARRAY['XRPUSDT']);
SELECT * FROM mdfeed_liquid_symbols();
SELECT count(*) FROM mdfeed_gaps('BTCUSDT', '1h', '2024-01-01', '2024-01-02');
SELECT count(*) >= 0 FROM mdfeed.workers;
RESET search_path;
RESET ROLE;
-- none of it ran with the owner's rights; the role is no superuser
SELECT who, fn FROM evil.ran WHERE who <> 'regress_evil' ORDER BY 1, 2;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_evil';

-- Job ranges end at the present, and times are bounded.
SELECT mdfeed_backfill('BTCUSDT', '1h', '2024-01-01', '2100-01-01') AS job \gset
SELECT to_time = mdfeed.interval_floor('1h', now()) + interval '1 hour' AS clipped_at_forming_close
FROM mdfeed.jobs WHERE id = :job;
SELECT mdfeed_backfill_open_interest('BTCUSDT', now() - interval '1 day', '3000-01-01') AS job \gset
SELECT to_time <= now() + interval '1 second' AS clipped_at_now FROM mdfeed.jobs WHERE id = :job;
SELECT mdfeed_backfill('BTCUSDT', '1m', '2999-01-01', '3000-01-01');
SELECT mdfeed_backfill_funding('BTCUSDT', '2024-01-01', '10000-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1m', '294276-12-31 23:59+00', 'infinity');
SELECT mdfeed.interval_floor('1M', '294276-12-31 23:59+00') AT TIME ZONE 'UTC' AS month_floor;
SELECT mdfeed.interval_floor('1w', '294276-12-31 23:59+00') AT TIME ZONE 'UTC' AS week_floor;
SELECT mdfeed.interval_floor('1m', '294276-12-31 23:59:59.999999+00') AT TIME ZONE 'UTC' AS minute_floor;
SELECT mdfeed.interval_floor('1M', '1969-12-31 23:59+00') AT TIME ZONE 'UTC' AS before_epoch;

-- A per-role cap on unfinished jobs.
SET mdfeed.max_queued_jobs_per_role = 3;
SET ROLE regress_evil;
SELECT count(*) FROM mdfeed.jobs WHERE requester = 'regress_evil'::regrole AND state IN ('queued', 'running');
SELECT mdfeed_backfill('ETHUSDT', '1h', '2024-01-01', '2024-01-02') > 0;
SELECT mdfeed_backfill('ETHUSDT', '1h', '2024-02-01', '2024-02-02') > 0;
RESET ROLE;
RESET mdfeed.max_queued_jobs_per_role;

-- Cancel rights follow the role's OID: a role dropped and created again
-- under the same name is another role.
CREATE ROLE regress_ghost LOGIN;
GRANT EXECUTE ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text),
	mdfeed_cancel(bigint) TO regress_ghost;
SET ROLE regress_ghost;
SELECT mdfeed_backfill('ETHUSDT', '1d', '2024-01-01', '2024-02-01') AS ghost_job \gset
RESET ROLE;
REVOKE ALL ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text),
	mdfeed_cancel(bigint) FROM regress_ghost;
DROP ROLE regress_ghost;
CREATE ROLE regress_ghost LOGIN;
GRANT EXECUTE ON FUNCTION mdfeed_cancel(bigint) TO regress_ghost;
SET ROLE regress_ghost;
SELECT mdfeed_cancel(:ghost_job);
RESET ROLE;
SELECT requested_by, requester IS NOT NULL AND requester <> 'regress_ghost'::regrole AS other_oid, state
FROM mdfeed.jobs WHERE id = :ghost_job;
SELECT mdfeed_cancel(:ghost_job);

-- Bad input is an error that says what is wrong.
SELECT mdfeed_blacklist(ARRAY['BTCUSDT'], 'kraken');
SELECT mdfeed_blacklist(ARRAY['BTCUSDT'], '');
SELECT mdfeed_unlist(ARRAY['BTCUSDT'], 'kraken');
SELECT count(*) FROM mdfeed.symbol_lists WHERE exchange <> 'binance';
SELECT * FROM mdfeed_gaps('BTCUSDT', NULL, '2024-01-01', '2024-01-02');
SELECT * FROM mdfeed_gaps('BTCUSDT', '1m', '-infinity', '2024-01-02');
SELECT * FROM mdfeed_gaps('BTCUSDT', '1m', '2024-01-01', '-infinity');
SELECT * FROM mdfeed_gaps('BTCUSDT', '1m', '2024-01-01', '2024-01-01 00:10', 'kraken');
SELECT count(*) FROM mdfeed_gaps('BTCUSDT', '1d', now() - interval '3 days', 'infinity');
SELECT * FROM mdfeed_liquid_symbols(0, NULL, NULL);
SELECT * FROM mdfeed_liquid_symbols('NaN');
SELECT * FROM mdfeed_liquid_symbols(0, NULL, 'kraken');

-- pg_dump keeps every table, the auto-tracked one included.
SELECT c.relname
FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
WHERE e.extname = 'mdfeed' AND c.relkind = 'r'
ORDER BY 1;

-- clean up
DELETE FROM mdfeed.jobs;
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
DROP OWNED BY regress_evil, regress_ghost;
DROP ROLE regress_evil;
DROP ROLE regress_ghost;
RESET client_min_messages;
