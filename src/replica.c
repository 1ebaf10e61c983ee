/*-------------------------------------------------------------------------
 *
 * replica.c
 *	  The receiving side of logical replication: a row that arrives for a
 *	  key the table already has is merged into it, not refused.
 *
 * An analytics server subscribes to the data tables of every shard, and a
 * shard may subscribe to the coordinator's symbol lists.  Plain logical
 * replication stops a subscription at the first INSERT whose key is taken
 * (PostgreSQL 15 has no conflict handling), and keys do meet: every shard
 * stores the whole instrument list; when mdfeed.shard's n changes, the new
 * owner of a symbol inserts candles its old owner sent before; a shard's
 * lists may hold a row before the coordinator's copy of it arrives.  The
 * rows are the same exchange's truth either way, so an arriving row is
 * merged as the shards' own upserts merge: the analytics server holds what
 * the pair's owner stored, as it stored it:
 *   - its values replace the stored ones (a NULL too: CoinDCX's candles
 *     made over REST have no quote volume, whatever the stream said);
 *   - a closed candle is never replaced by a forming one;
 *   - a row equal to the stored one in every value is not touched: the
 *     bookkeeping columns (named *_at, and added_by) are not compared, so
 *     that a shard's own updated_at does not make an equal candle a
 *     rewrite (which would make the models compute it again).
 *
 * mdfeed.merge_replicated_row is a BEFORE INSERT OR UPDATE row trigger on
 * every replicated table, ENABLE REPLICA: it fires only where
 * session_replication_role is replica, that is in the subscription's apply
 * and table-sync workers, never for the ingest servers' own writes (whose
 * multi-insert path it would otherwise turn off).  An arriving INSERT
 * becomes one INSERT ... ON CONFLICT DO UPDATE of the same row (and the
 * original insert is skipped): two subscriptions that insert one key at
 * the same moment then wait for each other instead of one failing on the
 * unique index.  The nested statement leaves out identity columns
 * (CoinDCX's candle ids), so each server numbers its own rows; an arriving
 * UPDATE keeps the stored row's ids, and is skipped where it would make a
 * closed candle forming again (an old owner's last forming update arriving
 * after the new owner's close).
 *
 * The statements are prepared once per table and process, and prepared
 * again after any change to the table (a relcache invalidation).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "common.h"

PG_FUNCTION_INFO_V1(mdfeed_merge_replicated_row);

#define MERGE_MAX_COLS 32
#define MERGE_MAX_KEYS 8

typedef struct MergePlan
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false after an invalidation */
	AttrNumber	closed;			/* a candle table's closed, or 0 */
	int			nident;			/* identity columns */
	AttrNumber	ident[MERGE_MAX_KEYS];
	int			ncols;			/* the columns the merge writes: $1 .. */
	AttrNumber	cols[MERGE_MAX_COLS];
	SPIPlanPtr	merge;			/* prepared at the first arriving insert */
} MergePlan;

static HTAB *merge_plans = NULL;

/* set while the merge's own statement runs: its rows pass through */
static bool in_merge = false;

/*
 * invalidate_plan forgets the prepared merge of a changed table (of every
 * table, for InvalidOid); the next row prepares it again.
 */
static void
invalidate_plan(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	MergePlan  *mp;

	if (merge_plans == NULL)
		return;
	hash_seq_init(&seq, merge_plans);
	while ((mp = hash_seq_search(&seq)) != NULL)
		if (relid == InvalidOid || mp->relid == relid)
			mp->valid = false;
}

/*
 * bookkeeping says whether a column records when or by whom a row was
 * written rather than what the exchange said: it is not compared.
 */
static bool
bookkeeping(Form_pg_attribute att)
{
	const char *name = NameStr(att->attname);
	size_t		len = strlen(name);

	return (len > 3 && strcmp(name + len - 3, "_at") == 0) || strcmp(name, "added_by") == 0;
}

/*
 * key_columns fills keys with the columns of the index that identifies a
 * table's rows (its replica identity index, else its primary key).
 */
