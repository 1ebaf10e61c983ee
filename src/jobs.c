/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The job queue: how a worker claims a job, records progress and ends it.
 *
 * A worker owns a job by holding a session-level advisory lock on it, not a
 * row lock, because no transaction stays open while it waits on the network.
 * The lock goes away with the worker however it dies, so a job left
 * 'running' by a crash is simply claimed again, and resumes from its
 * cursor_time.  Progress is recorded in the same transaction as the candles
 * it describes, so the cursor never runs ahead of the data.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "mdfeed.h"
#include "jobs.h"

/* first key of mdfeed's advisory locks: 'mdfd' */
#define MD_LOCK_KEY1 0x6d646664

/* the job whose lock this process holds, 0 if none */
static int64 locked_job = 0;

static void
copy_text(HeapTuple tup, TupleDesc desc, int col, char *dst, size_t size)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	strlcpy(dst, v ? v : "", size);
}

static bool
try_lock(int64 id, bool unlock)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2] = {Int32GetDatum(MD_LOCK_KEY1), Int32GetDatum((int32) (id & 0x7fffffff))};
	bool		isnull;
	int			ret;

	ret = SPI_execute_with_args(unlock ? "SELECT pg_catalog.pg_advisory_unlock($1, $2)"
								: "SELECT pg_catalog.pg_try_advisory_lock($1, $2)",
								2, types, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "advisory lock call failed");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * md_job_claim takes the oldest queued job, or a running one whose worker
 * died, and marks it running.  Returns false if there is none.
 */
