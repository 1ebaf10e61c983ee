/*-------------------------------------------------------------------------
 *
 * archive.h
 *	  Fetching an exchange's bulk archive files: a queue that downloads
 *	  ahead and hands out verified files in order (archive.c), and the two
 *	  importers that use it (archive_candles.c, archive_metrics.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_ARCHIVE_H
#define MDFEED_ARCHIVE_H

#include "nodes/pg_list.h"

#include "exchange.h"
#include "http.h"
#include "jobrun.h"
#include "jobs.h"

typedef enum MdArchiveFileState
{
	MD_FILE_QUEUED,				/* not asked for yet */
	MD_FILE_FETCHING,			/* its file and checksum are on the way */
	MD_FILE_READY,				/* here, and its checksum matches */
	MD_FILE_MISSING,			/* not published (404) */
	MD_FILE_FAILED				/* no good copy: see failure */
} MdArchiveFileState;

typedef struct MdArchiveFile
{
	char	   *path;			/* under the archive's base URL */
	const char *name;			/* the last part of path */
	int64		from_ms;		/* the period it holds */
	int64		to_ms;
	bool		monthly;
	MdArchiveFileState state;
	int			attempts;
	char	   *failure;		/* why it is MISSING or FAILED */
	const char *data;			/* READY: the zip */
	size_t		len;
	/* private */
	MemoryContext cxt;			/* the file's memory, freed when done */
	MdHttpTransfer *zip;
	MdHttpTransfer *sum;
} MdArchiveFile;

typedef struct MdArchiveQueue
{
	const MdExchange *ex;
	MemoryContext cxt;
	List	   *files;			/* of MdArchiveFile, in the order handed out */
	/* what the queue did, for the job's detail */
	int			downloads;
	int64		bytes;
} MdArchiveQueue;

extern bool md_archive_enabled(const MdExchange *ex);
extern MdArchiveQueue *md_archive_queue(const MdExchange *ex);
extern MdArchiveFile *md_archive_add(MdArchiveQueue *q, char *path, int64 from_ms, int64 to_ms,
									 bool monthly);
extern void md_archive_add_next(MdArchiveQueue *q, char *path, int64 from_ms, int64 to_ms);
extern MdArchiveFile *md_archive_next(MdArchiveQueue *q);
extern void md_archive_pump(MdArchiveQueue *q);
extern void md_archive_done(MdArchiveQueue *q, MdArchiveFile *f);
extern void md_archive_free(MdArchiveQueue *q);
extern double md_archive_progress(const MdJob *job, int64 cursor_ms);
extern PageResult md_archive_go_on(const MdJob *job, MdArchiveQueue *q);

/* the importers, run by the job runners before they go to REST */
extern PageResult md_archive_candles(const MdJob *job, const MdExchange *ex, const MdInterval *iv,
									 int64 from_ms, int64 to_ms);
extern PageResult md_archive_open_interest(const MdJob *job, const MdExchange *ex,
										   int64 from_ms, int64 to_ms, int64 *missing_days);

#endif
