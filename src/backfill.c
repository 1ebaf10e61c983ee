/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  The backfill worker: claims jobs from mdfeed.jobs and hands each to the
 *	  runner of its kind.
 *
 * The runners page through their ranges (candles.c, derivs.c) with what
 * jobrun.c provides; which job comes next, and when a running one yields,
 * is jobs.c's.  An unexpected error (an SPI failure, say) fails the job it
 * happened in, so that no job can keep a worker busy forever.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "utils/memutils.h"

#include "common.h"
#include "http.h"
#include "jobs.h"
#include "shmem.h"
#include "workers.h"
#include "jobrun.h"
#include "candles.h"
#include "derivs.h"

/* the job being worked on, for the error handler */
static MdJob current_job;

/* the runner of each job kind (mdfeed.jobs.kind) */
static const struct
{
	const char *kind;
	MdJobRunner run;
}			runners[] =
{
	{"candles", md_run_candles_job},
	{"funding", md_run_funding_job},
	{"open_interest", md_run_open_interest_job},
};

/*
 * find_runner returns the runner of a job kind, or NULL.
 */
static MdJobRunner
find_runner(const char *kind)
{
	for (int i = 0; i < lengthof(runners); i++)
		if (strcmp(runners[i].kind, kind) == 0)
			return runners[i].run;
	return NULL;
}

/*
 * run_one_job claims a job and runs it.  Returns false if there was none.
 */
static bool
run_one_job(void)
{
	MdJob		job;
	bool		claimed;
	MdJobRunner runner;

	md_begin_tx();
	claimed = md_job_claim(&job, md_take_yielded_job());
	md_commit_tx();
	if (!claimed)
		return false;
	current_job = job;

	md_slot_set_state("working");
	md_slot_set_exchange(job.exchange);
	elog(DEBUG1, "mdfeed backfill worker took job " INT64_FORMAT, job.id);

	runner = find_runner(job.kind);
	if (runner != NULL)
		runner(&job);
	else
	{
		JobCounters cnt = {0, 0};

		md_finish_job(&job, "failed", psprintf("unknown job kind \"%s\"", job.kind), &cnt);
	}

	/* whatever happened, the claim is not ours any more */
	md_begin_tx();
	md_job_release(&job);
	md_commit_tx();
	current_job.id = 0;
	md_slot_set_job(0);
	md_slot_set_exchange("");
	md_slot_set_state("idle");
	return true;
}

static void
backfill_on_exit(int code, Datum arg)
{
	md_http_cleanup();
}

/*
 * mdfeed_backfill_main is the entry point of a backfill worker.
 */
void
mdfeed_backfill_main(Datum main_arg)
{
	MemoryContext worker_ctx;

	md_worker_init("mdfeed backfill worker");
	before_shmem_exit(backfill_on_exit, (Datum) 0);
	md_slot_set_state("idle");

	worker_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed backfill", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		bool		worked = false;

		CHECK_FOR_INTERRUPTS();
		md_worker_reload();

		MemoryContextSwitchTo(worker_ctx);
		PG_TRY();
		{
			worked = run_one_job();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/*
			 * Something unexpected (an SPI failure, say).  Report it and fail
			 * the job with the message, so that a job that always hits the
			 * same error cannot keep a worker busy forever.  If even that
			 * fails, the error escapes and the launcher restarts us.
			 */
			edata = md_worker_recover(worker_ctx);
			if (current_job.id != 0)
			{
				JobCounters cnt = {0, 0};

				md_finish_job(&current_job, "failed",
						   psprintf("internal error: %s", edata->message), &cnt);
				md_begin_tx();
				md_job_release(&current_job);
				md_commit_tx();
			}
			current_job.id = 0;
			md_slot_set_job(0);
			md_slot_set_exchange("");
			md_slot_set_state("idle");
		}
		PG_END_TRY();
		MemoryContextReset(worker_ctx);

		if (!worked)
		{
			md_worker_wait(mdfeed_job_poll_ms);
		}
	}
}
