--
-- Nothing that makes the server call an exchange is executable by PUBLIC;
-- the grants of the README are enough for a user to work with jobs.
--
CREATE ROLE regress_analyst LOGIN;
CREATE ROLE regress_other LOGIN;
SET ROLE regress_analyst;
SELECT mdfeed_backfill('BTCUSDT', '1m', '2024-01-01', '2024-01-02');
SELECT mdfeed_wait(1);
SELECT mdfeed_cancel(1);
SELECT * FROM mdfeed.workers;
SELECT count(*) FROM mdfeed.candles_1m;
SELECT * FROM mdfeed.parse_binance_klines('[]', '1m');
RESET ROLE;

-- the README's grants
GRANT USAGE ON SCHEMA mdfeed TO regress_analyst, regress_other;
GRANT SELECT ON ALL TABLES IN SCHEMA mdfeed TO regress_analyst, regress_other;
GRANT EXECUTE ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text),
	mdfeed_wait(bigint, interval), mdfeed_cancel(bigint) TO regress_analyst, regress_other;

SET ROLE regress_analyst;
SELECT mdfeed_backfill('BTCUSDT', '15m', '2024-01-01', '2024-01-02') AS job \gset
SELECT requested_by, state FROM mdfeed.jobs WHERE id = :job;
SELECT count(*) FROM mdfeed.candles_15m;
-- reading is granted, writing is not
INSERT INTO mdfeed.jobs (symbol, from_time, to_time) VALUES ('BTCUSDT', '2024-01-01', '2024-01-02');
DELETE FROM mdfeed.candles_15m;
RESET ROLE;

-- only the role that queued a job (or a superuser) may cancel it
SET ROLE regress_other;
SELECT mdfeed_cancel(:job);
RESET ROLE;
SET ROLE regress_analyst;
SELECT mdfeed_cancel(:job);
RESET ROLE;

REVOKE ALL ON ALL TABLES IN SCHEMA mdfeed FROM regress_analyst, regress_other;
REVOKE ALL ON SCHEMA mdfeed FROM regress_analyst, regress_other;
REVOKE ALL ON FUNCTION mdfeed_backfill(text, text, timestamptz, timestamptz, text),
	mdfeed_wait(bigint, interval), mdfeed_cancel(bigint) FROM regress_analyst, regress_other;
DROP ROLE regress_analyst;
DROP ROLE regress_other;
