/*
 * mdfeed--1.0.sql
 *
 * The tables mdfeed's background workers fill (schema mdfeed) and the SQL
 * functions users call (mdfeed_*, in the extension's schema so that they are
 * callable unqualified).
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION mdfeed" to load this file. \quit

CREATE SCHEMA mdfeed;
COMMENT ON SCHEMA mdfeed IS 'market data stored by the mdfeed extension';

/*
 * One candle table per exchange interval.  Every value is kept exactly as the
 * exchange's decimal string (numeric), every time as timestamptz.  The row of
 * the candle still forming has closed = false and is replaced when it closes.
 */
DO $do$
DECLARE
	iv record;
BEGIN
	FOR iv IN
		SELECT * FROM (VALUES
			('1m', 'candles_1m'), ('3m', 'candles_3m'), ('5m', 'candles_5m'),
			('15m', 'candles_15m'), ('30m', 'candles_30m'), ('1h', 'candles_1h'),
			('2h', 'candles_2h'), ('4h', 'candles_4h'), ('6h', 'candles_6h'),
			('8h', 'candles_8h'), ('12h', 'candles_12h'), ('1d', 'candles_1d'),
			('3d', 'candles_3d'), ('1w', 'candles_1w'), ('1M', 'candles_1mo'))
			AS v(name, tab)
	LOOP
		EXECUTE format($t$
			CREATE TABLE mdfeed.%I (
				symbol text COLLATE "C" NOT NULL,
				open_time timestamptz NOT NULL,
				close_time timestamptz NOT NULL,
				open numeric NOT NULL,
				high numeric NOT NULL,
				low numeric NOT NULL,
				close numeric NOT NULL,
				volume numeric NOT NULL,
				quote_volume numeric NOT NULL,
				taker_buy_base_volume numeric NOT NULL,
				taker_buy_quote_volume numeric NOT NULL,
				trades bigint NOT NULL,
				closed boolean NOT NULL,
				updated_at timestamptz NOT NULL DEFAULT now(),
				PRIMARY KEY (symbol, open_time)
			)$t$, iv.tab);
		EXECUTE format('COMMENT ON TABLE mdfeed.%I IS %L', iv.tab,
					   iv.name || ' candles; closed = false marks the candle still forming');
		-- pg_dump must keep the data: it is the point of the extension
		PERFORM pg_catalog.pg_extension_config_dump(format('mdfeed.%I', iv.tab)::regclass, '');
	END LOOP;
END
$do$;

/* All candle tables at once, with the interval as a column. */
CREATE VIEW mdfeed.candles AS
	SELECT '1m'::text AS "interval", * FROM mdfeed.candles_1m
	UNION ALL SELECT '3m', * FROM mdfeed.candles_3m
	UNION ALL SELECT '5m', * FROM mdfeed.candles_5m
	UNION ALL SELECT '15m', * FROM mdfeed.candles_15m
	UNION ALL SELECT '30m', * FROM mdfeed.candles_30m
	UNION ALL SELECT '1h', * FROM mdfeed.candles_1h
	UNION ALL SELECT '2h', * FROM mdfeed.candles_2h
	UNION ALL SELECT '4h', * FROM mdfeed.candles_4h
	UNION ALL SELECT '6h', * FROM mdfeed.candles_6h
	UNION ALL SELECT '8h', * FROM mdfeed.candles_8h
	UNION ALL SELECT '12h', * FROM mdfeed.candles_12h
	UNION ALL SELECT '1d', * FROM mdfeed.candles_1d
	UNION ALL SELECT '3d', * FROM mdfeed.candles_3d
	UNION ALL SELECT '1w', * FROM mdfeed.candles_1w
	UNION ALL SELECT '1M', * FROM mdfeed.candles_1mo;

/*
 * One row per request: the user's progress bar and audit trail.  cursor_time
 * is the resume point: everything the job asked for before it is stored, so a
 * job interrupted by a crash or restart goes on from there.
 */
