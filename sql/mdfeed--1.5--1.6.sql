/*
 * mdfeed--1.5--1.6.sql
 *
 * 1.6: beyond one server (issue 12).  Ingest servers own shards of the
 * symbols (mdfeed.shard = 'k/n'); an analytics server (mdfeed.mode =
 * 'replica') receives their data tables by logical replication, and the
 * shards may receive their symbol lists from a coordinator the same way.
 *
 * Nothing here rewrites a table.  It adds:
 *   - mdfeed.shard_of() and mdfeed.shard_here(), and the column here of
 *     mdfeed.tracked: the pairs this server ingests;
 *   - the liquidity ranking keeps the ranked symbols this shard owns;
 *   - mdfeed.merge_replicated_row, an ENABLE REPLICA trigger on every
 *     replicated table: rows that arrive for a key already stored are
 *     merged (see src/replica.c);
 *   - replica identities: CoinDCX's candle tables are identified by
 *     (symbol, open_time), which every server agrees on, not by their ids;
 *   - mdfeed.auto_tracked.shard, in its key: each shard's ranked rows are
 *     its own on the analytics server, so that an old owner's delete of a
 *     symbol another shard has taken over deletes only its own row;
 *   - on a server whose symbol lists arrive by subscription, local changes
 *     to them are refused, and arriving changes wake the workers;
 *   - mdfeed.replication_tables() and mdfeed_publish(): the tables each
 *     publication carries, and the publication made from them.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mdfeed UPDATE TO '1.6'" to load this file. \quit

/* ---- shards ---- */

CREATE FUNCTION mdfeed.shard_of(exchange text, symbol text, shards integer) RETURNS integer
AS 'MODULE_PATHNAME', 'mdfeed_shard_of' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION mdfeed.shard_of(text, text, integer) IS
	'the shard (0 .. shards - 1) that owns a pair: the same on every server, so mdfeed.shard = ''k/n'' ingests the pairs where this is k';

CREATE FUNCTION mdfeed.shard_here(exchange text, symbol text) RETURNS boolean
AS 'MODULE_PATHNAME', 'mdfeed_shard_here' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION mdfeed.shard_here(text, text) IS
	'whether this server ingests the pair: mdfeed.mode is ingest and the pair is in mdfeed.shard';

ALTER TABLE mdfeed.auto_tracked ADD COLUMN shard integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN mdfeed.auto_tracked.shard IS
	'the shard (k of mdfeed.shard) that ranked it: on an analytics server each shard''s rows are its own';
ALTER TABLE mdfeed.auto_tracked DROP CONSTRAINT auto_tracked_pkey,
	ADD PRIMARY KEY (exchange, symbol, shard);

CREATE OR REPLACE VIEW mdfeed.tracked AS
	SELECT c.exchange, c.symbol, c.source, c.since,
		   mdfeed.shard_here(c.exchange, c.symbol) AS here
	FROM (
		SELECT w.exchange, w.symbol, 'whitelist'::text AS source, w.added_at AS since
		FROM mdfeed.symbol_lists w WHERE w.list = 'whitelist'
		UNION ALL
		-- on an analytics server, two shards may rank one symbol for a moment
		(SELECT DISTINCT ON (a.exchange, a.symbol) a.exchange, a.symbol, 'auto'::text, a.ranked_at
		 FROM mdfeed.auto_tracked a
		 WHERE NOT EXISTS (SELECT 1 FROM mdfeed.symbol_lists w
						   WHERE w.exchange = a.exchange AND w.symbol = a.symbol AND w.list = 'whitelist')
		 ORDER BY a.exchange, a.symbol, a.ranked_at)
	) c
	JOIN mdfeed.instruments i ON i.exchange = c.exchange AND i.symbol = c.symbol
	WHERE i.tradable
	  AND NOT EXISTS (SELECT 1 FROM mdfeed.symbol_lists b
					  WHERE b.exchange = c.exchange AND b.symbol = c.symbol AND b.list = 'blacklist');
COMMENT ON VIEW mdfeed.tracked IS
	'the pairs the fleet tracks (whitelisted or auto-tracked, listed, not blacklisted); here: this server ingests it (mdfeed.shard)';

/*
 * mdfeed.apply_auto_track: the board is ranked whole, and this shard keeps
 * the ranked symbols it owns, in rows of its own (shard = k), so that the
 * shards' auto-tracked sets are disjoint and together the board's top.
 */
