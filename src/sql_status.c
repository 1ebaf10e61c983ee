/*-------------------------------------------------------------------------
 *
 * sql_status.c
 *	  What the workers are doing, for SQL: the rows of mdfeed.workers, and
 *	  each exchange's REST budget (mdfeed.budgets).
 *
 * Each worker publishes its state in its slot of shared memory (shmem.c)
 * and never waits on a reader; a reader copies every slot under the
 * spinlock at once, so one row set is one consistent moment, and formats
 * the copy afterwards with the lock released.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "common.h"
#include "budget.h"
#include "exchange.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(mdfeed_workers);
PG_FUNCTION_INFO_V1(mdfeed_worker_status);
PG_FUNCTION_INFO_V1(mdfeed_budgets);

/*
 * role_name is the name mdfeed.workers shows for a worker's role.
 */
static const char *
role_name(MdWorkerRole role)
{
	switch (role)
	{
		case MD_ROLE_LAUNCHER:
			return "launcher";
		case MD_ROLE_BACKFILL:
			return "backfill";
		case MD_ROLE_STREAM:
			return "stream";
		case MD_ROLE_WATCH:
			return "watch";
		case MD_ROLE_MODEL:
			return "model";
		default:
			return "none";
	}
}

/*
 * worker_rows returns one row per live mdfeed worker, with as many of the
 * columns as the calling function declares (mdfeed_workers() has 1.0's 14,
 * mdfeed.worker_status() all 17).
 */
static Datum
worker_rows(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MdWorkerSlot slots[MD_MAX_WORKERS];

	md_require_workers();
	InitMaterializedSRF(fcinfo, 0);

	SpinLockAcquire(&md_shared->mutex);
	memcpy(slots, md_shared->slots, sizeof(slots));
	SpinLockRelease(&md_shared->mutex);

	for (int i = 0; i < MD_MAX_WORKERS; i++)
	{
		MdWorkerSlot *s = &slots[i];
		Datum		values[17];
		bool		nulls[17] = {0};

		if (s->pid == 0)
			continue;
		values[0] = Int32GetDatum(s->pid);
		values[1] = CStringGetTextDatum(role_name(s->role));
		values[2] = CStringGetTextDatum(s->state);
		values[3] = TimestampTzGetDatum(s->started_at);
		nulls[4] = s->last_message_at == 0;
		values[4] = TimestampTzGetDatum(s->last_message_at);
		values[5] = Int64GetDatum(s->messages);
		values[6] = Int64GetDatum(s->reconnects);
		values[7] = Int32GetDatum(s->streams);
		nulls[8] = s->job == 0;
		values[8] = Int64GetDatum(s->job);
		nulls[9] = s->last_error[0] == '\0';
		values[9] = CStringGetTextDatum(s->last_error);
		values[10] = Int32GetDatum(s->connections);
		values[11] = Int64GetDatum(s->malformed);
		nulls[12] = s->latency_p50_ms < 0;
		values[12] = Int64GetDatum(s->latency_p50_ms);
		nulls[13] = s->latency_p99_ms < 0;
		values[13] = Int64GetDatum(s->latency_p99_ms);
		/* 1.2's columns; a 1.1 schema (not yet updated) asks for 14 */
		nulls[14] = s->exchange[0] == '\0';
		values[14] = CStringGetTextDatum(s->exchange);
		nulls[15] = s->close_latency_p50_ms < 0;
		values[15] = Int64GetDatum(s->close_latency_p50_ms);
		nulls[16] = s->close_latency_p99_ms < 0;
		values[16] = Int64GetDatum(s->close_latency_p99_ms);
		if (rsinfo->setDesc->natts != 14 && rsinfo->setDesc->natts != 17)
			elog(ERROR, "a worker status function is declared with %d columns",
				 rsinfo->setDesc->natts);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * mdfeed_workers is mdfeed_workers(): the 14 columns of 1.0.
 */
Datum
mdfeed_workers(PG_FUNCTION_ARGS)
{
	return worker_rows(fcinfo);
}

/*
 * extension_namespace is the schema CREATE EXTENSION mdfeed put its
 * unqualified functions in (PostgreSQL 15 exports no function for it).
 */
static Oid
extension_namespace(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("mdfeed"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(nsp))
		elog(ERROR, "extension \"mdfeed\" is not installed");
	return nsp;
}

/*
 * mdfeed_worker_status is mdfeed.worker_status(), what the view
 * mdfeed.workers shows since 1.2.  Whoever may execute mdfeed_workers() may
 * call it, and no one else: the rights users granted on that function stay
 * the ones that count (the function is found in the extension's schema,
 * not through the caller's search_path).
 */
Datum
mdfeed_worker_status(PG_FUNCTION_ARGS)
{
	Oid			nsp = extension_namespace();
	Oid			fn = LookupFuncName(list_make2(makeString(get_namespace_name(nsp)),
											   makeString("mdfeed_workers")),
									0, NULL, false);

	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function mdfeed.worker_status"),
				 errdetail("Its rights are those of mdfeed_workers()."),
				 errhint("GRANT EXECUTE ON FUNCTION mdfeed_workers() TO the role.")));
	return worker_rows(fcinfo);
}

/*
 * mdfeed_budgets shows every limit of every exchange's REST budget (the
 * view mdfeed.budgets): one row per exchange and limit.
 */
Datum
mdfeed_budgets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		now = md_now_ms();

	md_require_workers();
	InitMaterializedSRF(fcinfo, 0);
	for (int e = 0; e < md_num_exchanges(); e++)
	{
		const MdExchange *ex = md_exchange_at(e);
		MdBudget	b;

		/* one that spends another's budget is shown under that one */
		if (ex->budget_of != NULL)
			continue;
		md_budget_snapshot(ex, &b);
		for (int l = 0; l < ex->nlimits; l++)
		{
			const MdRateLimit *rl = &ex->limits[l];
			const MdLimitState *st = &b.limits[l];
			Datum		values[11];
			bool		nulls[11] = {0};
			Interval   *window = palloc0(sizeof(Interval));

			values[0] = CStringGetTextDatum(ex->name);
			values[1] = CStringGetTextDatum(rl->name);
			values[2] = Int32GetDatum(st->limit);
			window->time = rl->window_ms * INT64CONST(1000);
			values[3] = IntervalPGetDatum(window);
			/* a window's count; a token bucket has none to show */
			if (rl->kind == MD_LIMIT_WINDOW)
				values[4] = Int32GetDatum(st->window == now / rl->window_ms ? st->used : 0);
			else
				nulls[4] = true;
			nulls[5] = b.blocked_until_ms <= now;
			values[5] = TimestampTzGetDatum(md_ms_to_timestamptz(b.blocked_until_ms));
			values[6] = BoolGetDatum(b.blocked_until_ms > now && b.banned);
			values[7] = Int64GetDatum(b.requests);
			values[8] = Int64GetDatum(b.throttled);
			values[9] = Int64GetDatum(b.rate_limited);
			values[10] = Int64GetDatum(b.bans);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
