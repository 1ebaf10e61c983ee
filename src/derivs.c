/*-------------------------------------------------------------------------
 *
 * derivs.c
 *	  Jobs for derivatives data: funding rates and hourly open interest.
 *
 * Both page forward from the job's cursor and commit each page with the
 * job's progress, like candle jobs.  Each endpoint has its own limit, a
 * count of requests per five minutes rather than weight, drawn from its
 * own bucket of the shared budget.
 *
 * Funding events are keyed by their time rounded down to the minute: the
 * exchange reports each a few milliseconds past its boundary, and symbols
 * move between 8 h, 4 h and 1 h funding, so nothing assumes an interval.
 * Open interest exists only for the exchange's retention window (30 days
 * on Binance): a job asking for more fills what exists and says, in its
 * detail, what could not be had.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "mdfeed.h"
#include "backfill.h"
#include "shmem.h"
#include "store.h"

#define HOUR_MS INT64CONST(3600000)

typedef struct FundingOut
{
	const MdExchange *ex;
	MdFunding  *rows;
	int			n;
} FundingOut;

static bool
parse_funding_cb(const char *body, size_t len, void *arg, char **err)
{
	FundingOut *out = arg;

	return out->ex->parse_funding(body, len, &out->rows, &out->n, err);
}

typedef struct OiOut
{
	const MdExchange *ex;
	MdOpenInterest *rows;
	int			n;
} OiOut;

static bool
parse_oi_cb(const char *body, size_t len, void *arg, char **err)
{
	OiOut	   *out = arg;

	return out->ex->parse_open_interest(body, len, &out->rows, &out->n, err);
}

static double
progress_of(const MdJob *job, int64 from, int64 cursor)
{
	if (job->to_ms <= from)
		return 1.0;
	return (double) (Min(cursor, job->to_ms) - from) / (double) (job->to_ms - from);
}

/*
 * checkpoint commits a page and the job's progress; false if the job was
 * canceled meanwhile (nothing is written then).
 */
static bool
checkpoint(const MdJob *job, int64 cursor, int64 written, double progress, JobCounters *cnt)
{
	if (!md_job_checkpoint(job, cursor, written, cnt->requests, cnt->retries, progress))
	{
		md_abort_tx();
		return false;
	}
	md_commit_tx();
	cnt->requests = cnt->retries = 0;
	md_slot_set_error(NULL);
	return true;
}

/*
 * md_run_funding_job stores the funding events in [from_time, to_time).
 */
void
md_run_funding_job(const MdJob *job)
{
	const MdExchange *ex = md_exchange_lookup(job->exchange);
	JobCounters cnt = {0, 0};
	int64		from = job->from_ms;
	int64		cursor = job->cursor_ms > from ? job->cursor_ms : from;
	MemoryContext pagectx = AllocSetContextCreate(CurrentMemoryContext, "mdfeed funding page",
												  ALLOCSET_DEFAULT_SIZES);

	while (cursor < job->to_ms)
	{
		FundingOut	out = {ex, NULL, 0};
		char	   *failmsg = NULL;
		char	   *path;
		PageResult	pr;
		int			first,
					last;
		int64		written;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (md_job_cancel_requested() && !md_job_still_running(job))
			break;
		MemoryContextReset(pagectx);
		old = MemoryContextSwitchTo(pagectx);
		path = ex->funding_path(job->symbol, cursor, job->to_ms - 1, ex->funding_max_limit);
		pr = md_fetch_with_retries(ex, job, path, 0, MD_BUCKET_FUNDING, ex->funding_requests_per_5min,
								   parse_funding_cb, &out, &cnt, &failmsg);
		MemoryContextSwitchTo(old);
		if (pr == PAGE_CANCELED)
		{
			if (md_job_still_running(job))
				continue;
			MemoryContextDelete(pagectx);
			return;
		}
		if (pr == PAGE_FAILED)
		{
			md_finish_job(job, "failed", failmsg, &cnt);
			MemoryContextDelete(pagectx);
			return;
		}
		for (first = 0; first < out.n && out.rows[first].funding_ms < cursor; first++)
			;
		for (last = first; last < out.n && out.rows[last].funding_ms < job->to_ms; last++)
			;
		/* a short page means nothing more up to to_time */
		if (out.n < ex->funding_max_limit || last == first)
			cursor = job->to_ms;
		else
			cursor = out.rows[last - 1].funding_ms + 1;

		md_begin_tx();
		old = MemoryContextSwitchTo(pagectx);
		written = md_store_funding(job->symbol, out.rows + first, last - first);
		MemoryContextSwitchTo(old);
		if (!checkpoint(job, cursor, written, progress_of(job, from, cursor), &cnt))
		{
			MemoryContextDelete(pagectx);
			return;
		}
	}
	MemoryContextDelete(pagectx);
	if (cursor >= job->to_ms)
		md_finish_job(job, "succeeded", NULL, &cnt);
}

