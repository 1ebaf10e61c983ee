/*-------------------------------------------------------------------------
 *
 * sqlapi.c
 *	  The SQL-callable functions: queue, wait for and cancel jobs, show the
 *	  workers, and run the exchange parsers on text.
 *
 * Users are granted EXECUTE on these functions, not rights on mdfeed.jobs:
 * the functions write the job table as the extension's owner, after
 * validating everything the caller gave them, and record who asked.
 * Workers are woken when the transaction that queued a job commits, not
 * before, so they never look for a row they cannot see yet.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "common.h"
#include "exchange.h"
#include "decimal.h"
#include "shmem.h"
#include "store.h"
#include "instruments.h"

PG_FUNCTION_INFO_V1(mdfeed_backfill);
PG_FUNCTION_INFO_V1(mdfeed_wait);
PG_FUNCTION_INFO_V1(mdfeed_cancel);
PG_FUNCTION_INFO_V1(mdfeed_workers);
PG_FUNCTION_INFO_V1(mdfeed_parse_binance_klines);
PG_FUNCTION_INFO_V1(mdfeed_parse_binance_stream);
PG_FUNCTION_INFO_V1(mdfeed_ingest_binance_klines);
PG_FUNCTION_INFO_V1(mdfeed_interval_table);
PG_FUNCTION_INFO_V1(mdfeed_interval_step);
PG_FUNCTION_INFO_V1(mdfeed_interval_floor);
PG_FUNCTION_INFO_V1(mdfeed_check_symbol);
PG_FUNCTION_INFO_V1(mdfeed_check_exchange);
PG_FUNCTION_INFO_V1(mdfeed_refresh_instruments);
PG_FUNCTION_INFO_V1(mdfeed_wake_workers);
PG_FUNCTION_INFO_V1(mdfeed_backfill_open_interest);
PG_FUNCTION_INFO_V1(mdfeed_backfill_funding);
PG_FUNCTION_INFO_V1(mdfeed_fetch_tickers);

static Datum numeric_datum(const char *s);

/* things to do when the current transaction commits */
#define WAKE_BACKFILL	0x01
#define WAKE_LISTS		0x02	/* the stream and watch workers */
#define BROADCAST_JOBS	0x04
static int	at_commit_flags = 0;
static bool xact_callback_registered = false;

static void
md_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT)
	{
		if (at_commit_flags & WAKE_BACKFILL)
			md_wake_role(MD_ROLE_BACKFILL);
		if ((at_commit_flags & WAKE_LISTS) && md_shared != NULL)
		{
			SpinLockAcquire(&md_shared->mutex);
			md_shared->lists_version++;
			SpinLockRelease(&md_shared->mutex);
			md_wake_role(MD_ROLE_STREAM);
			md_wake_role(MD_ROLE_WATCH);
		}
		if (at_commit_flags & BROADCAST_JOBS)
			md_broadcast_job_end();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
		at_commit_flags = 0;
}

static void
at_commit(int flags)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(md_xact_callback, NULL);
		xact_callback_registered = true;
	}
	at_commit_flags |= flags;
}

#define REQUIRE_ARG(n, name) \
	do { \
		if (PG_ARGISNULL(n)) \
			ereport(ERROR, \
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), \
					 errmsg("%s must not be null", (name)))); \
	} while (0)

/*
 * md_check_symbol rejects a malformed symbol, suggesting the upper-case
 * spelling when that would be valid.
 */
static void
md_check_symbol(const char *symbol)
{
	char	   *upper;

	if (md_valid_symbol(symbol))
		return;
	upper = asc_toupper(symbol, strlen(symbol));
	if (md_valid_symbol(upper))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid symbol \"%s\"", symbol),
				 errhint("Symbols are written in upper case, as the exchange lists them: \"%s\".",
						 upper)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid symbol \"%s\"", symbol),
			 errhint("A symbol is 1 to 40 upper-case letters, digits, '_' or '-', such as BTCUSDT.")));
}