CREATE OR REPLACE FUNCTION mdfeed.apply_auto_track(p_exchange text, p_symbols text[], p_quote_volumes numeric[],
												   p_min numeric, p_top_n integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_n integer;
	v_k integer := pg_catalog.btrim(pg_catalog.split_part(pg_catalog.current_setting('mdfeed.shard'), '/', 1))::integer;
BEGIN
	CREATE TEMP TABLE IF NOT EXISTS mdfeed_ranked (symbol text, quote_volume numeric, rank integer)
		ON COMMIT DROP;
	DELETE FROM mdfeed_ranked;
	-- the top p_top_n of the board that the blacklist allows, with their board rank
	INSERT INTO mdfeed_ranked
	SELECT r.* FROM mdfeed.rank_symbols(p_exchange, p_symbols, p_quote_volumes, p_min, NULL) r
	WHERE NOT EXISTS (SELECT 1 FROM mdfeed.symbol_lists b
					  WHERE b.exchange = p_exchange AND b.symbol = r.symbol AND b.list = 'blacklist')
	ORDER BY r.rank
	LIMIT greatest(p_top_n, 0);
	-- of which this shard's
	DELETE FROM mdfeed_ranked r WHERE NOT mdfeed.shard_here(p_exchange, r.symbol);
	DELETE FROM mdfeed.auto_tracked a
	WHERE a.exchange OPERATOR(pg_catalog.=) p_exchange
	  AND (a.shard OPERATOR(pg_catalog.<>) v_k
		   OR NOT EXISTS (SELECT 1 FROM mdfeed_ranked r WHERE r.symbol OPERATOR(pg_catalog.=) a.symbol));
	INSERT INTO mdfeed.auto_tracked AS a (exchange, symbol, quote_volume, rank, shard)
	SELECT p_exchange, r.symbol, r.quote_volume, r.rank, v_k FROM mdfeed_ranked r
	ON CONFLICT (exchange, symbol, shard) DO UPDATE SET quote_volume = excluded.quote_volume,
		rank = excluded.rank, ranked_at = now();
	SELECT count(*) INTO v_n FROM mdfeed_ranked;
	RETURN v_n;
END
$fn$;

/* ---- what replicates ---- */

/*
 * mdfeed.replication_tables lists the tables a publication carries:
 * 'data', what the ingest servers write (every candle table of every
 * exchange, open interest, funding, instruments, confirmed exchange gaps,
 * the auto-tracked symbols); 'lists', the user's symbol lists, kept on a
 * coordinator.  The rest is each server's own: jobs, models and their
 * outputs, candle_changes.
 */
CREATE FUNCTION mdfeed.replication_tables(what text) RETURNS SETOF regclass
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	IF what OPERATOR(pg_catalog.=) 'lists' THEN
		RETURN QUERY SELECT 'mdfeed.symbol_lists'::regclass;
	ELSIF what OPERATOR(pg_catalog.=) 'data' THEN
		RETURN QUERY
		SELECT c.oid::pg_catalog.regclass FROM pg_catalog.pg_class c
		WHERE c.relnamespace OPERATOR(pg_catalog.=) 'mdfeed'::pg_catalog.regnamespace
		  AND c.relkind OPERATOR(pg_catalog.=) 'r'
		  AND (c.relname OPERATOR(pg_catalog.~) '^(cdx_spot_|cdx_)?candles_[0-9]+(m|h|d|w|mo)$'
			   OR c.relname OPERATOR(pg_catalog.=) ANY ('{instruments,auto_tracked,exchange_gaps,funding_rates,open_interest_1h,open_interest_5m}'::pg_catalog.name[]))
		  AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
					  WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
						AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'
						AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e
																WHERE e.extname OPERATOR(pg_catalog.=) 'mdfeed'))
		ORDER BY c.relname;
	ELSE
		RAISE EXCEPTION 'no tables are called "%"', what
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Ask for ''data'' (what the ingest servers write) or ''lists'' (the symbol lists).';
	END IF;
END
$fn$;
COMMENT ON FUNCTION mdfeed.replication_tables(text) IS
	'the tables of a publication: data (each ingest server''s writes) or lists (the coordinator''s symbol lists)';

/*
 * mdfeed_publish creates the publication of a set of tables, or makes an
 * existing one carry exactly them (after ALTER EXTENSION UPDATE added a
 * table: then ALTER SUBSCRIPTION ... REFRESH PUBLICATION on the
 * subscribers).  It runs with the caller's rights: publishing a table
 * takes its ownership, which is the extension's owner's.
 */
CREATE FUNCTION mdfeed_publish(publication name, what text DEFAULT 'data') RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_tables text;
	v_n integer;
