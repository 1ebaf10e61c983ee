/*
 * mdfeed--1.3--1.4.sql
 *
 * 1.4: models (issue 10).  A model is a user's function
 *     fn(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
 * that mdfeed's model workers run on every closed candle of its exchange
 * and interval, in open_time order per symbol, as the role that registered
 * it.  What this script adds:
 *
 *   mdfeed.candle          one candle, the same shape for every exchange
 *   mdfeed.models          the registered models, their state and counters
 *   mdfeed.model_progress  per (model, symbol): the next candle to run on,
 *                          a pending recomputation, the retry backoff
 *   mdfeed.model_outputs   what the models returned, one row per candle
 *   mdfeed.candle_changes  closed candles rewritten since the workers last
 *                          looked (a repair): outputs whose windows held
 *                          them are computed again
 *   a trigger on every candle table that fills candle_changes; it fires on
 *   UPDATE or DELETE of a closed row only, so inserts (a backfill's bulk
 *   path included) and the forming candle's updates never reach it
 *   the SQL API (mdfeed_register_model and friends), none of it executable
 *   by PUBLIC, and two reference models
 *
 * Nothing here rewrites a table.  The function is kept as its qualified
 * signature (text), not as regprocedure: pg_upgrade refuses user tables
 * with regprocedure columns, and the text survives dump and restore.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mdfeed UPDATE TO '1.4'" to load this file. \quit

/* ---- the candle a model sees ---- */

CREATE TYPE mdfeed.candle AS (
	open_time timestamptz,
	close_time timestamptz,
	open numeric,
	high numeric,
	low numeric,
	close numeric,
	volume numeric,
	quote_volume numeric,
	trades bigint
);
COMMENT ON TYPE mdfeed.candle IS
	'one closed candle as models receive it; NULL where the exchange has no value (CoinDCX: trades, REST quote_volume)';

/* ---- models ---- */

CREATE TABLE mdfeed.models (
	name text PRIMARY KEY
		CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$'),
	function text NOT NULL,
	function_owner regrole NOT NULL,
	exchange text NOT NULL,
	"interval" text NOT NULL,
	symbols text[],
	window_size integer NOT NULL CHECK (window_size BETWEEN 1 AND 10000),
	from_time timestamptz,
	state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused')),
	runs bigint NOT NULL DEFAULT 0,
	failures bigint NOT NULL DEFAULT 0,
	last_error text,
	last_error_at timestamptz,
	last_run_at timestamptz,
	owner regrole NOT NULL,
	registered_at timestamptz NOT NULL DEFAULT now(),
	paused_at timestamptz
);
COMMENT ON TABLE mdfeed.models IS
	'models run on every closed candle: symbols NULL means every tracked symbol of the exchange';
COMMENT ON COLUMN mdfeed.models.function IS
	'the model function''s qualified signature, resolved at every batch of runs';
COMMENT ON COLUMN mdfeed.models.function_owner IS
	'who owned the function at registration: a function of that name owned by anyone else is not run';
COMMENT ON COLUMN mdfeed.models.owner IS
	'the role that registered the model: it runs with that role''s privileges';
COMMENT ON COLUMN mdfeed.models.failures IS
	'failed runs in all; a model is paused after mdfeed.model_max_failures in a row on one candle';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.models', '');

CREATE TABLE mdfeed.model_progress (
	model text NOT NULL REFERENCES mdfeed.models (name) ON DELETE CASCADE,
	symbol text NOT NULL,
	next_open timestamptz NOT NULL,
	rerun_from timestamptz,
	rerun_to timestamptz,
	attempts integer NOT NULL DEFAULT 0,
	retry_at timestamptz,
	waiting_for text,
	backfill_job bigint,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (model, symbol),
	CHECK ((rerun_from IS NULL) = (rerun_to IS NULL))
);
COMMENT ON TABLE mdfeed.model_progress IS
	'per model and symbol: next_open is the next candle to run on; it commits with the outputs';
COMMENT ON COLUMN mdfeed.model_progress.rerun_from IS
	'outputs from here to rerun_to are computed again (a repaired candle, mdfeed_rerun_model)';
COMMENT ON COLUMN mdfeed.model_progress.waiting_for IS
	'why the model does not run on next_open yet, or NULL';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.model_progress', '');

CREATE TABLE mdfeed.model_outputs (
	model text NOT NULL,
	exchange text NOT NULL,
	symbol text NOT NULL,
	"interval" text NOT NULL,
	open_time timestamptz NOT NULL,
	output jsonb,
	computed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (model, exchange, symbol, "interval", open_time)
);
COMMENT ON TABLE mdfeed.model_outputs IS
	'what each model returned for each closed candle (output NULL: it returned NULL)';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.model_outputs', '');

