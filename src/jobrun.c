/*-------------------------------------------------------------------------
 *
 * jobrun.c
 *	  What every job runner uses: fetching a page with retries, sleeping
 *	  interruptibly, checking for a cancel, yielding and finishing a job, and
 *	  the exchange's facts (weight limit, clock offset).
 *
 * Failures are sorted by what the adapter says they mean (its classify).
 * Transport errors, passing failures (5xx) and malformed or truncated
 * answers are retried with capped exponential backoff and jitter; a
 * throttle or a ban stops every worker's calls to that exchange for as long
 * as the exchange asks (budget.c); a refused request (bad symbol, say)
 * fails the job with the exchange's own message.
 *
 * The runners themselves (candles.c, derivs.c) only page through their
 * ranges; the backfill worker (backfill.c) claims jobs and picks the runner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "common.h"
#include "budget.h"
#include "exchange.h"
#include "http.h"
#include "jobs.h"
#include "rest.h"
#include "shmem.h"
#include "workers.h"
#include "jobrun.h"

#define BACKOFF_BASE_MS 250
#define BACKOFF_CAP_MS 30000
#define SERVER_TIME_MAX_AGE_MS (10 * 60 * 1000)
#define INFO_MAX_AGE_MS (60 * 60 * 1000)

/* the job this worker last yielded: the next claim passes it over once */
static int64 yielded_job = 0;

/* what this process knows of each exchange, by adapter id */
static int64 server_offset_ms[MD_MAX_EXCHANGES];
static int64 server_time_at[MD_MAX_EXCHANGES];
static int64 info_at[MD_MAX_EXCHANGES];

/*
 * md_job_cancel_requested says whether mdfeed_cancel asked to drop the job
 * this worker runs.
 */
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
 * md_refresh_exchange_facts learns the weight limit from exchange info and the
 * offset of the exchange's clock, when they are old.  Failures only leave
 * the previous values (or the documented defaults) in place.
 */
void
md_refresh_exchange_facts(const MdExchange *ex)
{
	MdHttpResponse resp;
	MdAnswer	ans;
	int			id = md_exchange_id(ex);
	int64		now = md_now_ms();

	if (ex->parse_weight_limit != NULL &&
		(info_at[id] == 0 || now - info_at[id] > INFO_MAX_AGE_MS))
	{
		int			limit;

		if (md_rest_call(ex, &ex->info, NULL, -1, &resp, &ans, NULL))
		{
			if (ans.kind == MD_ANSWER_OK &&
				ex->parse_weight_limit(resp.body.data, resp.body.len, &limit))
			{
				md_budget_set_limit(ex, 0, limit);
				info_at[id] = now;
				elog(DEBUG1, "mdfeed: %s allows %d REST %s per window",
					 ex->name, limit, ex->limits[0].name);
			}
			pfree(resp.body.data);
		}
	}
	if (ex->parse_server_time != NULL &&
		(server_time_at[id] == 0 || now - server_time_at[id] > SERVER_TIME_MAX_AGE_MS))
	{
		int64		t0 = md_now_ms();
		int64		server;

		if (md_rest_call(ex, &ex->server_time, NULL, -1, &resp, &ans, NULL))
		{
			if (ans.kind == MD_ANSWER_OK &&
				ex->parse_server_time(resp.body.data, resp.body.len, &server))
			{
				int64		t1 = md_now_ms();

				server_offset_ms[id] = server - (t0 + t1) / 2;
				server_time_at[id] = t1;
			}
			pfree(resp.body.data);
		}
	}
}

/*
 * md_server_now_ms is the exchange's clock, as far as
 * md_refresh_exchange_facts knows its offset.
 */
int64
md_server_now_ms(const MdExchange *ex)
{
	return md_now_ms() + server_offset_ms[md_exchange_id(ex)];
}

/*
 * step_aside puts the job back in the queue for another worker, later, and
 * has this worker pass it over at its next claim.
 */
static void
step_aside(const MdJob *job)
{
	md_job_yield(job);
	yielded_job = job->id;
}

/*
 * wait_available sleeps at least min_ms (a backoff), and then for as long
 * as the exchange holds this server back (a throttle, a ban) or does not
 * answer (an outage), in short steps.  Meanwhile, if the exchange is
 * unavailable and another exchange's job waits for a worker, the job steps
 * aside.  Returns false, with *r set, if it did or was canceled.
 */
