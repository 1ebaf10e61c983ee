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
 * Open interest exists over REST only for the exchange's retention window
 * (30 days on Binance); older hours come from the bulk archives' daily
 * metrics files where the exchange has them (archive_metrics.c).  A job
 * asking for more than either has fills what exists and says, in its
 * detail, what could not be had.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common.h"
#include "archive.h"
#include "jobrun.h"
#include "derivs.h"
#include "shmem.h"
#include "store.h"

#define HOUR_MS INT64CONST(3600000)

/*
 * What differs between the two kinds of job: the endpoint (and so its
 * budget), how its page is parsed and stored, and where the next page
 * starts.
 */
typedef struct DerivPager
{
	const MdEndpoint *ep;
	int			limit;			/* rows a page holds at most */
	int64		span_ms;		/* a page asks for at most this much (0: all) */
	int64		step_ms;		/* the next page starts this far past a page's
								 * last row */
	char	   *(*path) (const MdExchange *ex, const char *symbol, int64 start_ms,
						 int64 end_ms, int limit);
	bool		(*parse) (const MdExchange *ex, const char *body, size_t len,
						  void **rows, int *n, char **err);
	int64		(*row_ms) (const void *rows, int i);
	int64		(*store) (const MdExchange *ex, const char *symbol, void *rows, int first, int n);
} DerivPager;

typedef struct PageOut
{
	const MdExchange *ex;
	const DerivPager *pager;
	void	   *rows;
	int			n;
} PageOut;

static bool
parse_page_cb(const char *body, size_t len, void *arg, char **err)
{
	PageOut    *out = arg;

	return out->pager->parse(out->ex, body, len, &out->rows, &out->n, err);
}

static char *
funding_path(const MdExchange *ex, const char *symbol, int64 start_ms, int64 end_ms, int limit)
{
	return ex->funding_path(symbol, start_ms, end_ms, limit);
}

static bool
funding_parse(const MdExchange *ex, const char *body, size_t len, void **rows, int *n, char **err)
{
	return ex->parse_funding(body, len, (MdFunding **) rows, n, err);
}

static int64
funding_row_ms(const void *rows, int i)
{
	return ((const MdFunding *) rows)[i].funding_ms;
}

static int64
funding_store(const MdExchange *ex, const char *symbol, void *rows, int first, int n)
{
	return md_store_funding(ex, symbol, (MdFunding *) rows + first, n);
}

static char *
oi_path(const MdExchange *ex, const char *symbol, int64 start_ms, int64 end_ms, int limit)
{
	return ex->oi_path(symbol, start_ms, end_ms, limit);
}

static bool
oi_parse(const MdExchange *ex, const char *body, size_t len, void **rows, int *n, char **err)
{
	return ex->parse_open_interest(body, len, (MdOpenInterest **) rows, n, err);
}

static int64
oi_row_ms(const void *rows, int i)
{
	return ((const MdOpenInterest *) rows)[i].ts_ms;
}

static int64
oi_store(const MdExchange *ex, const char *symbol, void *rows, int first, int n)
{
	return md_store_open_interest(ex, symbol, (MdOpenInterest *) rows + first, n);
}

static double
progress_of(const MdJob *job, int64 from, int64 cursor)
{
	if (job->to_ms <= from)
		return 1.0;
	return (double) (Min(cursor, job->to_ms) - from) / (double) (job->to_ms - from);
}

/*
 * run_pages pages forward from cursor to the job's end, committing each
 * page with the job's progress, and finishes the job.
 */
static void
run_pages(const MdJob *job, const MdExchange *ex, const DerivPager *pg, int64 from, int64 cursor)
{
	JobCounters cnt = {0, 0};
	MemoryContext pagectx = AllocSetContextCreate(CurrentMemoryContext, "mdfeed derivatives page",
												  ALLOCSET_DEFAULT_SIZES);

	while (cursor < job->to_ms)
	{
		PageOut		out = {ex, pg, NULL, 0};
		char	   *failmsg = NULL;
		char	   *path;
		PageResult	pr;
		int			first,
					last;
		int64		written;
		int64		page_end = pg->span_ms > 0 ? Min(job->to_ms, cursor + pg->span_ms) : job->to_ms;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (md_job_cancel_requested() && !md_job_still_running(job))
			break;
		MemoryContextReset(pagectx);
		old = MemoryContextSwitchTo(pagectx);
		path = pg->path(ex, job->symbol, cursor, page_end - 1, pg->limit);
		pr = md_fetch_with_retries(ex, job, pg->ep, path, -1,
								   parse_page_cb, &out, &cnt, &failmsg);
		MemoryContextSwitchTo(old);
		if (pr == PAGE_CANCELED)
		{
			if (md_job_still_running(job))
				continue;
			break;
		}
		if (pr == PAGE_YIELDED)
			break;
		if (pr == PAGE_FAILED)
		{
			md_finish_job(job, "failed", failmsg, &cnt);
			break;
		}
		for (first = 0; first < out.n && pg->row_ms(out.rows, first) < cursor; first++)
			;
		for (last = first; last < out.n && pg->row_ms(out.rows, last) < page_end; last++)
			;
		/* a short page means nothing more up to the page's end */
		if (out.n < pg->limit || last == first)
			cursor = page_end;
		else
			cursor = pg->row_ms(out.rows, last - 1) + pg->step_ms;

		md_begin_tx();
		old = MemoryContextSwitchTo(pagectx);
		written = pg->store(ex, job->symbol, out.rows, first, last - first);
		MemoryContextSwitchTo(old);
		if (!md_job_checkpoint(job, cursor, written, cnt.requests, cnt.retries,
							   progress_of(job, from, cursor)))
		{
			/* canceled meanwhile: write nothing */
			md_abort_tx();
			break;
		}
		md_commit_tx();
		cnt.requests = cnt.retries = 0;
		md_slot_set_error(NULL);
		if (cursor >= job->to_ms)
			md_finish_job(job, "succeeded", NULL, &cnt);
		else if (md_job_yielded(job))
			break;
	}
	MemoryContextDelete(pagectx);
}

