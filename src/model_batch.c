/*-------------------------------------------------------------------------
 *
 * model_batch.c
 *	  One batch of runs of one (model, symbol): lock its progress, load the
 *	  candles, run the model on each complete window in order, and commit
 *	  the outputs with the progress.
 *
 * A batch is one transaction that locks the pair's progress row, loads
 * the candles, runs the model on each window in turn (model_run.c: each
 * run a subtransaction, as the model's owner), writes the outputs, moves
 * next_open on and commits: outputs and progress commit together, so a
 * crash or a SIGKILL loses a batch, never half of one, and the batch runs
 * again from where the last commit left it.  Nothing runs twice and nothing
 * is skipped; a run's window is read from committed closed candles only
 * (closed = true), so a forming candle is never seen, and the window ends
 * at the candle it is for, so no later one is either.
 *
 * A window is the window_size closed candles ending at the candle run on,
 * and it is complete when the candles between its first and its last are
 * all stored, except where the exchange confirmed it has none
 * (mdfeed.exchange_gaps, a maintenance): those are passed over, not waited
 * for.  When something is missing the pair waits, and if it is still
 * missing some time after it closed, the batch queues a backfill of it on
 * behalf of the model's owner (a user job, under that role's share of the
 * workers and its job cap), and the pair runs once it has arrived.  A
 * candle with fewer than window_size candles before it, where the exchange
 * confirmed there are none earlier (before the listing), gets no run.
 *
 * A pending rerun (a repaired candle, mdfeed_rerun_model) goes first, over
 * candles already run on; then the new ones.  A batch stops after
 * BATCH_RUNS runs or BATCH_MS, at a failure (the pair retries that candle
 * after a backoff, and the model is paused after mdfeed.model_max_failures
 * in a row), or where a window is not complete.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common.h"
#include "exchange.h"
#include "latency.h"
#include "model_batch.h"
#include "model_run.h"
#include "shard.h"
#include "shmem.h"
#include "store.h"
#include "workers.h"

/* a batch: at most this many runs, or this long */
#define BATCH_RUNS 2000
#define BATCH_MS 200
/* runs that share a subtransaction */
#define GROUP_RUNS 64
/* a pair waiting for history looks again after this */
#define HISTORY_RECHECK_MS 2000
/* a backfill that ended without bringing what was missing is asked again after this */
#define REQUEUE_AFTER_MS 60000
/* failed runs are retried after 1 s, 2 s, 4 s ... at most this */
#define RETRY_MAX_MS 60000

static MdLatencyRing live_latency;
static int64 total_runs = 0;

/* a range the exchange confirmed empty */
typedef struct Gap
{
	int64		from_ms;
	int64		to_ms;
} Gap;

/* everything a batch of one pair knows and decides */
typedef struct Batch
{
	/* the model */
	const char *model;
	const char *symbol;
	const MdExchange *ex;
	const MdInterval *iv;
	int			window;
	Oid			fn;
	Oid			owner;
	char	   *owner_name;

	/* its progress, as locked, and as the batch leaves it */
	int64		next_open;
	bool		rerun;
	int64		rerun_from;
	int64		rerun_to;
	int			attempts;
	int64		retry_at_ms;	/* -1: none */
	char	   *waiting_for;
	int64		backfill_job;	/* 0: none */

	/* the candles: nprev before the first slot, then the batch's own */
	Datum	   *candle;
	int64	   *open_ms;
	int		   *bad_links;		/* bad_links[i]: holes among links 1..i */
	int			nrows;
	int			nprev;
	bool		more_rows;		/* the load stopped at its limit */
	Gap		   *gaps;
	int			ngaps;
	int64		onboard_ms;		/* -1: unknown */

	/* the runs */
	MdModelCall call;
	int			nout;
	Datum	   *out_time;
	Datum	   *out_value;
	bool	   *out_null;
	Datum	   *out_at;
	int64		first_out_ms;
	int64		last_out_ms;
	int			failures;
	char	   *error;
	bool		pause;
	bool		more;			/* stopped at the batch's limit */
	/* the group of runs sharing a subtransaction (model_run.c) */
	int			group_n;		/* runs in it so far */
	int			group_nout;		/* outputs before it */
	int64		group_s;		/* its first slot, and row */
	int			group_j;
	int64		alone_until;	/* runs up to this slot go one a group */
	MemoryContext cxt;
	MemoryContext run_cxt;
} Batch;

/* plans by exchange and interval */
static SPIPlanPtr prev_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];
static SPIPlanPtr cur_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];

/*
 * md_model_exec_plan runs a kept plan with arguments, and raises an error
 * unless it returns the kind of result expected.
 */
void
md_model_exec_plan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, int expect,
		  const char *what)
{
	int			ret = SPI_execute_plan(plan, values, nulls, read_only, 0);

	if (ret != expect)
		elog(ERROR, "%s failed: %s", what, SPI_result_code_string(ret));
}

/*
 * md_model_exec runs a query with arguments through a plan kept for the
 * life of the process, one per call site (the caller's static).
 */
