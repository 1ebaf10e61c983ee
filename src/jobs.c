/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The job queue: how a worker claims a job, records progress, yields it
 *	  and ends it.
 *
 * A worker owns a job by a claim in shared memory (its status slot's job),
 * not by a row lock, because no transaction stays open while it waits on
 * the network, and not by an advisory lock, because any role may take
 * advisory locks and so could hold every job back.  A claim ends with the
 * worker however it dies, so a job left 'running' by a crash is simply
 * claimed again, and resumes from its cursor_time.  Progress is recorded
 * in the same transaction as the candles it describes, so the cursor never
 * runs ahead of the data.
 *
 * Which job goes next: the jobs of exchanges that answer before those of
 * one in an outage or throttled; then mdfeed's own upkeep (sync, repair,
 * stream repairs, collection) before any user's job, oldest first; then users' jobs, the
 * role with the fewest jobs running first, so that one role's flood is
 * served beside another's single job rather than before it.  A running user
 * job yields between pages when upkeep waits and every worker is busy, or
 * when a role with fewer running jobs waits (at once if that is unfair by
 * two jobs or more, after mdfeed.job_time_slice if by one), and goes back
 * to the queue with its cursor.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "common.h"
#include "interval.h"
#include "jobs.h"
#include "shmem.h"
#include "workers.h"

/* the job this process has claimed, 0 if none, and since when */
static int64 claimed_job = 0;
static int64 claimed_ms = 0;
static int64 yield_checked_ms = 0;

/*
 * How many claimed user jobs each role has: $1 is the claimed jobs' ids
 * (claimed_array).  Both the claim's order and the yield test start here.
 */
#define BUSY_CTE \
	"WITH busy AS (" \
	"  SELECT requester, count(*) AS n FROM mdfeed.jobs " \
	"  WHERE id = ANY ($1) AND origin = 'user' GROUP BY requester)"

/* at most this often a running job asks whether it should yield */
#define YIELD_CHECK_MS 1000

static void
copy_text(HeapTuple tup, TupleDesc desc, int col, char *dst, size_t size)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	strlcpy(dst, v ? v : "", size);
}

/*
 * claimed_array returns the jobs live workers hold as an int8[] datum.
 */
