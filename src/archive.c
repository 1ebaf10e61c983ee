/*-------------------------------------------------------------------------
 *
 * archive.c
 *	  The archive file queue: downloads a few files ahead, verifies each
 *	  against its checksum file, retries what failed in passing, and hands
 *	  the files out in the order they were queued.
 *
 * An importer queues the files of the periods it wants, then takes them
 * one by one (md_archive_next).  While it reads one, the next ones
 * download: it calls md_archive_pump between its batches, which lets curl
 * move every transfer on without sleeping.  At most AHEAD files (and the
 * one the importer waits for) are in memory at once, each at most
 * mdfeed.archive_max_file_size, whatever the size of what they inflate to.
 *
 * Nothing is trusted: a file is READY only if its SHA-256 is the one its
 * checksum file gives.  A transfer that broke off (a reset, a truncated
 * body) or a mismatch is fetched again, up to ATTEMPTS times, then the file
 * is FAILED; a not-found answer (a file not published, or never) makes it
 * MISSING at once.  What an importer does with those is its own business
 * (a month's days, then REST).
 *
 * Archive downloads cost nothing of the exchange's REST budget: they go to
 * another host, which counts no weight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "common.h"
#include "archive.h"
#include "jobrun.h"

/* files in memory or on the way at once, the one being read included */
#define AHEAD 3
/* downloads of one file before it is given up */
#define ATTEMPTS 3
/* a checksum file is a line */
#define CHECKSUM_MAX_BYTES 4096

/*
 * md_archive_enabled says whether the exchange has archives and the user
 * has not turned them off (an empty base URL).
 */
bool
md_archive_enabled(const MdExchange *ex)
{
	const char *base;

	if (ex->archive == NULL)
		return false;
	base = ex->archive->base_url();
	return base != NULL && base[0] != '\0';
}

/*
 * md_archive_queue makes an empty queue in the current memory context.
 */
MdArchiveQueue *
md_archive_queue(const MdExchange *ex)
{
	MdArchiveQueue *q = palloc0(sizeof(MdArchiveQueue));

	q->ex = ex;
	q->cxt = AllocSetContextCreate(CurrentMemoryContext, "mdfeed archive queue",
								   ALLOCSET_DEFAULT_SIZES);
	return q;
}

static MdArchiveFile *
new_file(MdArchiveQueue *q, char *path, int64 from_ms, int64 to_ms, bool monthly)
{
	MdArchiveFile *f = MemoryContextAllocZero(q->cxt, sizeof(MdArchiveFile));
	const char *slash;

	f->path = MemoryContextStrdup(q->cxt, path);
	slash = strrchr(f->path, '/');
	f->name = slash ? slash + 1 : f->path;
	f->from_ms = from_ms;
	f->to_ms = to_ms;
	f->monthly = monthly;
	f->state = MD_FILE_QUEUED;
	return f;
}

/*
 * md_archive_add queues a file at the end.
 */
MdArchiveFile *
md_archive_add(MdArchiveQueue *q, char *path, int64 from_ms, int64 to_ms, bool monthly)
{
	MdArchiveFile *f = new_file(q, path, from_ms, to_ms, monthly);
	MemoryContext old = MemoryContextSwitchTo(q->cxt);

	q->files = lappend(q->files, f);
	MemoryContextSwitchTo(old);
	return f;
}

/*
 * md_archive_add_next queues a file among those not handed out yet, in
 * the order of the periods (the queue is in that order): a month's days,
 * when the month's file failed or lacked some, come before the next month.
 */
void
md_archive_add_next(MdArchiveQueue *q, char *path, int64 from_ms, int64 to_ms)
{
	MdArchiveFile *f = new_file(q, path, from_ms, to_ms, false);
	MemoryContext old = MemoryContextSwitchTo(q->cxt);
	int			pos;

	/* never ahead of the head, which is being read */
	for (pos = 1; pos < list_length(q->files); pos++)
		if (((MdArchiveFile *) list_nth(q->files, pos))->from_ms > from_ms)
			break;
	q->files = list_insert_nth(q->files, Min(pos, list_length(q->files)), f);
	MemoryContextSwitchTo(old);
}