void
md_model_exec(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
		 const char *nulls, bool read_only, int expect)
{
	if (*plan == NULL)
		*plan = md_keep_plan(sql, nargs, types);
	md_model_exec_plan(*plan, values, nulls, read_only, expect, sql);
}

/*
 * prev_open is the open time of the candle before the one opening at t.
 */
static inline int64
prev_open(const MdInterval *iv, int64 t)
{
	return md_interval_floor(iv, t - 1);
}

/*
 * md_model_first_open is the first candle a model runs on: the one opening
 * at or after from_ms, or, without one (from_ms < 0), the one forming now,
 * which closes next.
 */
int64
md_model_first_open(const MdInterval *iv, int64 from_ms)
{
	int64		f;

	if (from_ms < 0)
		return md_interval_floor(iv, md_now_ms());
	f = md_interval_floor(iv, from_ms);
	return f == from_ms ? f : md_interval_next(iv, f);
}

/*
 * md_model_add_progress gives every symbol a model runs on (its list, or
 * the tracked symbols of its exchange) a progress row, starting at the
 * model's first candle; a model of NULL means every model.  Returns the
 * rows added.  Runs in the caller's transaction, with SPI connected.
 */
int
md_model_add_progress(const char *model)
{
	static SPIPlanPtr find = NULL;
	static SPIPlanPtr add = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char		nulls[1] = {' '};
	SPITupleTable *found;
	int			nfound;
	int			added = 0;

	if (model)
		values[0] = CStringGetTextDatum(model);
	else
		nulls[0] = 'n';
	md_model_exec(&find,
			 "SELECT m.name, m.\"interval\", m.from_time, s.symbol "
			 "FROM mdfeed.models m, LATERAL ("
			 "  SELECT u.symbol FROM pg_catalog.unnest(m.symbols) u(symbol) "
			 "  UNION SELECT t.symbol FROM mdfeed.tracked t "
			 "  WHERE m.symbols IS NULL AND t.exchange OPERATOR(pg_catalog.=) m.exchange "
			 "  AND " MD_SQL_MODEL_PAIR("t") ") s "
			 "WHERE ($1 IS NULL OR m.name OPERATOR(pg_catalog.=) $1) AND NOT EXISTS ("
			 "  SELECT 1 FROM mdfeed.model_progress p "
			 "  WHERE p.model OPERATOR(pg_catalog.=) m.name AND p.symbol OPERATOR(pg_catalog.=) s.symbol)",
			 1, types, values, nulls, false, SPI_OK_SELECT);
	found = SPI_tuptable;
	nfound = SPI_processed;
	for (int i = 0; i < nfound; i++)
	{
		Oid			atypes[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};
		Datum		avalues[3];
		bool		isnull;
		bool		from_null;
		char	   *ivname = SPI_getvalue(found->vals[i], found->tupdesc, 2);
		const MdInterval *iv = md_interval_lookup(ivname);
		Datum		from = SPI_getbinval(found->vals[i], found->tupdesc, 3, &from_null);

		if (iv == NULL)
			continue;
		avalues[0] = SPI_getbinval(found->vals[i], found->tupdesc, 1, &isnull);
		avalues[1] = SPI_getbinval(found->vals[i], found->tupdesc, 4, &isnull);
		avalues[2] = md_model_ts(md_model_first_open(iv, from_null ? -1 :
												  md_timestamptz_to_ms(DatumGetTimestampTz(from))));
		if (add == NULL)
			add = md_keep_plan("INSERT INTO mdfeed.model_progress (model, symbol, next_open) "
							   "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", 3, atypes);
		md_model_exec_plan(add, avalues, NULL, false, SPI_OK_INSERT, "adding model progress");
		added += SPI_processed;
	}
	return added;
}

/*
 * candle_select is the select list that makes an mdfeed.candle of a row of
 * the exchange's family, NULL where the family has no column.
 */
static char *
candle_select(const MdExchange *ex, const MdInterval *iv)
{
	bool		quote = (ex->candle_fields & (1u << MD_QUOTE_VOLUME)) != 0;

	return psprintf("SELECT ROW(open_time, close_time, open, high, low, close, volume, %s, %s)::mdfeed.candle, "
					"open_time FROM mdfeed.%s",
					quote ? "quote_volume" : "NULL::pg_catalog.numeric",
					ex->candle_trades ? "trades" : "NULL::pg_catalog.int8",
					md_candle_table(ex, iv));
}

/*
 * take_candles appends the rows of the last query (candle, open_time) to
 * the batch, in the order given, or reversed.
 */
static void
take_candles(Batch *b, bool reversed)
{
	int			n = SPI_processed;
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	for (int k = 0; k < n; k++)
	{
		int			r = reversed ? n - 1 - k : k;
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);

		/*
		 * A small composite comes back with a short varlena header;
		 * construct_array would replace such an element of the array it is
		 * given by an expanded copy, in the run's memory, which is reset
		 * after each run: keep them expanded from the start.
		 */
		b->candle[b->nrows] = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
		b->open_ms[b->nrows] = md_model_get_ms(r, 2, &isnull);
		b->nrows++;
	}
	MemoryContextSwitchTo(old);
}

/*
 * covered_until returns the end of the confirmed-empty range holding t, or
 * -1 if none does.  Confirmed ranges end at a candle's open time.
 */
