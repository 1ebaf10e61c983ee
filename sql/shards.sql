--
-- Shards and replication (issue 12), without a second server: the hash,
-- the settings, what replicates, and the merge trigger as a subscription's
-- apply worker fires it (session_replication_role = replica).
--
CREATE EXTENSION IF NOT EXISTS mdfeed;

-- the hash is part of the fleet's contract: these values never change
SELECT s, mdfeed.shard_of('binance', s, 2) AS of2, mdfeed.shard_of('binance', s, 3) AS of3,
	   mdfeed.shard_of('coindcx', s, 3) AS cdx3, mdfeed.shard_of('binance', s, 1) AS of1
FROM unnest(ARRAY['BTCUSDT', 'ETHUSDT', 'SOLUSDT', 'BNBUSDT', 'XRPUSDT', 'DOGEUSDT']) s ORDER BY s;

-- going from 2 to 3 shards moves symbols only to the new shard, about a third
SELECT count(*) FILTER (WHERE mdfeed.shard_of('binance', 'S' || i, 3) <> mdfeed.shard_of('binance', 'S' || i, 2)
						  AND mdfeed.shard_of('binance', 'S' || i, 3) <> 2) AS moved_between_old,
	   round(count(*) FILTER (WHERE mdfeed.shard_of('binance', 'S' || i, 3) = 2) / 3000.0, 1) AS share_moved
FROM generate_series(1, 3000) i;
-- and spreads them evenly
SELECT mdfeed.shard_of('binance', 'S' || i, 4) AS shard, count(*) BETWEEN 900 AND 1100 AS about_a_quarter
FROM generate_series(1, 4000) i GROUP BY 1 ORDER BY 1;
SELECT mdfeed.shard_of('binance', 'BTCUSDT', 0);
SELECT mdfeed.shard_of('binance', 'BTCUSDT', 1025);

-- the settings
SHOW mdfeed.shard;
SHOW mdfeed.mode;
SELECT name, setting, context FROM pg_settings
WHERE name IN ('mdfeed.shard', 'mdfeed.mode', 'mdfeed.source_address') ORDER BY 1;
-- a one-server fleet ingests everything
SELECT mdfeed.shard_here('binance', 'BTCUSDT'), mdfeed.shard_here('coindcx', 'B-BTC_USDT');

-- what each publication carries
SELECT t FROM mdfeed.replication_tables('lists') t;
SELECT count(*) AS data_tables,
	   count(*) FILTER (WHERE t::text LIKE 'mdfeed.candles\_%') AS binance_candles,
	   count(*) FILTER (WHERE t::text LIKE 'mdfeed.cdx\_%') AS coindcx_candles,
	   string_agg(t::text, ', ' ORDER BY t::text) FILTER (WHERE t::text NOT LIKE 'mdfeed.%candles\_%') AS others
FROM mdfeed.replication_tables('data') t;
SELECT mdfeed.replication_tables('jobs');
-- every one can be published: a replica identity on each
SELECT c.relname, c.relreplident, i.relname AS identity_index
FROM mdfeed.replication_tables('data') t
JOIN pg_class c ON c.oid = t
LEFT JOIN pg_index x ON x.indrelid = c.oid AND x.indisreplident
LEFT JOIN pg_class i ON i.oid = x.indexrelid
WHERE c.relname IN ('candles_1m', 'cdx_candles_1m', 'cdx_spot_candles_1d', 'auto_tracked', 'instruments')
ORDER BY 1;
SELECT mdfeed_publish('mdfeed_test_pub', 'data') AS published;
SELECT count(*) FROM pg_publication_tables WHERE pubname = 'mdfeed_test_pub';
SELECT mdfeed_publish('mdfeed_test_pub', 'lists') AS republished;
SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = 'mdfeed_test_pub';
DROP PUBLICATION mdfeed_test_pub;

-- the merge trigger: fires only as a subscription applies rows; outside
-- replication a taken key is an error, as ever
INSERT INTO mdfeed.candles_1m VALUES ('MRGUSDT', '2024-01-01 00:00+00', '2024-01-01 00:00:59.999+00',
	1, 2, 0.5, 1.5, 10, 15, 5, 7.5, 3, true, '2024-01-01 00:01+00');
INSERT INTO mdfeed.candles_1m VALUES ('MRGUSDT', '2024-01-01 00:00+00', '2024-01-01 00:00:59.999+00',
	1, 2, 0.5, 1.6, 10, 15, 5, 7.5, 3, true, '2024-01-01 00:02+00');
