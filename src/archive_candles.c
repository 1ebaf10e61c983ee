/*-------------------------------------------------------------------------
 *
 * archive_candles.c
 *	  The archive part of a candles job: the published months and days of
 *	  its range, read from the exchange's bulk archives before REST is
 *	  asked for anything.
 *
 * The plan: a monthly file for each whole month of the range that has
 * ended, a daily file for each ended day of the rest (partial months, a
 * month not yet published), leaving out the periods with nothing missing
 * and the files that would give fewer candles than MIN_FILE_CANDLES (one
 * REST request does better).  Files are read in order; after a monthly
 * file, whatever its month still lacks (the file was not published, failed
 * its checksum, or is one of the incomplete months the archive has
 * published) is asked of the daily files of those days.  What is missing
 * after that is the REST runner's: it asks only for the gaps (gaps.c), so
 * REST pays for nothing the archives had.
 *
 * Rows go through the same checks as REST's (the adapter's line parser)
 * and the same store: batches of BATCH_ROWS, each its own transaction,
 * which into an empty range is the COPY path of store.c.  A row off the
 * interval's grid, out of order or outside the file's period is skipped
 * and counted; the gap finder then sees the hole and REST fills it.
 *
 * The job's archive_cursor says how far the files have been handled, so
 * that a job that yields, or a worker that restarts, plans only the rest.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common.h"
#include "archive.h"
#include "gaps.h"
#include "jobrun.h"
#include "shmem.h"
#include "store.h"
#include "zipread.h"

/* rows per transaction */
#define BATCH_ROWS 10000
/* a file that would give fewer candles is left to REST */
#define MIN_FILE_CANDLES 60
/* notes kept for the job's detail */
#define MAX_NOTES 6

#define DAY_MS INT64CONST(86400000)

typedef struct Import
{
	const MdJob *job;
	const MdExchange *ex;
	const MdInterval *iv;
	int64		from_ms;		/* the archive part of the job's range */
	int64		to_ms;
	int64		now_ms;			/* the exchange's clock */
	const char *daily_code;		/* NULL: no daily files of the interval */
	const char *monthly_code;
	MdArchiveQueue *q;
	/* what it did */
	int64		rows;
	int			files;
	int64		skipped;
	List	   *notes;
	int			more_notes;
	MdCandle   *rows_buf;		/* BATCH_ROWS */
	MemoryContext batchcxt;		/* the rows' strings */
} Import;

static void
add_note(Import *im, char *note)
{
	if (list_length(im->notes) < MAX_NOTES)
		im->notes = lappend(im->notes, note);
	else
		im->more_notes++;
}

/*
 * has_gap says whether any candle of [from, to) is missing (not stored
 * closed, not confirmed empty).
 */
static bool
has_gap(Import *im, int64 from_ms, int64 to_ms)
{
	int64		s,
				e;
	bool		found;
	MemoryContext cxt = CurrentMemoryContext;

	md_begin_tx();
	found = md_first_gap(im->ex, im->iv, im->job->symbol, from_ms, to_ms, &s, &e);
	md_commit_tx();
	MemoryContextSwitchTo(cxt);
	return found;
}

/*
 * worth_a_file says whether a file of [from, to) should be read: it has
 * been published, it would give enough candles of the job's range, and
 * some of them are missing.
 */
static bool
worth_a_file(Import *im, int64 from_ms, int64 to_ms, int64 delay_ms)
{
	int64		lo = Max(from_ms, im->from_ms);
	int64		hi = Min(to_ms, im->to_ms);

	if (to_ms + delay_ms > im->now_ms || lo >= hi)
		return false;
	lo = md_interval_floor(im->iv, lo);
	if (md_interval_count(im->iv, lo, hi) < MIN_FILE_CANDLES)
		return false;
	return has_gap(im, lo, hi);
}

static char *
file_path(Import *im, const char *code, int64 day_ms, bool monthly)
{
	int			y,
				m,
				d;

	md_utc_date(day_ms, &y, &m, &d);
	return im->ex->archive->klines_path(im->job->symbol, code, y, m, monthly ? 0 : d);
}

/*
 * plan_days queues the daily files of [from, to) that are worth reading,
 * at the end of the queue or (next) among the files not handed out yet.
 */
static void
plan_days(Import *im, int64 from_ms, int64 to_ms, bool next)
{
	if (im->daily_code == NULL)
		return;
	for (int64 d = from_ms - from_ms % DAY_MS; d < to_ms; d += DAY_MS)
	{
		if (!worth_a_file(im, d, d + DAY_MS, im->ex->archive->daily_delay_ms))
			continue;
		if (next)
			md_archive_add_next(im->q, file_path(im, im->daily_code, d, false), d, d + DAY_MS);
		else
			md_archive_add(im->q, file_path(im, im->daily_code, d, false), d, d + DAY_MS, false);
	}
}

/*
 * plan queues the files of the range: whole ended months as monthly
 * files, the rest as daily files.
 */
