/*-------------------------------------------------------------------------
 *
 * sql_jobs.c
 *	  The job API: queue, wait for and cancel jobs, and wake the workers.
 *
 * Users are granted EXECUTE on these functions, not rights on mdfeed.jobs:
 * the functions validate everything the caller gave them as the caller,
 * then write the job table as the extension's owner and record who asked.
 * What a job may ask for is bounded here, before any row exists: its range
 * lies between 1970 and the present (a to_time in the future is clipped to
 * where the job kind's data ends now), and one role has at most
 * mdfeed.max_queued_jobs_per_role unfinished jobs.  Workers are woken when
 * the transaction that queued a job commits, not before, so they never
 * look for a row they cannot see yet.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common.h"
#include "exchange.h"
#include "shard.h"
#include "shmem.h"
#include "sql_args.h"

PG_FUNCTION_INFO_V1(mdfeed_backfill);
PG_FUNCTION_INFO_V1(mdfeed_backfill_open_interest);
PG_FUNCTION_INFO_V1(mdfeed_backfill_funding);
PG_FUNCTION_INFO_V1(mdfeed_wait);
PG_FUNCTION_INFO_V1(mdfeed_cancel);
PG_FUNCTION_INFO_V1(mdfeed_wake_workers);

/*
 * check_time_arg rejects a time no market data can have: infinite, or past
 * year 9999 (where interval arithmetic in milliseconds would overflow).
 */
static void
check_time_arg(TimestampTz ts, const char *name)
{
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be finite", name),
				 errhint("Give a range such as now() - interval '30 days' to now().")));
	if (md_timestamptz_to_ms(ts) >= MD_MAX_TIME_MS)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s %s is after the year 9999", name, timestamptz_to_str(ts)),
				 errhint("Market data times lie between 1970 and 9999; a to_time in the future is clipped to now().")));
}

/*
 * check_range validates a job's [from_time, to_time) and clips its end at
 * the present, *clip_to_ms being the first moment with nothing to fetch
 * yet: the job kind's own (the close of the candle forming now, for
 * candles).  A job never pages through an empty future.
 */
static TimestampTz
check_range(TimestampTz from, TimestampTz to, int64 clip_to_ms)
{
	TimestampTz clipped;

	check_time_arg(from, "from_time");
	check_time_arg(to, "to_time");
	if (from >= to)
	{
		/* timestamptz_to_str returns a static buffer */
		char	   *from_str = pstrdup(timestamptz_to_str(from));

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_time %s is not before to_time %s",
						from_str, timestamptz_to_str(to)),
				 errhint("The range is [from_time, to_time): from_time must be the earlier.")));
	}
	if (md_timestamptz_to_ms(from) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_time %s is before 1970", timestamptz_to_str(from)),
				 errhint("Exchanges count time from 1970-01-01 00:00 UTC.")));
	clipped = md_ms_to_timestamptz(clip_to_ms);
	if (from >= clipped)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_time %s is in the future", timestamptz_to_str(from)),
				 errhint("A job fetches what the exchange already has: give a from_time before now().")));
	return Min(to, clipped);
}

/*
 * check_queue_cap refuses a user job beyond mdfeed.max_queued_jobs_per_role
 * unfinished jobs of the calling role (superusers included: the cap keeps
 * one flood from growing every claim's scan).  Two sessions of one role
 * queueing at the same moment may overshoot it by a job each; it is a
 * guard against floods, not an accounting limit.  The count is not
 * read-only, so that it takes a new snapshot and sees the jobs this very
 * statement queued (SELECT mdfeed_backfill(...) FROM generate_series(...)).
 */
static void
check_queue_cap(Oid role)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(role)};
	bool		isnull;
	int64		n;

	if (mdfeed_max_queued_jobs_per_role <= 0)
		return;
	if (SPI_execute_with_args("SELECT pg_catalog.count(*) FROM mdfeed.jobs "
							  "WHERE requester OPERATOR(pg_catalog.=) $1 "
							  "AND state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count queued jobs");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (n >= mdfeed_max_queued_jobs_per_role)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" already has " INT64_FORMAT " unfinished mdfeed jobs",
						GetUserNameFromId(role, false), n),
				 errdetail("mdfeed.max_queued_jobs_per_role is %d.", mdfeed_max_queued_jobs_per_role),
				 errhint("Wait for jobs to finish, cancel some with mdfeed_cancel(), or ask a superuser to raise mdfeed.max_queued_jobs_per_role.")));
}

/*
 * queue_job inserts a job for the workers, as the extension's owner, and
 * wakes them when the transaction commits.
 */