static int64
covered_until(const Batch *b, int64 t)
{
	for (int i = 0; i < b->ngaps; i++)
		if (b->gaps[i].from_ms <= t && t < b->gaps[i].to_ms)
			return b->gaps[i].to_ms;
	return -1;
}

/*
 * range_confirmed_empty says whether every candle in [from, to) lies in a
 * range the exchange confirmed empty.
 */
static bool
range_confirmed_empty(const Batch *b, int64 from, int64 to)
{
	int64		t = from;

	while (t < to)
	{
		int64		until = covered_until(b, t);

		if (until <= t)
			return false;
		t = until;
	}
	return true;
}

/*
 * load_batch reads what the batch's runs need, each query with a snapshot
 * taken after the pair's progress row was locked (read_only false), so that
 * a candle rewritten before the lock is read as it is now, and one
 * rewritten after it is seen by the change consumer, which waits for the
 * lock (consume_changes): the window_size - 1 closed
 * candles before the first slot, the closed candles from it on (up to
 * `upto`, at most BATCH_RUNS), the ranges the exchange confirmed empty and
 * the symbol's listing date; and marks each link between two consecutive
 * rows that is a hole (candles missing that the exchange did not confirm
 * empty).
 */
static void
load_batch(Batch *b, int64 first, int64 upto)
{
	int			e = md_exchange_id(b->ex);
	int			v = b->iv - md_intervals;
	Oid			types[4] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};
	Datum		values[4];
	int			cap = (b->window - 1) + BATCH_RUNS;
	MemoryContext old;
	static SPIPlanPtr gaps_plan = NULL;
	static SPIPlanPtr onboard_plan = NULL;
	bool		isnull;

	old = MemoryContextSwitchTo(b->cxt);
	b->candle = palloc(sizeof(Datum) * cap);
	b->open_ms = palloc(sizeof(int64) * cap);
	b->bad_links = palloc0(sizeof(int) * cap);
	MemoryContextSwitchTo(old);
	b->nrows = 0;

	if (prev_plans[e][v] == NULL)
	{
		char	   *sel = candle_select(b->ex, b->iv);

		prev_plans[e][v] = md_keep_plan(psprintf("%s WHERE symbol = $1 AND closed AND open_time < $2 "
												 "ORDER BY open_time DESC LIMIT $4", sel),
										4, types);
		cur_plans[e][v] = md_keep_plan(psprintf("%s WHERE symbol = $1 AND closed AND open_time >= $2 "
												"AND open_time < $3 ORDER BY open_time LIMIT $4", sel),
									   4, types);
	}
	values[0] = CStringGetTextDatum(b->symbol);
	values[1] = md_model_ts(first);
	values[2] = md_model_ts(upto);
	values[3] = Int32GetDatum(b->window - 1);
	if (b->window > 1)
	{
		md_model_exec_plan(prev_plans[e][v], values, NULL, false, SPI_OK_SELECT, "loading a model's window");
		take_candles(b, true);
	}
	b->nprev = b->nrows;
	values[3] = Int32GetDatum(BATCH_RUNS);
	md_model_exec_plan(cur_plans[e][v], values, NULL, false, SPI_OK_SELECT, "loading candles for a model");
	b->more_rows = SPI_processed == BATCH_RUNS;
	take_candles(b, false);

	{
		Oid			gtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		gvalues[3];

		gvalues[0] = CStringGetTextDatum(b->ex->name);
		gvalues[1] = CStringGetTextDatum(b->symbol);
		gvalues[2] = CStringGetTextDatum(b->iv->name);
		md_model_exec(&gaps_plan,
				 "SELECT from_time, to_time FROM mdfeed.exchange_gaps "
				 "WHERE exchange = $1 AND symbol = $2 AND \"interval\" = $3 ORDER BY from_time",
				 3, gtypes, gvalues, NULL, false, SPI_OK_SELECT);
		b->ngaps = SPI_processed;
		b->gaps = MemoryContextAlloc(b->cxt, sizeof(Gap) * Max(b->ngaps, 1));
		for (int i = 0; i < b->ngaps; i++)
		{
			b->gaps[i].from_ms = md_model_get_ms(i, 1, &isnull);
			b->gaps[i].to_ms = md_model_get_ms(i, 2, &isnull);
		}
		md_model_exec(&onboard_plan,
				 "SELECT onboard_date FROM mdfeed.instruments WHERE exchange = $1 AND symbol = $2",
				 2, gtypes, gvalues, NULL, true, SPI_OK_SELECT);
		b->onboard_ms = SPI_processed == 1 ? md_model_get_ms(0, 1, &isnull) : -1;
	}

	for (int i = 1; i < b->nrows; i++)
	{
		int64		expected = md_interval_next(b->iv, b->open_ms[i - 1]);
		bool		hole = expected != b->open_ms[i] &&
			!range_confirmed_empty(b, expected, b->open_ms[i]);

		b->bad_links[i] = b->bad_links[i - 1] + (hole ? 1 : 0);
	}
}

/*
 * history_starts_at says whether the exchange has no candle before the
 * one opening at t: it confirmed the range before it empty, or listed the
 * symbol only then.
 */