static void
plan(Import *im)
{
	int64		m = md_interval_floor(&md_intervals[MD_NUM_INTERVALS - 1], im->from_ms);

	while (m < im->to_ms)
	{
		int64		next = md_interval_next(&md_intervals[MD_NUM_INTERVALS - 1], m);

		if (im->monthly_code != NULL && m >= im->from_ms && next <= im->to_ms &&
			next + im->ex->archive->monthly_delay_ms <= im->now_ms)
		{
			if (worth_a_file(im, m, next, im->ex->archive->monthly_delay_ms))
				md_archive_add(im->q, file_path(im, im->monthly_code, m, true), m, next, true);
		}
		else
			plan_days(im, Max(m, im->from_ms), Min(next, im->to_ms), false);
		m = next;
	}
}

/*
 * flush stores a batch of rows in its own transaction, with the job's
 * archive progress; false if the job was canceled meanwhile.
 */
static bool
flush(Import *im, MdCandle *rows, int n, int64 cursor_ms, int files)
{
	MemoryContext cxt = CurrentMemoryContext;
	int64		written;
	bool		ok;

	/* the store allocates in the transaction's memory, freed at commit */
	md_begin_tx();
	for (int i = 0; i < n; i++)
		rows[i].symbol = im->job->symbol;
	written = md_store_candles(im->ex, im->iv, rows, n);
	if (n > 0)
		md_notify_candle(im->ex->name, im->job->symbol, im->iv, rows[n - 1].open_ms);
	ok = md_job_archive_checkpoint(im->job, cursor_ms, written, files,
								   md_archive_progress(im->job, cursor_ms));
	if (!ok)
		md_abort_tx();
	else
		md_commit_tx();
	MemoryContextSwitchTo(cxt);
	im->rows += written;
	return ok;
}

/*
 * import_file stores the rows of a verified file that lie in its period
 * and the job's range.  Returns false if the job was canceled meanwhile;
 * a file that turns out damaged is noted, and what it lacks is left to
 * the gap finder.
 */
static bool
import_file(Import *im, MdArchiveFile *f)
{
	const MdArchiveOps *ops = im->ex->archive;
	int64		lo = Max(f->from_ms, im->from_ms);
	int64		hi = Min(f->to_ms, im->to_ms);
	MdCandle   *rows = im->rows_buf;
	MemoryContext cxt = CurrentMemoryContext;
	MdZipReader *z;
	int			n = 0;
	int64		last_open = PG_INT64_MIN;
	int64		lines = 0,
				skipped = 0,
				malformed = 0;
	char	   *first_err = NULL;
	char	   *err = NULL;
	bool		ok = true;
	MdZipResult r;

	z = md_zip_open(f->data, f->len, &err);
	if (z == NULL)
	{
		add_note(im, psprintf("%s: %s", f->name, err));
		return true;
	}
	MemoryContextSwitchTo(im->batchcxt);
	for (;;)
	{
		const char *line;
		size_t		len;
		MdCandle   *c = &rows[n];
		MdArchiveLine kind;

		r = md_zip_next_line(z, &line, &len, &err);
		if (r != MD_ZIP_LINE)
			break;
		if (++lines % 4096 == 0)
			CHECK_FOR_INTERRUPTS();
		if (len == 0 || (len == 1 && line[0] == '\r'))
			continue;
		kind = ops->parse_kline_line(line, len, c, &err);
		if (kind == MD_LINE_HEADER && lines == 1)
			continue;
		if (kind != MD_LINE_ROW)
		{
			if (first_err == NULL)
				first_err = MemoryContextStrdup(cxt, psprintf("line " INT64_FORMAT ": %s", lines,
															  kind == MD_LINE_HEADER ? "a second header" : err));
			malformed++;
			continue;
		}
		if (c->open_ms < lo || c->open_ms >= hi)
			continue;			/* outside the period or the job's range */
		if (md_interval_floor(im->iv, c->open_ms) != c->open_ms || c->open_ms <= last_open)
		{
			skipped++;			/* off the grid, or out of order */
			continue;
		}
		last_open = c->open_ms;
		c->closed = c->close_ms + MD_CLOSE_GRACE_MS < im->now_ms;
		if (++n == BATCH_ROWS)
		{
			MemoryContextSwitchTo(cxt);
			ok = flush(im, rows, n, f->from_ms, 0);
			MemoryContextReset(im->batchcxt);
			MemoryContextSwitchTo(im->batchcxt);
			n = 0;
			if (!ok)
				break;
			/* the next files download while this one is read */
			md_archive_pump(im->q);
			CHECK_FOR_INTERRUPTS();
		}
	}
	MemoryContextSwitchTo(cxt);
	if (ok && r == MD_ZIP_ERROR)
		add_note(im, psprintf("%s: %s", f->name, err));
	if (ok)
		ok = flush(im, rows, n, f->from_ms, 1);
	MemoryContextReset(im->batchcxt);
	md_zip_close(z);
	if (malformed > 0)
		add_note(im, psprintf("%s: " INT64_FORMAT " lines were not klines (%s)",
							  f->name, malformed, first_err));
	if (skipped > 0)
		add_note(im, psprintf("%s: " INT64_FORMAT " rows off the interval's grid or out of order",
							  f->name, skipped));
	im->skipped += skipped;
	im->files++;
	return ok;
}

