/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Allocation of mdfeed's shared memory and helpers for worker slots.
 *
 * A worker owns one slot: it publishes its pid, latch and status there, and
 * SQL functions read the slots to wake a worker (a job was queued) or to ask
 * it to drop a job (a job was canceled).  A spinlock guards the whole area:
 * every critical section is a handful of stores.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "common.h"
#include "shmem.h"

MdShared   *md_shared = NULL;

/* true when the library was loaded by shared_preload_libraries (_PG_init) */
bool		md_preloaded = false;
MdWorkerSlot *md_my_slot = NULL;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void
md_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(MdShared)));
}

static void
md_shmem_startup_hook(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	md_shared = ShmemInitStruct("mdfeed", sizeof(MdShared), &found);
	if (!found)
	{
		memset(md_shared, 0, sizeof(MdShared));
		SpinLockInit(&md_shared->mutex);
		ConditionVariableInit(&md_shared->job_cv);
		/* the published limits, until an exchange announces others */
		for (int e = 0; e < md_num_exchanges(); e++)
		{
			const MdExchange *ex = md_exchange_at(e);

			for (int l = 0; l < ex->nlimits; l++)
				md_shared->budgets[e].limits[l].limit = ex->limits[l].limit;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

void
md_shmem_startup(void)
{
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = md_shmem_startup_hook;
}

/*
 * md_require_workers raises an error that says how to fix things when the
 * library was not preloaded, so there are no workers to do what was asked.
 * With mdfeed.enabled off, the workers are stopped on purpose: a notice
 * says that what was asked waits for them.
 */
void
md_require_workers(void)
{
	if (!md_preloaded || md_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mdfeed background workers are not running"),
				 errhint("Add mdfeed to shared_preload_libraries in postgresql.conf "
						 "(shared_preload_libraries = 'mdfeed') and restart the server.")));
	if (!mdfeed_enabled && !IsBackgroundWorker)
		ereport(NOTICE,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mdfeed is disabled: its workers are stopped"),
				 errdetail("Queued jobs wait until mdfeed.enabled is on again."),
				 errhint("Set mdfeed.enabled = on and reload the configuration.")));
}

static void
md_slot_detach(int code, Datum arg)
{
	if (md_my_slot == NULL)
		return;
	SpinLockAcquire(&md_shared->mutex);
	md_my_slot->pid = 0;
	md_my_slot->latch = NULL;
	md_my_slot->job = 0;
	md_my_slot->cancel_job = 0;
	strlcpy(md_my_slot->state, "stopped", sizeof(md_my_slot->state));
	SpinLockRelease(&md_shared->mutex);
	md_my_slot = NULL;
}

/*
 * md_slot_attach makes slot slotno this process's own until it exits.
 */
void
md_slot_attach(int slotno)
{
	MdWorkerSlot *slot;

	Assert(slotno >= 0 && slotno < MD_MAX_WORKERS);
	slot = &md_shared->slots[slotno];
	SpinLockAcquire(&md_shared->mutex);
	slot->pid = MyProcPid;
	slot->latch = &MyProc->procLatch;
	slot->started_at = GetCurrentTimestamp();
	slot->last_message_at = 0;
	slot->messages = 0;
	slot->streams = 0;
	slot->connections = 0;
	slot->malformed = 0;
	slot->latency_p50_ms = slot->latency_p99_ms = -1;
	slot->close_latency_p50_ms = slot->close_latency_p99_ms = -1;
	slot->job = 0;
	slot->cancel_job = 0;
	slot->exchange[0] = '\0';
	strlcpy(slot->state, "starting", sizeof(slot->state));
	SpinLockRelease(&md_shared->mutex);
	md_my_slot = slot;
	before_shmem_exit(md_slot_detach, (Datum) 0);
}

void
md_slot_set_state(const char *state)
{
	if (md_my_slot == NULL)
		return;
	SpinLockAcquire(&md_shared->mutex);
	strlcpy(md_my_slot->state, state, sizeof(md_my_slot->state));
	SpinLockRelease(&md_shared->mutex);
}

/*
 * md_slot_set_exchange says which exchange the worker serves now (its own,
 * for a stream worker; the job's, for a backfill worker), or none ("").
 */
void
md_slot_set_exchange(const char *exchange)
{
	if (md_my_slot == NULL)
		return;
	SpinLockAcquire(&md_shared->mutex);
	strlcpy(md_my_slot->exchange, exchange, sizeof(md_my_slot->exchange));
	SpinLockRelease(&md_shared->mutex);
}

void
md_slot_set_error(const char *msg)
{
	if (md_my_slot == NULL)
		return;
	SpinLockAcquire(&md_shared->mutex);
	strlcpy(md_my_slot->last_error, msg ? msg : "", sizeof(md_my_slot->last_error));
	SpinLockRelease(&md_shared->mutex);
}

void
md_slot_set_job(int64 job)
{
	if (md_my_slot == NULL)
		return;
	SpinLockAcquire(&md_shared->mutex);
	md_my_slot->job = job;
	md_my_slot->cancel_job = 0;
	if (job != 0)
		md_my_slot->messages++;
	SpinLockRelease(&md_shared->mutex);
}

/*
 * md_slot_cancel_requested says whether mdfeed_cancel asked this worker to
 * drop the job it is working on.
 */
bool
md_slot_cancel_requested(void)
{
	bool		result;

	if (md_my_slot == NULL)
		return false;
	SpinLockAcquire(&md_shared->mutex);
	result = md_my_slot->job != 0 && md_my_slot->cancel_job == md_my_slot->job;
	SpinLockRelease(&md_shared->mutex);
	return result;
}

/*
 * md_wake_role sets the latch of every live worker of a role.
 */
void
md_wake_role(MdWorkerRole role)
{
	Latch	   *latches[MD_MAX_WORKERS];
	int			n = 0;

	if (md_shared == NULL)
		return;
	SpinLockAcquire(&md_shared->mutex);
	for (int i = 0; i < MD_MAX_WORKERS; i++)
	{
		MdWorkerSlot *slot = &md_shared->slots[i];

		if (slot->role == role && slot->pid != 0 && slot->latch != NULL)
			latches[n++] = slot->latch;
	}
	SpinLockRelease(&md_shared->mutex);
	/* SetLatch is not for inside a spinlock */
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

void
md_broadcast_job_end(void)
{
	if (md_shared != NULL)
		ConditionVariableBroadcast(&md_shared->job_cv);
}

/*
 * md_slot_try_claim makes job this worker's own unless a live worker
 * already has it.  Claims live in shared memory, where no SQL role can take
 * or hold one: a worker's claim ends with its slot (md_slot_detach), and a
 * crash that resets shared memory ends them all.
 */
bool
md_slot_try_claim(int64 job)
{
	bool		taken = false;

	if (md_my_slot == NULL)
		return false;
	SpinLockAcquire(&md_shared->mutex);
	for (int i = 0; i < MD_MAX_WORKERS && !taken; i++)
	{
		MdWorkerSlot *slot = &md_shared->slots[i];

		taken = slot != md_my_slot && slot->pid != 0 && slot->job == job;
	}
	if (!taken)
	{
		md_my_slot->job = job;
		md_my_slot->cancel_job = 0;
	}
	SpinLockRelease(&md_shared->mutex);
	return !taken;
}

/*
 * md_claimed_jobs fills out[] with the jobs live workers hold, and returns
 * how many; *idle_backfill is set to the number of live backfill workers
 * holding none.
 */
int
md_claimed_jobs(int64 *out, int max, int *idle_backfill)
{
	int			n = 0;
	int			idle = 0;

	SpinLockAcquire(&md_shared->mutex);
	for (int i = 0; i < MD_MAX_WORKERS; i++)
	{
		MdWorkerSlot *slot = &md_shared->slots[i];

		if (slot->pid == 0)
			continue;
		if (slot->job != 0 && n < max)
			out[n++] = slot->job;
		else if (slot->job == 0 && slot->role == MD_ROLE_BACKFILL)
			idle++;
	}
	SpinLockRelease(&md_shared->mutex);
	if (idle_backfill)
		*idle_backfill = idle;
	return n;
}

/* what md_at_commit was asked to do when the current transaction commits */
static int	at_commit_flags = 0;
static bool xact_callback_registered = false;

/*
 * at_commit_callback does, when the transaction commits, what md_at_commit
 * asked for, and forgets it when the transaction ends either way.
 */
static void
at_commit_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT)
	{
		if (at_commit_flags & MD_WAKE_BACKFILL)
			md_wake_role(MD_ROLE_BACKFILL);
		if ((at_commit_flags & MD_WAKE_LISTS) && md_shared != NULL)
		{
			SpinLockAcquire(&md_shared->mutex);
			md_shared->lists_version++;
			SpinLockRelease(&md_shared->mutex);
			md_wake_role(MD_ROLE_STREAM);
			md_wake_role(MD_ROLE_WATCH);
		}
		if ((at_commit_flags & MD_WAKE_MODELS_CHANGED) && md_shared != NULL)
		{
			Latch	   *launcher;

			SpinLockAcquire(&md_shared->mutex);
			md_shared->models_version++;
			md_shared->models_active = true;
			launcher = md_shared->launcher_latch;
			SpinLockRelease(&md_shared->mutex);
			if (launcher != NULL)
				SetLatch(launcher);
		}
		if (at_commit_flags & (MD_WAKE_MODELS | MD_WAKE_MODELS_CHANGED))
			md_wake_role(MD_ROLE_MODEL);
		if (at_commit_flags & MD_BROADCAST_JOBS)
			md_broadcast_job_end();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		at_commit_flags = 0;
}

/*
 * md_at_commit asks for flags' wakeups to happen when the current
 * transaction commits, not before: a worker woken earlier would look for
 * rows it cannot see yet.
 */
void
md_at_commit(int flags)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(at_commit_callback, NULL);
		xact_callback_registered = true;
	}
	at_commit_flags |= flags;
}