static Datum
claimed_array(int *idle_backfill)
{
	int64		ids[MD_MAX_WORKERS];
	Datum		elems[MD_MAX_WORKERS];
	int			n = md_claimed_jobs(ids, MD_MAX_WORKERS, idle_backfill);

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * clip_to_present ends a job's range at the present, as the SQL functions
 * do when they queue one: a job queued before they did (or by hand) must
 * not page through an empty future either.
 */
static void
clip_to_present(MdJob *job)
{
	int64		end = md_present_end_ms(md_interval_lookup(job->interval));

	if (job->to_ms > end)
		job->to_ms = Max(end, job->from_ms + 1);
}

/*
 * unavailable_exchanges names, as a text[] datum, the exchanges that hold
 * this server back or do not answer now: their jobs go after every other
 * exchange's, so that an outage or a throttle does not take the workers to
 * wait in while other exchanges have work.
 */
static Datum
unavailable_exchanges(void)
{
	Datum		names[MD_MAX_EXCHANGES];
	int			n = 0;

	for (int e = 0; e < md_num_exchanges(); e++)
		if (!md_exchange_available(md_exchange_at(e)))
			names[n++] = CStringGetTextDatum(md_exchange_at(e)->name);
	return PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * md_job_claim takes the next job (see the header for the order), queued
 * or left running by a worker that died, and marks it running.  skip_id, if
 * not 0, is a job this worker just yielded: it goes to someone else first.
 * Returns false if there is none.
 */
bool
md_job_claim(MdJob *job, int64 skip_id)
{
	Oid			types[3] = {INT8ARRAYOID, INT8OID, TEXTARRAYOID};
	Datum		values[3];
	int			ret;
	uint64		n;
	SPITupleTable *tab;

	values[0] = claimed_array(NULL);
	values[1] = Int64GetDatum(skip_id);
	values[2] = unavailable_exchanges();
	ret = SPI_execute_with_args(BUSY_CTE ", "
								"c AS ("
								"  SELECT j.*, row_number() OVER (PARTITION BY j.origin = 'user', j.requester "
								"                                 ORDER BY j.id) AS rn "
								"  FROM mdfeed.jobs j "
								"  WHERE j.state IN ('queued', 'running') AND NOT (j.id = ANY ($1))) "
								"SELECT c.id, c.kind, c.exchange, c.symbol, c.\"interval\", "
								"(extract(epoch FROM c.from_time) * 1000)::int8, "
								"(extract(epoch FROM c.to_time) * 1000)::int8, "
								"(extract(epoch FROM c.cursor_time) * 1000)::int8, "
								"c.origin, c.requester, "
								"(extract(epoch FROM c.archive_cursor) * 1000)::int8 "
								"FROM c LEFT JOIN busy b ON c.origin = 'user' AND b.requester = c.requester "
								"ORDER BY c.exchange = ANY ($3), c.origin = 'user', c.id = $2, "
								"coalesce(b.n, 0) + c.rn, c.id "
								"LIMIT 16",
								3, types, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.jobs");
	n = SPI_processed;
	tab = SPI_tuptable;

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = tab->vals[i];
		TupleDesc	desc = tab->tupdesc;
		bool		isnull;
		Oid			utypes[2] = {INT8OID, INT4OID};
		Datum		uvalues[2];

		job->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		if (!md_slot_try_claim(job->id))
			continue;			/* another worker took it meanwhile */

		uvalues[0] = Int64GetDatum(job->id);
		uvalues[1] = Int32GetDatum(MyProcPid);
		ret = SPI_execute_with_args("UPDATE mdfeed.jobs SET state = 'running', "
									"started_at = coalesce(started_at, now()), "
									"worker_pid = $2, updated_at = now() "
									"WHERE id = $1 AND state IN ('queued', 'running')",
									2, utypes, uvalues, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not claim job " INT64_FORMAT, job->id);
		if (SPI_processed != 1)
		{
			/* it ended while we looked */
			md_slot_set_job(0);
			continue;
		}
		claimed_job = job->id;
		claimed_ms = md_now_ms();
		yield_checked_ms = claimed_ms;
		copy_text(tup, desc, 2, job->kind, sizeof(job->kind));
		copy_text(tup, desc, 3, job->exchange, sizeof(job->exchange));
		copy_text(tup, desc, 4, job->symbol, sizeof(job->symbol));
		copy_text(tup, desc, 5, job->interval, sizeof(job->interval));
		job->from_ms = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		job->to_ms = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		job->cursor_ms = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		if (isnull)
			job->cursor_ms = -1;
		copy_text(tup, desc, 9, job->origin, sizeof(job->origin));
		job->requester = DatumGetObjectId(SPI_getbinval(tup, desc, 10, &isnull));
		if (isnull)
			job->requester = InvalidOid;
		job->archive_cursor_ms = DatumGetInt64(SPI_getbinval(tup, desc, 11, &isnull));
		if (isnull)
			job->archive_cursor_ms = -1;
		clip_to_present(job);
		return true;
	}
	return false;
}

/*
 * md_job_should_yield says whether the running job should go back to the
 * queue now, for upkeep or for another role's job (see the header).  Cheap
 * enough to call after every page: it asks the table at most once a second.
 */
bool
md_job_should_yield(const MdJob *job)
{
	Oid			types[3] = {INT8ARRAYOID, OIDOID, BOOLOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int64		now = md_now_ms();
	int			idle;
	bool		isnull;
	bool		upkeep,
				unfair,
				waiting;

	if (strcmp(job->origin, "user") != 0 || now - yield_checked_ms < YIELD_CHECK_MS)
		return false;
	yield_checked_ms = now;

	values[0] = claimed_array(&idle);
	/* a worker that is idle takes whatever waits: nobody need yield */
	if (idle > 0)
		return false;
	values[1] = ObjectIdGetDatum(job->requester);
	nulls[1] = OidIsValid(job->requester) ? ' ' : 'n';
	values[2] = BoolGetDatum(now - claimed_ms >= mdfeed_job_slice_ms);

	md_begin_tx();
	if (SPI_execute_with_args(BUSY_CTE ", "
							  "mine AS (SELECT coalesce((SELECT n FROM busy WHERE requester IS NOT DISTINCT FROM $2), 1) AS n), "
							  "waiting AS ("
							  "  SELECT j.origin, j.requester, coalesce(b.n, 0) AS n FROM mdfeed.jobs j "
							  "  LEFT JOIN busy b ON b.requester = j.requester "
							  "  WHERE j.state IN ('queued', 'running') AND NOT (j.id = ANY ($1))) "
							  "SELECT EXISTS (SELECT 1 FROM waiting WHERE origin <> 'user'), "
							  "       EXISTS (SELECT 1 FROM waiting w, mine m WHERE w.origin = 'user' "
							  "               AND w.requester IS DISTINCT FROM $2 AND w.n + 1 < m.n), "
							  "       $3 AND EXISTS (SELECT 1 FROM waiting w, mine m WHERE w.origin = 'user' "
							  "               AND w.requester IS DISTINCT FROM $2 AND w.n + 1 <= m.n)",
							  3, types, values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.jobs");
	upkeep = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	unfair = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	waiting = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	md_commit_tx();
	if (upkeep || unfair || waiting)
		elog(DEBUG1, "mdfeed job " INT64_FORMAT " yields: %s", job->id,
			 upkeep ? "upkeep waits" : "another role's job waits");
	return upkeep || unfair || waiting;
}

/*
 * md_job_should_step_aside says whether a job whose exchange does not
 * answer (an outage, a throttle) should give its worker up: when no
 * backfill worker is idle and a job of another exchange, one that
 * answers, waits.  Then one exchange's trouble never holds up the others.
 */
bool
md_job_should_step_aside(const MdJob *job)
{
	const MdExchange *ex = md_exchange_lookup(job->exchange);
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	int			idle;
	bool		found = false;

	values[0] = claimed_array(&idle);
	if (ex == NULL || idle > 0)
		return false;
	md_begin_tx();
	if (SPI_execute_with_args("SELECT DISTINCT exchange FROM mdfeed.jobs "
							  "WHERE state IN ('queued', 'running') AND NOT (id = ANY ($1))",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.jobs");
	for (uint64 i = 0; i < SPI_processed && !found; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		const MdExchange *other = name ? md_exchange_lookup(name) : NULL;

		found = other != NULL && !md_same_budget(other, ex) && md_exchange_available(other);
	}
	md_commit_tx();
	if (found)
		elog(DEBUG1, "mdfeed job " INT64_FORMAT " steps aside: %s does not answer and another exchange's job waits",
			 job->id, ex->name);
	return found;
}

/*
 * md_job_yield puts the running job back in the queue, its cursor kept, and
 * drops this worker's claim on it.
 */
void
md_job_yield(const MdJob *job)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job->id)};

	md_begin_tx();
	if (SPI_execute_with_args("UPDATE mdfeed.jobs SET state = 'queued', worker_pid = NULL, "
							  "updated_at = now() WHERE id = $1 AND state = 'running'",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not requeue job " INT64_FORMAT, job->id);
	md_job_release(job);
	md_commit_tx();
}

/*
 * update_running runs an UPDATE of a job's row that takes effect only while
 * the job is running ($1 is its id, the statement's WHERE says the rest).
 * Returns whether it did.
 */
static bool
update_running(const MdJob *job, const char *sql, int nargs, Oid *types, Datum *values)
{
	values[0] = Int64GetDatum(job->id);
	types[0] = INT8OID;
	if (SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record progress of job " INT64_FORMAT, job->id);
	return SPI_processed == 1;
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

	values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(cursor_ms));
	values[2] = Int64GetDatum(rows);
	values[3] = Int32GetDatum(requests);
	values[4] = Int32GetDatum(retries);
	values[5] = Float8GetDatum(Max(0.0, Min(1.0, progress)));
	return update_running(job, "UPDATE mdfeed.jobs SET cursor_time = $2, "
						  "rows_written = rows_written + $3, rest_rows = rest_rows + $3, requests = requests + $4, "
						  "retries = retries + $5, progress = $6, updated_at = pg_catalog.now() "
						  "WHERE id = $1 AND state = 'running'",
						  6, types, values);
}

/*
 * md_job_archive_checkpoint records what the archive part of a job has
 * done: it has handled the range before archive_cursor_ms, and brought
 * rows from files more files.  Returns false if the job is no longer
 * running (canceled meanwhile).
 */
bool
md_job_archive_checkpoint(const MdJob *job, int64 archive_cursor_ms, int64 rows, int files,
						  double progress)
{
	Oid			types[5] = {INT8OID, TIMESTAMPTZOID, INT8OID, INT4OID, FLOAT8OID};
	Datum		values[5];

	values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(archive_cursor_ms));
	values[2] = Int64GetDatum(rows);
	values[3] = Int32GetDatum(files);
	values[4] = Float8GetDatum(Max(0.0, Min(1.0, progress)));
	return update_running(job, "UPDATE mdfeed.jobs SET archive_cursor = $2, "
						  "rows_written = rows_written + $3, archive_rows = archive_rows + $3, "
						  "archive_files = archive_files + $4, progress = $5, "
						  "updated_at = pg_catalog.now() "
						  "WHERE id = $1 AND state = 'running'",
						  5, types, values);
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
	if (claimed_job != job->id)
		return;
	md_slot_set_job(0);
	claimed_job = 0;
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
