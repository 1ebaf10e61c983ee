/*-------------------------------------------------------------------------
 *
 * sql_status.c
 *	  What the workers are doing, for SQL: the rows of mdfeed.workers.
 *
 * Each worker publishes its state in its slot of shared memory (shmem.c)
 * and never waits on a reader; a reader copies every slot under the
 * spinlock at once, so one row set is one consistent moment, and formats
 * the copy afterwards with the lock released.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "common.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(mdfeed_workers);

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
		default:
			return "none";
	}
}

/*
 * mdfeed_workers returns one row per live mdfeed worker (the view
 * mdfeed.workers).
 */
Datum
mdfeed_workers(PG_FUNCTION_ARGS)
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
		Datum		values[14];
		bool		nulls[14] = {0};

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
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