static const MdInterval *
md_check_interval(const char *name)
{
	const MdInterval *iv = md_interval_lookup(name);

	if (iv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid interval \"%s\"", name),
				 errhint("Valid intervals are %s (1m is a minute, 1M a month).",
						 md_interval_names())));
	return iv;
}

static const MdExchange *
md_check_exchange(const char *name)
{
	const MdExchange *ex = md_exchange_lookup(name);

	if (ex == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown exchange \"%s\"", name),
				 errhint("Valid exchanges are: %s.", md_exchange_names())));
	return ex;
}

/*
 * md_check_database makes sure jobs are queued where the workers look.
 */
static void
md_check_database(void)
{
	char	   *here = get_database_name(MyDatabaseId);

	if (here == NULL || strcmp(here, mdfeed_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mdfeed's workers run in database \"%s\", not in \"%s\"",
						mdfeed_database, here ? here : "?"),
				 errhint("Connect to database \"%s\", or set mdfeed.database = '%s' in postgresql.conf and restart the server.",
						 mdfeed_database, here ? here : "?")));
}

/*
 * Run SPI as the extension's owner, so that callers need no rights on the
 * job table itself; the caller's identity is recorded explicitly.
 *
 * Code running with the owner's rights must not resolve a single name
 * through the caller's search_path: a caller who can create objects in any
 * schema could otherwise put an operator or function of its own in front
 * of pg_catalog's and have the owner run it.  So the search_path is
 * pg_catalog, pg_temp for exactly as long as the owner's rights last (a
 * GUC nest level, undone at the end or by the error's abort), and every
 * query below schema-qualifies its operators and functions as well.
 */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec;
	int			guc_level;
} OwnerContext;

#define SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * begin_as_owner connects SPI, checks that the extension's SQL objects are
 * the version this library was built for, and switches to the extension's
 * owner with a safe search_path.
 */
static void
begin_as_owner(OwnerContext *ctx)
{
	bool		isnull;
	Oid			owner;
	char	   *version;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ctx->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", SAFE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ret = SPI_execute("SELECT extowner, extversion FROM pg_catalog.pg_extension "
					  "WHERE extname OPERATOR(pg_catalog.=) 'mdfeed'",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"mdfeed\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION mdfeed.")));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (version == NULL || strcmp(version, MD_SCHEMA_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"mdfeed\" is at version %s, but its library needs version %s",
						version ? version : "?", MD_SCHEMA_VERSION),
				 errhint("Run ALTER EXTENSION mdfeed UPDATE.")));
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec);
	SetUserIdAndSecContext(owner, ctx->save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
}

/*
 * end_as_owner gives the caller back its identity and search_path.
 */
static void
end_as_owner(OwnerContext *ctx)
{
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec);
	AtEOXact_GUC(true, ctx->guc_level);
	SPI_finish();
}

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
	OwnerContext ctx;
	Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, NAMEOID, OIDOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	int64		id;
	int			ret;

	md_require_workers();
	md_check_database();
	if (mdfeed_backfill_workers == 0)
		ereport(NOTICE,
				(errmsg("mdfeed.backfill_workers is 0: the job stays queued until workers are enabled")));

	begin_as_owner(&ctx);
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
	end_as_owner(&ctx);

	at_commit(WAKE_BACKFILL);
	return id;
}

/*
 * mdfeed_backfill queues a job that brings candles of one symbol and interval
 * in [from_time, to_time) into mdfeed.candles_<interval>.
 */
