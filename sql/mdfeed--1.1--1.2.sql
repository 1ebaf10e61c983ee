/*
 * mdfeed--1.1--1.2.sql
 *
 * 1.2: exchanges as a real dimension (issue 8).  A fresh install of 1.2
 * runs mdfeed--1.0.sql, mdfeed--1.0--1.1.sql and then this script, so a
 * fresh install and an upgrade are the same schema by construction;
 * test/t/008_upgrade.pl checks it with pg_dump for every version in the
 * chain, and that every row survives ALTER EXTENSION UPDATE.
 *
 * Nothing here rewrites a table: Binance USD-M keeps its candles_<iv>
 * family with its shape and primary key.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mdfeed UPDATE TO '1.2'" to load this file. \quit

/* ---- instruments: the adapter's normalised status ---- */

/*
 * Whether mdfeed may track an instrument is the adapter's word, not SQL's:
 * Binance's adapter says a TRADING PERPETUAL is, another exchange says what
 * its own markets call active.  The rows stored before 1.2 are Binance's;
 * they get the same answer now that the watch worker gives at its next
 * refresh.
 */
ALTER TABLE mdfeed.instruments ADD COLUMN tradable boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN mdfeed.instruments.tradable IS
	'the exchange adapter''s normalised status: a market mdfeed tracks when listed';
UPDATE mdfeed.instruments
SET tradable = (status OPERATOR(pg_catalog.=) 'TRADING' AND contract_type OPERATOR(pg_catalog.=) 'PERPETUAL')
WHERE exchange OPERATOR(pg_catalog.=) 'binance';

CREATE OR REPLACE VIEW mdfeed.tracked AS
	SELECT c.exchange, c.symbol, c.source, c.since
	FROM (
		SELECT w.exchange, w.symbol, 'whitelist'::text AS source, w.added_at AS since
		FROM mdfeed.symbol_lists w WHERE w.list = 'whitelist'
		UNION ALL
		SELECT a.exchange, a.symbol, 'auto'::text, a.ranked_at
		FROM mdfeed.auto_tracked a
		WHERE NOT EXISTS (SELECT 1 FROM mdfeed.symbol_lists w
						  WHERE w.exchange = a.exchange AND w.symbol = a.symbol AND w.list = 'whitelist')
	) c
	JOIN mdfeed.instruments i ON i.exchange = c.exchange AND i.symbol = c.symbol
	WHERE i.tradable
	  AND NOT EXISTS (SELECT 1 FROM mdfeed.symbol_lists b
					  WHERE b.exchange = c.exchange AND b.symbol = c.symbol AND b.list = 'blacklist');

CREATE OR REPLACE FUNCTION mdfeed.rank_symbols(p_exchange text, p_symbols text[], p_quote_volumes numeric[],
											   p_min numeric, p_top_n integer)
RETURNS TABLE (symbol text, quote_volume numeric, rank integer)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT r.symbol, r.quote_volume, r.rank::integer FROM (
		SELECT t.symbol, t.qv AS quote_volume,
			   row_number() OVER (ORDER BY t.qv DESC, t.symbol) AS rank
		FROM unnest(p_symbols, p_quote_volumes) AS t(symbol, qv)
		JOIN mdfeed.instruments i ON i.exchange = p_exchange AND i.symbol = t.symbol
		WHERE i.tradable
		  AND t.qv >= coalesce(p_min, 0)
	) r
	WHERE p_top_n IS NULL OR r.rank <= p_top_n
	ORDER BY r.rank
$fn$;

/*
 * mdfeed_whitelist: the instrument check follows the adapter's status, and
 * the messages name the exchange.
 */
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
					  HINT = format('SELECT symbol FROM mdfeed.instruments WHERE exchange = %L shows what %s lists; symbols are written as it writes them.',
									exchange, exchange);
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
						WHERE i.exchange = $2 AND i.symbol = ANY (symbols) AND NOT i.tradable ORDER BY 1);
	IF cardinality(v_inactive) > 0 THEN
		RAISE NOTICE '% is not tradable on % now, and is tracked only when it is',
			array_to_string(v_inactive, ', '), exchange;
	END IF;
	PERFORM mdfeed.wake_workers();
	RETURN v_added;
END
$fn$;

/* ---- candle tables: one family per exchange ---- */

/*
 * mdfeed.candle_table names the exchange's table of an interval, or raises
 * the error of an exchange that does not offer it (listing what it offers).
 * It only validates and names, so PUBLIC keeps it: mdfeed_gaps runs with
 * its caller's rights.
 */
CREATE FUNCTION mdfeed.candle_table(exchange text, "interval" text) RETURNS text
AS 'MODULE_PATHNAME', 'mdfeed_candle_table' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION mdfeed.candle_table(text, text) IS
	'the table (in schema mdfeed) holding an exchange''s candles of an interval';