static bool
history_starts_at(const Batch *b, int64 t)
{
	int64		before = prev_open(b->iv, t);

	if (b->onboard_ms >= 0 && before < md_interval_floor(b->iv, b->onboard_ms))
		return true;
	return covered_until(b, before) > before;
}

/*
 * wait_for sets why the pair does not go on, and when to look again.
 */
static void
wait_for(Batch *b, int64 recheck_ms, const char *fmt,...) pg_attribute_printf(3, 4);

static void
wait_for(Batch *b, int64 recheck_ms, const char *fmt,...)
{
	va_list		args;
	char		buf[512];

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	b->waiting_for = MemoryContextStrdup(b->cxt, buf);
	b->retry_at_ms = recheck_ms > 0 ? md_now_ms() + recheck_ms : -1;
}

/*
 * job_covering returns an unfinished candles job of the pair's exchange,
 * symbol and interval whose range holds t, or 0.
 */
static int64
job_covering(const Batch *b, int64 t)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[4];
	bool		isnull;

	values[0] = CStringGetTextDatum(b->ex->name);
	values[1] = CStringGetTextDatum(b->symbol);
	values[2] = CStringGetTextDatum(b->iv->name);
	values[3] = md_model_ts(t);
	md_model_exec(&plan,
			 "SELECT id FROM mdfeed.jobs WHERE kind = 'candles' AND exchange = $1 AND symbol = $2 "
			 "AND \"interval\" = $3 AND state IN ('queued', 'running') "
			 "AND from_time <= $4 AND to_time > $4 ORDER BY id LIMIT 1",
			 4, types, values, NULL, true, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * recently_ended says whether the pair's last backfill covered t and ended
 * less than REQUEUE_AFTER_MS ago without bringing it: asking again at once
 * would only loop.  A job that covered other candles does not count.
 */
static bool
recently_ended(const Batch *b, int64 t)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {INT8OID, INT4OID, TIMESTAMPTZOID};
	Datum		values[3];

	if (b->backfill_job == 0)
		return false;
	values[0] = Int64GetDatum(b->backfill_job);
	values[1] = Int32GetDatum(REQUEUE_AFTER_MS);
	values[2] = md_model_ts(t);
	md_model_exec(&plan,
			 "SELECT 1 FROM mdfeed.jobs WHERE id = $1 AND from_time <= $3 AND to_time > $3 "
			 "AND finished_at > now() - $2 * interval '1 millisecond'",
			 3, types, values, NULL, true, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * request_history makes sure the candles in [from, to) are on their way:
 * a job that covers from is waited for; otherwise a backfill is queued for
 * the model's owner, as mdfeed_backfill would queue it (under the role's
 * cap and share), unless the last one ended too recently.
 */
static void
request_history(Batch *b, int64 from, int64 to)
{
	static SPIPlanPtr count_plan = NULL;
	static SPIPlanPtr queue_plan = NULL;
	char		when[32];
	int64		job;
	bool		isnull;

	/* our own writes are not the model's: they must not go with a group */
	md_model_group_end(&b->call);
	from = Max(from, 0);
	to = Min(to, md_present_end_ms(b->iv));
	md_utc_string(from, when, sizeof(when));
	if (from >= to)
	{
		wait_for(b, HISTORY_RECHECK_MS, "the candle of %s", when);
		return;
	}
	if (md_replica_mode())
	{
		/* an analytics server fetches nothing: the shards' data replicates */
		wait_for(b, HISTORY_RECHECK_MS, "candles from %s (from the shards, by replication)", when);
		return;
	}
	job = job_covering(b, from);
	if (job != 0)
	{
		if (b->backfill_job != job && b->backfill_job == 0)
			b->backfill_job = job;
		wait_for(b, HISTORY_RECHECK_MS, "candles from %s (job " INT64_FORMAT ")", when, job);
		return;
	}
	if (recently_ended(b, from))
	{
		wait_for(b, HISTORY_RECHECK_MS,
				 "candles from %s (job " INT64_FORMAT " ended without them; asking again soon)",
				 when, b->backfill_job);
		return;
	}
	{
		Oid			types[1] = {OIDOID};
		Datum		values[1] = {ObjectIdGetDatum(b->owner)};

		md_model_exec(&count_plan,
				 "SELECT pg_catalog.count(*) FROM mdfeed.jobs WHERE requester = $1 "
				 "AND state IN ('queued', 'running')",
				 1, types, values, NULL, true, SPI_OK_SELECT);
		if (mdfeed_max_queued_jobs_per_role > 0 &&
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) >=
			mdfeed_max_queued_jobs_per_role)
		{
			wait_for(b, HISTORY_RECHECK_MS * 5,
					 "candles from %s (role \"%s\" has as many unfinished jobs as mdfeed.max_queued_jobs_per_role allows)",
					 when, b->owner_name);
			return;
		}
	}
	{
		Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		NAMEOID, OIDOID, TEXTOID};
		Datum		values[8];

		values[0] = CStringGetTextDatum(b->ex->name);
		values[1] = CStringGetTextDatum(b->symbol);
		values[2] = CStringGetTextDatum(b->iv->name);
		values[3] = md_model_ts(from);
		values[4] = md_model_ts(to);
		values[5] = DirectFunctionCall1(namein, CStringGetDatum(b->owner_name));
		values[6] = ObjectIdGetDatum(b->owner);
		values[7] = CStringGetTextDatum(psprintf("history for model %s", b->model));
		md_model_exec(&queue_plan,
				 "INSERT INTO mdfeed.jobs (kind, exchange, symbol, \"interval\", from_time, to_time, "
				 "requested_by, requester, detail) VALUES ('candles', $1, $2, $3, $4, $5, $6, $7, $8) "
				 "RETURNING id",
				 8, types, values, NULL, false, SPI_OK_INSERT_RETURNING);
		job = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	b->backfill_job = job;
	md_at_commit(MD_WAKE_BACKFILL);
	wait_for(b, HISTORY_RECHECK_MS, "candles from %s (job " INT64_FORMAT ")", when, job);
}