Datum
mdfeed_backfill(PG_FUNCTION_ARGS)
{
	char	   *symbol;
	char	   *interval;
	char	   *exchange;
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

	md_check_exchange(exchange);
	md_check_symbol(symbol);
	iv = md_check_interval(interval);
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

Datum
mdfeed_backfill_open_interest(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(backfill_derivative(fcinfo, "open_interest"));
}

Datum
mdfeed_backfill_funding(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(backfill_derivative(fcinfo, "funding"));
}

/*
 * mdfeed_fetch_tickers returns every symbol's 24 h quote volume, from one
 * request.
 */
Datum
mdfeed_fetch_tickers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	MdTicker   *t;
	int			n;
	char	   *err = NULL;

	md_require_workers();
	if (!md_fetch_tickers(ex, &t, &n, &err))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not fetch the tickers of %s: %s", ex->name, err),
				 errhint("Check mdfeed.binance_rest_url and the server's network access.")));
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {0};

		values[0] = CStringGetTextDatum(t[i].symbol);
		values[1] = numeric_datum(t[i].quote_volume);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

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
	OwnerContext ctx;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	char	   *state = NULL;
	bool		isnull;
	int			ret;

	begin_as_owner(&ctx);
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
	end_as_owner(&ctx);
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
	OwnerContext ctx;
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

	begin_as_owner(&ctx);
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
	end_as_owner(&ctx);

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
		at_commit(BROADCAST_JOBS);
	}
	PG_RETURN_BOOL(canceled);
}

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

static Datum
numeric_datum(const char *s)
{
	return DirectFunctionCall3(numeric_in, CStringGetDatum(s),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

static void
report_malformed(const char *what, const char *err, text *input, const char *hint)
{
	char	   *s = text_to_cstring(input);

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("malformed %s: %s", what, err),
			 errdetail("The input begins with: %.80s", s),
			 errhint("%s", hint)));
}

/*
 * mdfeed_parse_binance_klines parses a GET /fapi/v1/klines answer with the
 * workers' parser.
 */
Datum
mdfeed_parse_binance_klines(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *body = PG_GETARG_TEXT_PP(0);
	MdCandle   *rows;
	int			nrows;
	char	   *err;

	md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	if (!md_binance.parse_klines(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &rows, &nrows, &err))
		report_malformed("Binance klines answer", err, body,
						 "The text must be the JSON array GET /fapi/v1/klines returns.");
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nrows; i++)
	{
		Datum		values[11];
		bool		nulls[11] = {0};

		values[0] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].open_ms));
		values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].close_ms));
		for (int f = 0; f < MD_NUM_DECIMALS; f++)
			values[2 + f] = numeric_datum(rows[i].dec[f]);
		values[10] = Int64GetDatum(rows[i].trades);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * mdfeed_parse_binance_stream parses one market-stream frame with the
 * workers' parser: one row for a kline event, none for a reply or another
 * event, an error for anything malformed.
 */