/*
 * md_run_funding_job stores the funding events in [from_time, to_time).
 */
void
md_run_funding_job(const MdJob *job)
{
	const MdExchange *ex = md_exchange_lookup(job->exchange);
	DerivPager	pg;
	int64		from = job->from_ms;

	if (ex == NULL || ex->funding_path == NULL)
	{
		JobCounters cnt = {0, 0};

		md_finish_job(job, "failed", psprintf("exchange \"%s\" has no funding history", job->exchange),
					  &cnt);
		return;
	}
	pg = (DerivPager) {&ex->funding, ex->funding_max_limit,
		0, 1, funding_path, funding_parse, funding_row_ms, funding_store};
	if (from >= job->to_ms)
	{
		JobCounters cnt = {0, 0};

		md_finish_job(job, "succeeded", NULL, &cnt);
		return;
	}
	run_pages(job, ex, &pg, from, job->cursor_ms > from ? job->cursor_ms : from);
}

/*
 * md_run_open_interest_job stores the hourly open interest in
 * [from_time, to_time), as far as the exchange still has it.
 */
void
md_run_open_interest_job(const MdJob *job)
{
	const MdExchange *ex = md_exchange_lookup(job->exchange);
	DerivPager	pg;
	/* the first hour at or after from_time */
	int64		from = ((job->from_ms + HOUR_MS - 1) / HOUR_MS) * HOUR_MS;
	int64		cursor = job->cursor_ms > from ? job->cursor_ms : from;
	int64		oldest;

	if (ex == NULL || ex->oi_path == NULL)
	{
		JobCounters cnt = {0, 0};

		md_finish_job(job, "failed", psprintf("exchange \"%s\" has no open interest history",
											  job->exchange), &cnt);
		return;
	}
	pg = (DerivPager) {&ex->open_interest, ex->oi_max_limit,
		ex->oi_max_limit * HOUR_MS, HOUR_MS, oi_path, oi_parse, oi_row_ms, oi_store};
	/* the oldest hour the exchange still has, with an hour to spare */
	oldest = ((md_now_ms() - ex->oi_retention_ms) / HOUR_MS + 1) * HOUR_MS;
	if (cursor < oldest && md_archive_enabled(ex) && ex->archive->metrics_path != NULL)
	{
		/* older than REST's window: the archives' daily metrics files (their
		 * detail says which days they lack) */
		int64		missing = 0;
		int64		afrom = Max(cursor, job->archive_cursor_ms);
		PageResult	ar = PAGE_OK;

		/* a cancel that rolled back leaves the job running: read on */
		do
		{
			afrom = Max(afrom, job->archive_cursor_ms);
			if (afrom < Min(oldest, job->to_ms))
				ar = md_archive_open_interest(job, ex, afrom, Min(oldest, job->to_ms), &missing);
			if (ar == PAGE_YIELDED || (ar == PAGE_CANCELED && !md_job_still_running(job)))
				return;
		} while (ar == PAGE_CANCELED);
		cursor = oldest;
	}
	else if (cursor < oldest)
	{
		char	   *note = psprintf("open interest before %s is not available: %s keeps %d days",
									timestamptz_to_str(md_ms_to_timestamptz(oldest)), ex->name,
									(int) (ex->oi_retention_ms / (24 * HOUR_MS)));

		md_begin_tx();
		md_job_set_detail(job, note);
		md_commit_tx();
		cursor = oldest;
	}
	if (cursor >= job->to_ms)
	{
		JobCounters cnt = {0, 0};

		md_finish_job(job, "succeeded", NULL, &cnt);
		return;
	}
	run_pages(job, ex, &pg, from, cursor);
}