CREATE TABLE mdfeed.candle_changes (
	exchange text NOT NULL,
	"interval" text NOT NULL,
	symbol text NOT NULL,
	open_time timestamptz NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (exchange, "interval", symbol, open_time)
);
COMMENT ON TABLE mdfeed.candle_changes IS
	'closed candles rewritten since the model workers last looked: their models compute again';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.candle_changes', '');

/*
 * note_candle_change records a rewritten or deleted closed candle, when a
 * model runs on its exchange and interval.  It is the extension owner's, so that a
 * role allowed to update a candle table needs nothing on candle_changes.
 */
CREATE FUNCTION mdfeed.note_candle_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	IF EXISTS (SELECT 1 FROM mdfeed.models m
			   WHERE m.exchange OPERATOR(pg_catalog.=) TG_ARGV[0]
				 AND m."interval" OPERATOR(pg_catalog.=) TG_ARGV[1]) THEN
		INSERT INTO mdfeed.candle_changes (exchange, "interval", symbol, open_time)
		VALUES (TG_ARGV[0], TG_ARGV[1], OLD.symbol, OLD.open_time)
		ON CONFLICT DO NOTHING;
		IF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN
			IF (NEW.symbol, NEW.open_time) IS DISTINCT FROM (OLD.symbol, OLD.open_time) THEN
				INSERT INTO mdfeed.candle_changes (exchange, "interval", symbol, open_time)
				VALUES (TG_ARGV[0], TG_ARGV[1], NEW.symbol, NEW.open_time)
				ON CONFLICT DO NOTHING;
			END IF;
		END IF;
	END IF;
	RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION mdfeed.note_candle_change() FROM PUBLIC;

/*
 * One trigger per candle table.  WHEN (OLD.closed): a forming candle's
 * updates, and the update that closes it, are not rewrites of a candle a
 * model may have seen.  A deleted candle counts too: the outputs that used
 * it are computed again once it is back (a delete and a backfill is a
 * repair as well).  ENABLE ALWAYS: it fires for rows that logical
 * replication applies as well.
 */
DO $do$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT c.relname AS tab,
			   CASE WHEN c.relname LIKE 'cdx\_spot\_%' THEN 'coindcx_spot'
					WHEN c.relname LIKE 'cdx\_%' THEN 'coindcx' ELSE 'binance' END AS exchange,
			   CASE WHEN x.suffix = '1mo' THEN '1M' ELSE x.suffix END AS iv
		FROM pg_catalog.pg_class c,
			 LATERAL (SELECT pg_catalog.substring(c.relname, '_([0-9]+[a-z]+)$') AS suffix) x
		WHERE c.relnamespace = 'mdfeed'::regnamespace AND c.relkind = 'r'
		  AND c.relname ~ '^(cdx_spot_|cdx_)?candles_[0-9]+(m|h|d|w|mo)$'
		ORDER BY 1
	LOOP
		-- every table of every family, as the adapters name them; a table
		-- of a user's that only looks like one is left alone
		BEGIN
			IF mdfeed.candle_table(t.exchange, t.iv) IS DISTINCT FROM t.tab THEN
				CONTINUE;
			END IF;
		EXCEPTION WHEN invalid_parameter_value THEN
			CONTINUE;
		END;
		EXECUTE format('CREATE TRIGGER candle_changed AFTER UPDATE OR DELETE ON mdfeed.%I '
					   'FOR EACH ROW WHEN (OLD.closed) '
					   'EXECUTE FUNCTION mdfeed.note_candle_change(%L, %L)',
					   t.tab, t.exchange, t.iv);
		EXECUTE format('ALTER TABLE mdfeed.%I ENABLE ALWAYS TRIGGER candle_changed', t.tab);
	END LOOP;
END
$do$;

/* ---- the SQL API: C functions that act as the caller, then as the owner ---- */

CREATE FUNCTION mdfeed_register_model(name text, fn regprocedure, "interval" text,
									  symbols text[] DEFAULT NULL, window_size integer DEFAULT 100,
									  from_time timestamptz DEFAULT NULL, exchange text DEFAULT 'binance')
RETURNS void
AS 'MODULE_PATHNAME', 'mdfeed_register_model' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mdfeed_register_model(text, regprocedure, text, text[], integer, timestamptz, text) IS
	'run fn(symbol, interval, candles mdfeed.candle[]) RETURNS jsonb on every closed candle, as the calling role';

CREATE FUNCTION mdfeed_unregister_model(name text) RETURNS void
AS 'MODULE_PATHNAME', 'mdfeed_unregister_model' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mdfeed_unregister_model(text) IS 'drop a model, its progress and its outputs';