/*
 * window_start is the open time window_size - 1 candles before t.
 */
static int64
window_start(const MdInterval *iv, int64 t, int window)
{
	if (iv->ms != 0)
		return t - (int64) (window - 1) * iv->ms;
	for (int i = 1; i < window; i++)
		t = prev_open(iv, t);
	return t;
}

/* what run_one did */
typedef enum RunResult
{
	RUN_OK,
	RUN_FAILED,					/* the run failed: the pair stops there */
	RUN_AGAIN					/* a run failed and took its group with it:
								 * go back to the group's first slot */
} RunResult;

/*
 * record_failure notes a failed run on the candle opening at s: the error
 * with the candle, the retry backoff, and the pause after
 * mdfeed.model_max_failures in a row.
 */
static void
record_failure(Batch *b, int64 s, ErrorData *error)
{
	char		when[32];

	md_utc_string(s, when, sizeof(when));
	b->failures++;
	b->attempts++;
	b->error = MemoryContextStrdup(b->cxt,
								   psprintf("%s %s %s: %s", b->symbol, b->iv->name, when,
											error->message));
	b->retry_at_ms = md_now_ms() +
		Min((int64) 1000 << Min(b->attempts - 1, 16), RETRY_MAX_MS);
	b->waiting_for = psprintf("a retry of the failed run on %s", when);
	if (b->attempts >= mdfeed_model_max_failures)
	{
		b->pause = true;
		ereport(WARNING,
				(errcode(error->sqlerrcode),
				 errmsg("mdfeed paused model \"%s\" after %d failed runs in a row on %s %s %s",
						b->model, b->attempts, b->symbol, b->iv->name, when),
				 errdetail("The last error was: %s", error->message),
				 errhint("Fix the model, then run SELECT mdfeed_resume_model('%s').", b->model)));
	}
}

/*
 * run_one runs the model on the window ending at row j, the candle opening
 * at s, in the current group of runs (opening one if needed), and keeps
 * the output.  Up to GROUP_RUNS runs share a group; after a failure that
 * took a group's earlier runs with it, those are run again one a group,
 * up to the failed one, which then fails alone and is recorded.
 */
static RunResult
run_one(Batch *b, int j, int64 s)
{
	Datum		result;
	bool		isnull;
	ErrorData  *error;
	MemoryContext old;
	bool		ok;

	if (!b->call.in_group)
	{
		md_model_group_begin(&b->call);
		b->group_n = 0;
		b->group_nout = b->nout;
		b->group_s = s;
		b->group_j = j;
	}
	MemoryContextReset(b->run_cxt);
	old = MemoryContextSwitchTo(b->run_cxt);
	ok = md_model_group_run(&b->call, &b->candle[j - b->window + 1], b->window, b->cxt,
							&result, &isnull, &error);
	MemoryContextSwitchTo(old);
	if (!ok)
	{
		if (b->group_n > 0)
		{
			/* the group is gone, and the outputs of its runs with it */
			b->nout = b->group_nout;
			b->alone_until = s;
			return RUN_AGAIN;
		}
		record_failure(b, s, error);
		return RUN_FAILED;
	}
	b->out_time[b->nout] = md_model_ts(s);
	b->out_value[b->nout] = result;
	b->out_null[b->nout] = isnull;
	b->out_at[b->nout] = TimestampTzGetDatum(GetCurrentTimestamp());
	b->nout++;
	b->attempts = 0;
	b->retry_at_ms = -1;
	b->group_n++;
	if (b->group_n >= GROUP_RUNS || s <= b->alone_until)
		md_model_group_end(&b->call);
	return RUN_OK;
}

/*
 * walk runs the model on each slot from s on (to end, exclusive)
 * whose window is complete, and stops where one is not, at a failure, or
 * at the batch's limits; it returns the first slot not done.
 */
