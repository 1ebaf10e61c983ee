/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  The backfill worker: takes jobs from mdfeed.jobs and pages through the
 *	  exchange's REST klines until the job's range is stored.
 *
 * Each page is one short transaction: the candles and the job's progress
 * commit together, and no transaction is open while the worker waits on the
 * network.  Before each request the worker asks the database what is still
 * missing, so whatever is already stored and closed is never downloaded
 * again, whether the job is new, resumed after a crash, or overlaps another.
 *
 * Failures are sorted by what they mean.  Transport errors, 5xx and
 * malformed or truncated answers are retried with capped exponential backoff
 * and jitter; 429 and 418 stop every worker for as long as the exchange asks
 * (budget.c); an exchange error body (bad symbol, say) fails the job with
 * the exchange's own message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "mdfeed.h"
#include "budget.h"
#include "exchange.h"
#include "gaps.h"
#include "http.h"
#include "jobs.h"
#include "rest.h"
#include "shmem.h"
#include "store.h"
#include "workers.h"
#include "backfill.h"

/* a candle is taken as final this long after its close time */
#define CLOSE_GRACE_MS 2000
/* a job waits for a forming candle of its range that closes this soon */
#define SETTLE_AHEAD_MS 3000
#define BACKOFF_BASE_MS 250
#define BACKOFF_CAP_MS 30000
#define SERVER_TIME_MAX_AGE_MS (10 * 60 * 1000)
#define INFO_MAX_AGE_MS (60 * 60 * 1000)


/* the job being worked on, for the error handler */
static MdJob current_job;
/* the job this worker last yielded: the next claim passes it over once */
static int64 yielded_job = 0;

static int64 server_offset_ms = 0;
static int64 server_time_at = 0;
static int64 info_at = 0;

bool
md_job_cancel_requested(void)
{
	return md_slot_cancel_requested();
}

/*
 * md_sleep_ms waits interruptibly; returns false if the job was canceled.
 */
bool
md_sleep_ms(int64 ms)
{
	int64		until = md_now_ms() + ms;

	for (;;)
	{
		int64		left = until - md_now_ms();

		CHECK_FOR_INTERRUPTS();
		if (md_job_cancel_requested())
			return false;
		if (left <= 0)
			return true;
		md_worker_wait(Min(left, 1000));
	}
}

static int64
backoff_ms(int attempt)
{
	int64		cap = BACKOFF_BASE_MS;

	for (int i = 0; i < attempt && cap < BACKOFF_CAP_MS; i++)
		cap *= 2;
	cap = Min(cap, BACKOFF_CAP_MS);
	/* "equal jitter": half fixed, half random, so retries spread out */
	return cap / 2 + (int64) (pg_prng_double(&pg_global_prng_state) * (cap / 2));
}

/*
 * rest_get makes one budgeted request for a job.  Returns false if the job
 * was canceled.
 */
static bool
rest_get(const MdExchange *ex, const char *path, int weight, MdHttpResponse *resp,
		 JobCounters *cnt)
{
	if (!md_rest_get(ex, path, weight, resp, md_job_cancel_requested))
		return false;
	if (cnt)
		cnt->requests++;
	return true;
}

/*
 * refresh_exchange_facts learns the weight limit from exchange info and the
 * offset of the exchange's clock, when they are old.  Failures only leave
 * the previous values (or the documented defaults) in place.
 */
