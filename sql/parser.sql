--
-- The exchange parsers, on real frames and on garbage.  Garbage is an ERROR
-- that names what is wrong, never a crash.
--
-- a /fapi/v1/klines answer: the last row is the candle still forming
SELECT * FROM mdfeed.parse_binance_klines($$[
 [1700000000000,"37000.10","37100.00","36950.50","37050.20","123.456",1700000059999,"4570000.12345",1500,"60.123","2225000.00000","0"],
 [1700000060000,"37050.20","37060.00","37000.00","37001.00","0.000",1700000119999,"0.00000",0,"0.000","0.00000","0"]
]$$, '1m');
SELECT count(*) FROM mdfeed.parse_binance_klines('[]', '1m');

-- malformed answers
SELECT * FROM mdfeed.parse_binance_klines('[[1700000000000,"1","2","0.5","1.5","10",1700000059999,"10",5,"1","1","0"]', '1m');
SELECT * FROM mdfeed.parse_binance_klines('[[1700000000000,"NaN","2","0.5","1.5","10",1700000059999,"10",5,"1","1","0"]]', '1m');
SELECT * FROM mdfeed.parse_binance_klines('[[1700000000000,1.0,"2","0.5","1.5","10",1700000059999,"10",5,"1","1","0"]]', '1m');
SELECT * FROM mdfeed.parse_binance_klines('[[1700000000000,"1","2","0.5","1.5","10",1700000059999,"10",-5,"1","1","0"]]', '1m');
SELECT * FROM mdfeed.parse_binance_klines('[[1700000060000,"1","2","0.5","1.5","10",1700000119999,"10",5,"1","1","0"],[1700000000000,"1","2","0.5","1.5","10",1700000059999,"10",5,"1","1","0"]]', '1m');
SELECT * FROM mdfeed.parse_binance_klines('[[1700000000000,"1","2"]]', '1m');
SELECT * FROM mdfeed.parse_binance_klines('{"code":-1121,"msg":"Invalid symbol."}', '1m');
SELECT * FROM mdfeed.parse_binance_klines('[] trailing', '1m');
SELECT * FROM mdfeed.parse_binance_klines('<html>502 Bad Gateway</html>', '1m');
SELECT * FROM mdfeed.parse_binance_klines('', '1m');
SELECT * FROM mdfeed.parse_binance_klines('[]', '2m');
SELECT * FROM mdfeed.parse_binance_klines('[[99999999999999999999,"1","2","0.5","1.5","10",1700000059999,"10",5,"1","1","0"]]', '1m');

-- real frames from fstream.binance.com (shared/exchange-data), one forming, one closed
SELECT * FROM mdfeed.parse_binance_stream('{"stream":"akrousdt@kline_1m","data":{"e":"kline","E":1626992742139,"s":"AKROUSDT","k":{"t":1626992700000,"T":1626992759999,"s":"AKROUSDT","i":"1m","f":27931328,"L":27931348,"o":"0.01731","c":"0.01731","h":"0.01733","l":"0.01731","v":"156058","n":21,"x":false,"q":"2702.20770","V":"68508","Q":"1186.71720","B":"0"}}}');
SELECT * FROM mdfeed.parse_binance_stream('{"stream":"sushiusdt@kline_1m","data":{"e":"kline","E":1626992760203,"s":"SUSHIUSDT","k":{"t":1626992700000,"T":1626992759999,"s":"SUSHIUSDT","i":"1m","f":126902874,"L":126902986,"o":"7.6080","c":"7.6170","h":"7.6180","l":"7.6070","v":"3005","n":113,"x":true,"q":"22875.8590","V":"1900","Q":"14464.6960","B":"0"}}}');
-- replies and other events are not klines
SELECT count(*) FROM mdfeed.parse_binance_stream('{"result":null,"id":1}');
SELECT count(*) FROM mdfeed.parse_binance_stream('{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1"}}');
-- garbage
SELECT * FROM mdfeed.parse_binance_stream('{"stream":"sushiusdt@kline_1m","data":{"e":"kline","E":1626992760203,"s":"SUSHIUSDT","k":{"t":1626992700000');
SELECT * FROM mdfeed.parse_binance_stream('{"stream":"x@kline_1m","data":{"e":"kline","E":1,"s":"X","k":{"t":1,"T":2,"s":"X","i":"7m","o":"1","c":"1","h":"1","l":"1","v":"1","n":1,"x":true,"q":"1","V":"1","Q":"1"}}}');
SELECT * FROM mdfeed.parse_binance_stream('{"stream":"x@kline_1m","data":{"e":"kline","E":1,"s":"X","k":{"t":1,"T":2,"s":"X","i":"1m","o":"Infinity","c":"1","h":"1","l":"1","v":"1","n":1,"x":true,"q":"1","V":"1","Q":"1"}}}');
SELECT * FROM mdfeed.parse_binance_stream('{"stream":"x@kline_1m","data":{"e":"kline","E":1,"s":"X","k":{"t":1,"T":2,"s":"X","i":"1m","o":"1","c":"1","h":"1","l":"1","v":"1","n":1,"x":"yes","q":"1","V":"1","Q":"1"}}}');
SELECT * FROM mdfeed.parse_binance_stream(repeat('[', 100000));
SELECT * FROM mdfeed.parse_binance_stream('garbage{');

