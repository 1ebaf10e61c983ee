--
-- CoinDCX (1.3): two adapters, coindcx (USDT-margined perpetual futures)
-- and coindcx_spot (spot markets).  Their table families and intervals,
-- their parsers (REST numbers kept exact, socket.io frames whose data is
-- JSON text), the candles view, their shared REST budget, and the errors
-- naming them.  Runs alone too: the extension is created if missing.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS mdfeed;
RESET client_min_messages;

-- each market's table family, and which intervals each offers
CREATE FUNCTION pg_temp.table_of(ex text, iv text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	RETURN mdfeed.candle_table(ex, iv);
EXCEPTION WHEN invalid_parameter_value THEN
	RETURN '-';
END $$;
SELECT iv, pg_temp.table_of('coindcx', iv) AS coindcx, pg_temp.table_of('coindcx_spot', iv) AS coindcx_spot
FROM unnest(ARRAY['1m', '3m', '5m', '15m', '30m', '1h', '2h', '4h', '6h', '8h', '12h', '1d', '3d', '1w', '1M'])
	WITH ORDINALITY v(iv, n)
ORDER BY n;
-- every table named exists
SELECT count(*) AS tables, count(to_regclass('mdfeed.' || t)) AS existing
FROM (SELECT pg_temp.table_of(ex, iv) t
	  FROM unnest(ARRAY['coindcx', 'coindcx_spot']) ex,
		   unnest(ARRAY['1m', '5m', '15m', '30m', '1h', '4h', '8h', '1d']) iv) s
WHERE t <> '-';
-- an interval an exchange does not offer: the error names the exchange and
-- the hint lists what it offers
SELECT mdfeed.candle_table('coindcx', '3m');
SELECT mdfeed.candle_table('coindcx_spot', '5m');
SELECT mdfeed.candle_table('coindcx_spot', '1M');
SELECT mdfeed.candle_table('coindcx', '2m');
SELECT * FROM mdfeed.parse_klines('coindcx_spot', '[]', '4h');
SELECT * FROM mdfeed.ingest_klines('coindcx', 'B-BTC_USDT', '1w', '{"s":"ok","data":[]}');
SELECT * FROM mdfeed_gaps('B-BTC_USDT', '3m', '2026-09-05', '2026-09-06', 'coindcx');
SELECT mdfeed.candle_table('coindcx_futures', '1m');

-- REST candles: JSON numbers, each kept as written (3.1e-7 is exactly
-- 0.00000031, never a double); close time = open + interval - 1 ms; no
-- quote volume, taker volumes or trade count in the answer
SET TimeZone = 'UTC';
SELECT open_time, close_time, open, high, low, close, volume,
	   quote_volume IS NULL AND taker_buy_base_volume IS NULL AND taker_buy_quote_volume IS NULL AS none_sent
FROM mdfeed.parse_klines('coindcx', '{"s":"ok","data":[
	{"open":3.1e-7,"high":3.25E-7,"low":2.9e-7,"volume":1.5e+9,"close":0.00000031,"time":1788642000000},
	{"open":79702.2,"high":79722.10,"low":79695,"volume":120.269,"close":79698.6,"time":1788642300000}]}', '5m');
SELECT open = 0.00000031 AND open::text = '0.00000031' AS exact
FROM mdfeed.parse_klines('coindcx', '{"s":"ok","data":[{"open":3.1e-7,"high":1,"low":1e-8,"volume":1,"close":1,"time":1788642000000}]}', '5m');
-- a bar whose prices disagree is no candle (a corrupted number): refused
SELECT * FROM mdfeed.parse_klines('coindcx', '{"s":"ok","data":[{"open":3.1e-7,"high":1,"low":1,"volume":1,"close":1,"time":1788642000000}]}', '5m');
-- nor one off the interval's grid (16:42 as a 1h bar)
SELECT * FROM mdfeed.parse_klines('coindcx', '{"s":"ok","data":[{"open":1,"high":1,"low":1,"volume":1,"close":1,"time":1788626520000}]}', '1h');
-- spot answers newest first: the rows come out ascending
SELECT open_time, close_time, open, close, volume
FROM mdfeed.parse_klines('coindcx_spot', '[
	{"open":70931.98,"high":70940,"low":70920.5,"volume":1e-5,"close":70925.00,"time":1717693200000},
	{"open":70938.55,"high":70938.55,"low":70926.27,"volume":7.60989,"close":70931.98,"time":1717689600000}]', '1h');
-- each market's answer shape, and garbage: clean errors with the adapter's hint
SELECT * FROM mdfeed.parse_klines('coindcx', '[]', '1m');
SELECT * FROM mdfeed.parse_klines('coindcx_spot', '{"s":"ok","data":[]}', '1m');
SELECT * FROM mdfeed.parse_klines('coindcx', '{"s":"ok","data":[{"open":1e400,"high":1,"low":1,"volume":1,"close":1,"time":1788642000000}]}', '1m');
SELECT * FROM mdfeed.parse_klines('coindcx_spot', '{"code":422,"errorCode":"BFF-SO-004","message":"Invalid pair NOPE","status":"error"}', '1m');