static int64
queue_job(const char *kind, const char *exchange, const char *symbol, const char *interval,
		  TimestampTz from, TimestampTz to)
{
	MdOwnerContext ctx;
	Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, NAMEOID, OIDOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		id;
	int			ret;

	md_require_workers();
	md_require_ingest();
	md_check_database();
	if (mdfeed_backfill_workers == 0)
		ereport(NOTICE,
				(errmsg("mdfeed.backfill_workers is 0: the job stays queued until workers are enabled")));

	md_begin_as_owner(&ctx);
	check_queue_cap(ctx.save_userid);
	values[0] = CStringGetTextDatum(kind);
	values[1] = CStringGetTextDatum(exchange);
	values[2] = CStringGetTextDatum(symbol);
	if (interval)
		values[3] = CStringGetTextDatum(interval);
	else
		nulls[3] = 'n';
	values[4] = TimestampTzGetDatum(from);
	values[5] = TimestampTzGetDatum(to);
	values[6] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(ctx.save_userid, false)));
	values[7] = ObjectIdGetDatum(ctx.save_userid);
	ret = SPI_execute_with_args("INSERT INTO mdfeed.jobs (kind, exchange, symbol, \"interval\", "
								"from_time, to_time, requested_by, requester) "
								"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
								8, types, values, nulls, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not queue the job");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	md_end_as_owner(&ctx);

	md_at_commit(MD_WAKE_BACKFILL);
	return id;
}

/*
 * mdfeed_backfill queues a job that brings candles of one symbol and interval
 * in [from_time, to_time) into the exchange's table of that interval.
 */
Datum
mdfeed_backfill(PG_FUNCTION_ARGS)
{
	char	   *symbol;
	char	   *interval;
	char	   *exchange;
	const MdExchange *ex;
	const MdInterval *iv;
	TimestampTz from,
				to;

	REQUIRE_ARG(0, "symbol");
	REQUIRE_ARG(1, "interval");
	REQUIRE_ARG(2, "from_time");
	REQUIRE_ARG(3, "to_time");
	REQUIRE_ARG(4, "exchange");
	symbol = text_to_cstring(PG_GETARG_TEXT_PP(0));
	interval = text_to_cstring(PG_GETARG_TEXT_PP(1));
	from = PG_GETARG_TIMESTAMPTZ(2);
	to = PG_GETARG_TIMESTAMPTZ(3);
	exchange = text_to_cstring(PG_GETARG_TEXT_PP(4));

	ex = md_check_exchange(exchange);
	md_check_symbol(symbol);
	iv = md_check_exchange_interval(ex, interval);
	to = check_range(from, to, md_present_end_ms(iv));
	PG_RETURN_INT64(queue_job("candles", exchange, symbol, interval, from, to));
}

/*
 * backfill_derivative queues an open-interest or funding job: (symbol,
 * from_time, to_time, exchange).
 */
static int64
backfill_derivative(FunctionCallInfo fcinfo, const char *kind)
{
	char	   *symbol;
	char	   *exchange;
	TimestampTz from,
				to;

	REQUIRE_ARG(0, "symbol");
	REQUIRE_ARG(1, "from_time");
	REQUIRE_ARG(2, "to_time");
	REQUIRE_ARG(3, "exchange");
	symbol = text_to_cstring(PG_GETARG_TEXT_PP(0));
	from = PG_GETARG_TIMESTAMPTZ(1);
	to = PG_GETARG_TIMESTAMPTZ(2);
	exchange = text_to_cstring(PG_GETARG_TEXT_PP(3));
	md_check_exchange(exchange);
	md_check_symbol(symbol);
	to = check_range(from, to, md_present_end_ms(NULL));
	return queue_job(kind, exchange, symbol, NULL, from, to);
}

/*
 * mdfeed_backfill_open_interest queues a job that brings a symbol's hourly
 * open interest in [from_time, to_time) into mdfeed.open_interest_1h.
 */
Datum
mdfeed_backfill_open_interest(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(backfill_derivative(fcinfo, "open_interest"));
}

/*
 * mdfeed_backfill_funding queues a job that brings a symbol's funding events
 * in [from_time, to_time) into mdfeed.funding_rates.
 */
Datum
mdfeed_backfill_funding(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(backfill_derivative(fcinfo, "funding"));
}

/*
 * state_is_final says whether a job in this state has ended.
 */
static bool
state_is_final(const char *state)
{
	return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
		strcmp(state, "canceled") == 0;
}

/*
 * read_job_state returns the job's state, and whether this very transaction
 * queued it (the workers cannot see it before we commit).
 */
static char *
read_job_state(int64 id, bool *ours)
{
	MdOwnerContext ctx;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	char	   *state = NULL;
	bool		isnull;
	int			ret;

	md_begin_as_owner(&ctx);
	ret = SPI_execute_with_args("SELECT state, xmin OPERATOR(pg_catalog.=) "
								"pg_catalog.xid(pg_catalog.pg_current_xact_id_if_assigned()) "
								"FROM mdfeed.jobs WHERE id OPERATOR(pg_catalog.=) $1",
								1, types, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read job " INT64_FORMAT, id);
	if (SPI_processed == 1)
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		state = MemoryContextStrdup(TopTransactionContext, s);
		*ours = !isnull && DatumGetBool(d);
	}
	md_end_as_owner(&ctx);
	return state;
}

/*
 * mdfeed_wait waits until a job ends and returns its final state, or returns
 * its current state when the timeout passes first.
 */