static int
key_columns(Relation rel, AttrNumber *keys)
{
	Oid			idxoid = RelationGetReplicaIndex(rel);
	HeapTuple	idxtup;
	Form_pg_index idx;
	int			n;

	if (!OidIsValid(idxoid))
		idxoid = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(idxoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has neither a replica identity index nor a primary key",
						RelationGetRelationName(rel)),
				 errhint("mdfeed.merge_replicated_row merges rows by their key.")));
	idxtup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(idxoid));
	if (!HeapTupleIsValid(idxtup))
		elog(ERROR, "cache lookup failed for index %u", idxoid);
	idx = (Form_pg_index) GETSTRUCT(idxtup);
	n = idx->indnkeyatts;
	if (n > MERGE_MAX_KEYS)
		elog(ERROR, "the key of table \"%s\" has more than %d columns", RelationGetRelationName(rel),
			 MERGE_MAX_KEYS);
	for (int i = 0; i < n; i++)
		keys[i] = idx->indkey.values[i];
	ReleaseSysCache(idxtup);
	return n;
}

/*
 * prepare_plan builds a table's merge: INSERT of the row's columns (not its
 * identity columns) ON CONFLICT on its key DO UPDATE, under the rules of
 * the file header.
 */
static void
prepare_plan(MergePlan *mp, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	keys[MERGE_MAX_KEYS];
	int			nkeys = key_columns(rel, keys);
	char	   *table = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												   RelationGetRelationName(rel));
	Oid			types[MERGE_MAX_COLS];
	StringInfoData cols,
				vals,
				conflict,
				sets,
				olds,
				news;

	initStringInfo(&cols);
	initStringInfo(&vals);
	initStringInfo(&conflict);
	initStringInfo(&sets);
	initStringInfo(&olds);
	initStringInfo(&news);
	mp->ncols = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = quote_identifier(NameStr(att->attname));
		bool		key = false;
		int			p;

		if (att->attisdropped || att->attgenerated || att->attidentity)
			continue;
		if (mp->ncols >= MERGE_MAX_COLS)
			elog(ERROR, "table \"%s\" has too many columns to merge", RelationGetRelationName(rel));
		mp->cols[mp->ncols] = att->attnum;
		types[mp->ncols] = att->atttypid;
		p = ++mp->ncols;
		appendStringInfo(&cols, "%s%s", p > 1 ? ", " : "", name);
		appendStringInfo(&vals, "%s$%d", p > 1 ? ", " : "", p);
		for (int k = 0; k < nkeys; k++)
			key |= keys[k] == att->attnum;
		if (key)
			continue;
		appendStringInfo(&sets, "%s%s = excluded.%s", sets.len ? ", " : "", name, name);
		if (bookkeeping(att))
			continue;
		appendStringInfo(&olds, "%st.%s", olds.len ? ", " : "", name);
		appendStringInfo(&news, "%sexcluded.%s", news.len ? ", " : "", name);
	}
	for (int k = 0; k < nkeys; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, keys[k] - 1);

		if (att->attidentity)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the key of table \"%s\" has an identity column", RelationGetRelationName(rel)),
					 errhint("Give the table a replica identity of columns every server agrees on.")));
		appendStringInfo(&conflict, "%s%s", k ? ", " : "", quote_identifier(NameStr(att->attname)));
	}

	{
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfo(&sql, "INSERT INTO %s AS t (%s) VALUES (%s) ON CONFLICT (%s) ",
						 table, cols.data, vals.data, conflict.data);
		if (olds.len == 0)
			appendStringInfoString(&sql, "DO NOTHING");
		else
			appendStringInfo(&sql, "DO UPDATE SET %s WHERE %s(%s) IS DISTINCT FROM (%s)", sets.data,
							 mp->closed ? "NOT (t.closed AND NOT excluded.closed) AND " : "",
							 olds.data, news.data);
		mp->merge = SPI_prepare(sql.data, mp->ncols, types);
		if (mp->merge == NULL)
			elog(ERROR, "could not prepare the merge of %s: %s", table, SPI_result_code_string(SPI_result));
		SPI_keepplan(mp->merge);
	}
}

/*
 * merge_entry returns what the merge knows of a table: its closed column
 * and identity columns, read from its descriptor again after a change; the
 * merge statement is prepared apart, at the first arriving insert.
 */
