/*-------------------------------------------------------------------------
 *
 * jobs.h
 *	  The job queue in mdfeed.jobs: claim, checkpoint, finish.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_JOBS_H
#define MDFEED_JOBS_H

typedef struct MdJob
{
	int64		id;
	char		kind[32];
	char		exchange[32];
	char		symbol[64];
	char		interval[8];
	int64		from_ms;
	int64		to_ms;
	int64		cursor_ms;		/* -1 if the job never checkpointed */
	char		origin[16];		/* user, sync, repair, stream */
	Oid			requester;		/* the role that queued a user job */
	int64		archive_cursor_ms;	/* the archives' part is done before
									 * this; -1 if it never started */
} MdJob;

/* all of these run in the caller's transaction, with SPI connected */
extern bool md_job_claim(MdJob *job, int64 skip_id);
extern bool md_job_checkpoint(const MdJob *job, int64 cursor_ms, int64 rows,
							  int requests, int retries, double progress);
extern bool md_job_archive_checkpoint(const MdJob *job, int64 archive_cursor_ms, int64 rows,
									  int files, double progress);
extern void md_job_finish(const MdJob *job, const char *state, const char *error,
						  int requests, int retries);
extern char *md_job_state(int64 id);
extern void md_job_release(const MdJob *job);

/* these run their own transactions */
extern bool md_job_should_yield(const MdJob *job);
extern bool md_job_should_step_aside(const MdJob *job);
extern void md_job_yield(const MdJob *job);
extern void md_job_set_detail(const MdJob *job, const char *detail);
extern Datum md_sync_lookback(void);
extern void md_queue_pair_sync(const char *exchange, const char *symbol, const char *interval,
							   const char *origin, bool only_if_behind, int64 closed_by_ms);

/* a candle is taken as final this long after its close time */
#define MD_CLOSE_GRACE_MS 2000

#endif