Datum
mdfeed_wait(PG_FUNCTION_ARGS)
{
	int64		id;
	double		timeout_s;
	TimestampTz deadline;
	char	   *state;
	bool		ours = false;

	REQUIRE_ARG(0, "job");
	REQUIRE_ARG(1, "timeout");
	id = PG_GETARG_INT64(0);
	timeout_s = DatumGetFloat8(DirectFunctionCall2(interval_part,
												   CStringGetTextDatum("epoch"),
												   PG_GETARG_DATUM(1)));
	if (timeout_s < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative"),
				 errhint("Give an interval such as '10 minutes'.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("mdfeed_wait cannot see job progress in a REPEATABLE READ or SERIALIZABLE transaction"),
				 errhint("Call it in a READ COMMITTED transaction, or outside an explicit transaction.")));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   (int64) Min(timeout_s * 1000.0, (double) PG_INT32_MAX * 1000.0));
	for (;;)
	{
		long		left;

		state = read_job_state(id, &ours);
		if (state == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("job " INT64_FORMAT " does not exist", id),
					 errhint("Job ids are in mdfeed.jobs.")));
		if (state_is_final(state))
			break;
		if (ours)
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("job " INT64_FORMAT " was queued by this transaction", id),
					 errhint("Commit the transaction that queued the job before waiting for it.")));
		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
			break;
		if (md_shared != NULL)
		{
			/* woken when any job ends; the timeout bounds a missed wakeup */
			ConditionVariablePrepareToSleep(&md_shared->job_cv);
			(void) ConditionVariableTimedSleep(&md_shared->job_cv, Min(left, 1000), MD_WAIT_EVENT);
			ConditionVariableCancelSleep();
		}
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(left, 200), MD_WAIT_EVENT);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
	PG_RETURN_TEXT_P(cstring_to_text(state));
}

/*
 * mdfeed_cancel cancels a queued or running job; the worker running it drops
 * the request in flight.  Returns false if the job had already ended.
 */
Datum
mdfeed_cancel(PG_FUNCTION_ARGS)
{
	int64		id;
	MdOwnerContext ctx;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	char	   *requested_by;
	char	   *caller;
	Oid			requester;
	bool		isnull;
	bool		canceled;
	int			ret;

	REQUIRE_ARG(0, "job");
	id = PG_GETARG_INT64(0);
	caller = GetUserNameFromId(GetUserId(), false);

	md_begin_as_owner(&ctx);
	values[0] = Int64GetDatum(id);
	ret = SPI_execute_with_args("SELECT requested_by, requester FROM mdfeed.jobs "
								"WHERE id OPERATOR(pg_catalog.=) $1",
								1, types, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read job " INT64_FORMAT, id);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job " INT64_FORMAT " does not exist", id),
				 errhint("Job ids are in mdfeed.jobs.")));
	requested_by = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

	/*
	 * By the role's OID, not its name: a role dropped and created again
	 * under the same name is another role, and inherits nothing.  mdfeed's
	 * own jobs (no requester) are a superuser's to cancel.
	 */
	requester = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		requester = InvalidOid;
	if (!superuser_arg(ctx.save_userid) &&
		!(OidIsValid(requester) && has_privs_of_role(ctx.save_userid, requester)))
	{
		bool		gone = OidIsValid(requester) && GetUserNameFromId(requester, true) == NULL;

		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to cancel job " INT64_FORMAT, id),
				 gone ? errdetail("The job was queued by a role named \"%s\" that has since been dropped.",
								  requested_by)
				 : errdetail("The job was queued by role \"%s\".", requested_by),
				 errhint("Only members of the role that queued a job, and superusers, can cancel it.")));
	}

	values[1] = CStringGetTextDatum(psprintf("canceled by %s", caller));
	ret = SPI_execute_with_args("UPDATE mdfeed.jobs SET state = 'canceled', error = $2, "
								"finished_at = pg_catalog.now(), updated_at = pg_catalog.now() "
								"WHERE id OPERATOR(pg_catalog.=) $1 "
								"AND state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[])",
								2, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not cancel job " INT64_FORMAT, id);
	canceled = SPI_processed == 1;
	md_end_as_owner(&ctx);

	if (canceled && md_shared != NULL)
	{
		Latch	   *latches[MD_MAX_WORKERS];
		int			n = 0;

		/* tell the worker now, so it drops the request in flight */
		SpinLockAcquire(&md_shared->mutex);
		for (int i = 0; i < MD_MAX_WORKERS; i++)
		{
			MdWorkerSlot *slot = &md_shared->slots[i];

			if (slot->pid != 0 && slot->job == id && slot->latch != NULL)
			{
				slot->cancel_job = id;
				latches[n++] = slot->latch;
			}
		}
		SpinLockRelease(&md_shared->mutex);
		for (int i = 0; i < n; i++)
			SetLatch(latches[i]);
		md_at_commit(MD_BROADCAST_JOBS);
	}
	PG_RETURN_BOOL(canceled);
}

/*
 * mdfeed_wake_workers wakes the stream and watch workers when the calling
 * transaction commits, so list changes take effect at once.
 */
Datum
mdfeed_wake_workers(PG_FUNCTION_ARGS)
{
	md_at_commit(MD_WAKE_LISTS | MD_WAKE_BACKFILL);
	PG_RETURN_VOID();
}
