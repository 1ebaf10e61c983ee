/*-------------------------------------------------------------------------
 *
 * archive_metrics.c
 *	  The archive part of an open-interest job: the daily metrics files,
 *	  which hold five-minute open interest for years where REST keeps 30
 *	  days.
 *
 * Each published day of the part of the job's range older than REST's
 * window is read, unless its five-minute rows are all stored already.  Its
 * rows go into the exchange's five-minute table, and its full-hour rows
 * into the hourly table for the hours not stored yet, so that the hourly
 * series reaches back as far as the archives do while what REST stored
 * stays.  A day the archives lack (not published, a failed checksum) is
 * counted, and the job says so; REST cannot have it either.
 *
 * One file is one day of 288 rows: it is stored in one transaction.
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
#include "jobrun.h"
#include "shmem.h"
#include "store.h"
#include "zipread.h"

#define DAY_MS INT64CONST(86400000)
#define STEP_MS INT64CONST(300000)
#define HOUR_MS INT64CONST(3600000)
/* rows of one day, and some to spare for a file with more */
#define MAX_DAY_ROWS 400

/*
 * stored_5m counts the five-minute rows stored for a symbol in [from, to).
 */
static int64
stored_5m(const MdExchange *ex, const char *symbol, int64 from_ms, int64 to_ms)
{
	static SPIPlanPtr plans[MD_MAX_EXCHANGES];
	SPIPlanPtr *plan = &plans[md_exchange_id(ex)];
	Datum		values[3];
	bool		isnull;
	int64		n;
	MemoryContext cxt = CurrentMemoryContext;

	md_begin_tx();
	if (*plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		*plan = md_keep_plan(psprintf("SELECT pg_catalog.count(*) FROM mdfeed.%s "
									  "WHERE symbol = $1 AND ts >= $2 AND ts < $3",
									  ex->archive->open_interest_5m_table), 3, types);
	}
	values[0] = CStringGetTextDatum(symbol);
	values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(from_ms));
	values[2] = TimestampTzGetDatum(md_ms_to_timestamptz(to_ms));
	if (SPI_execute_plan(*plan, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "query on mdfeed.%s failed", ex->archive->open_interest_5m_table);
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	md_commit_tx();
	MemoryContextSwitchTo(cxt);
	return n;
}

/*
 * read_day parses a verified metrics file: the rows of [lo, hi) on the
 * five-minute grid, in order.  A damaged file gives what it had before
 * the damage, and *err.
 */
static int
read_day(const MdExchange *ex, MdArchiveFile *f, int64 lo, int64 hi, MdOpenInterest *rows,
		 int64 *malformed, char **err)
{
	MdZipReader *z = md_zip_open(f->data, f->len, err);
	int			n = 0;
	int64		lines = 0;
	const char *line;
	size_t		len;
	MdZipResult r;

	if (z == NULL)
		return 0;
	while ((r = md_zip_next_line(z, &line, &len, err)) == MD_ZIP_LINE)
	{
		MdOpenInterest *o = &rows[n];
		char	   *lerr = NULL;
		MdArchiveLine kind;

		if (++lines % 4096 == 0)
			CHECK_FOR_INTERRUPTS();
		if (len == 0 || (len == 1 && line[0] == '\r'))
			continue;
		kind = ex->archive->parse_metrics_line(line, len, o, &lerr);
		if (kind == MD_LINE_HEADER && lines == 1)
			continue;
		if (kind != MD_LINE_ROW || o->ts_ms % STEP_MS != 0 ||
			(n > 0 && o->ts_ms <= rows[n - 1].ts_ms))
		{
			(*malformed)++;
			continue;
		}
		if (o->ts_ms < lo || o->ts_ms >= hi)
			continue;
		if (++n == MAX_DAY_ROWS)
			break;
	}
	if (r != MD_ZIP_ERROR)
		*err = NULL;
	md_zip_close(z);
	return n;
}

/*
 * store_day writes a day's rows, five-minute and full-hour, with the job's
 * archive progress, in one transaction.  Returns false if the job was
 * canceled meanwhile.
 */
static bool
store_day(const MdJob *job, const MdExchange *ex, MdOpenInterest *rows, int n, int64 cursor_ms,
		  int64 *written)
{
	MemoryContext cxt = CurrentMemoryContext;
	MdOpenInterest *hours = palloc(sizeof(MdOpenInterest) * Max(n, 1));
	int			nh = 0;
	int64		w;
	bool		ok;

	for (int i = 0; i < n; i++)
		if (rows[i].ts_ms % HOUR_MS == 0)
			hours[nh++] = rows[i];
	md_begin_tx();
	MemoryContextSwitchTo(cxt);
	w = md_store_open_interest_5m(ex, job->symbol, rows, n);
	w += md_fill_open_interest(ex, job->symbol, hours, nh);
	ok = md_job_archive_checkpoint(job, cursor_ms, w, 1, md_archive_progress(job, cursor_ms));
	if (ok)
		md_commit_tx();
	else
		md_abort_tx();
	MemoryContextSwitchTo(cxt);
	*written += w;
	return ok;
}

