/*
 * mdfeed--1.0--1.1.sql
 *
 * 1.1: the security and robustness release (issue 7).  A fresh install of
 * 1.1 runs mdfeed--1.0.sql and then this script, so a fresh install and an
 * upgrade are the same schema by construction; test/t/008_upgrade.pl checks
 * it with pg_dump, and that every row survives ALTER EXTENSION UPDATE.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mdfeed UPDATE TO '1.1'" to load this file. \quit

/* ---- jobs: requester by OID, fair claiming, bounded ranges (7.1, 7.2, 7.4, 7.5, 7.6) ---- */

/*
 * Cancel rights follow the role's OID, not its name: a role dropped and
 * created again under the same name is another role.  Jobs queued before
 * 1.1 get the OID their name has now.  mdfeed's own jobs have none.
 */
ALTER TABLE mdfeed.jobs ADD COLUMN requester oid;
COMMENT ON COLUMN mdfeed.jobs.requester IS
	'OID of the role that queued a user job: cancel rights and the per-role cap follow it';
UPDATE mdfeed.jobs j SET requester = r.oid
FROM pg_catalog.pg_roles r
WHERE r.rolname OPERATOR(pg_catalog.=) j.requested_by AND j.origin OPERATOR(pg_catalog.=) 'user';
-- the per-role cap counts a role's unfinished jobs at every queueing
CREATE INDEX jobs_requester_pending_idx ON mdfeed.jobs (requester)
	WHERE state IN ('queued', 'running');

-- the README says every table is kept by pg_dump; 1.0 forgot this one
SELECT pg_catalog.pg_extension_config_dump('mdfeed.auto_tracked', '');

/*
 * mdfeed.check_exchange raises the error of an unknown exchange, or returns
 * it.  Like mdfeed.check_symbol it only validates, so it stays executable
 * by PUBLIC: mdfeed_gaps runs with its caller's rights and calls it.
 */
CREATE FUNCTION mdfeed.check_exchange(exchange text) RETURNS text
AS 'MODULE_PATHNAME', 'mdfeed_check_exchange' LANGUAGE C STABLE;

/*
 * mdfeed_gaps: NULL arguments and infinite times are errors that say so
 * (1.0 answered with errors about formatting identifiers), and the exchange
 * is checked.
 */
CREATE OR REPLACE FUNCTION mdfeed_gaps(symbol text, "interval" text, from_time timestamptz,
									   to_time timestamptz DEFAULT now(), exchange text DEFAULT 'binance')
