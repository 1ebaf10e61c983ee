--
-- Symbol lists, interval arithmetic and gap finding, without an exchange.
--
-- interval arithmetic, as the workers do it (in UTC, whatever TimeZone says)
SET TimeZone = 'Asia/Kolkata';
SELECT iv, mdfeed.interval_table(iv) AS tab, mdfeed.interval_step(iv) AS step,
	   mdfeed.interval_floor(iv, '2024-02-29 23:59:59.999+00') AT TIME ZONE 'UTC' AS floor_utc
FROM unnest(ARRAY['1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h', '6h', '8h', '12h', '1d', '3d', '1w', '1M']) iv;
RESET TimeZone;
SELECT mdfeed.interval_table('1s');

-- the lists refuse malformed symbols before anything else
SELECT mdfeed_whitelist(ARRAY['btcusdt']);
SELECT mdfeed_whitelist(ARRAY['BTC USDT']);
SELECT mdfeed_whitelist(NULL);
SELECT mdfeed_blacklist(ARRAY['BTCUSDT', 'bad!']);
SELECT mdfeed_whitelist(ARRAY['BTCUSDT'], 'kraken');
-- an unknown symbol makes mdfeed ask the exchange (unreachable here)
DO $$
BEGIN
	PERFORM mdfeed_whitelist(ARRAY['BTCUSDT']);
EXCEPTION WHEN connection_failure THEN
	RAISE NOTICE 'connection_failure: %', left(SQLERRM, 44);
END $$;

-- with instruments known, the lists and the tracked view
-- as the Binance adapter stores them: tradable is its normalised status
INSERT INTO mdfeed.instruments (exchange, symbol, status, contract_type, quote_asset, tradable) VALUES
	('binance', 'BTCUSDT', 'TRADING', 'PERPETUAL', 'USDT', true),
	('binance', 'ETHUSDT', 'TRADING', 'PERPETUAL', 'USDT', true),
	('binance', 'OLDUSDT', 'SETTLING', 'PERPETUAL', 'USDT', false),
	('binance', 'BTCUSDT_261225', 'TRADING', 'CURRENT_QUARTER', 'USDT', false);
SELECT mdfeed_whitelist(ARRAY['BTCUSDT', 'ETHUSDT', 'OLDUSDT', 'BTCUSDT_261225']);
SELECT mdfeed_whitelist(ARRAY['BTCUSDT']);
SELECT symbol, source FROM mdfeed.tracked ORDER BY symbol;
SELECT mdfeed_blacklist(ARRAY['ETHUSDT', 'XRPUSDT']);
SELECT symbol FROM mdfeed.tracked ORDER BY symbol;
SELECT mdfeed_whitelist(ARRAY['ETHUSDT']);
SELECT symbol, list FROM mdfeed.symbol_lists ORDER BY symbol, list;
SELECT mdfeed_unlist(ARRAY['ETHUSDT']);
SELECT symbol FROM mdfeed.tracked ORDER BY symbol;
SELECT mdfeed_unlist(ARRAY['BTCUSDT', 'OLDUSDT', 'BTCUSDT_261225', 'XRPUSDT']);
SELECT count(*) FROM mdfeed.tracked;

-- gaps: candles of 2024-01-01 00:00 to 00:10, with 00:03, 00:04 and 00:08 missing
-- and 00:09 still forming
SELECT mdfeed.ingest_binance_klines('BTCUSDT', '1m', '[' || string_agg(format(
	'[%s,"1.0","1.0","1.0","1.0","1.0",%s,"1.0",1,"1.0","1.0","0"]',
	t, t + 59999), ',' ORDER BY t) || ']', '2024-01-01 00:09:30+00')
FROM generate_series(1704067200000::bigint, 1704067740000, 60000) t
WHERE t NOT IN (1704067380000, 1704067440000, 1704067680000);
SELECT * FROM mdfeed_gaps('BTCUSDT', '1m', '2024-01-01 00:00+00', '2024-01-01 00:10+00');
-- the range starts mid-candle: the candle containing from_time counts
SELECT * FROM mdfeed_gaps('BTCUSDT', '1m', '2024-01-01 00:02:30+00', '2024-01-01 00:05+00');
-- nothing stored at all
SELECT * FROM mdfeed_gaps('ETHUSDT', '1h', '2024-01-01 00:00+00', '2024-01-02 00:00+00');
-- a range the exchange confirmed empty is marked so
INSERT INTO mdfeed.exchange_gaps (exchange, symbol, "interval", from_time, to_time)
VALUES ('binance', 'BTCUSDT', '1m', '2024-01-01 00:03+00', '2024-01-01 00:05+00');
SELECT * FROM mdfeed_gaps('BTCUSDT', '1m', '2024-01-01 00:00+00', '2024-01-01 00:10+00');
-- months and weeks
SELECT * FROM mdfeed_gaps('BTCUSDT', '1M', '2023-01-01', '2024-01-01');
SELECT * FROM mdfeed_gaps('BTCUSDT', '2m', '2023-01-01', '2024-01-01');
SELECT * FROM mdfeed_gaps('btcusdt', '1m', '2023-01-01', '2024-01-01');
DELETE FROM mdfeed.candles_1m;
DELETE FROM mdfeed.exchange_gaps;
DELETE FROM mdfeed.instruments;