CREATE TABLE mdfeed.jobs (
	id bigserial PRIMARY KEY,
	kind text NOT NULL DEFAULT 'candles'
		CHECK (kind IN ('candles', 'open_interest', 'funding')),
	exchange text NOT NULL DEFAULT 'binance',
	symbol text NOT NULL,
	"interval" text,
	from_time timestamptz NOT NULL,
	to_time timestamptz NOT NULL,
	state text NOT NULL DEFAULT 'queued'
		CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
	rows_written bigint NOT NULL DEFAULT 0,
	progress double precision NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
	requests integer NOT NULL DEFAULT 0,
	retries integer NOT NULL DEFAULT 0,
	cursor_time timestamptz,
	error text,
	detail text,
	origin text NOT NULL DEFAULT 'user'
		CHECK (origin IN ('user', 'sync', 'repair', 'stream')),
	requested_by name NOT NULL DEFAULT current_user,
	worker_pid integer,
	created_at timestamptz NOT NULL DEFAULT now(),
	started_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT now(),
	finished_at timestamptz,
	CHECK (from_time < to_time)
);
CREATE INDEX jobs_pending_idx ON mdfeed.jobs (id) WHERE state IN ('queued', 'running');
COMMENT ON TABLE mdfeed.jobs IS 'mdfeed work requests: backfills and repairs, with progress';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('mdfeed.jobs_id_seq', '');

/*
 * What the exchange lists, refreshed from exchangeInfo by the watch worker
 * (and on demand when a symbol is whitelisted).
 */
CREATE TABLE mdfeed.instruments (
	exchange text NOT NULL,
	symbol text NOT NULL,
	status text NOT NULL,
	contract_type text,
	base_asset text,
	quote_asset text,
	onboard_date timestamptz,
	tick_size numeric,
	step_size numeric,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (exchange, symbol)
);
COMMENT ON TABLE mdfeed.instruments IS 'instruments the exchanges list, from their exchange info';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.instruments', '');

/* The user's lists: what to track, and what never to track. */
CREATE TABLE mdfeed.symbol_lists (
	exchange text NOT NULL DEFAULT 'binance',
	symbol text NOT NULL,
	list text NOT NULL CHECK (list IN ('whitelist', 'blacklist')),
	added_at timestamptz NOT NULL DEFAULT now(),
	added_by name NOT NULL DEFAULT session_user,
	PRIMARY KEY (exchange, symbol, list)
);
SELECT pg_catalog.pg_extension_config_dump('mdfeed.symbol_lists', '');

/*
 * The effective set: whitelisted, not blacklisted, and listed by the
 * exchange as a trading perpetual.  The stream and watch workers follow it.
 */
CREATE TABLE mdfeed.auto_tracked (
	exchange text NOT NULL,
	symbol text NOT NULL,
	quote_volume numeric NOT NULL,
	rank integer NOT NULL,
	ranked_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (exchange, symbol)
);
COMMENT ON TABLE mdfeed.auto_tracked IS 'the top of the board, tracked when mdfeed.auto_track_top_n > 0';

CREATE VIEW mdfeed.tracked AS
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
	WHERE i.status = 'TRADING' AND i.contract_type = 'PERPETUAL'
	  AND NOT EXISTS (SELECT 1 FROM mdfeed.symbol_lists b
					  WHERE b.exchange = c.exchange AND b.symbol = c.symbol AND b.list = 'blacklist');

/* Derivatives data, kept exactly as the exchange sends it. */
CREATE TABLE mdfeed.open_interest_1h (
	symbol text NOT NULL,
	ts timestamptz NOT NULL,
	sum_open_interest numeric NOT NULL,
	sum_open_interest_value numeric NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (symbol, ts)
);
COMMENT ON TABLE mdfeed.open_interest_1h IS 'hourly open interest (the exchange keeps only 30 days: mdfeed keeps it all)';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.open_interest_1h', '');

CREATE TABLE mdfeed.funding_rates (
	symbol text NOT NULL,
	funding_time timestamptz NOT NULL,
	funding_rate numeric NOT NULL,
	mark_price numeric,
	exchange_time timestamptz NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (symbol, funding_time)
);
COMMENT ON TABLE mdfeed.funding_rates IS 'funding events; funding_time is the exchange''s time rounded down to the minute';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.funding_rates', '');

/*
 * Ranges the exchange confirmed it has no candles for (before a listing,
 * maintenance): the gap watchdog does not try to repair them again.
 */
CREATE TABLE mdfeed.exchange_gaps (
	exchange text NOT NULL,
	symbol text NOT NULL,
	"interval" text NOT NULL,
	from_time timestamptz NOT NULL,
	to_time timestamptz NOT NULL,
	confirmed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (exchange, symbol, "interval", from_time),
	CHECK (from_time < to_time)
);
SELECT pg_catalog.pg_extension_config_dump('mdfeed.exchange_gaps', '');