static bool
wait_available(const MdExchange *ex, const MdJob *job, int64 min_ms, PageResult *r)
{
	int64		until = md_now_ms() + min_ms;
	MemoryContext cxt = CurrentMemoryContext;

	for (;;)
	{
		int64		now = md_now_ms();
		bool		available = md_exchange_available(ex);
		bool		aside;

		if (available && now >= until)
			return true;
		/* its transaction ends in TopMemoryContext: the page goes on in cxt */
		aside = !available && md_job_should_step_aside(job);
		MemoryContextSwitchTo(cxt);
		if (aside)
		{
			step_aside(job);
			MemoryContextSwitchTo(cxt);
			*r = PAGE_YIELDED;
			return false;
		}
		if (!md_sleep_ms(Max(1, Min(available ? until - now : 500, 500))))
		{
			*r = PAGE_CANCELED;
			return false;
		}
	}
}

/*
 * md_fetch_with_retries gets one answer of an endpoint (path NULL: its own;
 * cost < 0: its own) and parses it, retrying what is worth retrying.
 */
PageResult
md_fetch_with_retries(const MdExchange *ex, const MdJob *job, const MdEndpoint *ep,
					  const char *path, int cost,
					  MdParseFn parse, void *parse_arg, JobCounters *cnt, char **failmsg)
{
	int			failures = 0;

	for (;;)
	{
		MdHttpResponse resp;
		MdAnswer	ans;
		char	   *reason = NULL;
		char	   *err = NULL;
		PageResult	held;

		if (!wait_available(ex, job, 0, &held))
			return held;
		if (!md_rest_call(ex, ep, path, cost, &resp, &ans, md_job_cancel_requested))
			return PAGE_CANCELED;
		cnt->requests++;

		if (resp.outcome == MD_HTTP_TRANSPORT_ERROR)
			reason = psprintf("request failed: %s", resp.error);
		else if (resp.outcome == MD_HTTP_TOO_LARGE)
			reason = psprintf("answer larger than mdfeed.rest_max_response_size (%d kB)",
							  mdfeed_rest_max_response_kb);
		else if (ans.kind == MD_ANSWER_OK)
		{
			if (parse(resp.body.data, resp.body.len, parse_arg, &err))
			{
				pfree(resp.body.data);
				return PAGE_OK;
			}
			reason = psprintf("malformed answer: %s", err);
		}
		else if (ans.kind == MD_ANSWER_THROTTLED || ans.kind == MD_ANSWER_BANNED)
		{
			/* budget.c now holds this exchange's calls back; not a failure */
			md_slot_set_error(psprintf(ans.kind == MD_ANSWER_THROTTLED ?
									   "rate limited by %s (HTTP %ld)" :
									   "IP banned by %s (HTTP %ld)",
									   ex->name, resp.status));
			pfree(resp.body.data);
			continue;			/* wait_available holds it back */
		}
		else if (ans.kind == MD_ANSWER_REJECTED)
		{
			*failmsg = psprintf("%s %s", ex->name,
								ans.message ? ans.message : "refused the request");
			pfree(resp.body.data);
			return PAGE_FAILED;
		}
		else
			reason = ans.message ? ans.message : psprintf("HTTP %ld from %s", resp.status, ex->name);

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
		if (!wait_available(ex, job, backoff_ms(failures), &held))
			return held;
		failures++;
		pfree(reason);
	}
}

/*
 * md_job_still_running checks, after a cancel request, whether the job really
 * was canceled (the request may come from a transaction that rolled back).
 */
bool
md_job_still_running(const MdJob *job)
{
	char	   *state;
	bool		running;
	MemoryContext cxt = CurrentMemoryContext;

	md_begin_tx();
	state = md_job_state(job->id);
	running = state != NULL && strcmp(state, "running") == 0;
	md_commit_tx();
	MemoryContextSwitchTo(cxt);
	if (running)
		md_slot_set_job(job->id);	/* clears the request */
	return running;
}

/*
 * md_finish_job gives the job its final state, drops the claim and tells
 * the waiters.
 */
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
				(errmsg("mdfeed job " INT64_FORMAT " (%s %s %s) %s: %s",
						job->id, job->exchange, job->symbol,
						job->interval[0] ? job->interval : job->kind, state, error)));
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
 * md_take_yielded_job returns the job this worker yielded last, once, or 0.
 */
int64
md_take_yielded_job(void)
{
	int64		id = yielded_job;

	yielded_job = 0;
	return id;
}