static void
refresh_exchange_facts(const MdExchange *ex)
{
	MdHttpResponse resp;
	int64		now = md_now_ms();

	if (info_at == 0 || now - info_at > INFO_MAX_AGE_MS)
	{
		int			limit;

		if (rest_get(ex, ex->info_path, ex->info_weight, &resp, NULL) &&
			resp.outcome == MD_HTTP_OK && resp.status == 200 &&
			ex->parse_weight_limit(resp.body.data, resp.body.len, &limit))
		{
			md_budget_set_limit(limit);
			info_at = now;
			elog(DEBUG1, "mdfeed: %s allows %d REST weight per minute", ex->name, limit);
		}
		pfree(resp.body.data);
	}
	if (server_time_at == 0 || now - server_time_at > SERVER_TIME_MAX_AGE_MS)
	{
		int64		t0 = md_now_ms();
		int64		server;

		if (rest_get(ex, ex->time_path, ex->time_weight, &resp, NULL) &&
			resp.outcome == MD_HTTP_OK && resp.status == 200 &&
			ex->parse_server_time(resp.body.data, resp.body.len, &server))
		{
			int64		t1 = md_now_ms();

			server_offset_ms = server - (t0 + t1) / 2;
			server_time_at = t1;
		}
		pfree(resp.body.data);
	}
}

/*
 * md_fetch_with_retries gets one answer and parses it, retrying what is worth
 * retrying.  Weight comes from the weight budget, or, when bucket >= 0, from
 * that endpoint's own request budget.
 */
PageResult
md_fetch_with_retries(const MdExchange *ex, const MdJob *job, const char *path,
					  int weight, int bucket, int per_5min,
					  MdParseFn parse, void *parse_arg, JobCounters *cnt, char **failmsg)
{
	int			failures = 0;

	for (;;)
	{
		MdHttpResponse resp;
		char	   *reason = NULL;
		char	   *err = NULL;
		int			code;
		char	   *msg;
		bool		got;

		if (bucket >= 0)
			got = md_rest_get_counted(ex, path, bucket, per_5min, &resp, md_job_cancel_requested);
		else
			got = md_rest_get(ex, path, weight, &resp, md_job_cancel_requested);
		if (!got)
			return PAGE_CANCELED;
		cnt->requests++;

		if (resp.outcome == MD_HTTP_OK && resp.status == 200)
		{
			if (parse(resp.body.data, resp.body.len, parse_arg, &err))
			{
				pfree(resp.body.data);
				return PAGE_OK;
			}
			reason = psprintf("malformed answer: %s", err);
		}
		else if (resp.outcome == MD_HTTP_TRANSPORT_ERROR)
			reason = psprintf("request failed: %s", resp.error);
		else if (resp.outcome == MD_HTTP_TOO_LARGE)
			reason = psprintf("answer larger than mdfeed.rest_max_response_size (%d kB)",
							  mdfeed_rest_max_response_kb);
		else if (resp.status == 429 || resp.status == 418)
		{
			/* budget.c now holds every worker back; this is not a failure */
			md_slot_set_error(resp.status == 429 ? "rate limited (HTTP 429)" : "IP banned (HTTP 418)");
			pfree(resp.body.data);
			continue;
		}
		else if (resp.status >= 500 || resp.status == 408 || resp.status == 403)
			reason = psprintf("HTTP %ld from the exchange", resp.status);
		else if (resp.status >= 400)
		{
			if (ex->parse_error(resp.body.data, resp.body.len, &code, &msg))
				*failmsg = psprintf("%s rejected the request: %s (code %d)", ex->name, msg, code);
			else
				*failmsg = psprintf("%s answered HTTP %ld", ex->name, resp.status);
			pfree(resp.body.data);
			return PAGE_FAILED;
		}
		else
			reason = psprintf("unexpected HTTP status %ld", resp.status);

		pfree(resp.body.data);
		md_slot_set_error(reason);
		if (failures >= mdfeed_rest_max_retries)
		{
			*failmsg = psprintf("gave up after %d attempts: %s", failures + 1, reason);
			return PAGE_FAILED;
		}
		cnt->retries++;
		ereport(DEBUG1,
				(errmsg("mdfeed job " INT64_FORMAT ": %s; retrying", job->id, reason)));
		if (!md_sleep_ms(backoff_ms(failures)))
			return PAGE_CANCELED;
		failures++;
		pfree(reason);
	}
}

typedef struct KlinesOut
{
	MdCandle  **rows;
	int		   *nrows;
} KlinesOut;

static bool
parse_klines_cb(const char *body, size_t len, void *arg, char **err)
{
	KlinesOut  *out = arg;

	return md_binance.parse_klines(body, len, out->rows, out->nrows, err);
}