/* Interval arithmetic, as the workers do it. */
CREATE FUNCTION mdfeed.interval_table("interval" text) RETURNS text
AS 'MODULE_PATHNAME', 'mdfeed_interval_table' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION mdfeed.interval_step("interval" text) RETURNS interval
AS 'MODULE_PATHNAME', 'mdfeed_interval_step' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION mdfeed.interval_floor("interval" text, ts timestamptz) RETURNS timestamptz
AS 'MODULE_PATHNAME', 'mdfeed_interval_floor' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION mdfeed.check_symbol(symbol text) RETURNS text
AS 'MODULE_PATHNAME', 'mdfeed_check_symbol' LANGUAGE C IMMUTABLE;

/*
 * mdfeed_gaps lists the ranges of candles missing from a stored range: every
 * candle whose open time is in [from_time, to_time) and that has closed by
 * now must be stored with closed = true.  exchange_has_none marks ranges the
 * exchange confirmed it has nothing for.
 */
CREATE FUNCTION mdfeed_gaps(symbol text, "interval" text, from_time timestamptz,
							to_time timestamptz DEFAULT now(), exchange text DEFAULT 'binance')
RETURNS TABLE (gap_start timestamptz, gap_end timestamptz, missing bigint, exchange_has_none boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_tab text := mdfeed.interval_table("interval");
	v_step interval := mdfeed.interval_step("interval");
	v_from timestamptz;
	v_to timestamptz;
BEGIN
	PERFORM mdfeed.check_symbol(symbol);
	IF from_time IS NULL OR to_time IS NULL THEN
		RAISE EXCEPTION 'from_time and to_time must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	v_from := mdfeed.interval_floor("interval", from_time);
	-- every candle opening before to_time counts, but only closed ones can be
	-- missing: stop at the one forming now
	v_to := least(((mdfeed.interval_floor("interval", to_time - interval '1 microsecond')
					AT TIME ZONE 'UTC') + v_step) AT TIME ZONE 'UTC',
				  mdfeed.interval_floor("interval", now()));
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
COMMENT ON FUNCTION mdfeed_gaps(text, text, timestamptz, timestamptz, text)
IS 'ranges of closed candles missing from mdfeed.candles_<interval>';

/*
 * mdfeed.queue_job queues a job for the workers' own purposes (startup sync,
 * gap repair, stream reconnects, hourly collection), unless a queued or
 * running job of the same kind and pair already covers the range, or one
 * failed on it in the last ten minutes.
 */
CREATE FUNCTION mdfeed.queue_job(p_kind text, p_exchange text, p_symbol text, p_interval text,
								 p_from timestamptz, p_to timestamptz, p_origin text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_id bigint;
BEGIN
	IF p_from >= p_to THEN
		RETURN NULL;
	END IF;
	-- a job that covers the range is under way, or failed a moment ago (do
	-- not retry a range that keeps failing more than every few minutes)
	SELECT id INTO v_id FROM mdfeed.jobs
	WHERE kind = p_kind AND exchange = p_exchange
	  AND symbol = p_symbol AND "interval" IS NOT DISTINCT FROM p_interval
	  AND from_time <= p_from AND to_time >= p_to
	  AND (state IN ('queued', 'running')
		   OR (state = 'failed' AND finished_at > now() - interval '10 minutes'))
	LIMIT 1;
	IF FOUND THEN
		RETURN v_id;
	END IF;
	INSERT INTO mdfeed.jobs (kind, exchange, symbol, "interval", from_time, to_time, origin, requested_by)
	VALUES (p_kind, p_exchange, p_symbol, p_interval, p_from, p_to, p_origin, current_user)
	RETURNING id INTO v_id;
	RETURN v_id;
END
$fn$;

CREATE FUNCTION mdfeed.queue_sync(p_exchange text, p_symbol text, p_interval text,
								  p_from timestamptz, p_to timestamptz, p_origin text)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $fn$ SELECT mdfeed.queue_job('candles', p_exchange, p_symbol, p_interval, p_from, p_to, p_origin) $fn$;

/*
 * mdfeed.sync_derivs queues the collection of a tracked symbol's open
 * interest (from its newest stored hour, at most 30 days back) and funding
 * (from its newest stored event, or p_lookback back).
 */
CREATE FUNCTION mdfeed.sync_derivs(p_exchange text, p_symbol text, p_lookback interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_last timestamptz;
BEGIN
	SELECT max(ts) INTO v_last FROM mdfeed.open_interest_1h WHERE symbol = p_symbol;
	PERFORM mdfeed.queue_job('open_interest', p_exchange, p_symbol, NULL,
							 greatest(coalesce(v_last + interval '1 hour', now() - interval '30 days'),
									  now() - interval '30 days'),
							 now(), 'sync');
	SELECT max(exchange_time) INTO v_last FROM mdfeed.funding_rates WHERE symbol = p_symbol;
	PERFORM mdfeed.queue_job('funding', p_exchange, p_symbol, NULL,
							 coalesce(v_last + interval '1 millisecond', now() - p_lookback),
							 now(), 'sync');
END
$fn$;

/*
 * mdfeed.rank_symbols ranks trading perpetuals by 24 h quote volume, given
 * the exchange's tickers as arrays.
 */
CREATE FUNCTION mdfeed.rank_symbols(p_exchange text, p_symbols text[], p_quote_volumes numeric[],
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
		WHERE i.status = 'TRADING' AND i.contract_type = 'PERPETUAL'
		  AND t.qv >= coalesce(p_min, 0)
	) r
	WHERE p_top_n IS NULL OR r.rank <= p_top_n
	ORDER BY r.rank
$fn$;

/*
 * mdfeed.apply_auto_track makes mdfeed.auto_tracked the top of the board,
 * blacklisted symbols left out (the next ones take their places); symbols
 * that fall out stop streaming but keep their data.
 */
CREATE FUNCTION mdfeed.apply_auto_track(p_exchange text, p_symbols text[], p_quote_volumes numeric[],
										p_min numeric, p_top_n integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_n integer;
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS mdfeed_ranked (symbol text, quote_volume numeric, rank integer)
		ON COMMIT DROP;
	DELETE FROM mdfeed_ranked;
	-- the top p_top_n of the board that the blacklist allows, with their board rank
	INSERT INTO mdfeed_ranked
	SELECT r.* FROM mdfeed.rank_symbols(p_exchange, p_symbols, p_quote_volumes, p_min, NULL) r
	WHERE NOT EXISTS (SELECT 1 FROM mdfeed.symbol_lists b
					  WHERE b.exchange = p_exchange AND b.symbol = r.symbol AND b.list = 'blacklist')
	ORDER BY r.rank
	LIMIT greatest(p_top_n, 0);
	DELETE FROM mdfeed.auto_tracked a
	WHERE a.exchange = p_exchange AND NOT EXISTS (SELECT 1 FROM mdfeed_ranked r WHERE r.symbol = a.symbol);
	INSERT INTO mdfeed.auto_tracked AS a (exchange, symbol, quote_volume, rank)
	SELECT p_exchange, r.symbol, r.quote_volume, r.rank FROM mdfeed_ranked r
	ON CONFLICT (exchange, symbol) DO UPDATE SET quote_volume = excluded.quote_volume,
		rank = excluded.rank, ranked_at = now();
	SELECT count(*) INTO v_n FROM mdfeed_ranked;
	RETURN v_n;
END
$fn$;

/*
 * mdfeed.sync_pair brings one tracked pair up to date: from its newest closed
 * candle, or mdfeed.sync_lookback back when it has none, to the present;
 * with p_only_if_behind, only if the newest candle closed by p_closed_by
 * (default now) is missing.
 */
CREATE FUNCTION mdfeed.sync_pair(p_exchange text, p_symbol text, p_interval text,
								 p_lookback interval, p_origin text,
								 p_only_if_behind boolean DEFAULT false,
								 p_closed_by timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_last timestamptz;
	v_expect timestamptz;
	v_step interval := mdfeed.interval_step(p_interval);
	v_from timestamptz;
	v_to timestamptz := ((mdfeed.interval_floor(p_interval, now()) AT TIME ZONE 'UTC') + v_step) AT TIME ZONE 'UTC';
BEGIN
	EXECUTE format('SELECT max(open_time) FROM mdfeed.%I WHERE symbol = $1 AND closed',
				   mdfeed.interval_table(p_interval))
		INTO v_last USING p_symbol;
	-- unless asked to sync anyway: nothing to do when the newest candle
	-- closed by then is stored, or lies before the lookback (a pair whose
	-- interval is longer than the lookback has none to store)
	IF p_only_if_behind THEN
		v_expect := ((mdfeed.interval_floor(p_interval, coalesce(p_closed_by, now())) AT TIME ZONE 'UTC')
					 - v_step) AT TIME ZONE 'UTC';
		IF coalesce(v_last >= v_expect, false)
		   OR v_expect < mdfeed.interval_floor(p_interval, now() - p_lookback) THEN
			RETURN NULL;
		END IF;
	END IF;
	IF v_last IS NULL OR v_last < now() - p_lookback THEN
		v_from := mdfeed.interval_floor(p_interval, now() - p_lookback);
	ELSE
		v_from := v_last;
	END IF;
	RETURN mdfeed.queue_sync(p_exchange, p_symbol, p_interval, v_from, v_to, p_origin);
END
$fn$;

/* The functions users call. */

CREATE FUNCTION mdfeed_backfill(symbol text, "interval" text,
								from_time timestamptz,
								to_time timestamptz DEFAULT now(),
								exchange text DEFAULT 'binance')
RETURNS bigint
AS 'MODULE_PATHNAME', 'mdfeed_backfill'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text)
IS 'queue a backfill of candles in [from_time, to_time) and return the job id';

CREATE FUNCTION mdfeed_wait(job bigint, timeout interval DEFAULT '1 hour')
RETURNS text
AS 'MODULE_PATHNAME', 'mdfeed_wait'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mdfeed_wait(bigint, interval)
IS 'wait until a job ends and return its state (the current state on timeout)';

CREATE FUNCTION mdfeed_cancel(job bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mdfeed_cancel'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mdfeed_cancel(bigint)
IS 'cancel a queued or running job; false if it had already ended';

CREATE FUNCTION mdfeed_workers(OUT pid integer, OUT role text, OUT state text,
							   OUT started_at timestamptz, OUT last_message_at timestamptz,
							   OUT messages bigint, OUT reconnects bigint, OUT streams integer,
							   OUT job bigint, OUT last_error text, OUT connections integer,
							   OUT malformed bigint, OUT latency_p50_ms bigint, OUT latency_p99_ms bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_workers'
LANGUAGE C VOLATILE STRICT;

CREATE VIEW mdfeed.workers AS SELECT * FROM mdfeed_workers();

/*
 * Parsers, exposed for tests and for users with exchange JSON of their own:
 * they run exactly the code the workers run.
 */
CREATE FUNCTION mdfeed.parse_binance_klines(body text, "interval" text,
	OUT open_time timestamptz, OUT close_time timestamptz,
	OUT open numeric, OUT high numeric, OUT low numeric, OUT close numeric,
	OUT volume numeric, OUT quote_volume numeric,
	OUT taker_buy_base_volume numeric, OUT taker_buy_quote_volume numeric,
	OUT trades bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_parse_binance_klines'
LANGUAGE C IMMUTABLE STRICT;

CREATE FUNCTION mdfeed.parse_binance_stream(frame text,
	OUT stream text, OUT event_time timestamptz, OUT symbol text, OUT "interval" text,
	OUT open_time timestamptz, OUT close_time timestamptz,
	OUT open numeric, OUT high numeric, OUT low numeric, OUT close numeric,
	OUT volume numeric, OUT quote_volume numeric,
	OUT taker_buy_base_volume numeric, OUT taker_buy_quote_volume numeric,
	OUT trades bigint, OUT closed boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_parse_binance_stream'
LANGUAGE C IMMUTABLE STRICT;

CREATE FUNCTION mdfeed.ingest_binance_klines(symbol text, "interval" text, body text,
											 server_time timestamptz DEFAULT now())
RETURNS bigint
AS 'MODULE_PATHNAME', 'mdfeed_ingest_binance_klines'
LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mdfeed.ingest_binance_klines(text, text, text, timestamptz)
IS 'upsert a /fapi/v1/klines answer, as the backfill workers do; returns rows written';

/*
 * The symbol lists.  They write mdfeed.symbol_lists for the caller, after
 * checking every symbol: a whitelisted symbol must be listed by the
 * exchange (its exchange info is fetched again when a symbol is unknown).
 */
CREATE FUNCTION mdfeed.refresh_instruments(exchange text DEFAULT 'binance')
RETURNS integer
AS 'MODULE_PATHNAME', 'mdfeed_refresh_instruments'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION mdfeed.fetch_tickers(exchange text DEFAULT 'binance',
									 OUT symbol text, OUT quote_volume numeric)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'mdfeed_fetch_tickers'
LANGUAGE C VOLATILE STRICT;

/*
 * mdfeed_liquid_symbols ranks the exchange's trading perpetuals by 24 h quote
 * volume, from one request for every symbol's ticker.
 */
CREATE FUNCTION mdfeed_liquid_symbols(min_quote_volume numeric DEFAULT 0, top_n integer DEFAULT NULL,
									  exchange text DEFAULT 'binance')
RETURNS TABLE (symbol text, quote_volume numeric, rank integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_symbols text[];
	v_qv numeric[];
BEGIN
	IF top_n IS NOT NULL AND top_n < 1 THEN
		RAISE EXCEPTION 'top_n must be at least 1, not %', top_n
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for every symbol.';
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
COMMENT ON FUNCTION mdfeed_liquid_symbols(numeric, integer, text)
IS 'trading perpetuals ranked by 24 h quote volume';

CREATE FUNCTION mdfeed_backfill_open_interest(symbol text, from_time timestamptz,
											  to_time timestamptz DEFAULT now(),
											  exchange text DEFAULT 'binance')
RETURNS bigint
AS 'MODULE_PATHNAME', 'mdfeed_backfill_open_interest'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mdfeed_backfill_open_interest(text, timestamptz, timestamptz, text)
IS 'queue a job storing hourly open interest in [from_time, to_time), as far as the exchange keeps it';

CREATE FUNCTION mdfeed_backfill_funding(symbol text, from_time timestamptz,
										to_time timestamptz DEFAULT now(),
										exchange text DEFAULT 'binance')
RETURNS bigint
AS 'MODULE_PATHNAME', 'mdfeed_backfill_funding'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mdfeed_backfill_funding(text, timestamptz, timestamptz, text)
IS 'queue a job storing every funding event in [from_time, to_time)';

CREATE FUNCTION mdfeed.wake_workers()
RETURNS void
AS 'MODULE_PATHNAME', 'mdfeed_wake_workers'
LANGUAGE C VOLATILE;

CREATE FUNCTION mdfeed_whitelist(symbols text[], exchange text DEFAULT 'binance')
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
	PERFORM mdfeed.check_symbol(s) FROM unnest(symbols) s;
	IF exchange <> 'binance' THEN
		RAISE EXCEPTION 'unknown exchange "%"', exchange
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Valid exchanges are: binance.';
	END IF;
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
COMMENT ON FUNCTION mdfeed_whitelist(text[], text)
IS 'track these symbols: stream their candles and keep their history complete';

CREATE FUNCTION mdfeed_blacklist(symbols text[], exchange text DEFAULT 'binance')
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
COMMENT ON FUNCTION mdfeed_blacklist(text[], text)
IS 'never track these symbols, whatever else says so; their data is kept';

CREATE FUNCTION mdfeed_unlist(symbols text[], exchange text DEFAULT 'binance')
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
	PERFORM mdfeed.check_symbol(s) FROM unnest(symbols) s;
	WITH del AS (
		DELETE FROM mdfeed.symbol_lists l WHERE l.exchange = $2 AND l.symbol = ANY (symbols) RETURNING 1)
	SELECT count(*) INTO v_removed FROM del;
	PERFORM mdfeed.wake_workers();
	RETURN v_removed;
END
$fn$;
COMMENT ON FUNCTION mdfeed_unlist(text[], text)
IS 'remove symbols from both lists; their data is kept';

/* Nothing here is for PUBLIC: the README shows the grants to give. */
REVOKE ALL ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_wait(bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_workers() FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.parse_binance_klines(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.parse_binance_stream(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.ingest_binance_klines(text, text, text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_gaps(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.queue_sync(text, text, text, timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.queue_job(text, text, text, text, timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.sync_derivs(text, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.rank_symbols(text, text[], numeric[], numeric, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.apply_auto_track(text, text[], numeric[], numeric, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.fetch_tickers(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_liquid_symbols(numeric, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_backfill_open_interest(text, timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_backfill_funding(text, timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.sync_pair(text, text, text, interval, text, boolean, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.refresh_instruments(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.wake_workers() FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_whitelist(text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_blacklist(text[], text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_unlist(text[], text) FROM PUBLIC;