/*
 * set_detail tells, in the job's detail, what the archives gave and what
 * went wrong with them.
 */
static void
set_detail(Import *im)
{
	StringInfoData buf;
	ListCell   *lc;
	MemoryContext cxt = CurrentMemoryContext;

	if (im->files == 0 && im->notes == NIL)
		return;
	initStringInfo(&buf);
	appendStringInfo(&buf, "archives: %d files, " INT64_FORMAT " rows (%d downloads, %.1f MB)",
					 im->files, im->rows, im->q->downloads, (double) im->q->bytes / 1e6);
	foreach(lc, im->notes)
		appendStringInfo(&buf, "; %s", (char *) lfirst(lc));
	if (im->more_notes > 0)
		appendStringInfo(&buf, "; and %d more", im->more_notes);
	md_begin_tx();
	md_job_set_detail(im->job, buf.data);
	md_commit_tx();
	MemoryContextSwitchTo(cxt);
}

/*
 * md_archive_candles reads what the archives have of the job's candles in
 * [from_ms, to_ms) (from_ms: where an earlier run left off) into the
 * table.  PAGE_OK when its part is done, PAGE_CANCELED or PAGE_YIELDED
 * when the runner must stop.
 */
PageResult
md_archive_candles(const MdJob *job, const MdExchange *ex, const MdInterval *iv,
				   int64 from_ms, int64 to_ms)
{
	Import		im;
	PageResult	result = PAGE_OK;
	int			idx = iv - md_intervals;
	MdArchiveFile *f;

	if (!md_archive_enabled(ex) || from_ms >= to_ms)
		return PAGE_OK;
	memset(&im, 0, sizeof(im));
	im.job = job;
	im.ex = ex;
	im.iv = iv;
	im.from_ms = md_interval_floor(iv, from_ms);
	im.to_ms = to_ms;
	im.now_ms = md_server_now_ms(ex);
	im.monthly_code = ex->archive->monthly_codes[idx];
	im.daily_code = ex->archive->daily_codes[idx];
	im.q = md_archive_queue(ex);
	im.rows_buf = palloc(sizeof(MdCandle) * BATCH_ROWS);
	im.batchcxt = AllocSetContextCreate(CurrentMemoryContext, "mdfeed archive rows",
										ALLOCSET_DEFAULT_SIZES);
	md_slot_set_state("archives");
	plan(&im);

	while ((f = md_archive_next(im.q)) != NULL)
	{
		MdArchiveFile *head;
		int64		cursor;

		if (f->state == MD_FILE_READY)
		{
			if (!import_file(&im, f))
			{
				result = PAGE_CANCELED;
				break;
			}
		}
		else
			add_note(&im, psprintf("%s: %s%s", f->name, f->failure,
								   f->monthly && im.daily_code ? ", read as daily files" : ""));
		/* what a month still lacks, its days may have */
		if (f->monthly)
		{
			int64		s = Max(f->from_ms, im.from_ms),
						gs,
						ge;
			MemoryContext cxt = CurrentMemoryContext;

			for (;;)
			{
				bool		found;

				md_begin_tx();
				found = md_first_gap(ex, iv, job->symbol, s, f->to_ms, &gs, &ge);
				md_commit_tx();
				MemoryContextSwitchTo(cxt);
				if (!found)
					break;
				if (f->state == MD_FILE_READY)
					add_note(&im, psprintf("%s lacks candles from %s", f->name,
										   timestamptz_to_str(md_ms_to_timestamptz(gs))));
				plan_days(&im, gs, ge, true);
				/* the days of this gap are queued: look past its last day */
				s = (ge - 1) - (ge - 1) % DAY_MS + DAY_MS;
				if (s >= f->to_ms)
					break;
			}
		}
		md_archive_done(im.q, f);

		/* everything before the next file's period has been handled */
		head = im.q->files != NIL ? linitial(im.q->files) : NULL;
		cursor = head != NULL ? Max(head->from_ms, im.from_ms) : to_ms;
		{
			MemoryContext cxt = CurrentMemoryContext;
			bool		running;

			md_begin_tx();
			running = md_job_archive_checkpoint(job, cursor, 0, 0,
												md_archive_progress(job, cursor));
			md_commit_tx();
			MemoryContextSwitchTo(cxt);
			if (!running)
			{
				result = PAGE_CANCELED;
				break;
			}
		}
		if ((result = md_archive_go_on(job, im.q)) != PAGE_OK)
			break;
	}
	if (result == PAGE_OK && im.q->files != NIL)
		result = PAGE_CANCELED; /* md_archive_next stopped for a cancel */
	set_detail(&im);
	md_archive_free(im.q);
	MemoryContextDelete(im.batchcxt);
	pfree(im.rows_buf);
	md_slot_set_state("working");
	return result;
}
