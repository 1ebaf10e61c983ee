--
-- Models: who may register one, and every argument checked with a clear
-- error before anything is written.  (Running them is test/t/401_models.pl.)
--
CREATE ROLE regress_modeler LOGIN;
CREATE ROLE regress_stranger LOGIN;
GRANT USAGE ON SCHEMA mdfeed TO regress_modeler, regress_stranger;
GRANT SELECT ON mdfeed.candles_1m, mdfeed.candles_1h, mdfeed.models TO regress_modeler;
CREATE SCHEMA regress_m AUTHORIZATION regress_modeler;
INSERT INTO mdfeed.instruments (exchange, symbol, status, contract_type, tradable)
VALUES ('binance', 'BTCUSDT', 'TRADING', 'PERPETUAL', true),
	   ('binance', 'ETHUSDT', 'TRADING', 'PERPETUAL', true)
ON CONFLICT DO NOTHING;

SET ROLE regress_modeler;
CREATE FUNCTION regress_m.ok(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jsonb_build_object('n', cardinality(candles)) $$;
CREATE FUNCTION regress_m.two_args(symbol text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION regress_m.returns_text(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS text
LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION regress_m.returns_set(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS SETOF jsonb
LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION regress_m.definer(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql SECURITY DEFINER AS $$ SELECT '{}'::jsonb $$;
CREATE PROCEDURE regress_m.proc(symbol text, "interval" text, candles mdfeed.candle[])
LANGUAGE sql AS $$ SELECT 1 $$;
REVOKE EXECUTE ON FUNCTION regress_m.ok(text, text, mdfeed.candle[]) FROM PUBLIC;

-- no grant, no model
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m');
RESET ROLE;
GRANT EXECUTE ON FUNCTION mdfeed_register_model(text, regprocedure, text, text[], integer, timestamptz, text),
	mdfeed_unregister_model(text), mdfeed_pause_model(text), mdfeed_resume_model(text),
	mdfeed_rerun_model(text, timestamptz, timestamptz, text[]) TO regress_modeler, regress_stranger;

-- a superuser's model would run as a superuser
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m');

SET ROLE regress_modeler;
-- the function
SELECT mdfeed_register_model('m1', 'regress_m.two_args(text,mdfeed.candle[])', '1m');
SELECT mdfeed_register_model('m1', 'regress_m.returns_text(text,text,mdfeed.candle[])', '1m');
SELECT mdfeed_register_model('m1', 'regress_m.returns_set(text,text,mdfeed.candle[])', '1m');
SELECT mdfeed_register_model('m1', 'regress_m.definer(text,text,mdfeed.candle[])', '1m');
SELECT mdfeed_register_model('m1', 'regress_m.proc(text,text,mdfeed.candle[])', '1m');
SELECT mdfeed_register_model('m1', 'regress_m.nope(text,text,mdfeed.candle[])', '1m');
-- the name, the interval, the exchange, the window, the symbols, the start
SELECT mdfeed_register_model('bad name', 'regress_m.ok(text,text,mdfeed.candle[])', '1m');
SELECT mdfeed_register_model('', 'regress_m.ok(text,text,mdfeed.candle[])', '1m');
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '2m');
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '3m', exchange => 'coindcx');
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', exchange => 'kraken');
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', window_size => 0);
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', window_size => 10001);
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', symbols => '{}');
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', symbols => ARRAY['BTCUSDT', NULL]);
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', symbols => ARRAY['btcusdt']);
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', symbols => ARRAY['NOPEUSDT', 'BTCUSDT', 'ZZZUSDT']);
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', from_time => 'infinity');
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m', from_time => '2999-01-01 00:00+00');
SELECT mdfeed_register_model(NULL, 'regress_m.ok(text,text,mdfeed.candle[])', '1m');
-- the owner must be able to read the candles it is given, all of them
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '5m');
RESET ROLE;
ALTER TABLE mdfeed.candles_1h ENABLE ROW LEVEL SECURITY;
SET ROLE regress_modeler;
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1h');
RESET ROLE;
ALTER TABLE mdfeed.candles_1h DISABLE ROW LEVEL SECURITY;
SET ROLE regress_modeler;
-- a model outlives the session
CREATE FUNCTION pg_temp.tmp_model(symbol text, "interval" text, candles mdfeed.candle[]) RETURNS jsonb
LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
DO $$
BEGIN
	PERFORM mdfeed_register_model('m1', 'pg_temp.tmp_model(text,text,mdfeed.candle[])', '1m');
EXCEPTION WHEN invalid_function_definition THEN
	RAISE NOTICE 'refused: %', regexp_replace(SQLERRM, 'pg_temp_[0-9]+', 'pg_temp');
END
$$;
DROP FUNCTION pg_temp.tmp_model(text, text, mdfeed.candle[]);

-- registered: the symbols sorted, without repeats; the function qualified
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1m',
							 symbols => ARRAY['ETHUSDT', 'BTCUSDT', 'ETHUSDT'], window_size => 50,
							 from_time => '2024-01-01 00:00:30+00');
SELECT name, function, exchange, "interval", symbols, window_size, from_time, state, runs, failures, owner
FROM mdfeed.models;
SELECT mdfeed_register_model('m1', 'regress_m.ok(text,text,mdfeed.candle[])', '1h');
-- what the worker keeps is not the users' to write
INSERT INTO mdfeed.model_outputs (model, exchange, symbol, "interval", open_time, output)
VALUES ('m1', 'binance', 'BTCUSDT', '1m', '2024-01-01', '{}');
UPDATE mdfeed.models SET owner = 'regress_stranger';
RESET ROLE;
-- the first candle is the one opening at or after from_time
SELECT model, symbol, next_open FROM mdfeed.model_progress ORDER BY 1, 2;

-- only its owner changes it
SET ROLE regress_stranger;
SELECT mdfeed_pause_model('m1');
SELECT mdfeed_unregister_model('m1');
SELECT mdfeed_rerun_model('m1', '2024-01-01', '2024-01-02');
SELECT mdfeed_pause_model('nope');
RESET ROLE;
SET ROLE regress_modeler;
SELECT mdfeed_pause_model('m1');
SELECT state FROM mdfeed.models;
SELECT mdfeed_rerun_model('m1', '2024-01-02', '2024-01-01');
SELECT mdfeed_rerun_model('m1', '2024-01-01', '2024-01-02', ARRAY['BTCUSDT']);
SELECT mdfeed_resume_model('m1');
SELECT state FROM mdfeed.models;
SELECT mdfeed_unregister_model('m1');
SELECT count(*) FROM mdfeed.models;
RESET ROLE;
SELECT count(*) FROM mdfeed.model_progress;

-- the trigger notes rewritten and deleted closed candles, for the models only
SELECT count(*) AS tables, count(*) FILTER (WHERE t.tgenabled = 'A') AS always
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE t.tgname = 'candle_changed' AND c.relnamespace = 'mdfeed'::regnamespace;
INSERT INTO mdfeed.candles_1m VALUES ('BTCUSDT', '2024-01-01 00:00', '2024-01-01 00:00:59.999', 1, 2, 0.5, 1.5,
	10, 15, 5, 7, 3, true), ('BTCUSDT', '2024-01-01 00:01', '2024-01-01 00:01:59.999', 1, 2, 0.5, 1.5,
	10, 15, 5, 7, 3, false);
UPDATE mdfeed.candles_1m SET close = 1.6;
SELECT count(*) FROM mdfeed.candle_changes;
INSERT INTO mdfeed.models (name, function, function_owner, exchange, "interval", window_size, owner)
VALUES ('probe', 'regress_m.ok(text,text,mdfeed.candle[])', 'regress_modeler', 'binance', '1m', 1, 'regress_modeler');
UPDATE mdfeed.candles_1m SET close = 1.7;
DELETE FROM mdfeed.candles_1m;
SELECT exchange, "interval", symbol, open_time FROM mdfeed.candle_changes;
DELETE FROM mdfeed.candle_changes;
DELETE FROM mdfeed.models;
DELETE FROM mdfeed.instruments;

-- the reference models
SELECT mdfeed.model_realized_volatility('X', '1m', ARRAY[
	('2024-01-01 00:00', '2024-01-01 00:00:59.999', 1, 1, 1, 100, 1, 1, 1),
	('2024-01-01 00:01', '2024-01-01 00:01:59.999', 1, 1, 1, 110, 1, 1, 1),
	('2024-01-01 00:02', '2024-01-01 00:02:59.999', 1, 1, 1, 99, 1, 1, 1)]::mdfeed.candle[]);
SELECT mdfeed.model_ema_crossover('X', '1m', ARRAY(
	SELECT ROW(t, t + interval '59.999 s', 1, 1, 1, c, 1, 1, 1)::mdfeed.candle
	FROM unnest(ARRAY[10, 10, 10, 10, 9, 8, 7, 9, 12, 15]) WITH ORDINALITY AS u(c, i),
		 LATERAL (SELECT '2024-01-01'::timestamptz + (i || ' min')::interval AS t) x ORDER BY i));

DROP SCHEMA regress_m CASCADE;
REVOKE ALL ON ALL TABLES IN SCHEMA mdfeed FROM regress_modeler, regress_stranger;
REVOKE ALL ON SCHEMA mdfeed FROM regress_modeler, regress_stranger;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM regress_modeler, regress_stranger;
DROP ROLE regress_modeler;
DROP ROLE regress_stranger;