static MergePlan *
merge_entry(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MergePlan  *mp;
	bool		found;

	if (merge_plans == NULL)
	{
		HASHCTL		hctl;

		memset(&hctl, 0, sizeof(hctl));
		hctl.keysize = sizeof(Oid);
		hctl.entrysize = sizeof(MergePlan);
		merge_plans = hash_create("mdfeed merge plans", 64, &hctl, HASH_ELEM | HASH_BLOBS);
		CacheRegisterRelcacheCallback(invalidate_plan, (Datum) 0);
	}
	mp = hash_search(merge_plans, &rel->rd_id, HASH_ENTER, &found);
	if (found && mp->valid)
		return mp;
	if (found && mp->merge)
		SPI_freeplan(mp->merge);
	mp->merge = NULL;
	mp->closed = 0;
	mp->nident = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (att->atttypid == BOOLOID && strcmp(NameStr(att->attname), "closed") == 0)
			mp->closed = att->attnum;
		if (att->attidentity)
		{
			if (mp->nident == MERGE_MAX_KEYS)
				elog(ERROR, "table \"%s\" has more than %d identity columns",
					 RelationGetRelationName(rel), MERGE_MAX_KEYS);
			mp->ident[mp->nident++] = att->attnum;
		}
	}
	mp->valid = true;
	return mp;
}

/*
 * merge_plan returns the entry of a table with its merge statement
 * prepared (in an SPI connection).
 */
static MergePlan *
merge_plan(Relation rel)
{
	MergePlan  *mp = merge_entry(rel);

	if (mp->merge != NULL)
		return mp;
	PG_TRY();
	{
		prepare_plan(mp, rel);
	}
	PG_CATCH();
	{
		mp->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	return mp;
}

/*
 * merge_insert writes an arriving row as the merge of the file header.
 */
static void
merge_insert(Relation rel, HeapTuple tup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MergePlan  *mp;
	Datum		values[MERGE_MAX_COLS];
	char		nulls[MERGE_MAX_COLS];
	volatile int ret = SPI_ERROR_ARGUMENT;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	mp = merge_plan(rel);
	for (int c = 0; c < mp->ncols; c++)
	{
		bool		isnull;

		values[c] = heap_getattr(tup, mp->cols[c], desc, &isnull);
		nulls[c] = isnull ? 'n' : ' ';
	}
	in_merge = true;
	PG_TRY();
	{
		ret = SPI_execute_plan(mp->merge, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		in_merge = false;
	}
	PG_END_TRY();
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not merge a replicated row into \"%s\": %s", RelationGetRelationName(rel),
			 SPI_result_code_string(ret));
	SPI_finish();
}

/*
 * merge_update returns an arriving UPDATE's new row as it is stored: with
 * the stored row's identity columns, or NULL (skip it) where it would make
 * a closed candle forming again.
 */
static HeapTuple
merge_update(Relation rel, HeapTuple stored, HeapTuple arriving)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MergePlan  *mp = merge_entry(rel);
	Datum	   *values;
	bool	   *nulls;
	bool	   *repl;
	bool		old_null;
	bool		new_null;

	if (mp->closed)
	{
		Datum		old = heap_getattr(stored, mp->closed, desc, &old_null);
		Datum		new = heap_getattr(arriving, mp->closed, desc, &new_null);

		if (!old_null && !new_null && DatumGetBool(old) && !DatumGetBool(new))
			return NULL;
	}
	if (mp->nident == 0)
		return arriving;
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc0(sizeof(bool) * desc->natts);
	repl = palloc0(sizeof(bool) * desc->natts);
	for (int i = 0; i < mp->nident; i++)
	{
		int			a = mp->ident[i] - 1;

		values[a] = heap_getattr(stored, mp->ident[i], desc, &nulls[a]);
		repl[a] = true;
	}
	return heap_modify_tuple(arriving, desc, values, nulls, repl);
}

/*
 * mdfeed_merge_replicated_row is the trigger (see the file header).
 */
Datum
mdfeed_merge_replicated_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mdfeed.merge_replicated_row must be a BEFORE ... FOR EACH ROW trigger")));
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		if (in_merge)
			return PointerGetDatum(td->tg_trigtuple);
		merge_insert(td->tg_relation, td->tg_trigtuple);
		return PointerGetDatum(NULL);
	}
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		if (in_merge)
			return PointerGetDatum(td->tg_newtuple);
		return PointerGetDatum(merge_update(td->tg_relation, td->tg_trigtuple, td->tg_newtuple));
	}
	return PointerGetDatum(td->tg_trigtuple);
}