/* every family, with the exchange as a column (appended: 1.1's columns keep their places) */
CREATE OR REPLACE VIEW mdfeed.candles AS
	SELECT '1m'::text AS "interval", c.*, 'binance'::text AS exchange FROM mdfeed.candles_1m c
	UNION ALL SELECT '3m', c.*, 'binance' FROM mdfeed.candles_3m c
	UNION ALL SELECT '5m', c.*, 'binance' FROM mdfeed.candles_5m c
	UNION ALL SELECT '15m', c.*, 'binance' FROM mdfeed.candles_15m c
	UNION ALL SELECT '30m', c.*, 'binance' FROM mdfeed.candles_30m c
	UNION ALL SELECT '1h', c.*, 'binance' FROM mdfeed.candles_1h c
	UNION ALL SELECT '2h', c.*, 'binance' FROM mdfeed.candles_2h c
	UNION ALL SELECT '4h', c.*, 'binance' FROM mdfeed.candles_4h c
	UNION ALL SELECT '6h', c.*, 'binance' FROM mdfeed.candles_6h c
	UNION ALL SELECT '8h', c.*, 'binance' FROM mdfeed.candles_8h c
	UNION ALL SELECT '12h', c.*, 'binance' FROM mdfeed.candles_12h c
	UNION ALL SELECT '1d', c.*, 'binance' FROM mdfeed.candles_1d c
	UNION ALL SELECT '3d', c.*, 'binance' FROM mdfeed.candles_3d c
	UNION ALL SELECT '1w', c.*, 'binance' FROM mdfeed.candles_1w c
	UNION ALL SELECT '1M', c.*, 'binance' FROM mdfeed.candles_1mo c;
COMMENT ON VIEW mdfeed.candles IS
	'every exchange''s candles of every interval; exchange and interval are columns';

/* mdfeed_gaps reads the exchange's own table */
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
	v_tab := mdfeed.candle_table(exchange, "interval");
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

/* the sync of a pair reads the exchange's own table */
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
							  mdfeed.candle_table(p_exchange, p_interval))
		INTO v_last USING p_symbol;
	-- candles that closed only after the pair was tracked are the stream's,
	-- not history: the pair is still new, and its first fill still due
	IF v_last IS NOT NULL THEN
		SELECT t.since INTO v_since FROM mdfeed.tracked t
		WHERE t.exchange = p_exchange AND t.symbol = p_symbol LIMIT 1;
		IF v_since IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT NOT EXISTS (SELECT 1 FROM mdfeed.%I '
									  'WHERE symbol = $1 AND closed AND close_time < $2)',
									  mdfeed.candle_table(p_exchange, p_interval))
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

/* ---- workers: which exchange each serves, and closed-candle latency ---- */

/*
 * mdfeed.workers gains columns at its end.  mdfeed_workers() keeps its 14
 * (a function's columns cannot change without dropping it, and dropping it
 * and the view would drop what users granted on them); the view now reads
 * mdfeed.worker_status(), the same rows with every column.  Its right to
 * run follows mdfeed_workers(): it refuses a caller who may not execute
 * that, so the grants users made on the function and the view stay the
 * ones that count, and nothing here grants anything.
 */