bool
md_job_claim(MdJob *job)
{
	int			ret;
	uint64		n;
	SPITupleTable *tab;

	ret = SPI_execute("SELECT id, kind, exchange, symbol, \"interval\", "
					  "(extract(epoch FROM from_time) * 1000)::int8, "
					  "(extract(epoch FROM to_time) * 1000)::int8, "
					  "(extract(epoch FROM cursor_time) * 1000)::int8 "
					  "FROM mdfeed.jobs WHERE state IN ('queued', 'running') "
					  "ORDER BY id LIMIT 64", false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.jobs");
	n = SPI_processed;
	tab = SPI_tuptable;

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = tab->vals[i];
		TupleDesc	desc = tab->tupdesc;
		bool		isnull;
		Oid			types[2] = {INT8OID, INT4OID};
		Datum		values[2];

		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		if (!try_lock(job->id, false))
			continue;			/* another worker has it */

		values[0] = Int64GetDatum(job->id);
		values[1] = Int32GetDatum(MyProcPid);
		ret = SPI_execute_with_args("UPDATE mdfeed.jobs SET state = 'running', "
									"started_at = coalesce(started_at, pg_catalog.now()), "
									"worker_pid = $2, updated_at = pg_catalog.now() "
									"WHERE id = $1 AND state IN ('queued', 'running')",
									2, types, values, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not claim job " INT64_FORMAT, job->id);
		if (SPI_processed != 1)
		{
			/* it ended while we looked */
			try_lock(job->id, true);
			continue;
		}
		locked_job = job->id;
		copy_text(tup, desc, 2, job->kind, sizeof(job->kind));
		copy_text(tup, desc, 3, job->exchange, sizeof(job->exchange));
		copy_text(tup, desc, 4, job->symbol, sizeof(job->symbol));
		copy_text(tup, desc, 5, job->interval, sizeof(job->interval));
		job->from_ms = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		job->to_ms = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		job->cursor_ms = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		if (isnull)
			job->cursor_ms = -1;
		return true;
	}
	return false;
}

/*
 * md_job_checkpoint records progress.  It returns false, changing nothing,
 * if the job is no longer running (it was canceled): the caller must then
 * roll back, so that nothing is written for a canceled job.
 */
bool
md_job_checkpoint(const MdJob *job, int64 cursor_ms, int64 rows, int requests,
				  int retries, double progress)
{
	Oid			types[6] = {INT8OID, TIMESTAMPTZOID, INT8OID, INT4OID, INT4OID, FLOAT8OID};
	Datum		values[6];
	int			ret;

	values[0] = Int64GetDatum(job->id);
	values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(cursor_ms));
	values[2] = Int64GetDatum(rows);
	values[3] = Int32GetDatum(requests);
	values[4] = Int32GetDatum(retries);
	values[5] = Float8GetDatum(Max(0.0, Min(1.0, progress)));
	ret = SPI_execute_with_args("UPDATE mdfeed.jobs SET cursor_time = $2, "
								"rows_written = rows_written + $3, requests = requests + $4, "
								"retries = retries + $5, progress = $6, updated_at = pg_catalog.now() "
								"WHERE id = $1 AND state = 'running'",
								6, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not record progress of job " INT64_FORMAT, job->id);
	return SPI_processed == 1;
}

/*
 * md_job_finish gives a running job its final state.
 */
void
md_job_finish(const MdJob *job, const char *state, const char *error,
			  int requests, int retries)
{
	Oid			types[5] = {INT8OID, TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int			ret;

	values[0] = Int64GetDatum(job->id);
	values[1] = CStringGetTextDatum(state);
	if (error)
		values[2] = CStringGetTextDatum(error);
	else
		nulls[2] = 'n';
	values[3] = Int32GetDatum(requests);
	values[4] = Int32GetDatum(retries);
	ret = SPI_execute_with_args("UPDATE mdfeed.jobs SET state = $2, error = $3, "
								"requests = requests + $4, retries = retries + $5, "
								"progress = CASE WHEN $2 = 'succeeded' THEN 1 ELSE progress END, "
								"finished_at = pg_catalog.now(), updated_at = pg_catalog.now() "
								"WHERE id = $1 AND state = 'running'",
								5, types, values, nulls, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not finish job " INT64_FORMAT, job->id);
}

/*
 * md_job_state returns the job's state, or NULL if there is no such job.
 */
char *
md_job_state(int64 id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	int			ret;

	ret = SPI_execute_with_args("SELECT state FROM mdfeed.jobs WHERE id = $1",
								1, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read job " INT64_FORMAT, id);
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * md_job_release drops the worker's claim on a job.
 */
void
md_job_release(const MdJob *job)
{
	if (locked_job != job->id)
		return;
	try_lock(job->id, true);
	locked_job = 0;
}

/*
 * md_job_set_detail records a note for the user, such as what the exchange
 * could not provide.
 */
void
md_job_set_detail(const MdJob *job, const char *detail)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(job->id), CStringGetTextDatum(detail)};

	if (SPI_execute_with_args("UPDATE mdfeed.jobs SET detail = $2 WHERE id = $1",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update job " INT64_FORMAT, job->id);
}

/*
 * md_sync_lookback is mdfeed.sync_lookback as an interval datum.
 */
Datum
md_sync_lookback(void)
{
	return DirectFunctionCall3(interval_in,
							   CStringGetDatum(psprintf("%d minutes", mdfeed_sync_lookback_min)),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/*
 * md_queue_pair_sync queues a job bringing one pair up to date, from its
 * newest closed candle (mdfeed.sync_pair), unless one already covers it or,
 * with only_if_behind, the newest candle closed by closed_by_ms is stored.
 */
void
md_queue_pair_sync(const char *exchange, const char *symbol, const char *interval,
				   const char *origin, bool only_if_behind, int64 closed_by_ms)
{
	Oid			types[7] = {TEXTOID, TEXTOID, TEXTOID, INTERVALOID, TEXTOID, BOOLOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[7] = "      n";

	values[0] = CStringGetTextDatum(exchange);
	values[1] = CStringGetTextDatum(symbol);
	values[2] = CStringGetTextDatum(interval);
	values[3] = md_sync_lookback();
	values[4] = CStringGetTextDatum(origin);
	values[5] = BoolGetDatum(only_if_behind);
	values[6] = (Datum) 0;
	if (only_if_behind)
	{
		values[6] = TimestampTzGetDatum(md_ms_to_timestamptz(closed_by_ms));
		nulls[6] = ' ';
	}
	if (SPI_execute_with_args("SELECT mdfeed.sync_pair($1, $2, $3, $4, $5, $6, $7)",
							  7, types, values, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not queue a sync of %s %s", symbol, interval);
}