/*
 * start_fetch asks for a file and its checksum at once.
 */
static void
start_fetch(MdArchiveQueue *q, MdArchiveFile *f)
{
	const MdArchiveOps *ops = q->ex->archive;
	MemoryContext old;
	char	   *url;

	if (f->cxt != NULL)
		MemoryContextDelete(f->cxt);
	f->cxt = AllocSetContextCreate(q->cxt, "mdfeed archive file", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(f->cxt);
	url = psprintf("%s%s", ops->base_url(), f->path);
	f->zip = md_http_start(url, (size_t) mdfeed_archive_max_file_kb * 1024);
	f->sum = md_http_start(psprintf("%s%s", url, ops->checksum_suffix), CHECKSUM_MAX_BYTES);
	MemoryContextSwitchTo(old);
	f->state = MD_FILE_FETCHING;
	f->attempts++;
	q->downloads++;
}

/*
 * sha256_hex is the SHA-256 of len bytes, as 64 lower-case hex digits.
 */
static bool
sha256_hex(const char *data, size_t len, char *hex)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return false;
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return true;
}

/*
 * passing says why a transfer failed if retrying may help, or NULL if it
 * arrived whole.
 */
static char *
transfer_problem(const MdHttpResponse *r, bool *final)
{
	*final = false;
	if (r->outcome == MD_HTTP_TOO_LARGE)
	{
		*final = true;
		return psprintf("larger than mdfeed.archive_max_file_size (%d kB)",
						mdfeed_archive_max_file_kb);
	}
	if (r->outcome != MD_HTTP_OK)
		return psprintf("download failed: %s", r->error);
	if (r->status == 404)
	{
		*final = true;
		return pstrdup("not published");
	}
	if (r->status != 200)
		return psprintf("HTTP %ld", r->status);
	return NULL;
}

/*
 * settle judges a file whose two transfers have ended: READY if it is
 * whole and its checksum matches, MISSING or FAILED for good, or QUEUED
 * again for another attempt.
 */
static void
settle(MdArchiveQueue *q, MdArchiveFile *f)
{
	const MdArchiveOps *ops = q->ex->archive;
	MdHttpResponse *zr = md_http_finish(f->zip, NULL);
	MdHttpResponse *sr = md_http_finish(f->sum, NULL);
	MemoryContext old = MemoryContextSwitchTo(f->cxt);
	char	   *problem;
	bool		final;
	bool		missing = false;

	q->bytes += zr->body.len + sr->body.len;
	problem = transfer_problem(zr, &final);
	if (problem == NULL)
		problem = transfer_problem(sr, &final);
	if (problem != NULL)
		missing = final && (zr->status == 404 || sr->status == 404);
	else
	{
		char		want[65];
		char		got[65];
		char	   *err = NULL;

		if (!ops->parse_checksum(sr->body.data, sr->body.len, f->name, want, &err))
			problem = err;
		else if (!sha256_hex(zr->body.data, zr->body.len, got))
		{
			problem = pstrdup("could not compute its SHA-256");
			final = true;
		}
		else if (strcmp(want, got) != 0)
			problem = psprintf("checksum mismatch (SHA-256 %.12s…, the checksum file says %.12s…)",
							   got, want);
	}
	MemoryContextSwitchTo(old);

	if (problem == NULL)
	{
		f->state = MD_FILE_READY;
		f->data = zr->body.data;
		f->len = zr->body.len;
		/* the checksum's memory goes with the file's */
		return;
	}
	if (!final && f->attempts < ATTEMPTS)
	{
		elog(DEBUG1, "mdfeed: archive file %s: %s; fetching it again", f->name, problem);
		f->state = MD_FILE_QUEUED;
		return;
	}
	f->failure = MemoryContextStrdup(q->cxt, f->attempts > 1 && !final ?
									 psprintf("%s, %d times", problem, f->attempts) : problem);
	f->state = missing ? MD_FILE_MISSING : MD_FILE_FAILED;
	MemoryContextDelete(f->cxt);
	f->cxt = NULL;
	f->zip = f->sum = NULL;
}