/*
 * md_run_open_interest_job stores the hourly open interest in
 * [from_time, to_time), as far as the exchange still has it.
 */
void
md_run_open_interest_job(const MdJob *job)
{
	const MdExchange *ex = md_exchange_lookup(job->exchange);
	JobCounters cnt = {0, 0};
	int64		from = job->from_ms;
	int64		cursor;
	/* the oldest hour the exchange still has, with an hour to spare */
	int64		oldest = ((md_now_ms() - ex->oi_retention_ms) / HOUR_MS + 1) * HOUR_MS;
	MemoryContext pagectx = AllocSetContextCreate(CurrentMemoryContext, "mdfeed open interest page",
												  ALLOCSET_DEFAULT_SIZES);

	/* the first hour at or after from_time */
	from = ((from + HOUR_MS - 1) / HOUR_MS) * HOUR_MS;
	cursor = job->cursor_ms > from ? job->cursor_ms : from;
	if (cursor < oldest)
	{
		char	   *note = psprintf("open interest before %s is not available: %s keeps %d days",
									timestamptz_to_str(md_ms_to_timestamptz(oldest)), ex->name,
									(int) (ex->oi_retention_ms / (24 * HOUR_MS)));

		md_begin_tx();
		md_job_set_detail(job, note);
		md_commit_tx();
		cursor = oldest;
	}

	while (cursor < job->to_ms)
	{
		OiOut		out = {ex, NULL, 0};
		char	   *failmsg = NULL;
		char	   *path;
		PageResult	pr;
		int			first,
					last;
		int64		written;
		int64		page_end = Min(job->to_ms, cursor + ex->oi_max_limit * HOUR_MS);
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (md_job_cancel_requested() && !md_job_still_running(job))
			break;
		MemoryContextReset(pagectx);
		old = MemoryContextSwitchTo(pagectx);
		path = ex->oi_path(job->symbol, cursor, page_end - 1, ex->oi_max_limit);
		pr = md_fetch_with_retries(ex, job, path, 0, MD_BUCKET_OPEN_INTEREST, ex->oi_requests_per_5min,
								   parse_oi_cb, &out, &cnt, &failmsg);
		MemoryContextSwitchTo(old);
		if (pr == PAGE_CANCELED)
		{
			if (md_job_still_running(job))
				continue;
			MemoryContextDelete(pagectx);
			return;
		}
		if (pr == PAGE_FAILED)
		{
			md_finish_job(job, "failed", failmsg, &cnt);
			MemoryContextDelete(pagectx);
			return;
		}
		for (first = 0; first < out.n && out.rows[first].ts_ms < cursor; first++)
			;
		for (last = first; last < out.n && out.rows[last].ts_ms < page_end; last++)
			;
		if (out.n < ex->oi_max_limit || last == first)
			cursor = page_end;
		else
			cursor = out.rows[last - 1].ts_ms + HOUR_MS;

		md_begin_tx();
		old = MemoryContextSwitchTo(pagectx);
		written = md_store_open_interest(job->symbol, out.rows + first, last - first);
		MemoryContextSwitchTo(old);
		if (!checkpoint(job, cursor, written, progress_of(job, from, cursor), &cnt))
		{
			MemoryContextDelete(pagectx);
			return;
		}
	}
	MemoryContextDelete(pagectx);
	if (cursor >= job->to_ms)
		md_finish_job(job, "succeeded", NULL, &cnt);
}
