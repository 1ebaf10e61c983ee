--
-- Exchanges as a dimension (1.2): the exchange is an argument of every
-- parser, names the table family, shows in mdfeed.candles, has its own REST
-- budget, and the errors about it name it.
--
-- the parsers that take the exchange give what the 1.0 names give
SELECT (SELECT array_agg(k) FROM mdfeed.parse_klines('binance', $$[
 [1700000000000,"37000.10","37100.00","36950.50","37050.20","123.456",1700000059999,"4570000.12345",1500,"60.123","2225000.00000","0"]
]$$, '1m') k)
	IS NOT DISTINCT FROM
	(SELECT array_agg(k) FROM mdfeed.parse_binance_klines($$[
 [1700000000000,"37000.10","37100.00","36950.50","37050.20","123.456",1700000059999,"4570000.12345",1500,"60.123","2225000.00000","0"]
]$$, '1m') k) AS same_klines;
SELECT symbol, "interval", open, close, closed
FROM mdfeed.parse_stream('binance', '{"stream":"sushiusdt@kline_1m","data":{"e":"kline","E":1626992760203,"s":"SUSHIUSDT","k":{"t":1626992700000,"T":1626992759999,"s":"SUSHIUSDT","i":"1m","f":126902874,"L":126902986,"o":"7.6080","c":"7.6170","h":"7.6180","l":"7.6070","v":"3005","n":113,"x":true,"q":"22875.8590","V":"1900","Q":"14464.6960","B":"0"}}}');
-- errors name the exchange
SELECT * FROM mdfeed.parse_klines('kraken', '[]', '1m');
SELECT * FROM mdfeed.parse_klines('binance', '[]', '2m');
SELECT * FROM mdfeed.parse_klines('binance', '{"code":-1121,"msg":"Invalid symbol."}', '1m');
SELECT * FROM mdfeed.parse_stream('binance', '{"stream":"x@kline_1m","data":{"e":"kline"');

-- each exchange's table family
SELECT mdfeed.candle_table('binance', '1m'), mdfeed.candle_table('binance', '1M');
SELECT mdfeed.candle_table('binance', '2m');
SELECT mdfeed.candle_table('kraken', '1m');
SELECT mdfeed.interval_table('1h');

-- ingest through the exchange's path; the view shows the exchange
SELECT mdfeed.ingest_klines('binance', 'EXAMPLEUSDT', '1h',
	'[[1700002800000,"1.5","2.5","1.0","2.0","10",1700006399999,"20",3,"5","10","0"]]',
	'2024-01-01');
SELECT exchange, "interval", symbol, open_time AT TIME ZONE 'UTC' AS open_utc, open, close, closed
FROM mdfeed.candles WHERE symbol = 'EXAMPLEUSDT';
-- replaying changes nothing
SELECT mdfeed.ingest_klines('binance', 'EXAMPLEUSDT', '1h',
	'[[1700002800000,"1.5","2.5","1.0","2.0","10",1700006399999,"20",3,"5","10","0"]]',
	'2024-01-01');
SELECT * FROM mdfeed_gaps('EXAMPLEUSDT', '1h', '2023-11-14 22:00+00', '2023-11-15 01:00+00', 'binance');
SELECT * FROM mdfeed_gaps('EXAMPLEUSDT', '2m', '2023-11-14 22:00+00', '2023-11-15 01:00+00', 'binance');
DELETE FROM mdfeed.candles_1h WHERE symbol = 'EXAMPLEUSDT';

-- every limit of every exchange's budget, as the adapter declares it
SELECT exchange, limit_name, limit_value, window_length, blocked_until IS NULL AS not_blocked, banned
FROM mdfeed.budgets ORDER BY exchange, limit_name;

-- the workers say which exchange they serve (the launcher's has none)
SELECT role, exchange FROM mdfeed.workers WHERE role = 'launcher';

-- the derivatives tables and retention are the adapter's
SELECT mdfeed.derivs_table('binance', 'funding'), mdfeed.derivs_table('binance', 'open_interest'),
	   mdfeed.open_interest_retention('binance');
SELECT mdfeed.derivs_table('binance', 'mark_price');