/*
 * md_archive_open_interest reads the metrics files of [from_ms, to_ms)
 * into the five-minute table and the hourly one.  *missing_days counts the
 * published days the archives did not give.
 */
PageResult
md_archive_open_interest(const MdJob *job, const MdExchange *ex, int64 from_ms, int64 to_ms,
						 int64 *missing_days)
{
	const MdArchiveOps *ops = ex->archive;
	MdArchiveQueue *q;
	MdOpenInterest *rows;
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext daycxt;
	PageResult	result = PAGE_OK;
	int64		now = md_now_ms();
	int64		written = 0;
	int			files = 0;
	MdArchiveFile *f;
	char	   *note = NULL;

	*missing_days = 0;
	if (!md_archive_enabled(ex) || ops->metrics_path == NULL || from_ms >= to_ms)
		return PAGE_OK;
	q = md_archive_queue(ex);
	for (int64 d = from_ms - from_ms % DAY_MS; d < to_ms && d + DAY_MS + ops->daily_delay_ms <= now;
		 d += DAY_MS)
	{
		int64		lo = Max(d, from_ms);
		int64		hi = Min(d + DAY_MS, to_ms);
		int64		want = (hi - 1) / STEP_MS - (lo + STEP_MS - 1) / STEP_MS + 1;
		int			y,
					m,
					dd;

		if (want <= 0 || stored_5m(ex, job->symbol, lo, hi) >= want)
			continue;
		md_utc_date(d, &y, &m, &dd);
		md_archive_add(q, ops->metrics_path(job->symbol, y, m, dd), d, d + DAY_MS, false);
	}

	md_slot_set_state("archives");
	rows = palloc(sizeof(MdOpenInterest) * MAX_DAY_ROWS);
	daycxt = AllocSetContextCreate(cxt, "mdfeed archive day", ALLOCSET_DEFAULT_SIZES);
	while ((f = md_archive_next(q)) != NULL)
	{
		MdArchiveFile *head;
		int64		cursor;
		bool		running = true;

		if (f->state == MD_FILE_READY)
		{
			int64		malformed = 0;
			char	   *err = NULL;
			int			n;

			MemoryContextSwitchTo(daycxt);
			n = read_day(ex, f, Max(f->from_ms, from_ms), Min(f->to_ms, to_ms), rows,
						 &malformed, &err);
			if ((err != NULL || malformed > 0) && note == NULL)
				note = MemoryContextStrdup(cxt, psprintf("%s: %s", f->name, err ? err :
														 psprintf(INT64_FORMAT " lines were not metrics rows",
																  malformed)));
			md_archive_done(q, f);
			/* everything before the next file's day is done */
			head = q->files != NIL ? linitial(q->files) : NULL;
			cursor = head != NULL ? head->from_ms : to_ms;
			running = store_day(job, ex, rows, n, Max(cursor, from_ms), &written);
			MemoryContextSwitchTo(cxt);
			MemoryContextReset(daycxt);
			files++;
		}
		else
		{
			(*missing_days)++;
			if (note == NULL && f->state == MD_FILE_FAILED)
				note = MemoryContextStrdup(cxt, psprintf("%s: %s", f->name, f->failure));
			md_archive_done(q, f);
		}
		if (!running)
		{
			result = PAGE_CANCELED;
			break;
		}
		if ((result = md_archive_go_on(job, q)) != PAGE_OK)
			break;
	}
	if (result == PAGE_OK && q->files != NIL)
		result = PAGE_CANCELED;
	if (result == PAGE_OK)
	{
		/* all of the archives' part is done */
		md_begin_tx();
		(void) md_job_archive_checkpoint(job, to_ms, 0, 0, md_archive_progress(job, to_ms));
		md_job_set_detail(job, psprintf("archives: %d files, " INT64_FORMAT " rows (%d downloads, %.1f MB)%s%s%s",
										files, written, q->downloads, (double) q->bytes / 1e6,
										*missing_days > 0 ?
										psprintf("; " INT64_FORMAT " days of open interest before %s are in neither "
												 "the archives nor REST's window",
												 *missing_days, timestamptz_to_str(md_ms_to_timestamptz(to_ms))) : "",
										note ? "; " : "", note ? note : ""));
		md_commit_tx();
		MemoryContextSwitchTo(cxt);
	}
	md_archive_free(q);
	MemoryContextDelete(daycxt);
	pfree(rows);
	md_slot_set_state("working");
	return result;
}