/*
 * md_archive_pump moves the downloads on without waiting: what arrived is
 * taken in, files whose transfers ended are judged, and files queued within
 * AHEAD of the head are asked for.
 */
void
md_archive_pump(MdArchiveQueue *q)
{
	int			i = 0;
	int			held = 0;
	ListCell   *lc;

	md_http_pump();
	/* files added next may have pushed fetched ones back: count them all */
	foreach(lc, q->files)
	{
		MdArchiveFile *f = lfirst(lc);

		if (f->state == MD_FILE_FETCHING && md_http_done(f->zip) && md_http_done(f->sum))
			settle(q, f);
		if (f->state == MD_FILE_FETCHING || f->state == MD_FILE_READY)
			held++;
	}
	foreach(lc, q->files)
	{
		MdArchiveFile *f = lfirst(lc);

		if (i >= AHEAD)
			break;
		/* the head always: it is what the importer waits for */
		if (f->state == MD_FILE_QUEUED && (i == 0 || held < AHEAD))
		{
			start_fetch(q, f);
			held++;
		}
		i++;
	}
}

/*
 * md_archive_next hands out the next file, READY, MISSING or FAILED, once
 * it has arrived; NULL when the queue is empty or the job was canceled
 * (md_job_cancel_requested).  The caller gives it back with
 * md_archive_done.
 */
MdArchiveFile *
md_archive_next(MdArchiveQueue *q)
{
	MdArchiveFile *f;

	if (q->files == NIL)
		return NULL;
	f = linitial(q->files);
	for (;;)
	{
		md_archive_pump(q);
		if (f->state != MD_FILE_FETCHING && f->state != MD_FILE_QUEUED)
			return f;
		if (f->state == MD_FILE_FETCHING)
		{
			/* waiting on the head's transfers moves every transfer on */
			if (!md_http_done(f->zip))
				md_http_finish(f->zip, md_job_cancel_requested);
			if (md_http_done(f->zip) && !md_http_done(f->sum))
				md_http_finish(f->sum, md_job_cancel_requested);
			if (md_job_cancel_requested())
				return NULL;
		}
	}
}

/*
 * md_archive_done drops the head of the queue, which the caller has read.
 */
void
md_archive_done(MdArchiveQueue *q, MdArchiveFile *f)
{
	Assert(q->files != NIL && linitial(q->files) == f);
	q->files = list_delete_first(q->files);
	if (f->cxt != NULL)
		MemoryContextDelete(f->cxt);
	f->cxt = NULL;
	f->data = NULL;
}

/*
 * md_archive_progress is a job's progress once its archive part has handled
 * everything before cursor_ms: short of 1, which only the job's end says.
 */
double
md_archive_progress(const MdJob *job, int64 cursor_ms)
{
	return 0.99 * (double) (cursor_ms - job->from_ms) /
		(double) Max(1, job->to_ms - job->from_ms);
}

/*
 * md_archive_go_on says, after a file, whether the importer takes the next
 * one: PAGE_OK, or PAGE_YIELDED when there is one and the job has put
 * itself back in the queue for another (md_job_yielded).
 */
PageResult
md_archive_go_on(const MdJob *job, MdArchiveQueue *q)
{
	if (q->files != NIL && md_job_yielded(job))
		return PAGE_YIELDED;
	return PAGE_OK;
}

/*
 * md_archive_free drops the queue and whatever is still on the way.
 */
void
md_archive_free(MdArchiveQueue *q)
{
	MemoryContextDelete(q->cxt);
	pfree(q);
}
