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



/* ---- operations: stopping and the schema version (7.8) ---- */