-- socket.io frames: 42["candlestick",{"event":..,"data":"<JSON text>"}].
-- Futures: bars with times in seconds and the pair; spot: Binance's short
-- keys, the pair in the channel name.  Both are stored as forming bars
-- (closed false: the socket's last snapshot is not the final bar)
SELECT stream, event_time, symbol, "interval", open_time, close_time, open, high, low, close, volume,
	   quote_volume, trades, closed
FROM mdfeed.parse_stream('coindcx', '42["candlestick",{"event":"candlestick","data":"{\"data\":[{\"open\":\"81006.80\",\"close\":\"80996.20\",\"high\":\"81023.90\",\"low\":\"80977.20\",\"volume\":\"120.153\",\"open_time\":1788458400,\"close_time\":1788458459.999,\"pair\":\"B-BTC_USDT\",\"duration\":\"1m\",\"symbol\":\"BTCUSDT\",\"quote_volume\":\"9732853.23420\"}],\"ecode\":\"B\",\"Ets\":1788458460708,\"i\":\"1m\",\"channel\":\"B-BTC_USDT_1m-futures\",\"pr\":\"futures\"}"}]');
SELECT stream, event_time, symbol, "interval", open_time, close_time, open, high, low, close, volume,
	   quote_volume, trades, closed
FROM mdfeed.parse_stream('coindcx_spot', '42["candlestick",{"event":"candlestick","data":"{\"t\":1788457500000,\"T\":1788457559999,\"o\":\"81078.58000000\",\"c\":\"81053.41000000\",\"h\":\"81078.59000000\",\"l\":\"81041.04000000\",\"v\":\"10.21132000\",\"n\":2307,\"q\":\"827723.21095270\",\"i\":\"1m\",\"channel\":\"B-BTC_USDT_1m\",\"s\":\"BTCUSDT\",\"x\":true,\"V\":\"\",\"Q\":\"\",\"eT\":1788457544033,\"pr\":\"spot\"}"}]');
-- the protocol's own packets and other events: no row
SELECT f AS frame, (SELECT count(*) FROM mdfeed.parse_stream('coindcx', f)) AS futures_rows,
	   (SELECT count(*) FROM mdfeed.parse_stream('coindcx_spot', f)) AS spot_rows
FROM unnest(ARRAY['0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000}', '40{"sid":"y"}', '2', '3',
	'42["new-trade",{"event":"new-trade","data":"{\"T\":1788457449084,\"p\":\"81090.88\",\"s\":\"B-BTC_USDT\"}"}]']) f;
-- malformed frames
SELECT * FROM mdfeed.parse_stream('coindcx', '42["candlestick",{"event":"candlestick","data":"not json"}]');
SELECT * FROM mdfeed.parse_stream('coindcx_spot', '42["candlestick",{"event":"candlestick","data":"{\"t\":1788457500000,\"o\":\"1e400\",\"c\":\"1\",\"h\":\"1\",\"l\":\"1\",\"v\":\"1\",\"i\":\"1m\",\"channel\":\"B-BTC_USDT_1m\"}"}]');
SELECT * FROM mdfeed.parse_stream('coindcx_spot', '{"stream":"btcusdt@kline_1m","data":{}}');

-- ingest as the backfill workers do: bars closing before server_time are
-- closed; the view shows the exchange, with NULL for what CoinDCX does
-- not send (quote volume over REST, taker volumes, trades)
SELECT mdfeed.ingest_klines('coindcx', 'B-BTC_USDT', '1h', '{"s":"ok","data":[
	{"open":79702.2,"high":79850,"low":79650.5,"volume":1200.269,"close":79800.0,"time":1788642000000},
	{"open":79800.0,"high":79900.1,"low":79700,"volume":3.1e-7,"close":79750.25,"time":1788645600000},
	{"open":79750.25,"high":79760,"low":79740,"volume":12,"close":79755,"time":1788649200000}]}',
	'2026-09-05 23:30:00+00') AS written;
SELECT mdfeed.ingest_klines('coindcx_spot', 'B-BTC_USDT', '1h', '[
	{"open":70931.98,"high":70940,"low":70920.5,"volume":1e-5,"close":70925.00,"time":1717693200000},
	{"open":70938.55,"high":70938.55,"low":70926.27,"volume":7.60989,"close":70931.98,"time":1717689600000}]',
	'2024-06-07') AS written;
SELECT exchange, "interval", symbol, open_time, close_time, open, high, low, close, volume,
	   quote_volume, taker_buy_base_volume, taker_buy_quote_volume, trades, closed