/*
 * fetch_page gets one page of klines.
 */
static PageResult
fetch_page(const MdExchange *ex, const MdJob *job, const MdInterval *iv,
		   int64 start_ms, int64 end_ms, int limit,
		   MdCandle **rows, int *nrows, JobCounters *cnt, char **failmsg)
{
	char	   *path = ex->klines_path(job->symbol, iv, start_ms, end_ms - 1, limit);
	KlinesOut	out = {rows, nrows};
	PageResult	r;

	if (ex != &md_binance)
		elog(ERROR, "klines parser of exchange %s is not wired", ex->name);
	r = md_fetch_with_retries(ex, job, path, ex->klines_weight(limit), -1, 0,
							  parse_klines_cb, &out, cnt, failmsg);
	pfree(path);
	return r;
}

/*
 * job_still_running checks, after a cancel request, whether the job really
 * was canceled (the request may come from a transaction that rolled back).
 */
bool
md_job_still_running(const MdJob *job)
{
	char	   *state;
	bool		running;

	md_begin_tx();
	state = md_job_state(job->id);
	running = state != NULL && strcmp(state, "running") == 0;
	md_commit_tx();
	if (running)
		md_slot_set_job(job->id);	/* clears the request */
	return running;
}

void
md_finish_job(const MdJob *job, const char *state, const char *error, JobCounters *cnt)
{
	md_begin_tx();
	md_job_finish(job, state, error, cnt->requests, cnt->retries);
	md_job_release(job);
	md_commit_tx();
	md_broadcast_job_end();
	if (error)
		ereport(LOG,
				(errmsg("mdfeed job " INT64_FORMAT " (%s %s) %s: %s",
						job->id, job->symbol, job->interval, state, error)));
}

/*
 * md_job_yielded puts the running job back in the queue if another job
 * should have this worker now (jobs.c says when), and says whether it did.
 * The caller then returns, leaving the job queued with its cursor.
 */
bool
md_job_yielded(const MdJob *job)
{
	if (!md_job_should_yield(job))
		return false;
	md_job_yield(job);
	yielded_job = job->id;
	return true;
}

/*
 * record_exchange_gap notes that the exchange has no candles in [from, to).
 */
static void
record_exchange_gap(const MdExchange *ex, const MdJob *job, int64 from_ms, int64 to_ms)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[5];
	int			ret;

	if (from_ms >= to_ms)
		return;
	values[0] = CStringGetTextDatum(ex->name);
	values[1] = CStringGetTextDatum(job->symbol);
	values[2] = CStringGetTextDatum(job->interval);
	values[3] = TimestampTzGetDatum(md_ms_to_timestamptz(from_ms));
	values[4] = TimestampTzGetDatum(md_ms_to_timestamptz(to_ms));
	ret = SPI_execute_with_args("INSERT INTO mdfeed.exchange_gaps (exchange, symbol, \"interval\", from_time, to_time) "
								"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (exchange, symbol, \"interval\", from_time) "
								"DO UPDATE SET to_time = GREATEST(mdfeed.exchange_gaps.to_time, excluded.to_time), "
								"confirmed_at = pg_catalog.now()",
								5, types, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record an exchange gap");
}

/*
 * run_candles_job brings the job's range of candles into the table.
 */