SET session_replication_role = replica;
-- a row that arrives for a stored key replaces it
INSERT INTO mdfeed.candles_1m VALUES ('MRGUSDT', '2024-01-01 00:00+00', '2024-01-01 00:00:59.999+00',
	1, 2, 0.5, 1.7, 11, 15, 5, 7.5, 4, true, '2024-01-01 00:03+00');
-- but a forming candle never replaces a closed one
INSERT INTO mdfeed.candles_1m VALUES ('MRGUSDT', '2024-01-01 00:00+00', '2024-01-01 00:00:59.999+00',
	1, 2, 0.5, 9.9, 11, 15, 5, 7.5, 4, false, '2024-01-01 00:04+00');
-- a new key is inserted
INSERT INTO mdfeed.candles_1m VALUES ('MRGUSDT', '2024-01-01 00:01+00', '2024-01-01 00:01:59.999+00',
	1, 2, 0.5, 1.5, 10, 15, 5, 7.5, 3, false, '2024-01-01 00:02+00');
SELECT symbol, open_time AT TIME ZONE 'UTC' AS open_utc, close, volume, trades, closed,
	   updated_at AT TIME ZONE 'UTC' AS updated_utc
FROM mdfeed.candles_1m WHERE symbol = 'MRGUSDT' ORDER BY open_time;
-- CoinDCX's ids are this server's: an arriving row takes the next one, an
-- arriving update keeps the stored one
RESET session_replication_role;
INSERT INTO mdfeed.cdx_candles_1m (symbol, open_time, close_time, open, high, low, close, volume, closed)
VALUES ('B-MRG_USDT', '2024-01-01 00:00+00', '2024-01-01 00:00:59.999+00', 1, 2, 0.5, 1.5, 10, true);
SELECT id AS local_id FROM mdfeed.cdx_candles_1m WHERE symbol = 'B-MRG_USDT' \gset
SET session_replication_role = replica;
INSERT INTO mdfeed.cdx_candles_1m (id, symbol, open_time, close_time, open, high, low, close, volume, closed)
VALUES (900001, 'B-MRG_USDT', '2024-01-01 00:00+00', '2024-01-01 00:00:59.999+00', 1, 2, 0.5, 1.8, 10, true);
INSERT INTO mdfeed.cdx_candles_1m (id, symbol, open_time, close_time, open, high, low, close, volume, closed)
VALUES (:local_id, 'B-MRG_USDT', '2024-01-01 00:01+00', '2024-01-01 00:01:59.999+00', 1, 2, 0.5, 1.5, 10, true);
UPDATE mdfeed.cdx_candles_1m SET id = 900002, close = 1.9 WHERE symbol = 'B-MRG_USDT' AND open_time = '2024-01-01 00:00+00';
RESET session_replication_role;
SELECT id = :local_id AS kept_local_id, id > :local_id AS took_next_id, open_time AT TIME ZONE 'UTC' AS open_utc, close
FROM mdfeed.cdx_candles_1m WHERE symbol = 'B-MRG_USDT' ORDER BY open_time;
-- a row equal to the stored one is not touched
SET session_replication_role = replica;
INSERT INTO mdfeed.funding_rates VALUES ('MRGUSDT', '2024-01-01 00:00+00', 0.0001, 42, '2024-01-01 00:00:00.003+00', '2024-01-01 00:05+00');
SELECT xmin AS funding_xmin FROM mdfeed.funding_rates WHERE symbol = 'MRGUSDT' \gset
INSERT INTO mdfeed.funding_rates VALUES ('MRGUSDT', '2024-01-01 00:00+00', 0.0001, 42, '2024-01-01 00:00:00.003+00', '2024-01-01 00:05+00');
RESET session_replication_role;
SELECT xmin = :'funding_xmin' AS untouched, funding_rate FROM mdfeed.funding_rates WHERE symbol = 'MRGUSDT';
-- nor one that differs only in when another shard wrote it (no rewrite for the models)
SET session_replication_role = replica;
INSERT INTO mdfeed.funding_rates VALUES ('MRGUSDT', '2024-01-01 00:00+00', 0.0001, 42, '2024-01-01 00:00:00.003+00', '2024-01-01 09:00+00');
RESET session_replication_role;
SELECT xmin = :'funding_xmin' AS untouched, updated_at AT TIME ZONE 'UTC' AS updated_utc FROM mdfeed.funding_rates WHERE symbol = 'MRGUSDT';
-- an arriving row replaces the stored values, a NULL too (what its owner stored)
SET session_replication_role = replica;
INSERT INTO mdfeed.funding_rates VALUES ('MRGUSDT', '2024-01-01 00:00+00', 0.0002, NULL, '2024-01-01 00:00:00.003+00', '2024-01-01 09:01+00');
RESET session_replication_role;
SELECT funding_rate, mark_price, updated_at AT TIME ZONE 'UTC' AS updated_utc FROM mdfeed.funding_rates WHERE symbol = 'MRGUSDT';
-- an arriving update never makes a closed candle forming; it keeps the stored id
SET session_replication_role = replica;
UPDATE mdfeed.candles_1m SET closed = false, close = 5 WHERE symbol = 'MRGUSDT' AND open_time = '2024-01-01 00:00+00';
UPDATE mdfeed.cdx_candles_1m SET quote_volume = 99 WHERE symbol = 'B-MRG_USDT' AND open_time = '2024-01-01 00:00+00';
UPDATE mdfeed.cdx_candles_1m SET id = 900003, quote_volume = NULL, close = 2.1 WHERE symbol = 'B-MRG_USDT' AND open_time = '2024-01-01 00:00+00';
RESET session_replication_role;
SELECT close, closed FROM mdfeed.candles_1m WHERE symbol = 'MRGUSDT' AND open_time = '2024-01-01 00:00+00';
SELECT id = :local_id AS kept_local_id, close, quote_volume FROM mdfeed.cdx_candles_1m WHERE symbol = 'B-MRG_USDT' AND open_time = '2024-01-01 00:00+00';

