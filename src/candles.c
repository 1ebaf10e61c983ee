/*-------------------------------------------------------------------------
 *
 * candles.c
 *	  The candles job runner: reads what the bulk archives have of the job's
 *	  range (archive_candles.c), then pages through the exchange's REST
 *	  klines until the range is stored.
 *
 * Each page is one short transaction: the candles and the job's progress
 * commit together, and no transaction is open while the worker waits on the
 * network.  Before each request the runner asks the database what is still
 * missing (gaps.c), so whatever is already stored and closed, or confirmed
 * empty by the exchange, is never asked for again, whether the job is new,
 * resumed after a crash, or overlaps another.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common.h"
#include "archive.h"
#include "exchange.h"
#include "gaps.h"
#include "jobs.h"
#include "shmem.h"
#include "store.h"
#include "workers.h"
#include "jobrun.h"
#include "candles.h"

/* a job waits for a forming candle of its range that closes this soon */
#define SETTLE_AHEAD_MS 3000

typedef struct KlinesOut
{
	const MdExchange *ex;
	const MdInterval *iv;
	MdCandle  **rows;
	int		   *nrows;
} KlinesOut;

/*
 * parse_klines_cb parses a klines page with the job's exchange adapter.
 */
static bool
parse_klines_cb(const char *body, size_t len, void *arg, char **err)
{
	KlinesOut  *out = arg;

	return out->ex->parse_klines(body, len, out->iv, out->rows, out->nrows, err);
}

/*
 * fetch_page gets one page of klines.
 */
static PageResult
fetch_page(const MdExchange *ex, const MdJob *job, const MdInterval *iv,
		   int64 start_ms, int64 end_ms, int limit,
		   MdCandle **rows, int *nrows, JobCounters *cnt, char **failmsg)
{
	char	   *path = ex->klines_path(job->symbol, md_exchange_interval_code(ex, iv),
									   start_ms, end_ms - 1, limit);
	KlinesOut	out = {ex, iv, rows, nrows};
	PageResult	r;

	r = md_fetch_with_retries(ex, job, &ex->klines, path,
							  ex->klines_cost ? ex->klines_cost(limit) : ex->klines.cost,
							  parse_klines_cb, &out, cnt, failmsg);
	pfree(path);
	return r;
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
 * page_window_end is where a page of limit candles from start ends, or
 * end if sooner.  An exchange that answers a window newest first, or has
 * no cap on the rows (klines_windowed), is asked for that window, so that
 * it pages like one that sends the oldest limit rows; a short answer then
 * speaks for the window only.
 */
static int64
page_window_end(const MdInterval *iv, int64 start_ms, int64 end_ms, int limit)
{
	int64		t = start_ms;

	for (int i = 0; i < limit && t < end_ms; i++)
		t = md_interval_next(iv, t);
	return Min(t, end_ms);
}

/*
 * md_run_candles_job brings the job's range of candles into the table.
 */
void
md_run_candles_job(const MdJob *job)
{
	const MdExchange *ex = md_exchange_lookup(job->exchange);
	const MdInterval *iv = ex ? md_exchange_interval(ex, job->interval) : NULL;
	JobCounters cnt = {0, 0};
	int64		from,
				cursor;
	MemoryContext pagectx,
				old;

	if (ex == NULL || iv == NULL)
	{
		md_finish_job(job, "failed",
					  ex == NULL ? psprintf("unknown exchange \"%s\"", job->exchange) :
					  psprintf("%s does not offer interval \"%s\"", ex->name, job->interval),
					  &cnt);
		return;
	}

	from = md_interval_floor(iv, job->from_ms);
	cursor = job->cursor_ms > from ? job->cursor_ms : from;
	pagectx = AllocSetContextCreate(CurrentMemoryContext, "mdfeed page", ALLOCSET_DEFAULT_SIZES);

	md_refresh_exchange_facts(ex);

	/* what the bulk archives have, first: it costs no REST weight */
	if (job->archive_cursor_ms < job->to_ms)
	{
		PageResult	ar = md_archive_candles(job, ex, iv,
											Max(cursor, job->archive_cursor_ms), job->to_ms);

		if (ar == PAGE_YIELDED ||
			(ar == PAGE_CANCELED && !md_job_still_running(job)))
		{
			MemoryContextDelete(pagectx);
			return;
		}
	}

	for (;;)
	{
		int64		gap_start,
					gap_end,
					win_end;
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
		found = md_first_gap(ex, iv, job->symbol, cursor, job->to_ms, &gap_start, &gap_end);
		md_commit_tx();
		MemoryContextSwitchTo(pagectx);
		if (!found)
		{
			MemoryContextSwitchTo(old);
			md_finish_job(job, "succeeded", NULL, &cnt);
			break;
		}

		limit = ex->klines_page_limit(md_interval_count(iv, gap_start, gap_end));
		win_end = ex->klines_windowed ? page_window_end(iv, gap_start, gap_end, limit) : gap_end;
		pr = fetch_page(ex, job, iv, gap_start, win_end, limit, &rows, &nrows, &cnt, &failmsg);
		if (pr == PAGE_CANCELED)
		{
			MemoryContextSwitchTo(old);
			if (md_job_still_running(job))
				continue;
			break;
		}
		if (pr == PAGE_YIELDED)
		{
			MemoryContextSwitchTo(old);
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
		server_now = md_server_now_ms(ex);
		for (first = 0; first < nrows && rows[first].open_ms < gap_start; first++)
			;
		for (last = first; last < nrows && rows[last].open_ms < win_end; last++)
			rows[last].closed = rows[last].close_ms + MD_CLOSE_GRACE_MS < server_now;

		/*
		 * A short page means the exchange has nothing more up to the
		 * window's end (before the listing, a maintenance window, or the
		 * present).
		 */
		if (nrows < limit || last == first)
			cursor = win_end;
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
				settle_ms = rows[i].close_ms + MD_CLOSE_GRACE_MS - server_now + 50;
				break;
			}
		}
		progress = (double) (Min(cursor, job->to_ms) - from) / (double) (job->to_ms - from);

		md_begin_tx();
		for (int i = first; i < last; i++)
			rows[i].symbol = job->symbol;
		written = md_store_candles(ex, iv, rows + first, last - first);
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
			int64		head_end = last > first ? rows[first].open_ms : win_end;

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
									Min(win_end, closed_before));
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