static void
run_candles_job(const MdJob *job)
{
	const MdExchange *ex = md_exchange_lookup(job->exchange);
	const MdInterval *iv = md_interval_lookup(job->interval);
	JobCounters cnt = {0, 0};
	int64		from,
				cursor;
	MemoryContext pagectx,
				old;

	if (ex == NULL || iv == NULL)
	{
		md_finish_job(job, "failed", "unknown exchange or interval", &cnt);
		return;
	}

	from = md_interval_floor(iv, job->from_ms);
	cursor = job->cursor_ms > from ? job->cursor_ms : from;
	pagectx = AllocSetContextCreate(CurrentMemoryContext, "mdfeed page", ALLOCSET_DEFAULT_SIZES);

	refresh_exchange_facts(ex);

	for (;;)
	{
		int64		gap_start,
					gap_end;
		bool		found;
		int			limit;
		MdCandle   *rows;
		int			nrows,
					first,
					last;
		char	   *failmsg = NULL;
		PageResult	pr;
		int64		server_now,
					written,
					settle_ms;
		double		progress;

		CHECK_FOR_INTERRUPTS();
		md_worker_reload();
		if (md_job_cancel_requested() && !md_job_still_running(job))
			break;

		MemoryContextReset(pagectx);
		old = MemoryContextSwitchTo(pagectx);

		md_begin_tx();
		found = md_first_gap(ex->name, iv, job->symbol, cursor, job->to_ms, &gap_start, &gap_end);
		md_commit_tx();
		MemoryContextSwitchTo(pagectx);
		if (!found)
		{
			MemoryContextSwitchTo(old);
			md_finish_job(job, "succeeded", NULL, &cnt);
			break;
		}

		limit = ex->klines_page_limit(md_interval_count(iv, gap_start, gap_end));
		pr = fetch_page(ex, job, iv, gap_start, gap_end, limit, &rows, &nrows, &cnt, &failmsg);
		if (pr == PAGE_CANCELED)
		{
			MemoryContextSwitchTo(old);
			if (md_job_still_running(job))
				continue;
			break;
		}
		if (pr == PAGE_FAILED)
		{
			MemoryContextSwitchTo(old);
			md_finish_job(job, "failed", failmsg, &cnt);
			break;
		}

		/*
		 * Keep what lies in the gap (the exchange should send nothing else),
		 * and mark the candle still forming.
		 */
		server_now = md_now_ms() + server_offset_ms;
		for (first = 0; first < nrows && rows[first].open_ms < gap_start; first++)
			;
		for (last = first; last < nrows && rows[last].open_ms < gap_end; last++)
			rows[last].closed = rows[last].close_ms + CLOSE_GRACE_MS < server_now;

		/*
		 * A short page means the exchange has nothing more up to gap_end
		 * (before the listing, a maintenance window, or the present).
		 */
		if (nrows < limit || last == first)
			cursor = gap_end;
		else
			cursor = md_interval_next(iv, rows[last - 1].open_ms);

		/*
		 * A candle that has closed, but too recently for its values to be
		 * final, is stored as forming and fetched again in a moment, so that
		 * a sync right after a candle's close (a stream reconnecting, say)
		 * does not leave it open.  So is one about to close: a stream that
		 * subscribes just after the close never hears of it, and the job
		 * would otherwise leave it open behind its cursor.  Further from its
		 * close, the forming candle is the stream's to finish.
		 */
		settle_ms = 0;
		for (int i = first; i < last; i++)
		{
			/* not necessarily the last row: the next one may be forming */
			if (!rows[i].closed && rows[i].close_ms < server_now + SETTLE_AHEAD_MS)
			{
				cursor = rows[i].open_ms;
				settle_ms = rows[i].close_ms + CLOSE_GRACE_MS - server_now + 50;
				break;
			}
		}
		progress = (double) (Min(cursor, job->to_ms) - from) / (double) (job->to_ms - from);

		md_begin_tx();
		for (int i = first; i < last; i++)
			rows[i].symbol = job->symbol;
		written = md_store_candles(iv, rows + first, last - first);
		for (int i = last - 1; i >= first; i--)
		{
			if (rows[i].closed)
			{
				/* one notification a page: the newest closed candle */
				md_notify_candle(ex->name, job->symbol, iv, rows[i].open_ms);
				break;
			}
		}

		/*
		 * Ranges the exchange answered with nothing, though their candles
		 * would have closed, are remembered so that gap repair does not ask
		 * for them again and mdfeed_gaps can tell them from real holes:
		 * before the first row, between rows, and after the last row of a
		 * short page.
		 */
		{
			int64		closed_before = md_interval_floor(iv, server_now);
			int64		head_end = last > first ? rows[first].open_ms : gap_end;

			if (head_end > gap_start)
				record_exchange_gap(ex, job, gap_start, Min(head_end, closed_before));
			/* and the holes between rows (a maintenance window, say) */
			for (int i = first + 1; i < last; i++)
			{
				int64		expected = md_interval_next(iv, rows[i - 1].open_ms);

				if (rows[i].open_ms > expected)
					record_exchange_gap(ex, job, expected, Min(rows[i].open_ms, closed_before));
			}
			if ((nrows < limit || last == first) && last > first)
				record_exchange_gap(ex, job, md_interval_next(iv, rows[last - 1].open_ms),
									Min(gap_end, closed_before));
		}
		if (!md_job_checkpoint(job, cursor, written, cnt.requests, cnt.retries, progress))
		{
			/* canceled meanwhile: write nothing */
			md_abort_tx();
			MemoryContextSwitchTo(old);
			break;
		}
		md_commit_tx();
		cnt.requests = cnt.retries = 0;
		md_slot_set_error(NULL);
		MemoryContextSwitchTo(old);
		if (md_job_yielded(job))
			break;
		if (settle_ms > 0 && !md_sleep_ms(settle_ms) && !md_job_still_running(job))
			break;
	}
	MemoryContextDelete(pagectx);
}