-- mdfeed.sync_pair with p_only_if_behind: a job only when the newest candle
-- closed by p_closed_by (default now) is missing and lies in the lookback
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1w', '1 minute', 'stream', true) IS NULL AS none_in_lookback;
-- a pair with no closed candle is new: its first fill is the watch worker's
-- sync, and the stream's repairs leave it alone
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'stream', true) IS NULL AS stream_defers;
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'stream') IS NULL AS stream_defers_anyway;
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'sync', true) IS NOT NULL AS queued;
-- and asked again, by anyone, it is the same job
SELECT count(DISTINCT j) AS jobs FROM (VALUES
	(mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'sync')),
	(mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'sync'))) v(j);
SELECT count(*) AS jobs FROM mdfeed.jobs WHERE symbol = 'XYZUSDT';
DELETE FROM mdfeed.jobs WHERE symbol = 'XYZUSDT';

-- mdfeed.queue_job queues only what no queued or running job will fetch:
-- a queued job its whole range, a running one what lies past its cursor
SET TimeZone = 'UTC';
SELECT mdfeed.queue_sync('binance', 'XYZUSDT', '1h', '2024-01-01', '2024-01-02', 'repair') AS a \gset
SELECT mdfeed.queue_sync('binance', 'XYZUSDT', '1h', '2024-01-01 06:00', '2024-01-01 12:00', 'repair') = :a AS covered;
SELECT mdfeed.queue_sync('binance', 'XYZUSDT', '1h', '2023-12-31', '2024-01-03', 'stream') <> :a AS past_both_ends;
SELECT mdfeed.queue_sync('binance', 'XYZUSDT', '1h', '2024-01-02', '2024-01-03', 'repair') IS NOT NULL AS covered_again;
UPDATE mdfeed.jobs SET state = 'running', cursor_time = '2024-01-01 10:00' WHERE id = :a;
SELECT mdfeed.queue_sync('binance', 'XYZUSDT', '1h', '2024-01-01 08:00', '2024-01-01 12:00', 'repair') <> :a AS behind_the_cursor;
SELECT mdfeed.queue_sync('binance', 'XYZUSDT', '1h', '2024-01-01 10:00', '2024-01-01 12:00', 'repair') = :a AS past_the_cursor;
SELECT origin, from_time, to_time FROM mdfeed.jobs WHERE symbol = 'XYZUSDT' ORDER BY id;
RESET TimeZone;
DELETE FROM mdfeed.jobs WHERE symbol = 'XYZUSDT';
SELECT mdfeed.ingest_binance_klines('XYZUSDT', '1h', format(
	'[[%s,"1.0","1.0","1.0","1.0","1.0",%s,"1.0",1,"1.0","1.0","0"]]', t, t + 3599999), now())
FROM (SELECT (extract(epoch FROM mdfeed.interval_floor('1h', now()) - interval '2 hours') * 1000)::bigint AS t) s;
-- the candle before the newest closed one is stored: behind now, not as of an hour ago
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'stream', true) IS NOT NULL AS behind_now;
DELETE FROM mdfeed.jobs WHERE symbol = 'XYZUSDT';
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'stream', true, now() - interval '1 hour') IS NULL AS not_behind_an_hour_ago;
-- and without p_only_if_behind, a sync is queued anyway
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'stream') IS NOT NULL AS queued_anyway;
DELETE FROM mdfeed.jobs WHERE symbol = 'XYZUSDT';
DELETE FROM mdfeed.candles_1h;

-- a tracked pair whose closed candles all closed after it was tracked (the
-- stream's) is still new: the stream leaves it alone, the first fill starts
-- at the lookback; once it has history, a sync starts at its newest candle
INSERT INTO mdfeed.instruments (exchange, symbol, status, contract_type, tradable)
VALUES ('binance', 'XYZUSDT', 'TRADING', 'PERPETUAL', true);
INSERT INTO mdfeed.symbol_lists (exchange, symbol, list, added_at)
VALUES ('binance', 'XYZUSDT', 'whitelist', now() - interval '90 minutes');
SELECT mdfeed.ingest_binance_klines('XYZUSDT', '1h', format(
	'[[%s,"1.0","1.0","1.0","1.0","1.0",%s,"1.0",1,"1.0","1.0","0"]]', t, t + 3599999), now())
FROM (SELECT (extract(epoch FROM mdfeed.interval_floor('1h', now()) - interval '1 hour') * 1000)::bigint AS t) s;
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'stream') IS NULL AS stream_leaves_it;
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'sync') AS fill \gset
SELECT from_time = mdfeed.interval_floor('1h', now() - interval '3 hours') AS fill_from_lookback
FROM mdfeed.jobs WHERE id = :fill;
DELETE FROM mdfeed.jobs WHERE symbol = 'XYZUSDT';
UPDATE mdfeed.symbol_lists SET added_at = now() WHERE symbol = 'XYZUSDT';
SELECT mdfeed.sync_pair('binance', 'XYZUSDT', '1h', '3 hours', 'stream') AS repair \gset
SELECT from_time = mdfeed.interval_floor('1h', now()) - interval '1 hour' AS sync_from_newest
FROM mdfeed.jobs WHERE id = :repair;
DELETE FROM mdfeed.jobs WHERE symbol = 'XYZUSDT';
DELETE FROM mdfeed.symbol_lists WHERE symbol = 'XYZUSDT';
DELETE FROM mdfeed.instruments WHERE symbol = 'XYZUSDT';
DELETE FROM mdfeed.candles_1h;
