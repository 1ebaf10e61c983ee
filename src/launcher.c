/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one background worker that starts and watches the others:
 *	  the backfill workers, the watch worker and the stream worker.
 *
 * The postmaster starts the launcher (and restarts it if it dies).  The
 * launcher connects to mdfeed.database, waits until the extension exists
 * there, then starts the backfill workers as dynamic background workers.
 * A worker that exits is started again after a backoff that grows while it
 * keeps failing quickly, so a broken worker neither spins nor takes the
 * cluster down.  If the extension is dropped, the workers are stopped until
 * it is created again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "mdfeed.h"
#include "shmem.h"
#include "workers.h"

#define RESTART_BACKOFF_MIN_MS 1000
#define RESTART_BACKOFF_MAX_MS 60000
/* a worker that lived this long was healthy: reset its backoff */
#define HEALTHY_RUN_MS 60000

typedef struct ManagedWorker
{
	MdWorkerRole role;
	int			slot;
	const char *function;
	const char *type;
	BackgroundWorkerHandle *handle;
	int64		started_ms;
	int64		next_start_ms;
	int64		backoff_ms;
	bool		register_failed_logged;
} ManagedWorker;

static ManagedWorker managed[MD_MAX_WORKERS];
static int	nmanaged = 0;

/*
 * md_register_launcher registers the launcher with the postmaster; called
 * from _PG_init while shared_preload_libraries is being processed.
 */
void
md_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "mdfeed", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "mdfeed_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "mdfeed launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "mdfeed launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static bool
extension_exists(void)
{
	bool		exists;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	exists = OidIsValid(get_extension_oid("mdfeed", true));
	CommitTransactionCommand();
	pgstat_report_stat(false);
	return exists;
}

static void
start_worker(ManagedWorker *w)
{
	BackgroundWorker worker;
	MdWorkerArgs args;
	MdWorkerSlot *slot = &md_shared->slots[w->slot];

	SpinLockAcquire(&md_shared->mutex);
	slot->role = w->role;
	slot->index = w->slot;
	slot->reconnects = 0;
	slot->last_error[0] = '\0';
	SpinLockRelease(&md_shared->mutex);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "mdfeed", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, w->function, BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s %d", w->type, w->slot);
	strlcpy(worker.bgw_type, w->type, BGW_MAXLEN);
	worker.bgw_notify_pid = MyProcPid;
	args.dboid = MyDatabaseId;
	args.slot = w->slot;
	memcpy(worker.bgw_extra, &args, sizeof(args));

	if (!RegisterDynamicBackgroundWorker(&worker, &w->handle))
	{
		w->handle = NULL;
		w->next_start_ms = md_now_ms() + RESTART_BACKOFF_MAX_MS / 4;
		if (!w->register_failed_logged)
			ereport(WARNING,
					(errmsg("could not start %s %d", w->type, w->slot),
					 errhint("Raise max_worker_processes: mdfeed needs %d background workers of its own.",
							 nmanaged + 1)));
		w->register_failed_logged = true;
		return;
	}
	w->register_failed_logged = false;
	w->started_ms = md_now_ms();
}

/*
 * check_worker notices a worker that exited and schedules its restart.
 */
static void
check_worker(ManagedWorker *w, bool wanted)
{
	pid_t		pid;
	int64		now = md_now_ms();

	if (w->handle != NULL)
	{
		BgwHandleStatus status = GetBackgroundWorkerPid(w->handle, &pid);

		if (status == BGWH_POSTMASTER_DIED)
			proc_exit(1);
		if (status != BGWH_STOPPED)
		{
			if (!wanted)
				TerminateBackgroundWorker(w->handle);
			return;
		}
		pfree(w->handle);
		w->handle = NULL;
		if (!wanted)
			return;
		if (now - w->started_ms >= HEALTHY_RUN_MS)
			w->backoff_ms = RESTART_BACKOFF_MIN_MS;
		else
			w->backoff_ms = Min(Max(w->backoff_ms * 2, RESTART_BACKOFF_MIN_MS),
								RESTART_BACKOFF_MAX_MS);
		w->next_start_ms = now + w->backoff_ms;
		ereport(LOG,
				(errmsg("%s %d exited; restarting it in %lld ms",
						w->type, w->slot, (long long) w->backoff_ms)));
		SpinLockAcquire(&md_shared->mutex);
		md_shared->slots[w->slot].reconnects++;
		SpinLockRelease(&md_shared->mutex);
		return;
	}
	if (wanted && now >= w->next_start_ms)
		start_worker(w);
}