/*
 * run_one_job claims a job and runs it.  Returns false if there was none.
 */
static bool
run_one_job(void)
{
	MdJob		job;
	bool		claimed;

	md_begin_tx();
	claimed = md_job_claim(&job, yielded_job);
	md_commit_tx();
	yielded_job = 0;
	if (!claimed)
		return false;
	current_job = job;

	md_slot_set_state("working");
	elog(DEBUG1, "mdfeed backfill worker took job " INT64_FORMAT, job.id);

	if (strcmp(job.kind, "candles") == 0)
		run_candles_job(&job);
	else if (strcmp(job.kind, "funding") == 0)
		md_run_funding_job(&job);
	else if (strcmp(job.kind, "open_interest") == 0)
		md_run_open_interest_job(&job);
	else
	{
		JobCounters cnt = {0, 0};

		md_finish_job(&job, "failed", psprintf("unknown job kind \"%s\"", job.kind), &cnt);
	}

	/* whatever happened, the claim is not ours any more */
	md_begin_tx();
	md_job_release(&job);
	md_commit_tx();
	current_job.id = 0;
	md_slot_set_job(0);
	md_slot_set_state("idle");
	return true;
}

static void
backfill_on_exit(int code, Datum arg)
{
	md_http_cleanup();
}

/*
 * mdfeed_backfill_main is the entry point of a backfill worker.
 */
void
mdfeed_backfill_main(Datum main_arg)
{
	MemoryContext worker_ctx;

	md_worker_init("mdfeed backfill worker");
	before_shmem_exit(backfill_on_exit, (Datum) 0);
	md_slot_set_state("idle");

	worker_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed backfill", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		bool		worked = false;

		CHECK_FOR_INTERRUPTS();
		md_worker_reload();

		MemoryContextSwitchTo(worker_ctx);
		PG_TRY();
		{
			worked = run_one_job();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/*
			 * Something unexpected (an SPI failure, say).  Report it and fail
			 * the job with the message, so that a job that always hits the
			 * same error cannot keep a worker busy forever.  If even that
			 * fails, the error escapes and the launcher restarts us.
			 */
			edata = md_worker_recover(worker_ctx);
			if (current_job.id != 0)
			{
				JobCounters cnt = {0, 0};

				md_finish_job(&current_job, "failed",
						   psprintf("internal error: %s", edata->message), &cnt);
				md_begin_tx();
				md_job_release(&current_job);
				md_commit_tx();
			}
			current_job.id = 0;
			md_slot_set_job(0);
			md_slot_set_state("idle");
		}
		PG_END_TRY();
		MemoryContextReset(worker_ctx);

		if (!worked)
		{
			md_worker_wait(mdfeed_job_poll_ms);
		}
	}
}