static int64
walk(Batch *b, int64 s, int64 end)
{
	int			j = b->nprev;
	int			runs = 0;
	int64		started = md_now_ms();

	for (;;)
	{
		int64		until;

		if (s >= end)
			break;
		/* the limits wait while a failed group's runs are done again */
		if (s > b->alone_until &&
			(runs >= BATCH_RUNS || md_now_ms() - started >= BATCH_MS))
		{
			b->more = true;
			break;
		}
		CHECK_FOR_INTERRUPTS();
		while (j < b->nrows && b->open_ms[j] < s)
			j++;
		if (j < b->nrows && b->open_ms[j] == s)
		{
			if (j + 1 < b->window)
			{
				/* fewer than window_size candles up to s */
				if (history_starts_at(b, b->open_ms[0]))
				{
					s = md_interval_next(b->iv, s);
					j++;
					continue;
				}
				request_history(b, window_start(b->iv, s, b->window), b->open_ms[0]);
				break;
			}
			if (b->bad_links[j] - b->bad_links[j - b->window + 1] > 0)
			{
				int			k = j - b->window + 2;

				while (b->bad_links[k] == b->bad_links[k - 1])
					k++;
				request_history(b, md_interval_next(b->iv, b->open_ms[k - 1]), b->open_ms[k]);
				break;
			}
			switch (run_one(b, j, s))
			{
				case RUN_OK:
					break;
				case RUN_FAILED:
					goto done;
				case RUN_AGAIN:
					s = b->group_s;
					j = b->group_j;
					continue;
			}
			runs++;
			s = md_interval_next(b->iv, s);
			j++;
			continue;
		}
		/* nothing stored for s */
		until = covered_until(b, s);
		if (until > s)
		{
			s = md_model_first_open(b->iv, until);
			continue;
		}
		if (j < b->nrows)
		{
			request_history(b, s, b->open_ms[j]);
			break;
		}
		if (b->more_rows)
		{
			b->more = true;
			break;
		}
		if (md_interval_next(b->iv, s) + MD_MODEL_HOLE_GRACE_MS > md_now_ms())
		{
			char		when[32];

			md_utc_string(s, when, sizeof(when));
			wait_for(b, -1, "the close of %s", when);
			break;
		}
		request_history(b, s, md_present_end_ms(b->iv));
		break;
	}
done:
	md_model_group_end(&b->call);
	return s;
}

/*
 * lock_pair reads the pair's model and progress, locking the progress row
 * (the SQL functions wait for the batch) and the model's key (it cannot
 * be dropped under the batch).  Returns false if the pair is gone or its
 * model is not active.
 */
static bool
lock_pair(Batch *b, const MdDuePair *p)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	char	   *exchange;
	char	   *interval;

	values[0] = CStringGetTextDatum(p->model);
	values[1] = CStringGetTextDatum(p->symbol);
	md_model_exec(&plan,
			 "SELECT m.exchange, m.\"interval\", m.window_size, "
			 "pg_catalog.to_regprocedure(m.function)::pg_catalog.oid, m.owner::pg_catalog.oid, "
			 "p.next_open, p.rerun_from, p.rerun_to, p.attempts, p.backfill_job, m.function, "
			 "m.function_owner::pg_catalog.oid "
			 "FROM mdfeed.models m JOIN mdfeed.model_progress p ON p.model = m.name "
			 "WHERE m.name = $1 AND p.symbol = $2 AND m.state = 'active' "
			 "FOR KEY SHARE OF m FOR UPDATE OF p",
			 2, types, values, NULL, false, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	exchange = SPI_getvalue(tup, desc, 1);
	interval = SPI_getvalue(tup, desc, 2);
	b->ex = md_exchange_lookup(exchange);
	b->iv = b->ex ? md_exchange_interval(b->ex, interval) : NULL;
	b->window = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	d = SPI_getbinval(tup, desc, 4, &isnull);
	b->fn = isnull ? InvalidOid : DatumGetObjectId(d);
	b->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
	b->next_open = md_model_get_ms(0, 6, &isnull);
	b->rerun_from = md_model_get_ms(0, 7, &isnull);
	b->rerun = !isnull;
	b->rerun_to = md_model_get_ms(0, 8, &isnull);
	b->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
	d = SPI_getbinval(tup, desc, 10, &isnull);
	b->backfill_job = isnull ? 0 : DatumGetInt64(d);
	b->waiting_for = NULL;
	b->retry_at_ms = -1;
	if (!OidIsValid(b->fn))
		b->error = psprintf("function %s does not exist", SPI_getvalue(tup, desc, 11));
	else if (md_function_owner(b->fn) !=
			 DatumGetObjectId(SPI_getbinval(tup, desc, 12, &isnull)))
		b->error = psprintf("function %s is not the one registered: another role owns it now",
							SPI_getvalue(tup, desc, 11));
	return true;
}

/*
 * model_problem says why the model cannot run at all now (its function or
 * its owner), or returns NULL.
 */
static char *
model_problem(Batch *b)
{
	char	   *hint;
	char	   *problem;

	if (b->error)
		return b->error;
	if (b->ex == NULL || b->iv == NULL)
		return pstrdup("its exchange or interval is not one this build of mdfeed offers");
	problem = md_model_function_problem(b->fn, &hint);
	if (problem == NULL)
		problem = md_model_owner_problem(b->owner, b->fn, b->ex, b->iv, &hint);
	return problem;
}

/*
 * save_outputs writes the batch's outputs, with what was computed before
 * for the same candles replaced (a rerun).
 */