Datum
mdfeed_parse_binance_stream(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *frame = PG_GETARG_TEXT_PP(0);
	MdStreamKline k;
	char	   *err = NULL;
	MdFrameKind kind;

	kind = md_binance.stream->frame(md_stream_session_new(&md_binance, CurrentMemoryContext),
									VARDATA_ANY(frame), VARSIZE_ANY_EXHDR(frame), &k, &err);
	if (kind == MD_FRAME_MALFORMED)
		report_malformed("Binance stream frame", err, frame,
						 "The text must be one frame of a Binance USD-M market stream.");
	InitMaterializedSRF(fcinfo, 0);
	if (kind == MD_FRAME_KLINE)
	{
		Datum		values[16];
		bool		nulls[16] = {0};

		nulls[0] = k.stream == NULL;
		values[0] = k.stream ? CStringGetTextDatum(k.stream) : (Datum) 0;
		values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(k.event_ms));
		values[2] = CStringGetTextDatum(k.symbol);
		values[3] = CStringGetTextDatum(k.iv->name);
		values[4] = TimestampTzGetDatum(md_ms_to_timestamptz(k.candle.open_ms));
		values[5] = TimestampTzGetDatum(md_ms_to_timestamptz(k.candle.close_ms));
		for (int f = 0; f < MD_NUM_DECIMALS; f++)
			values[6 + f] = numeric_datum(k.candle.dec[f]);
		values[14] = Int64GetDatum(k.candle.trades);
		values[15] = BoolGetDatum(k.candle.closed);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * mdfeed_ingest_binance_klines upserts a klines answer as the workers do;
 * candles closing before server_time are stored as closed.
 */
Datum
mdfeed_ingest_binance_klines(PG_FUNCTION_ARGS)
{
	char	   *symbol = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const MdInterval *iv = md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	text	   *body = PG_GETARG_TEXT_PP(2);
	int64		server_ms = md_timestamptz_to_ms(PG_GETARG_TIMESTAMPTZ(3));
	MdCandle   *rows;
	int			nrows;
	char	   *err;
	int64		written;

	md_check_symbol(symbol);
	if (!md_binance.parse_klines(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), &rows, &nrows, &err))
		report_malformed("Binance klines answer", err, body,
						 "The text must be the JSON array GET /fapi/v1/klines returns.");
	for (int i = 0; i < nrows; i++)
	{
		rows[i].symbol = symbol;
		rows[i].closed = rows[i].close_ms < server_ms;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	written = md_store_candles(iv, rows, nrows);
	SPI_finish();
	PG_RETURN_INT64(written);
}

Datum
mdfeed_interval_table(PG_FUNCTION_ARGS)
{
	const MdInterval *iv = md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_TEXT_P(cstring_to_text(iv->table));
}

Datum
mdfeed_interval_step(PG_FUNCTION_ARGS)
{
	const MdInterval *iv = md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	return DirectFunctionCall3(interval_in, CStringGetDatum(iv->pg_interval),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/*
 * mdfeed_interval_floor returns the open time of the candle containing ts.
 */
Datum
mdfeed_interval_floor(PG_FUNCTION_ARGS)
{
	const MdInterval *iv = md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(1);

	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMPTZ(ts);
	PG_RETURN_TIMESTAMPTZ(md_ms_to_timestamptz(md_interval_floor(iv, md_timestamptz_to_ms(ts))));
}

/*
 * mdfeed_check_symbol raises the error of a malformed symbol, or returns it.
 */
Datum
mdfeed_check_symbol(PG_FUNCTION_ARGS)
{
	text	   *t;

	REQUIRE_ARG(0, "symbol");
	t = PG_GETARG_TEXT_PP(0);
	md_check_symbol(text_to_cstring(t));
	PG_RETURN_TEXT_P(t);
}

/*
 * mdfeed_check_exchange raises the error of an unknown exchange, or returns
 * its name.
 */
Datum
mdfeed_check_exchange(PG_FUNCTION_ARGS)
{
	text	   *t;

	REQUIRE_ARG(0, "exchange");
	t = PG_GETARG_TEXT_PP(0);
	md_check_exchange(text_to_cstring(t));
	PG_RETURN_TEXT_P(t);
}

/*
 * mdfeed_refresh_instruments fetches the exchange's info now and stores its
 * instruments; returns how many it lists.
 */
Datum
mdfeed_refresh_instruments(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char	   *err = NULL;
	char	   *body;
	int			n;

	md_require_workers();
	body = md_fetch_exchange_info(ex, &err);
	if (body == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not fetch the instruments of %s: %s", ex->name, err),
				 errhint("Check mdfeed.binance_rest_url and the server's network access.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	n = md_store_instruments(ex, body, &err);
	SPI_finish();
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("malformed exchange info from %s: %s", ex->name, err),
				 errhint("Try again; if it persists, the exchange changed its format.")));
	PG_RETURN_INT32(n);
}

/*
 * mdfeed_wake_workers wakes the stream and watch workers when the calling
 * transaction commits, so list changes take effect at once.
 */
Datum
mdfeed_wake_workers(PG_FUNCTION_ARGS)
{
	at_commit(WAKE_LISTS | WAKE_BACKFILL);
	PG_RETURN_VOID();
}