-- a server whose lists arrive by subscription refuses local changes: a
-- subscription needs a publisher, so only the trigger is checked here
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'mdfeed.symbol_lists'::regclass ORDER BY 1;

DELETE FROM mdfeed.candles_1m WHERE symbol = 'MRGUSDT';
DELETE FROM mdfeed.cdx_candles_1m WHERE symbol = 'B-MRG_USDT';
DELETE FROM mdfeed.funding_rates WHERE symbol = 'MRGUSDT';

-- a shard keeps the ranked symbols it owns, and tracks only its own
INSERT INTO mdfeed.instruments (exchange, symbol, status, contract_type, tradable) VALUES
	('binance', 'AUSDT', 'TRADING', 'PERPETUAL', true),
	('binance', 'BUSDT', 'TRADING', 'PERPETUAL', true),
	('binance', 'CUSDT', 'TRADING', 'PERPETUAL', true),
	('binance', 'DUSDT', 'TRADING', 'PERPETUAL', true);
SELECT s, mdfeed.shard_of('binance', s, 2) AS shard FROM unnest(ARRAY['AUSDT', 'BUSDT', 'CUSDT', 'DUSDT']) s;
ALTER SYSTEM SET mdfeed.shard = '1/2';
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SHOW mdfeed.shard;
-- the board's top 3 is DUSDT, AUSDT, BUSDT: shard 1 keeps its two, with their board ranks
SELECT mdfeed.apply_auto_track('binance', ARRAY['AUSDT', 'BUSDT', 'CUSDT', 'DUSDT'], ARRAY[4, 3, 2, 5]::numeric[], 0, 3) AS kept;
SELECT symbol, rank, shard FROM mdfeed.auto_tracked ORDER BY rank;
-- a whitelisted symbol of shard 0 is tracked by the fleet, not here
SELECT mdfeed_whitelist(ARRAY['DUSDT']);
SELECT symbol, source, here FROM mdfeed.tracked ORDER BY symbol;
ALTER SYSTEM SET mdfeed.shard = '1/1';
ALTER SYSTEM SET mdfeed.shard = '2/2';
ALTER SYSTEM SET mdfeed.shard = 'one of two';
ALTER SYSTEM SET mdfeed.source_address = '10.0.0.2; rm -rf';
ALTER SYSTEM SET mdfeed.mode = 'analytics';
ALTER SYSTEM RESET mdfeed.shard;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT symbol, here FROM mdfeed.tracked ORDER BY symbol;
SELECT mdfeed.apply_auto_track('binance', ARRAY[]::text[], ARRAY[]::numeric[], 0, 0);
SELECT mdfeed_unlist(ARRAY['DUSDT']);
DELETE FROM mdfeed.instruments WHERE symbol IN ('AUSDT', 'BUSDT', 'CUSDT', 'DUSDT');
