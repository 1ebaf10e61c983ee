/*-------------------------------------------------------------------------
 *
 * jobrun.h
 *	  What the job runners of the backfill worker share (jobrun.c):
 *	  interruptible sleeps, fetching with retries, yielding and finishing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_JOBRUN_H
#define MDFEED_JOBRUN_H

#include "exchange.h"
#include "jobs.h"
#include "workers.h"

typedef enum PageResult
{
	PAGE_OK,
	PAGE_FAILED,				/* the job must fail: see the message */
	PAGE_CANCELED,
	PAGE_YIELDED				/* the job went back to the queue: its
								 * exchange is unavailable and another
								 * exchange's job waits */
} PageResult;

/* what a job has done since its last checkpoint */
typedef struct JobCounters
{
	int			requests;
	int			retries;
} JobCounters;

/* parses an answer into arg; false with *err set if malformed */
typedef bool (*MdParseFn) (const char *body, size_t len, void *arg, char **err);

/* runs one job of its kind to its end (or until it yields or is canceled) */
typedef void (*MdJobRunner) (const MdJob *job);

extern bool md_job_cancel_requested(void);
extern bool md_sleep_ms(int64 ms);
extern bool md_job_still_running(const MdJob *job);
extern bool md_job_yielded(const MdJob *job);
extern void md_finish_job(const MdJob *job, const char *state, const char *error,
						  JobCounters *cnt);
extern PageResult md_fetch_with_retries(const MdExchange *ex, const MdJob *job,
										const MdEndpoint *ep, const char *path, int cost,
										MdParseFn parse, void *parse_arg,
										JobCounters *cnt, char **failmsg);

extern int64 md_take_yielded_job(void);
extern void md_refresh_exchange_facts(const MdExchange *ex);
extern int64 md_server_now_ms(const MdExchange *ex);

#endif