--
-- mdfeed.parse_answer: every parser the workers use, on raw bytes
--
SELECT mdfeed.parse_answer('binance', 'klines', convert_to($$[[1700000000000,"1","2","0.5","1.5","10",1700000059999,"10",5,"1","1","0"]]$$, 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'stream', convert_to('{"result":null,"id":1}', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'exchange_info', convert_to('{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400}],"symbols":[{"symbol":"BTCUSDT","status":"TRADING","contractType":"PERPETUAL","baseAsset":"BTC","quoteAsset":"USDT","onboardDate":1569398400000,"filters":[{"filterType":"PRICE_FILTER","tickSize":"0.10"}]},{"symbol":"btc","status":"TRADING"}]}', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'weight_limit', convert_to('{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400}]}', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'server_time', convert_to('{"serverTime":1700000000000}', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'tickers', convert_to('[{"symbol":"BTCUSDT","quoteVolume":"123.45"},{"symbol":"ETHUSDT","quoteVolume":"6.7"}]', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'funding', convert_to('[{"symbol":"BTCUSDT","fundingTime":1700006400001,"fundingRate":"0.00010000","markPrice":""}]', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'open_interest', convert_to('[{"symbol":"BTCUSDT","sumOpenInterest":"1.5","sumOpenInterestValue":"2.5","timestamp":"1700000000000"}]', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'error', convert_to('{"code":-1121,"msg":"Invalid symbol."}', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'error', convert_to('[]', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'ban', convert_to('{"code":-1003,"msg":"Way too many requests; IP banned until 1700000000000."}', 'UTF8'));
-- garbage: NUL bytes, invalid UTF-8, deep nesting, huge numbers
SELECT mdfeed.parse_answer('binance', 'klines', '\x5b5b00'::bytea);
SELECT mdfeed.parse_answer('binance', 'tickers', '\x5b7b2273796d626f6c223a22425443555344545c7530303030222c2271756f7465566f6c756d65223a2231227d5d'::bytea);
SELECT mdfeed.parse_answer('binance', 'exchange_info', '\x7b2273796d626f6c73223a5b7b2273796d626f6c223a2242544355534454222c22737461747573223a2254ff227d5d7d'::bytea);
SELECT mdfeed.parse_answer('binance', 'funding', convert_to(repeat('[', 100000), 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'server_time', convert_to('{"serverTime":1e400}', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'open_interest', convert_to('[{"sumOpenInterest":"1","sumOpenInterestValue":"1","timestamp":' || repeat('9', 400) || '}]', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'stream', ''::bytea);
-- UTF-8 that json-c lets through: an overlong '/', a UTF-16 surrogate, past U+10FFFF
SELECT mdfeed.parse_answer('binance', 'error', '\x7b22636f6465223a2d312c226d7367223a22c0af227d'::bytea);
SELECT mdfeed.parse_answer('binance', 'error', '\x7b22636f6465223a2d312c226d7367223a22eda080227d'::bytea);
SELECT mdfeed.parse_answer('binance', 'error', '\x7b22636f6465223a2d312c226d7367223a22f4908080227d'::bytea);
-- escapes: json-c makes a lone surrogate U+FFFD; a NUL byte makes no error body
SELECT mdfeed.parse_answer('binance', 'error', convert_to('{"code":-1,"msg":"\ud800"}', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'error', convert_to('{"code":-1,"msg":"a\u0000b"}', 'UTF8'));
-- the arguments are checked
SELECT mdfeed.parse_answer('nasdaq', 'klines', '\x5b5d'::bytea);
SELECT mdfeed.parse_answer('binance', 'trades', '\x5b5d'::bytea);
SELECT mdfeed.parse_answer('binance', 'klines', NULL);

--
-- Upserts are idempotent, a forming candle is replaced when it closes, and a
-- closed candle is never replaced by a forming one.
--
SELECT mdfeed.ingest_binance_klines('BTCUSDT', '1m', $$[
 [1700000000000,"37000.10","37100.00","36950.50","37050.20","123.456",1700000059999,"4570000.12345",1500,"60.123","2225000.00000","0"],
 [1700000060000,"37050.20","37060.00","37000.00","37001.00","1.000",1700000119999,"37001.00000",1,"0.000","0.00000","0"]
]$$, '2023-11-14 22:14:30+00');
SELECT symbol, open_time, close, volume, trades, closed FROM mdfeed.candles_1m ORDER BY open_time;
SELECT xmin AS xmin_before FROM mdfeed.candles_1m WHERE open_time = '2023-11-14 22:13:20+00' \gset
-- the same answer again changes nothing
SELECT mdfeed.ingest_binance_klines('BTCUSDT', '1m', $$[
 [1700000000000,"37000.10","37100.00","36950.50","37050.20","123.456",1700000059999,"4570000.12345",1500,"60.123","2225000.00000","0"],
 [1700000060000,"37050.20","37060.00","37000.00","37001.00","1.000",1700000119999,"37001.00000",1,"0.000","0.00000","0"]
]$$, '2023-11-14 22:14:30+00');
SELECT xmin = :'xmin_before' AS untouched FROM mdfeed.candles_1m WHERE open_time = '2023-11-14 22:13:20+00';
-- the forming candle closes with other values
SELECT mdfeed.ingest_binance_klines('BTCUSDT', '1m', $$[
 [1700000060000,"37050.20","37080.00","36990.00","37070.00","9.500",1700000119999,"351500.00000",42,"4.000","148000.00000","0"]
]$$, '2023-11-14 22:16:00+00');
SELECT open_time, close, volume, trades, closed FROM mdfeed.candles_1m ORDER BY open_time;
-- a late forming update of a closed candle is ignored
SELECT mdfeed.ingest_binance_klines('BTCUSDT', '1m', $$[
 [1700000060000,"37050.20","37060.00","37000.00","37001.00","1.000",1700000119999,"37001.00000",1,"0.000","0.00000","0"]
]$$, '2023-11-14 22:14:30+00');
SELECT open_time, close, volume, trades, closed FROM mdfeed.candles_1m ORDER BY open_time;
-- values keep every digit the exchange sent
SELECT mdfeed.ingest_binance_klines('TINYUSDT', '1m', $$[
 [1700000000000,"0.000000012345678901234567890","0.000000012345678901234567891","0.000000012345678901234567889","0.000000012345678901234567890","123456789012345678901234567890.123456789",1700000059999,"1.5",1,"0","0","0"]
]$$, '2024-01-01');
SELECT open, high, volume FROM mdfeed.candles_1m WHERE symbol = 'TINYUSDT';
SELECT mdfeed.ingest_binance_klines('btc', '1m', '[]');
DELETE FROM mdfeed.candles_1m;

-- the bulk archives' files (1.5): CSV lines with a header or none, times in
-- ms or in µs, and the zip a worker downloads (deflated or stored)
SELECT mdfeed.parse_answer('binance', 'archive_klines', convert_to($$open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore
1704067200000,42314.00,42335.80,42289.60,42331.90,289.641,1704067259999,12254930.90010,3257,165.829,7016459.67770,0
$$, 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_klines', convert_to(E'1704067200000000,1,2,0.5,1.5,10,1704067259999999,10,5,1,1,0\r\n1704067260000,1,2,0.5,1.5,10,1704067319999,10,5,1,1,0', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_klines', convert_to(E'1704067200000,1,2,0.5,1.5,10,1704067259999,10,5,1,1,0\nopen_time,open', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_klines', convert_to('1704067200000,1,2,0.5,1.5,1e999,1704067259999,10,5,1,1,0', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_klines', convert_to('1704067200000,1,0.4,0.5,1.5,10,1704067259999,10,5,1,1,0', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_klines', convert_to('1704067200000,1,2,0.5', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_metrics', convert_to(E'create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n2024-01-01 00:05:00,BTCUSDT,80000.123,3400000000.5,1.1,1.2,1.3,1.4\n', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_metrics', convert_to('2024-02-30 00:05:00,BTCUSDT,1,2,1,1,1,1', 'UTF8'));
SELECT mdfeed.parse_answer('binance', 'archive_zip', decode('504b03041400000008000000215028d68ba5be0000005901000019000000425443555344542d316d2d323032342d30312d30312e637376558de16ec3300884ffef5910028c4dfc34d156596dd434eeba64d3debe249637955fc771dc57ef6519d7e956a0ba82cb74bec05c7fe034d7af02df75defc742c2df5b9d5b58cddafdbb2c2fa7e2d8ff163fbedf6bff1929ece4b7d943736524a26b40fa804566c22441c762143c6d41cc64c70eccad03f63f60116899a03798298204834e0e41592c1889346ff323302fa63a6ce6cc52e6240eeced01c4275a60c7e90ce0c7c30738a46125094c4331a1ca98c6619bcda7741ce4176e413504b010214031400000008000000215028d68ba5be00000059010000190000000000000000000000800100000000425443555344542d316d2d323032342d30312d30312e637376504b0506000000000100010047000000f50000000000', 'hex'));
SELECT mdfeed.parse_answer('binance', 'archive_zip', decode('504b03041400000000000000215028d68ba5590100005901000019000000425443555344542d316d2d323032342d30312d30312e6373766f70656e5f74696d652c6f70656e2c686967682c6c6f772c636c6f73652c766f6c756d652c636c6f73655f74696d652c71756f74655f766f6c756d652c636f756e742c74616b65725f6275795f766f6c756d652c74616b65725f6275795f71756f74655f766f6c756d652c69676e6f72650a313730343036373230303030302c34323331342e30302c34323333352e38302c34323238392e36302c34323333312e39302c3238392e3634312c313730343036373235393939392c31323235343933302e39303031302c333235372c3136352e3832392c373031363435392e36373737302c300a313730343036373236303030302c34323333312e39302c34323335332e31302c34323333312e38302c34323335302e34302c3232382e3130322c313730343036373331393939392c393635373032332e32343032302c323433372c3134312e3737392c363030323433322e31393332302c300a504b010214031400000000000000215028d68ba55901000059010000190000000000000000000000800100000000425443555344542d316d2d323032342d30312d30312e637376504b0506000000000100010047000000900100000000', 'hex'));
SELECT mdfeed.parse_answer('binance', 'archive_zip', substring(decode('504b03041400000008000000215028d68ba5be0000005901000019000000425443555344542d316d2d323032342d30312d30312e637376558de16ec3300884ffef5910028c4dfc34d156596dd434eeba64d3debe249637955fc771dc57ef6519d7e956a0ba82cb74bec05c7fe034d7af02df75defc742c2df5b9d5b58cddafdbb2c2fa7e2d8ff163fbedf6bff1929ece4b7d943736524a26b40fa804566c22441c762143c6d41cc64c70eccad03f63f60116899a03798298204834e0e41592c1889346ff323302fa63a6ce6cc52e6240eeced01c4275a60c7e90ce0c7c30738a46125094c4331a1ca98c6619bcda7741ce4176e413504b010214031400000008000000215028d68ba5be00000059010000190000000000000000000000800100000000425443555344542d316d2d323032342d30312d30312e637376504b0506000000000100010047000000f50000000000', 'hex') from 1 for 200));
SELECT mdfeed.parse_answer('binance', 'archive_zip', convert_to('PK not a zip', 'UTF8'));
SELECT mdfeed.parse_answer('coindcx', 'archive_klines', convert_to('1', 'UTF8'));