BEGIN
	IF publication IS NULL OR what IS NULL THEN
		RAISE EXCEPTION 'publication and what must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT string_agg(t::text, ', ' ORDER BY t::text), count(*) INTO v_tables, v_n
	FROM mdfeed.replication_tables(what) t;
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_publication p WHERE p.pubname OPERATOR(pg_catalog.=) publication) THEN
		EXECUTE format('ALTER PUBLICATION %I SET TABLE %s', publication, v_tables);
	ELSE
		EXECUTE format('CREATE PUBLICATION %I FOR TABLE %s', publication, v_tables);
	END IF;
	RETURN v_n;
END
$fn$;
COMMENT ON FUNCTION mdfeed_publish(name, text) IS
	'create (or bring up to date) a publication of mdfeed.replication_tables(what); returns the number of tables';
REVOKE ALL ON FUNCTION mdfeed_publish(name, text) FROM PUBLIC;

CREATE FUNCTION mdfeed.merge_replicated_row() RETURNS trigger
AS 'MODULE_PATHNAME', 'mdfeed_merge_replicated_row' LANGUAGE C
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION mdfeed.merge_replicated_row() IS
	'ENABLE REPLICA trigger of replicated tables: a row that arrives for a stored key is merged into it';
REVOKE ALL ON FUNCTION mdfeed.merge_replicated_row() FROM PUBLIC;

/* CoinDCX's ids are each server's own; (symbol, open_time) is the row */
DO $do$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT c.relname AS tab, i.relname AS idx
		FROM pg_class c
		JOIN pg_index x ON x.indrelid = c.oid AND x.indisunique AND NOT x.indisprimary
		JOIN pg_class i ON i.oid = x.indexrelid
		WHERE c.relnamespace = 'mdfeed'::regnamespace AND c.relkind = 'r'
		  AND c.relname ~ '^cdx_(spot_)?candles_[0-9]+(m|h|d|w|mo)$'
		  AND x.indnkeyatts = 2
		  AND (SELECT array_agg(a.attname::text ORDER BY k.n)
			   FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
			   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) = ARRAY['symbol', 'open_time']
		ORDER BY 1
	LOOP
		EXECUTE format('ALTER TABLE mdfeed.%I REPLICA IDENTITY USING INDEX %I', t.tab, t.idx);
	END LOOP;
END
$do$;

DO $do$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT * FROM mdfeed.replication_tables('data')
			 UNION ALL SELECT * FROM mdfeed.replication_tables('lists')
	LOOP
		EXECUTE format('CREATE TRIGGER merge_replicated BEFORE INSERT OR UPDATE ON %s '
					   'FOR EACH ROW EXECUTE FUNCTION mdfeed.merge_replicated_row()', t);
		EXECUTE format('ALTER TABLE %s ENABLE REPLICA TRIGGER merge_replicated', t);
	END LOOP;
END
$do$;

/* ---- symbol lists that arrive from a coordinator ---- */

/*
 * lists_are_local refuses a change to the symbol lists on a server that
 * receives them by subscription: the coordinator's would overwrite it, or
 * never hear of it.  It fires for local statements only (ENABLE ORIGIN,
 * the default), not for what the subscription applies.
 */
CREATE FUNCTION mdfeed.lists_are_local() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_subscription_rel r
			   WHERE r.srrelid OPERATOR(pg_catalog.=) 'mdfeed.symbol_lists'::pg_catalog.regclass) THEN
		RAISE EXCEPTION 'the symbol lists of this server come from a coordinator'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'mdfeed.symbol_lists is replicated here by a subscription.',
				  HINT = 'Change the lists on the coordinator; they reach every shard.';
	END IF;
	RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION mdfeed.lists_are_local() FROM PUBLIC;
CREATE TRIGGER lists_are_local BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON mdfeed.symbol_lists
	FOR EACH STATEMENT EXECUTE FUNCTION mdfeed.lists_are_local();

/*
 * lists_arrived wakes the workers when a subscription changes the lists,
 * as mdfeed_whitelist and the others do for local changes.
 */
CREATE FUNCTION mdfeed.lists_arrived() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM mdfeed.wake_workers();
	RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION mdfeed.lists_arrived() FROM PUBLIC;
CREATE TRIGGER lists_arrived AFTER INSERT OR UPDATE OR DELETE ON mdfeed.symbol_lists
	FOR EACH ROW EXECUTE FUNCTION mdfeed.lists_arrived();
ALTER TABLE mdfeed.symbol_lists ENABLE REPLICA TRIGGER lists_arrived;
