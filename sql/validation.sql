--
-- Bad input is an immediate ERROR naming the bad value, with a hint, and
-- nothing is queued.
--
SELECT mdfeed_backfill(NULL, '1m', now() - interval '1 day');
SELECT mdfeed_backfill('BTCUSDT', NULL, now() - interval '1 day');
SELECT mdfeed_backfill('BTCUSDT', '1m', NULL);
SELECT mdfeed_backfill('BTCUSDT', '1m', now() - interval '1 day', NULL);
SELECT mdfeed_backfill('btcusdt', '1m', '2024-01-01');
SELECT mdfeed_backfill('BTC/USDT', '1m', '2024-01-01');
SELECT mdfeed_backfill('', '1m', '2024-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1s', '2024-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1H', '2024-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1m', '2024-01-02', '2024-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1m', '2024-01-01', '2024-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1m', '-infinity', '2024-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1m', '1969-12-31', '2024-01-01');
SELECT mdfeed_backfill('BTCUSDT', '1m', '2024-01-01', '2024-01-02', 'kraken');
SELECT count(*) AS jobs_after_errors FROM mdfeed.jobs;

-- a good request queues a job (no workers run in this test instance)
SELECT mdfeed_backfill('BTCUSDT', '1m', '2024-01-01', '2024-01-02') AS job \gset
SELECT id = :job AS same_id, kind, exchange, symbol, "interval", from_time, to_time, state,
	   rows_written, progress, requests, requested_by = current_user AS mine
FROM mdfeed.jobs;
SELECT mdfeed_backfill('ETHUSDT', '1M', '2020-01-01', '2024-01-01') AS job2 \gset

-- wait: the current state on timeout; errors for what cannot be waited on
SELECT mdfeed_wait(:job, '0 s');
SELECT mdfeed_wait(:job, '50 ms');
SELECT mdfeed_wait(:job, '-1 s');
SELECT mdfeed_wait(424242);
SELECT mdfeed_wait(NULL);
BEGIN;
SELECT mdfeed_backfill('BTCUSDT', '1h', '2024-01-01', '2024-01-02') AS job3 \gset
SELECT mdfeed_wait(:job3, '1 s');
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT mdfeed_wait(:job, '1 s');
ROLLBACK;

-- cancel
SELECT mdfeed_cancel(:job);
SELECT mdfeed_cancel(:job);
SELECT mdfeed_cancel(424242);
SELECT state, error, finished_at IS NOT NULL AS finished FROM mdfeed.jobs WHERE id = :job;
SELECT mdfeed_wait(:job, '1 s');
SELECT id = :job2 AS is_job2, state FROM mdfeed.jobs WHERE state = 'queued';

-- the errors carry specific SQLSTATEs
DO $$
BEGIN
	PERFORM mdfeed_backfill('btcusdt', '1m', '2024-01-01');
EXCEPTION WHEN invalid_parameter_value THEN
	RAISE NOTICE 'invalid_parameter_value: %', SQLERRM;
END $$;
DO $$
BEGIN
	PERFORM mdfeed_backfill(NULL, '1m', '2024-01-01');
EXCEPTION WHEN null_value_not_allowed THEN
	RAISE NOTICE 'null_value_not_allowed: %', SQLERRM;
END $$;
DO $$
BEGIN
	PERFORM mdfeed_wait(424242);
EXCEPTION WHEN undefined_object THEN
	RAISE NOTICE 'undefined_object: %', SQLERRM;
END $$;

-- the job table protects itself too
\set VERBOSITY terse
INSERT INTO mdfeed.jobs (symbol, from_time, to_time) VALUES ('X', '2024-01-02', '2024-01-01');
UPDATE mdfeed.jobs SET state = 'bogus' WHERE id = :job2;
\set VERBOSITY default