CREATE FUNCTION mdfeed_pause_model(name text) RETURNS void
AS 'MODULE_PATHNAME', 'mdfeed_pause_model' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mdfeed_pause_model(text) IS 'stop running a model; it resumes where it stopped';

CREATE FUNCTION mdfeed_resume_model(name text) RETURNS void
AS 'MODULE_PATHNAME', 'mdfeed_resume_model' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION mdfeed_resume_model(text) IS
	'run a paused model again, from the candle where it stopped, with its failure count reset';

CREATE FUNCTION mdfeed_rerun_model(name text, from_time timestamptz, to_time timestamptz DEFAULT now(),
								   symbols text[] DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'mdfeed_rerun_model' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION mdfeed_rerun_model(text, timestamptz, timestamptz, text[]) IS
	'compute a model''s outputs again for the closed candles in [from_time, to_time]; returns the symbols scheduled';

REVOKE ALL ON FUNCTION mdfeed_register_model(text, regprocedure, text, text[], integer, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_unregister_model(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_pause_model(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_resume_model(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_rerun_model(text, timestamptz, timestamptz, text[]) FROM PUBLIC;

/* ---- reference models: templates for users' own ---- */

/*
 * Realized volatility: the sample standard deviation of the window's log
 * returns (window_size - 1 of them), in double precision.  Plain SQL; the
 * set-based form over a table is
 *   stddev_samp(ln(close::float8 / lag(close::float8) OVER w))
 *     OVER (ORDER BY open_time ROWS window_size - 2 PRECEDING)
 * and gives the same numbers.
 */
CREATE FUNCTION mdfeed.model_realized_volatility(symbol text, "interval" text, candles mdfeed.candle[])
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
	SELECT pg_catalog.jsonb_build_object('volatility', pg_catalog.stddev_samp(r.ret),
										 'returns', pg_catalog.count(r.ret),
										 'close', (candles[pg_catalog.cardinality(candles)]).close)
	FROM (SELECT pg_catalog.ln(c.close::float8 OPERATOR(pg_catalog./)
							   pg_catalog.lag(c.close::float8) OVER (ORDER BY c.i)) AS ret
		  FROM ROWS FROM (pg_catalog.unnest(candles)) WITH ORDINALITY
			   AS c(open_time, close_time, open, high, low, close, volume, quote_volume, trades, i)) r
$fn$;
COMMENT ON FUNCTION mdfeed.model_realized_volatility(text, text, mdfeed.candle[]) IS
	'reference model: {"volatility": sample stddev of the window''s log returns, "returns": n, "close": last close}';

/*
 * EMA crossover: exponential moving averages of the closes over 12 and 26
 * candles (alpha = 2 / (n + 1)), seeded with the window's first close, and
 * where the fast one stands against the slow one now and one candle
 * before.  PL/pgSQL, double precision.
 */
CREATE FUNCTION mdfeed.model_ema_crossover(symbol text, "interval" text, candles mdfeed.candle[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $fn$
DECLARE
	a_fast float8 := 2.0 / 13;
	a_slow float8 := 2.0 / 27;
	fast float8;
	slow float8;
	prev_fast float8;
	prev_slow float8;
	c mdfeed.candle;
	x float8;
	side text;
	prev_side text;
BEGIN
	FOREACH c IN ARRAY candles LOOP
		x := c.close::float8;
		prev_fast := fast;
		prev_slow := slow;
		IF fast IS NULL THEN
			fast := x;
			slow := x;
		ELSE
			fast := fast + a_fast * (x - fast);
			slow := slow + a_slow * (x - slow);
		END IF;
	END LOOP;
	IF fast IS NULL THEN
		RETURN NULL;
	END IF;
	side := CASE WHEN fast > slow THEN 'above' WHEN fast < slow THEN 'below' ELSE 'equal' END;
	IF prev_fast IS NOT NULL THEN
		prev_side := CASE WHEN prev_fast > prev_slow THEN 'above'
						  WHEN prev_fast < prev_slow THEN 'below' ELSE 'equal' END;
	END IF;
	RETURN jsonb_build_object('ema_fast', fast, 'ema_slow', slow, 'fast_vs_slow', side,
							  'signal', CASE WHEN prev_side IS DISTINCT FROM side AND prev_side IS NOT NULL
											 THEN CASE side WHEN 'above' THEN 'buy' WHEN 'below' THEN 'sell' END
										END);
END
$fn$;
COMMENT ON FUNCTION mdfeed.model_ema_crossover(text, text, mdfeed.candle[]) IS
	'reference model: EMA(12) and EMA(26) of the closes; signal buy/sell on the candle where they cross';

/* what the control file says, for databases that upgrade too */
COMMENT ON EXTENSION mdfeed IS
	'crypto market data (candles from Binance USD-M futures and CoinDCX futures and spot) ingested by background workers, and models run on every closed candle';
