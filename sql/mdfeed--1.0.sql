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
				symbol text NOT NULL,
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
							   OUT job bigint, OUT last_error text)
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

/* Nothing here is for PUBLIC: the README shows the grants to give. */
REVOKE ALL ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_wait(bigint, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_cancel(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed_workers() FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.parse_binance_klines(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.parse_binance_stream(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION mdfeed.ingest_binance_klines(text, text, text, timestamptz) FROM PUBLIC;