RETURNS TABLE (gap_start timestamptz, gap_end timestamptz, missing bigint, exchange_has_none boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_tab text;
	v_step interval;
	v_from timestamptz;
	v_to timestamptz;
BEGIN
	IF symbol IS NULL OR "interval" IS NULL OR exchange IS NULL THEN
		RAISE EXCEPTION 'symbol, interval and exchange must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF from_time IS NULL OR to_time IS NULL THEN
		RAISE EXCEPTION 'from_time and to_time must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT isfinite(from_time) OR to_time = '-infinity' THEN
		RAISE EXCEPTION 'from_time must be finite, and to_time not -infinity (from_time %, to_time %)',
				from_time, to_time
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a range such as now() - interval ''30 days'' to now(); to_time may be ''infinity''.';
	END IF;
	PERFORM mdfeed.check_exchange(exchange);
	PERFORM mdfeed.check_symbol(symbol);
	v_tab := mdfeed.interval_table("interval");
	v_step := mdfeed.interval_step("interval");
	v_from := mdfeed.interval_floor("interval", from_time);
	-- every candle opening before to_time counts, but only closed ones can be
	-- missing: stop at the one forming now
	IF isfinite(to_time) THEN
		v_to := least(((mdfeed.interval_floor("interval", to_time - interval '1 microsecond')
						AT TIME ZONE 'UTC') + v_step) AT TIME ZONE 'UTC',
					  mdfeed.interval_floor("interval", now()));
	ELSE
		v_to := mdfeed.interval_floor("interval", now());
	END IF;
	IF v_from >= v_to THEN
		RETURN;
	END IF;
	RETURN QUERY EXECUTE format($q$
		WITH pts AS (
			SELECT open_time FROM mdfeed.%I
			WHERE symbol = $1 AND closed AND open_time >= $2 AND open_time < $3
			UNION ALL SELECT $3
		), g AS (
			SELECT coalesce(((lag(open_time) OVER w AT TIME ZONE 'UTC') + $4) AT TIME ZONE 'UTC', $2) AS gs,
				   open_time AS ge
			FROM pts WINDOW w AS (ORDER BY open_time)
		)
		SELECT gs, ge,
			   CASE WHEN $4 = interval '1 month'
					THEN ((extract(year FROM ge AT TIME ZONE 'UTC') - extract(year FROM gs AT TIME ZONE 'UTC')) * 12
						  + extract(month FROM ge AT TIME ZONE 'UTC') - extract(month FROM gs AT TIME ZONE 'UTC'))::bigint
					ELSE ceil(extract(epoch FROM ge - gs) / extract(epoch FROM $4))::bigint END,
			   EXISTS (SELECT 1 FROM mdfeed.exchange_gaps k
					   WHERE k.exchange = $5 AND k.symbol = $1 AND k."interval" = $6
						 AND k.from_time <= gs AND k.to_time >= ge)
		FROM g WHERE ge > gs ORDER BY gs$q$, v_tab)
	USING symbol, v_from, v_to, v_step, exchange, "interval";
END
$fn$;

/*
 * mdfeed_liquid_symbols: a NULL exchange or a NaN minimum is an error, not
 * an empty answer.
 */
CREATE OR REPLACE FUNCTION mdfeed_liquid_symbols(min_quote_volume numeric DEFAULT 0, top_n integer DEFAULT NULL,
												 exchange text DEFAULT 'binance')
RETURNS TABLE (symbol text, quote_volume numeric, rank integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_symbols text[];
	v_qv numeric[];
BEGIN
	IF $3 IS NULL THEN
		RAISE EXCEPTION 'exchange must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM mdfeed.check_exchange($3);
	IF top_n IS NOT NULL AND top_n < 1 THEN
		RAISE EXCEPTION 'top_n must be at least 1, not %', top_n
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for every symbol.';
	END IF;
	IF min_quote_volume = 'NaN'::numeric THEN
		RAISE EXCEPTION 'min_quote_volume must be a number, not NaN'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass 0 (or NULL) for no minimum.';
	END IF;
	IF min_quote_volume < 0 THEN
		RAISE EXCEPTION 'min_quote_volume must not be negative, not %', min_quote_volume
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM mdfeed.instruments i WHERE i.exchange = $3) THEN
		PERFORM mdfeed.refresh_instruments($3);
	END IF;
	SELECT array_agg(t.symbol), array_agg(t.quote_volume) INTO v_symbols, v_qv
	FROM mdfeed.fetch_tickers($3) t;
	RETURN QUERY SELECT * FROM mdfeed.rank_symbols($3, v_symbols, v_qv, min_quote_volume, top_n);
END
$fn$;

/* The lists check the exchange, all three of them. */
CREATE OR REPLACE FUNCTION mdfeed_whitelist(symbols text[], exchange text DEFAULT 'binance')
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_unknown text[];
	v_added integer;
	v_blocked text[];
	v_inactive text[];
BEGIN
	IF symbols IS NULL OR exchange IS NULL THEN
		RAISE EXCEPTION 'symbols and exchange must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM mdfeed.check_exchange(exchange);
	PERFORM mdfeed.check_symbol(s) FROM unnest(symbols) s;
	v_unknown := ARRAY(SELECT DISTINCT s FROM unnest(symbols) s
					   WHERE NOT EXISTS (SELECT 1 FROM mdfeed.instruments i
										 WHERE i.exchange = $2 AND i.symbol = s) ORDER BY 1);
	IF cardinality(v_unknown) > 0 THEN
		PERFORM mdfeed.refresh_instruments(exchange);
		v_unknown := ARRAY(SELECT DISTINCT s FROM unnest(symbols) s
						   WHERE NOT EXISTS (SELECT 1 FROM mdfeed.instruments i
											 WHERE i.exchange = $2 AND i.symbol = s) ORDER BY 1);
		IF cardinality(v_unknown) > 0 THEN
			RAISE EXCEPTION '% does not list %', exchange, array_to_string(v_unknown, ', ')
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'mdfeed.instruments shows what the exchange lists; symbols are written as it writes them, e.g. BTCUSDT.';
		END IF;
	END IF;
	WITH ins AS (
		INSERT INTO mdfeed.symbol_lists (exchange, symbol, list)
		SELECT DISTINCT exchange, s, 'whitelist' FROM unnest(symbols) s
		ON CONFLICT DO NOTHING RETURNING 1)
	SELECT count(*) INTO v_added FROM ins;
	v_blocked := ARRAY(SELECT b.symbol FROM mdfeed.symbol_lists b
					   WHERE b.exchange = $2 AND b.list = 'blacklist' AND b.symbol = ANY (symbols) ORDER BY 1);
	IF cardinality(v_blocked) > 0 THEN
		RAISE NOTICE '% stays untracked: blacklisted', array_to_string(v_blocked, ', ')
			USING HINT = 'mdfeed_unlist() removes a symbol from both lists.';
	END IF;
	v_inactive := ARRAY(SELECT i.symbol FROM mdfeed.instruments i
						WHERE i.exchange = $2 AND i.symbol = ANY (symbols)
						  AND (i.status <> 'TRADING' OR i.contract_type IS DISTINCT FROM 'PERPETUAL') ORDER BY 1);
	IF cardinality(v_inactive) > 0 THEN
		RAISE NOTICE '% is not a trading perpetual now, and is tracked only when it is', array_to_string(v_inactive, ', ');
	END IF;
	PERFORM mdfeed.wake_workers();
	RETURN v_added;
END
$fn$;

CREATE OR REPLACE FUNCTION mdfeed_blacklist(symbols text[], exchange text DEFAULT 'binance')
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_added integer;
BEGIN
	IF symbols IS NULL OR exchange IS NULL THEN
		RAISE EXCEPTION 'symbols and exchange must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM mdfeed.check_exchange(exchange);
	PERFORM mdfeed.check_symbol(s) FROM unnest(symbols) s;
	WITH ins AS (
		INSERT INTO mdfeed.symbol_lists (exchange, symbol, list)
		SELECT DISTINCT exchange, s, 'blacklist' FROM unnest(symbols) s
		ON CONFLICT DO NOTHING RETURNING 1)
	SELECT count(*) INTO v_added FROM ins;
	PERFORM mdfeed.wake_workers();
	RETURN v_added;
END
$fn$;

CREATE OR REPLACE FUNCTION mdfeed_unlist(symbols text[], exchange text DEFAULT 'binance')
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_removed integer;
BEGIN
	IF symbols IS NULL OR exchange IS NULL THEN
		RAISE EXCEPTION 'symbols and exchange must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM mdfeed.check_exchange(exchange);
	PERFORM mdfeed.check_symbol(s) FROM unnest(symbols) s;
	WITH del AS (
		DELETE FROM mdfeed.symbol_lists l WHERE l.exchange = $2 AND l.symbol = ANY (symbols) RETURNING 1)
	SELECT count(*) INTO v_removed FROM del;
	PERFORM mdfeed.wake_workers();
	RETURN v_removed;
END
$fn$;



/* ---- the robustness test's parser entry points ---- */

/*
 * One entry point to every parser the workers use, on raw bytes (bytea, so
 * that NUL bytes and invalid UTF-8 reach the parser as they come from the
 * network).  It writes nothing: rows parsed, or an ERROR (SQLSTATE 22P02)
 * with the parser's message.
 */
CREATE FUNCTION mdfeed.parse_answer(exchange text, what text, body bytea)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mdfeed_parse_answer'
LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION mdfeed.parse_answer(text, text, bytea)
IS 'parse an exchange answer (klines, stream, exchange_info, weight_limit, server_time, tickers, funding, open_interest, error, ban) with the workers'' parser; returns rows parsed';
REVOKE ALL ON FUNCTION mdfeed.parse_answer(text, text, bytea) FROM PUBLIC;


/* ---- first fill of a new pair, sync de-duplication (7.9); confirmed-empty ranges (7.7) ---- */

/*
 * The queuers' turn: mdfeed.queue_job and mdfeed.sync_derivs lock this
 * table (EXCLUSIVE) for the rest of their transaction.  Not an advisory
 * lock: any role can take those, and so hold every worker's queueing back.
 * A role granted SELECT on mdfeed's tables can take only ACCESS SHARE here,
 * which does not conflict; every other lock mode needs rights no role is
 * given.  The table holds no rows.
 */
CREATE TABLE mdfeed.queue_lock ();
COMMENT ON TABLE mdfeed.queue_lock IS 'locked by mdfeed''s queuers so that they take turns; holds no rows';

/*
 * Three workers queue candle jobs for the same pairs: the watch worker (first
 * fill and startup sync, gap repair), the stream worker (repairs on connect
 * and after SUBSCRIBE) and, for derivatives, the watch worker's hourly
 * collection.  A pair's first fill is the watch worker's; everyone else asks
 * only for what no queued or running job will fetch, so that one range never
 * gets two jobs, whichever worker looks first.
 */

/*
 * mdfeed.uncovered_ranges lists the parts of [p_from, p_to) that no queued
 * or running job of the same kind and pair will fetch: a queued job fetches
 * its whole range, a running one what lies past its cursor.
 */
CREATE FUNCTION mdfeed.uncovered_ranges(p_kind text, p_exchange text, p_symbol text, p_interval text,
										p_from timestamptz, p_to timestamptz)
RETURNS TABLE (uncovered_from timestamptz, uncovered_to timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	j record;
	v_at timestamptz := p_from;
BEGIN
	-- walk the jobs' coverage in order of its start; what lies between is
	-- uncovered
	FOR j IN
		SELECT c.cov_from, c.cov_to FROM (
			SELECT CASE WHEN k.state = 'running'
						THEN greatest(k.from_time, coalesce(k.cursor_time, k.from_time))
						ELSE k.from_time END AS cov_from,
				   k.to_time AS cov_to
			FROM mdfeed.jobs k
			WHERE k.kind = p_kind AND k.exchange = p_exchange AND k.symbol = p_symbol
			  AND k."interval" IS NOT DISTINCT FROM p_interval
			  AND k.state IN ('queued', 'running')) c
		WHERE c.cov_from < c.cov_to AND c.cov_to > p_from AND c.cov_from < p_to
		ORDER BY c.cov_from
	LOOP
		IF j.cov_from > v_at THEN
			uncovered_from := v_at;
			uncovered_to := j.cov_from;
			RETURN NEXT;
		END IF;
		v_at := greatest(v_at, j.cov_to);
		EXIT WHEN v_at >= p_to;
	END LOOP;
	IF v_at < p_to THEN
		uncovered_from := v_at;
		uncovered_to := p_to;
		RETURN NEXT;
	END IF;
END
$fn$;
REVOKE ALL ON FUNCTION mdfeed.uncovered_ranges(text, text, text, text, timestamptz, timestamptz) FROM PUBLIC;

/*
 * mdfeed.queue_job queues a job for the workers' own purposes (first fill,
 * startup sync, gap repair, stream repairs, hourly collection) for each
 * part of the range no queued or running job of the same kind and pair will
 * fetch, and returns the first; nothing, returning a covering job, when they
 * cover all of it or a job failed on all of it in the last ten minutes.  A
 * queued job is not extended instead: a backfill worker may have read its
 * range to claim it, and would not see the extension.
 *
 * Queuers take turns (a lock on mdfeed.queue_lock), so that two workers
 * asking for one range at the same moment do not both insert it.
 */
CREATE OR REPLACE FUNCTION mdfeed.queue_job(p_kind text, p_exchange text, p_symbol text, p_interval text,
											p_from timestamptz, p_to timestamptz, p_origin text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_id bigint;
	v_new bigint;
	v_from timestamptz;
	v_to timestamptz;
BEGIN
	IF p_from >= p_to THEN
		RETURN NULL;
	END IF;
	LOCK TABLE mdfeed.queue_lock IN EXCLUSIVE MODE;
	-- do not retry a range that keeps failing more than every few minutes
	SELECT k.id INTO v_id FROM mdfeed.jobs k
	WHERE k.kind = p_kind AND k.exchange = p_exchange
	  AND k.symbol = p_symbol AND k."interval" IS NOT DISTINCT FROM p_interval
	  AND k.from_time <= p_from AND k.to_time >= p_to
	  AND k.state = 'failed' AND k.finished_at > pg_catalog.now() - interval '10 minutes'
	LIMIT 1;
	IF FOUND THEN
		RETURN v_id;
	END IF;
	v_id := NULL;
	FOR v_from, v_to IN
		SELECT u.uncovered_from, u.uncovered_to
		FROM mdfeed.uncovered_ranges(p_kind, p_exchange, p_symbol, p_interval, p_from, p_to) u
		ORDER BY 1
	LOOP
		INSERT INTO mdfeed.jobs (kind, exchange, symbol, "interval", from_time, to_time, origin, requested_by)
		VALUES (p_kind, p_exchange, p_symbol, p_interval, v_from, v_to, p_origin, current_user)
		RETURNING id INTO v_new;
		v_id := coalesce(v_id, v_new);
	END LOOP;
	IF v_id IS NULL THEN
		-- all of it is covered: by the oldest of the jobs that cover it
		SELECT k.id INTO v_id FROM mdfeed.jobs k
		WHERE k.kind = p_kind AND k.exchange = p_exchange
		  AND k.symbol = p_symbol AND k."interval" IS NOT DISTINCT FROM p_interval
		  AND k.state IN ('queued', 'running') AND k.from_time < p_to AND k.to_time > p_from
		ORDER BY k.id LIMIT 1;
	END IF;
	RETURN v_id;
END
$fn$;

/*
 * mdfeed.sync_pair brings one tracked pair up to date: from its newest closed
 * candle, or mdfeed.sync_lookback back when it has none, to the present;
 * with p_only_if_behind, only if the newest candle closed by p_closed_by
 * (default now) is missing.  A pair with no closed candle, or only ones
 * that closed after it was tracked (the stream's), is new: its first fill
 * is the watch worker's (origin 'sync'), which queues it as soon as it sees
 * the pair tracked, so the stream worker's repairs (origin 'stream') leave
 * it alone rather than race it to the same range.
 */
CREATE OR REPLACE FUNCTION mdfeed.sync_pair(p_exchange text, p_symbol text, p_interval text,
											p_lookback interval, p_origin text,
											p_only_if_behind boolean DEFAULT false,
											p_closed_by timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_last timestamptz;
	v_since timestamptz;
	v_new boolean;
	v_expect timestamptz;
	v_step interval := mdfeed.interval_step(p_interval);
	v_from timestamptz;
	v_to timestamptz := ((mdfeed.interval_floor(p_interval, pg_catalog.now()) AT TIME ZONE 'UTC') + v_step) AT TIME ZONE 'UTC';
BEGIN
	EXECUTE pg_catalog.format('SELECT max(open_time) FROM mdfeed.%I WHERE symbol = $1 AND closed',
							  mdfeed.interval_table(p_interval))
		INTO v_last USING p_symbol;
	-- candles that closed only after the pair was tracked are the stream's,
	-- not history: the pair is still new, and its first fill still due
	IF v_last IS NOT NULL THEN
		SELECT t.since INTO v_since FROM mdfeed.tracked t
		WHERE t.exchange = p_exchange AND t.symbol = p_symbol LIMIT 1;
		IF v_since IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT NOT EXISTS (SELECT 1 FROM mdfeed.%I '
									  'WHERE symbol = $1 AND closed AND close_time < $2)',
									  mdfeed.interval_table(p_interval))
				INTO v_new USING p_symbol, v_since;
			IF v_new THEN
				v_last := NULL;
			END IF;
		END IF;
	END IF;
	IF v_last IS NULL AND p_origin = 'stream' THEN
		RETURN NULL;
	END IF;
	-- unless asked to sync anyway: nothing to do when the newest candle
	-- closed by then is stored, or lies before the lookback (a pair whose
	-- interval is longer than the lookback has none to store)
	IF p_only_if_behind THEN
		v_expect := ((mdfeed.interval_floor(p_interval, coalesce(p_closed_by, pg_catalog.now())) AT TIME ZONE 'UTC')
					 - v_step) AT TIME ZONE 'UTC';
		IF coalesce(v_last >= v_expect, false)
		   OR v_expect < mdfeed.interval_floor(p_interval, pg_catalog.now() - p_lookback) THEN
			RETURN NULL;
		END IF;
	END IF;
	IF v_last IS NULL OR v_last < pg_catalog.now() - p_lookback THEN
		v_from := mdfeed.interval_floor(p_interval, pg_catalog.now() - p_lookback);
	ELSE
		v_from := v_last;
	END IF;
	RETURN mdfeed.queue_sync(p_exchange, p_symbol, p_interval, v_from, v_to, p_origin);
END
$fn$;

/*
 * mdfeed.derivs_from is where the collection of a symbol's open interest or
 * funding starts: after its newest stored row (p_after), or p_from when it
 * has none, and past what queued and running jobs will fetch.  It is NULL
 * when [start, now) holds nothing new: every open-interest row, and every
 * funding event (to a few milliseconds), lies on a whole hour (UTC), so a
 * range holding no whole hour has nothing the exchange could add.
 */
CREATE FUNCTION mdfeed.derivs_from(p_kind text, p_exchange text, p_symbol text,
								   p_after timestamptz, p_from timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_from timestamptz := coalesce(p_after, p_from);
BEGIN
	IF v_from >= pg_catalog.now() THEN
		RETURN NULL;
	END IF;
	-- the first part no job fetches that holds a whole hour (its first whole
	-- hour is before now)
	SELECT min(u.uncovered_from) INTO v_from
	FROM mdfeed.uncovered_ranges(p_kind, p_exchange, p_symbol, NULL, v_from, pg_catalog.now()) u
	WHERE mdfeed.interval_floor('1h', u.uncovered_from - interval '1 microsecond') + interval '1 hour'
		  < u.uncovered_to;
	RETURN v_from;
END
$fn$;
REVOKE ALL ON FUNCTION mdfeed.derivs_from(text, text, text, timestamptz, timestamptz) FROM PUBLIC;

/*
 * mdfeed.sync_derivs queues the collection of a tracked symbol's open
 * interest (from its newest stored hour, at most 30 days back) and funding
 * (from its newest stored event, or p_lookback back), for what no job
 * already fetches and only when there can be something new.
 */
CREATE OR REPLACE FUNCTION mdfeed.sync_derivs(p_exchange text, p_symbol text, p_lookback interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_last timestamptz;
	v_from timestamptz;
BEGIN
	-- as queue_job does, so that what derivs_from sees stays true until commit
	LOCK TABLE mdfeed.queue_lock IN EXCLUSIVE MODE;
	SELECT max(o.ts) INTO v_last FROM mdfeed.open_interest_1h o WHERE o.symbol = p_symbol;
	v_from := mdfeed.derivs_from('open_interest', p_exchange, p_symbol,
								 greatest(v_last + interval '1 hour', pg_catalog.now() - interval '30 days'),
								 pg_catalog.now() - interval '30 days');
	IF v_from IS NOT NULL THEN
		PERFORM mdfeed.queue_job('open_interest', p_exchange, p_symbol, NULL, v_from, pg_catalog.now(), 'sync');
	END IF;
	SELECT max(f.exchange_time) INTO v_last FROM mdfeed.funding_rates f WHERE f.symbol = p_symbol;
	v_from := mdfeed.derivs_from('funding', p_exchange, p_symbol, v_last + interval '1 millisecond',
								 pg_catalog.now() - p_lookback);
	IF v_from IS NOT NULL THEN
		PERFORM mdfeed.queue_job('funding', p_exchange, p_symbol, NULL, v_from, pg_catalog.now(), 'sync');
	END IF;
END
$fn$;




/* ---- operations: stopping and the schema version (7.8) ---- */