CREATE FUNCTION mdfeed.worker_status(OUT pid integer, OUT role text, OUT state text,
									 OUT started_at timestamptz, OUT last_message_at timestamptz,
									 OUT messages bigint, OUT reconnects bigint, OUT streams integer,
									 OUT job bigint, OUT last_error text, OUT connections integer,
									 OUT malformed bigint, OUT latency_p50_ms bigint, OUT latency_p99_ms bigint,
									 OUT exchange text, OUT close_latency_p50_ms bigint,
									 OUT close_latency_p99_ms bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_worker_status'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mdfeed.worker_status() IS
	'the rows of mdfeed.workers, for whoever may execute mdfeed_workers(); exchange is the one a stream worker serves';
CREATE OR REPLACE VIEW mdfeed.workers AS SELECT * FROM mdfeed.worker_status();

/*
 * Each exchange's REST budget, as the workers share it: every limit the
 * adapter declares, its use in the current window, and whether the
 * exchange holds this server back.
 */
CREATE FUNCTION mdfeed_budgets(OUT exchange text, OUT limit_name text, OUT limit_value integer,
							   OUT window_length interval, OUT used integer,
							   OUT blocked_until timestamptz, OUT banned boolean,
							   OUT requests bigint, OUT throttled bigint, OUT rate_limited bigint,
							   OUT bans bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_budgets'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mdfeed_budgets() IS
	'each exchange''s REST rate limits as the workers share them';
REVOKE ALL ON FUNCTION mdfeed_budgets() FROM PUBLIC;
CREATE VIEW mdfeed.budgets AS SELECT * FROM mdfeed_budgets();

/* ---- parsers: the exchange is an argument ---- */

/*
 * The parser hooks take the exchange, as the workers do.  The 1.0 names
 * (parse_binance_klines, parse_binance_stream, ingest_binance_klines) keep
 * working: they are the same code with the exchange fixed.
 */
CREATE FUNCTION mdfeed.parse_klines(exchange text, body text, "interval" text,
	OUT open_time timestamptz, OUT close_time timestamptz,
	OUT open numeric, OUT high numeric, OUT low numeric, OUT close numeric,
	OUT volume numeric, OUT quote_volume numeric,
	OUT taker_buy_base_volume numeric, OUT taker_buy_quote_volume numeric,
	OUT trades bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_parse_klines'
LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION mdfeed.parse_klines(text, text, text) IS
	'parse an exchange''s REST klines answer as the backfill workers do';

CREATE FUNCTION mdfeed.parse_stream(exchange text, frame text,
	OUT stream text, OUT event_time timestamptz, OUT symbol text, OUT "interval" text,
	OUT open_time timestamptz, OUT close_time timestamptz,
	OUT open numeric, OUT high numeric, OUT low numeric, OUT close numeric,
	OUT volume numeric, OUT quote_volume numeric,
	OUT taker_buy_base_volume numeric, OUT taker_buy_quote_volume numeric,
	OUT trades bigint, OUT closed boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_parse_stream'
LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION mdfeed.parse_stream(text, text) IS
	'parse one market-stream frame of an exchange as the stream worker does';

CREATE FUNCTION mdfeed.ingest_klines(exchange text, symbol text, "interval" text, body text,
									 server_time timestamptz DEFAULT now())
RETURNS bigint
AS 'MODULE_PATHNAME', 'mdfeed_ingest_klines'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mdfeed.ingest_klines(text, text, text, text, timestamptz) IS
	'upsert an exchange''s REST klines answer, as the backfill workers do; returns rows written';

REVOKE ALL ON FUNCTION mdfeed.parse_klines(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.parse_stream(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.ingest_klines(text, text, text, text, timestamptz) FROM PUBLIC;

/* ---- derivatives: the exchange's own tables and retention ---- */

/*
 * mdfeed.derivs_table names the table of an exchange's funding events or
 * open interest ('funding', 'open_interest'), or is NULL when the exchange
 * has none; mdfeed.open_interest_retention is how far back the exchange
 * keeps open interest.  Both only read the adapter's declarations.
 */
CREATE FUNCTION mdfeed.derivs_table(exchange text, kind text) RETURNS text
AS 'MODULE_PATHNAME', 'mdfeed_derivs_table' LANGUAGE C STABLE STRICT;
CREATE FUNCTION mdfeed.open_interest_retention(exchange text) RETURNS interval
AS 'MODULE_PATHNAME', 'mdfeed_open_interest_retention' LANGUAGE C STABLE STRICT;

/* the collection reads the exchange's tables, and skips what it has none of */
CREATE OR REPLACE FUNCTION mdfeed.sync_derivs(p_exchange text, p_symbol text, p_lookback interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_tab text;
	v_keep interval;
	v_last timestamptz;
	v_from timestamptz;
BEGIN
	-- as queue_job does, so that what derivs_from sees stays true until commit
	LOCK TABLE mdfeed.queue_lock IN EXCLUSIVE MODE;
	v_tab := mdfeed.derivs_table(p_exchange, 'open_interest');
	IF v_tab IS NOT NULL THEN
		v_keep := mdfeed.open_interest_retention(p_exchange);
		EXECUTE pg_catalog.format('SELECT max(o.ts) FROM mdfeed.%I o WHERE o.symbol = $1', v_tab)
			INTO v_last USING p_symbol;
		v_from := mdfeed.derivs_from('open_interest', p_exchange, p_symbol,
									 greatest(v_last + interval '1 hour', pg_catalog.now() - v_keep),
									 pg_catalog.now() - v_keep);
		IF v_from IS NOT NULL THEN
			PERFORM mdfeed.queue_job('open_interest', p_exchange, p_symbol, NULL, v_from, pg_catalog.now(), 'sync');
		END IF;
	END IF;
	v_tab := mdfeed.derivs_table(p_exchange, 'funding');
	IF v_tab IS NOT NULL THEN
		EXECUTE pg_catalog.format('SELECT max(f.exchange_time) FROM mdfeed.%I f WHERE f.symbol = $1', v_tab)
			INTO v_last USING p_symbol;
		v_from := mdfeed.derivs_from('funding', p_exchange, p_symbol, v_last + interval '1 millisecond',
									 pg_catalog.now() - p_lookback);
		IF v_from IS NOT NULL THEN
			PERFORM mdfeed.queue_job('funding', p_exchange, p_symbol, NULL, v_from, pg_catalog.now(), 'sync');
		END IF;
	END IF;
END
$fn$;
