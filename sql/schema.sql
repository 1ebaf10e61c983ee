--
-- The extension creates its schema, one candle table per interval, the job
-- table and the functions, none of them executable by PUBLIC.
--
CREATE EXTENSION mdfeed;

SELECT c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'mdfeed' AND c.relkind IN ('r', 'v')
ORDER BY c.relname;

-- every candle table has the same columns and primary key
SELECT table_name, count(*) AS columns,
	   string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) AS definition
FROM information_schema.columns
WHERE table_schema = 'mdfeed' AND table_name LIKE 'candles\_%'
GROUP BY table_name
HAVING string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) IS DISTINCT FROM
	(SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
	 FROM information_schema.columns
	 WHERE table_schema = 'mdfeed' AND table_name = 'candles_1m')
ORDER BY 1;

\d mdfeed.candles_1m
\d mdfeed.jobs

SELECT conrelid::regclass AS "table", pg_get_constraintdef(oid) AS pk
FROM pg_constraint
WHERE contype = 'p' AND connamespace = 'mdfeed'::regnamespace
ORDER BY 1::text;

-- the functions, callable unqualified, and who may run them
SELECT p.oid::regprocedure AS function, p.prosecdef, p.proacl
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'mdfeed')
ORDER BY 1::text;

-- pg_dump keeps the data
SELECT unnest(extconfig)::regclass::text AS dumped FROM pg_extension WHERE extname = 'mdfeed' ORDER BY 1;

-- settings
SELECT name, setting, context FROM pg_settings WHERE name LIKE 'mdfeed.%' ORDER BY name;
SET mdfeed.no_such_setting = 1;