static void
save_outputs(Batch *b)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[8] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZARRAYOID,
	JSONBARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		values[7];
	int			dims[1] = {b->nout};
	int			lbs[1] = {1};

	if (b->nout == 0)
		return;
	values[0] = CStringGetTextDatum(b->model);
	values[1] = CStringGetTextDatum(b->ex->name);
	values[2] = CStringGetTextDatum(b->symbol);
	values[3] = CStringGetTextDatum(b->iv->name);
	values[4] = PointerGetDatum(construct_array(b->out_time, b->nout, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[5] = PointerGetDatum(construct_md_array(b->out_value, b->out_null, 1, dims, lbs,
												   JSONBOID, -1, false, TYPALIGN_INT));
	values[6] = PointerGetDatum(construct_array(b->out_at, b->nout, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	md_model_exec(&plan,
			 "INSERT INTO mdfeed.model_outputs AS o (model, exchange, symbol, \"interval\", open_time, output, computed_at) "
			 "SELECT $1, $2, $3, $4, u.t, u.o, u.c FROM ROWS FROM (pg_catalog.unnest($5), pg_catalog.unnest($6), "
			 "pg_catalog.unnest($7)) AS u(t, o, c) "
			 "ON CONFLICT (model, exchange, symbol, \"interval\", open_time) "
			 "DO UPDATE SET output = excluded.output, computed_at = excluded.computed_at",
			 7, types, values, NULL, false, SPI_OK_INSERT);
}

/*
 * save_progress moves the pair's progress to where the batch left it, and
 * adds its runs and failures to the model's counters (pausing it after
 * too many failures in a row): the last statements before the commit, so
 * the model's row is locked for no longer than that.
 */
static void
save_progress(Batch *b, int64 next_open, int64 rerun_from)
{
	static SPIPlanPtr progress_plan = NULL;
	static SPIPlanPtr model_plan = NULL;
	Oid			ptypes[9] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INT4OID, TIMESTAMPTZOID, TEXTOID, INT8OID};
	Datum		pvalues[9];
	char		pnulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	Oid			mtypes[4] = {TEXTOID, INT8OID, INT8OID, TEXTOID};
	Datum		mvalues[5];
	char		mnulls[5] = {' ', ' ', ' ', ' ', ' '};

	pvalues[0] = CStringGetTextDatum(b->model);
	pvalues[1] = CStringGetTextDatum(b->symbol);
	pvalues[2] = md_model_ts(next_open);
	if (rerun_from >= 0)
	{
		pvalues[3] = md_model_ts(rerun_from);
		pvalues[4] = md_model_ts(b->rerun_to);
	}
	else
		pnulls[3] = pnulls[4] = 'n';
	pvalues[5] = Int32GetDatum(b->attempts);
	if (b->retry_at_ms >= 0)
		pvalues[6] = md_model_ts(b->retry_at_ms);
	else
		pnulls[6] = 'n';
	if (b->waiting_for)
		pvalues[7] = CStringGetTextDatum(b->waiting_for);
	else
		pnulls[7] = 'n';
	if (b->backfill_job != 0)
		pvalues[8] = Int64GetDatum(b->backfill_job);
	else
		pnulls[8] = 'n';
	md_model_exec(&progress_plan,
			 "UPDATE mdfeed.model_progress SET next_open = $3, rerun_from = $4, rerun_to = $5, "
			 "attempts = $6, retry_at = $7, waiting_for = $8, backfill_job = $9, updated_at = pg_catalog.now() "
			 "WHERE model = $1 AND symbol = $2",
			 9, ptypes, pvalues, pnulls, false, SPI_OK_UPDATE);

	if (b->nout == 0 && b->failures == 0)
		return;
	mvalues[0] = CStringGetTextDatum(b->model);
	mvalues[1] = Int64GetDatum(b->nout);
	mvalues[2] = Int64GetDatum(b->failures);
	if (b->error)
		mvalues[3] = CStringGetTextDatum(b->error);
	else
		mnulls[3] = 'n';
	mvalues[4] = BoolGetDatum(b->pause);
	{
		Oid			types5[5] = {mtypes[0], mtypes[1], mtypes[2], mtypes[3], BOOLOID};

		md_model_exec(&model_plan,
				 "UPDATE mdfeed.models SET runs = runs + $2, failures = failures + $3, "
				 "last_run_at = CASE WHEN $2 > 0 THEN pg_catalog.clock_timestamp() ELSE last_run_at END, "
				 "last_error = coalesce($4, last_error), "
				 "last_error_at = CASE WHEN $4 IS NULL THEN last_error_at ELSE pg_catalog.clock_timestamp() END, "
				 "state = CASE WHEN $5 THEN 'paused' ELSE state END, "
				 "paused_at = CASE WHEN $5 THEN pg_catalog.clock_timestamp() ELSE paused_at END "
				 "WHERE name = $1",
				 5, types5, mvalues, mnulls, false, SPI_OK_UPDATE);
	}
}

/*
 * notify_outputs sends NOTIFY mdfeed_models for the batch's outputs,
 * delivered with them at the commit: one per batch, naming the newest
 * candle and how many outputs it brought (1 for a live close).
 */
static void
notify_outputs(Batch *b)
{
	StringInfoData payload;
	char		when[32];
	char		first[32];

	if (b->nout == 0)
		return;
	md_utc_string(b->last_out_ms, when, sizeof(when));
	md_utc_string(b->first_out_ms, first, sizeof(first));
	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"model\":");
	escape_json(&payload, b->model);
	appendStringInfoString(&payload, ",\"exchange\":");
	escape_json(&payload, b->ex->name);
	appendStringInfoString(&payload, ",\"symbol\":");
	escape_json(&payload, b->symbol);
	appendStringInfo(&payload, ",\"interval\":\"%s\",\"open_time\":\"%s\",\"outputs\":%d,\"first_open_time\":\"%s\"}",
					 b->iv->name, when, b->nout, first);
	Async_Notify("mdfeed_models", payload.data);
}

/*
 * account_runs counts the batch's outputs, and the latency of those of
 * live candles (closed less than a minute before their run).
 */
static void
account_runs(Batch *b)
{
	total_runs += b->nout;
	if (b->nout == 0)
		return;
	b->first_out_ms = md_timestamptz_to_ms(DatumGetTimestampTz(b->out_time[0]));
	b->last_out_ms = md_timestamptz_to_ms(DatumGetTimestampTz(b->out_time[b->nout - 1]));
	if (b->rerun)
		return;
	for (int i = 0; i < b->nout; i++)
	{
		int64		closed_at = md_interval_next(b->iv, md_timestamptz_to_ms(DatumGetTimestampTz(b->out_time[i])));
		int64		ran_at = md_timestamptz_to_ms(DatumGetTimestampTz(b->out_at[i]));

		if (ran_at - closed_at < 60000)
			md_latency_record(&live_latency, ran_at - closed_at);
	}
}

/*
 * md_model_run_batch runs one batch of a pair in its own transaction.  Returns
 * whether the pair has more to do at once.
 */
bool
md_model_run_batch(const MdDuePair *p, MemoryContext cxt)
{
	Batch		b;
	char	   *problem;
	int64		first;
	int64		end;
	int64		upto;
	int64		reached;

	memset(&b, 0, sizeof(b));
	b.model = p->model;
	b.symbol = p->symbol;
	b.cxt = AllocSetContextCreate(cxt, "mdfeed model batch", ALLOCSET_DEFAULT_SIZES);
	b.run_cxt = AllocSetContextCreate(b.cxt, "mdfeed model run", ALLOCSET_DEFAULT_SIZES);

	md_begin_tx();
	if (!lock_pair(&b, p))
	{
		md_commit_tx();
		MemoryContextDelete(b.cxt);
		return false;
	}
	problem = model_problem(&b);
	if (problem != NULL)
	{
		/* nothing can run: pause the model, with the reason */
		b.error = psprintf("%s: %s", b.symbol, problem);
		b.failures = 1;
		b.pause = true;
		ereport(WARNING,
				(errmsg("mdfeed paused model \"%s\": %s", b.model, problem),
				 errhint("Fix it, then run SELECT mdfeed_resume_model('%s').", b.model)));
		save_progress(&b, b.next_open, b.rerun ? b.rerun_from : -1);
		md_commit_tx();
		MemoryContextDelete(b.cxt);
		return false;
	}
	b.owner_name = GetUserNameFromId(b.owner, false);
	md_model_call_init(&b.call, b.fn, b.owner, b.symbol, b.iv->name, b.cxt);
	b.out_time = MemoryContextAlloc(b.cxt, sizeof(Datum) * BATCH_RUNS);
	b.out_value = MemoryContextAlloc(b.cxt, sizeof(Datum) * BATCH_RUNS);
	b.out_null = MemoryContextAlloc(b.cxt, sizeof(bool) * BATCH_RUNS);
	b.out_at = MemoryContextAlloc(b.cxt, sizeof(Datum) * BATCH_RUNS);

	/* a rerun of candles already run on goes first */
	if (b.rerun && b.rerun_from < b.next_open)
	{
		first = md_model_first_open(b.iv, b.rerun_from);
		end = Min(b.rerun_to, b.next_open);
		upto = end;
	}
	else
	{
		b.rerun = false;
		first = b.next_open;
		end = MD_MAX_TIME_MS;
		upto = md_present_end_ms(b.iv);
	}
	load_batch(&b, first, upto);
	b.alone_until = -1;
	reached = walk(&b, first, end);
	account_runs(&b);

	md_model_session_reset();
	save_outputs(&b);
	if (b.rerun)
		save_progress(&b, b.next_open, reached >= end ? -1 : reached);
	else
		save_progress(&b, reached, -1);
	notify_outputs(&b);
	md_commit_tx();
	MemoryContextDelete(b.cxt);
	/* a finished rerun goes on with the new candles at once */
	return b.more || (b.rerun && reached >= end);
}

/*
 * md_model_stats gives the runs this process made and the p50 and p99 of
 * the close-to-output latency of its live runs (-1 without any).
 */
void
md_model_stats(int64 *runs, int64 *p50, int64 *p99)
{
	*runs = total_runs;
	md_latency_percentiles(&live_latency, p50, p99);
}
