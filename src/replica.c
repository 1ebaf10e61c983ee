/*-------------------------------------------------------------------------
 *
 * replica.c
 *	  The receiving side of logical replication: a row that arrives for a
 *	  key the table already has is merged into it, not refused.
 *
 * An analytics server subscribes to the data tables of every shard, and a
 * shard may subscribe to the coordinator's symbol lists.  Plain logical
 * replication stops a subscription for good at the first INSERT whose key
 * is taken (PostgreSQL 15 has no conflict handling), and keys do meet:
 * every shard stores the whole instrument list; when mdfeed.shard's n
 * changes, the new owner of a symbol inserts candles its old owner sent
 * before; a shard's lists may hold a row before the coordinator's copy of
 * it arrives.  The rows are the same exchange's truth either way, so the
 * arriving row is merged as the shards' own upserts merge: it replaces the
 * stored one (a closed candle is never replaced by a forming one), and an
 * equal row is not touched.
 *
 * mdfeed.merge_replicated_row is a BEFORE INSERT OR UPDATE row trigger on
 * every replicated table, ENABLE REPLICA: it fires only where
 * session_replication_role is replica, that is in the subscription's apply
 * and table-sync workers, never for the ingest servers' own writes (whose
 * multi-insert path it would otherwise turn off).  On INSERT it looks the
 * key up (the table's replica identity index, else its primary key); if
 * the row is there it updates it and skips the insert.  Tables with an
 * identity column (CoinDCX's candle ids) keep their own ids: each server's
 * sequence numbers its rows, so an arriving row takes a new id, and an
 * arriving UPDATE keeps the stored row's.  Two subscriptions inserting one
 * key at the same moment: the second meets the unique index, its apply
 * worker restarts, and the trigger merges the row on the retry.
 *
 * The statements are prepared once per table and process, and rebuilt if
 * the table's columns change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
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
	int			natts;			/* the descriptor's, when prepared */
	int			nkeys;
	AttrNumber	keys[MERGE_MAX_KEYS];
	int			ncols;			/* the columns an update sets */
	AttrNumber	cols[MERGE_MAX_COLS];
	int			nident;			/* identity columns */
	AttrNumber	ident[MERGE_MAX_KEYS];
	AttrNumber	closed;			/* a candle table's closed, or 0 */
	SPIPlanPtr	find;
	SPIPlanPtr	update;
} MergePlan;

static HTAB *merge_plans = NULL;

/*
 * key_index returns the index that identifies a table's rows: its replica
 * identity index, else its primary key.
 */
static Oid
key_index(Relation rel)
{
	Oid			idx = RelationGetReplicaIndex(rel);

	if (!OidIsValid(idx))
		idx = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(idx))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has neither a replica identity index nor a primary key",
						RelationGetRelationName(rel)),
				 errhint("mdfeed.merge_replicated_row merges rows by key.")));
	return idx;
}

/*
 * prepare_plan fills a MergePlan for a table: its key, the columns an
 * update sets, and the two statements.
 */
static void
prepare_plan(MergePlan *mp, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			idxoid = key_index(rel);
	HeapTuple	idxtup;
	Form_pg_index idx;
	char	   *table = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												   RelationGetRelationName(rel));
	Oid			types[MERGE_MAX_COLS];
	StringInfoData sql,
				where,
				olds,
				news;

	mp->natts = desc->natts;
	mp->nkeys = mp->ncols = mp->nident = 0;
	mp->closed = 0;

	idxtup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(idxoid));
	if (!HeapTupleIsValid(idxtup))
		elog(ERROR, "cache lookup failed for index %u", idxoid);
	idx = (Form_pg_index) GETSTRUCT(idxtup);
	for (int i = 0; i < idx->indnkeyatts && mp->nkeys < MERGE_MAX_KEYS; i++)
		mp->keys[mp->nkeys++] = idx->indkey.values[i];
	ReleaseSysCache(idxtup);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated)
			continue;
		if (att->attidentity)
		{
			if (mp->nident < MERGE_MAX_KEYS)
				mp->ident[mp->nident++] = att->attnum;
			continue;
		}
		if (mp->ncols >= MERGE_MAX_COLS)
			elog(ERROR, "table \"%s\" has too many columns to merge", RelationGetRelationName(rel));
		mp->cols[mp->ncols] = att->attnum;
		types[mp->ncols] = att->atttypid;
		mp->ncols++;
		if (att->atttypid == BOOLOID && strcmp(NameStr(att->attname), "closed") == 0)
			mp->closed = att->attnum;
	}

	/* $n is the n-th column an update sets; the key's columns are among them */
	initStringInfo(&where);
	for (int k = 0; k < mp->nkeys; k++)
	{
		int			p = 0;

		for (int c = 0; c < mp->ncols; c++)
			if (mp->cols[c] == mp->keys[k])
				p = c + 1;
		if (p == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the key of table \"%s\" has an identity column", RelationGetRelationName(rel)),
					 errhint("Give the table a replica identity of columns the servers agree on.")));
		appendStringInfo(&where, "%s t.%s OPERATOR(pg_catalog.=) $%d", k ? " AND" : "",
						 quote_identifier(NameStr(TupleDescAttr(desc, mp->keys[k] - 1)->attname)), p);
	}

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s FROM ONLY %s t WHERE%s FOR UPDATE",
					 mp->closed ? "t.closed" : "true", table, where.data);
	mp->find = SPI_prepare(sql.data, mp->ncols, types);
	if (mp->find == NULL)
		elog(ERROR, "could not prepare the merge of \"%s\": %s", table, SPI_result_code_string(SPI_result));

	resetStringInfo(&sql);
	initStringInfo(&olds);
	initStringInfo(&news);
	appendStringInfo(&sql, "UPDATE ONLY %s t SET ", table);
	for (int c = 0; c < mp->ncols; c++)
	{
		const char *name = quote_identifier(NameStr(TupleDescAttr(desc, mp->cols[c] - 1)->attname));

		appendStringInfo(&sql, "%s%s = $%d", c ? ", " : "", name, c + 1);
		appendStringInfo(&olds, "%st.%s", c ? ", " : "", name);
		appendStringInfo(&news, "%s$%d", c ? ", " : "", c + 1);
	}
	appendStringInfo(&sql, " WHERE%s AND (%s) IS DISTINCT FROM (%s)", where.data, olds.data, news.data);
	mp->update = SPI_prepare(sql.data, mp->ncols, types);
	if (mp->update == NULL)
		elog(ERROR, "could not prepare the merge of \"%s\": %s", table, SPI_result_code_string(SPI_result));
	SPI_keepplan(mp->find);
	SPI_keepplan(mp->update);
}