static void
stop_all_workers(int code, Datum arg)
{
	for (int i = 0; i < nmanaged; i++)
		if (managed[i].handle != NULL)
			TerminateBackgroundWorker(managed[i].handle);
	if (md_shared)
	{
		SpinLockAcquire(&md_shared->mutex);
		md_shared->launcher_pid = 0;
		md_shared->launcher_latch = NULL;
		SpinLockRelease(&md_shared->mutex);
	}
}

/*
 * plan_workers lays out the slots: the launcher in slot 0, then the
 * backfill workers.
 */
static void
plan_workers(void)
{
	nmanaged = 0;
	for (int i = 0; i < mdfeed_backfill_workers && nmanaged + 1 < MD_MAX_WORKERS; i++)
	{
		ManagedWorker *w = &managed[nmanaged++];

		memset(w, 0, sizeof(*w));
		w->role = MD_ROLE_BACKFILL;
		w->slot = nmanaged;
		w->function = "mdfeed_backfill_main";
		w->type = "mdfeed backfill worker";
		w->backoff_ms = RESTART_BACKOFF_MIN_MS;
	}
	if (nmanaged + 3 <= MD_MAX_WORKERS)
	{
		ManagedWorker *w = &managed[nmanaged++];

		memset(w, 0, sizeof(*w));
		w->role = MD_ROLE_WATCH;
		w->slot = nmanaged;
		w->function = "mdfeed_watch_main";
		w->type = "mdfeed watch worker";
		w->backoff_ms = RESTART_BACKOFF_MIN_MS;

		w = &managed[nmanaged++];
		memset(w, 0, sizeof(*w));
		w->role = MD_ROLE_STREAM;
		w->slot = nmanaged;
		w->function = "mdfeed_stream_main";
		w->type = "mdfeed stream worker";
		w->backoff_ms = RESTART_BACKOFF_MIN_MS;
	}
}

/*
 * mdfeed_launcher_main is the launcher's entry point.
 */
void
mdfeed_launcher_main(Datum main_arg)
{
	bool		waiting_logged = false;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(mdfeed_database, NULL, 0);
	pgstat_report_appname("mdfeed launcher");

	md_shared->slots[0].role = MD_ROLE_LAUNCHER;
	md_slot_attach(0);
	SpinLockAcquire(&md_shared->mutex);
	md_shared->launcher_pid = MyProcPid;
	md_shared->launcher_latch = MyLatch;
	SpinLockRelease(&md_shared->mutex);
	before_shmem_exit(stop_all_workers, (Datum) 0);

	plan_workers();

	if (mdfeed_api_key[0] == '\0')
		ereport(LOG,
				(errmsg("mdfeed.api_key is not set: mdfeed uses public market data only")));

	for (;;)
	{
		bool		exists;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		exists = extension_exists();
		if (!exists && !waiting_logged)
		{
			ereport(LOG,
					(errmsg("mdfeed launcher is waiting for CREATE EXTENSION mdfeed in database \"%s\"",
							mdfeed_database)));
			md_slot_set_state("waiting for extension");
		}
		else if (exists)
			md_slot_set_state("running");
		waiting_logged = !exists;

		for (int i = 0; i < nmanaged; i++)
			check_worker(&managed[i],
						 exists && (managed[i].role != MD_ROLE_STREAM || mdfeed_stream_enabled));

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, MD_WAIT_EVENT);
		ResetLatch(MyLatch);
	}
}