FROM mdfeed.candles WHERE exchange LIKE 'coindcx%' ORDER BY exchange, open_time;
SELECT count(*) AS rows, count(quote_volume) AS with_quote_volume FROM mdfeed.cdx_candles_1h;
-- replaying changes nothing
SELECT mdfeed.ingest_klines('coindcx', 'B-BTC_USDT', '1h', '{"s":"ok","data":[
	{"open":79702.2,"high":79850,"low":79650.5,"volume":1200.269,"close":79800.0,"time":1788642000000},
	{"open":79800.0,"high":79900.1,"low":79700,"volume":3.1e-7,"close":79750.25,"time":1788645600000},
	{"open":79750.25,"high":79760,"low":79740,"volume":12,"close":79755,"time":1788649200000}]}',
	'2026-09-05 23:30:00+00') AS replayed;
SELECT mdfeed.ingest_klines('coindcx_spot', 'B-BTC_USDT', '1h', '[
	{"open":70931.98,"high":70940,"low":70920.5,"volume":1e-5,"close":70925.00,"time":1717693200000},
	{"open":70938.55,"high":70938.55,"low":70926.27,"volume":7.60989,"close":70931.98,"time":1717689600000}]',
	'2024-06-07') AS replayed;
-- once the forming bar has closed, that bar alone is written again
SELECT mdfeed.ingest_klines('coindcx', 'B-BTC_USDT', '1h', '{"s":"ok","data":[
	{"open":79750.25,"high":79760,"low":79740,"volume":12,"close":79755,"time":1788649200000}]}',
	'2026-09-06 00:00:00+00') AS closed_now;
SELECT open_time, closed FROM mdfeed.cdx_candles_1h ORDER BY open_time;
SELECT * FROM mdfeed_gaps('B-BTC_USDT', '1h', '2026-09-05 20:00+00', '2026-09-06 00:00+00', 'coindcx');
SELECT mdfeed.ingest_klines('coindcx', 'b-btc_usdt', '1h', '{"s":"ok","data":[]}');
DELETE FROM mdfeed.cdx_candles_1h;
DELETE FROM mdfeed.cdx_spot_candles_1h;
RESET TimeZone;

-- the REST budget is CoinDCX's per IP: coindcx_spot spends coindcx's, so
-- only coindcx has rows
SELECT exchange, limit_name, limit_value, window_length, blocked_until IS NULL AS not_blocked, banned
FROM mdfeed.budgets WHERE exchange LIKE 'coindcx%' ORDER BY exchange, limit_name;
SELECT count(*) FILTER (WHERE exchange = 'coindcx_spot') AS spot_rows,
	   count(DISTINCT exchange) AS exchanges
FROM mdfeed.budgets;

-- the lists: pairs written as CoinDCX writes them, checked against the
-- exchange's own instruments (as its adapter stores them)
INSERT INTO mdfeed.instruments (exchange, symbol, status, contract_type, base_asset, quote_asset, tradable) VALUES
	('coindcx', 'B-BTC_USDT', 'active', 'perpetual', 'BTC', 'USDT', true),
	('coindcx', 'B-OLD_USDT', 'UNLISTED', 'perpetual', 'OLD', 'USDT', false),
	('coindcx_spot', 'I-BTC_INR', 'active', 'spot', 'BTC', 'INR', true);
SELECT mdfeed_whitelist(ARRAY['B-BTC_USDT'], 'coindcx');
SELECT mdfeed_whitelist(ARRAY['I-BTC_INR'], 'coindcx_spot');
SELECT mdfeed_whitelist(ARRAY['B-OLD_USDT'], 'coindcx');
SELECT exchange, symbol, source FROM mdfeed.tracked WHERE exchange LIKE 'coindcx%' ORDER BY exchange, symbol;
-- a pair the stored list lacks makes mdfeed ask CoinDCX (unreachable here);
-- a spot pair is no futures pair
DO $$
BEGIN
	PERFORM mdfeed_whitelist(ARRAY['B-NOPE_USDT'], 'coindcx');
EXCEPTION WHEN connection_failure THEN
	RAISE NOTICE 'connection_failure: %', split_part(SQLERRM, ':', 1);
END $$;
DO $$
BEGIN
	PERFORM mdfeed_whitelist(ARRAY['I-BTC_INR'], 'coindcx');
EXCEPTION WHEN connection_failure THEN
	RAISE NOTICE 'connection_failure: %', split_part(SQLERRM, ':', 1);
END $$;
SELECT mdfeed_whitelist(ARRAY['b-btc_usdt'], 'coindcx');
SELECT mdfeed_whitelist(ARRAY['B-BTC_USDT'], 'coindcx_futures');
SELECT mdfeed_unlist(ARRAY['B-BTC_USDT', 'B-OLD_USDT'], 'coindcx'), mdfeed_unlist(ARRAY['I-BTC_INR'], 'coindcx_spot');
SELECT count(*) FROM mdfeed.tracked WHERE exchange LIKE 'coindcx%';
DELETE FROM mdfeed.jobs WHERE exchange LIKE 'coindcx%';
DELETE FROM mdfeed.instruments WHERE exchange LIKE 'coindcx%';