/*
 * merge_plan returns the prepared merge of a table (in an SPI connection).
 */
static MergePlan *
merge_plan(Relation rel)
{
	MergePlan  *mp;
	bool		found;

	if (merge_plans == NULL)
	{
		HASHCTL		hctl;

		memset(&hctl, 0, sizeof(hctl));
		hctl.keysize = sizeof(Oid);
		hctl.entrysize = sizeof(MergePlan);
		merge_plans = hash_create("mdfeed merge plans", 64, &hctl, HASH_ELEM | HASH_BLOBS);
	}
	mp = hash_search(merge_plans, &rel->rd_id, HASH_ENTER, &found);
	if (found && mp->natts == RelationGetDescr(rel)->natts && mp->find && mp->update)
		return mp;
	if (found)
	{
		if (mp->find)
			SPI_freeplan(mp->find);
		if (mp->update)
			SPI_freeplan(mp->update);
	}
	mp->find = mp->update = NULL;
	PG_TRY();
	{
		prepare_plan(mp, rel);
	}
	PG_CATCH();
	{
		hash_search(merge_plans, &rel->rd_id, HASH_REMOVE, NULL);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return mp;
}

/*
 * column_values takes the values of a plan's columns out of a tuple.
 */
static void
column_values(MergePlan *mp, HeapTuple tup, TupleDesc desc, Datum *values, char *nulls)
{
	for (int c = 0; c < mp->ncols; c++)
	{
		bool		isnull;

		values[c] = heap_getattr(tup, mp->cols[c], desc, &isnull);
		nulls[c] = isnull ? 'n' : ' ';
	}
}

/*
 * merge_insert merges an arriving row into the stored one with its key.
 * Returns true if there was one (the insert is then skipped).
 */
static bool
merge_insert(Relation rel, HeapTuple tup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MergePlan  *mp;
	Datum		values[MERGE_MAX_COLS];
	char		nulls[MERGE_MAX_COLS];
	bool		found = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	mp = merge_plan(rel);
	column_values(mp, tup, desc, values, nulls);
	if (SPI_execute_plan(mp->find, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up a replicated row of \"%s\"", RelationGetRelationName(rel));
	if (SPI_processed > 0)
	{
		bool		stored_closed = false;
		bool		isnull;

		found = true;
		if (mp->closed)
			stored_closed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		/* a closed candle is never replaced by a forming one */
		if (!(mp->closed && stored_closed &&
			  !DatumGetBool(heap_getattr(tup, mp->closed, desc, &isnull))))
		{
			if (SPI_execute_plan(mp->update, values, nulls, false, 0) != SPI_OK_UPDATE)
				elog(ERROR, "could not merge a replicated row into \"%s\"", RelationGetRelationName(rel));
		}
	}
	SPI_finish();
	return found;
}

/*
 * with_identities returns tup with its identity columns set: from the
 * stored row (an update), or from this server's sequences (an insert).
 */
static HeapTuple
with_identities(Relation rel, HeapTuple tup, HeapTuple stored)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc0(sizeof(bool) * desc->natts);
	bool	   *repl = palloc0(sizeof(bool) * desc->natts);
	bool		any = false;

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || !att->attidentity)
			continue;
		if (stored != NULL)
			values[i] = heap_getattr(stored, att->attnum, desc, &nulls[i]);
		else
		{
			Oid			seq = getIdentitySequence(RelationGetRelid(rel), att->attnum, false);
			int64		next = nextval_internal(seq, false);

			values[i] = att->atttypid == INT4OID ? Int32GetDatum((int32) next) :
				att->atttypid == INT2OID ? Int16GetDatum((int16) next) : Int64GetDatum(next);
		}
		repl[i] = true;
		any = true;
	}
	return any ? heap_modify_tuple(tup, desc, values, nulls, repl) : tup;
}

/*
 * mdfeed_merge_replicated_row is the trigger (see the file header).
 */
Datum
mdfeed_merge_replicated_row(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mdfeed.merge_replicated_row must be a BEFORE ... FOR EACH ROW trigger")));
	rel = td->tg_relation;
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		if (merge_insert(rel, td->tg_trigtuple))
			return PointerGetDatum(NULL);
		return PointerGetDatum(with_identities(rel, td->tg_trigtuple, NULL));
	}
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		return PointerGetDatum(with_identities(rel, td->tg_newtuple, td->tg_trigtuple));
	return PointerGetDatum(td->tg_trigtuple);
}
