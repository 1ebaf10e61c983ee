/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: one background worker that starts and watches the others:
 *	  the backfill workers, the watch worker and the stream workers.
 *
 * The postmaster starts the launcher (and restarts it if it dies).  The
 * launcher connects to no database, as PostgreSQL's logical replication
 * launcher does: a connected launcher would block DROP DATABASE of
 * mdfeed.database, and could not outlive that database (a background worker
 * cannot disconnect, and a static one that exits cleanly is never started
 * again).  It finds mdfeed.database in the shared catalog pg_database and
 * starts the workers there by OID.  While the database does not exist, it
 * says so once and looks again after a backoff that grows to a cap, and at
 * once on a configuration reload.
 *
 * The watch worker is started first, and is the schema probe: it reads
 * pg_extension on each pass and publishes what it found (md_schema_ready).
 * The launcher starts the backfill and stream workers only while the probe
 * runs and has found the extension at MD_SCHEMA_VERSION, and stops them
 * when the extension is dropped or has another version.
 *
 * Model workers (mdfeed.model_workers) run only while a model is active,
 * as the probe or a model function last said: a database without models
 * spends no background worker on them.
 *
 * There is one stream worker per exchange adapter that has market streams: each worker's libwebsockets loop serves one
 * exchange, so that one exchange's outage or garbage never slows another's.
 * The worker is given its adapter's index in the registry.
 *
 * mdfeed.mode = 'replica' (an analytics server, whose data arrives by
 * logical replication) runs no backfill or stream worker; the watch worker
 * stays as the probe, and the model workers run.  A reload switches.
 *
 * mdfeed.enabled = off (a reload) stops every worker, so that nothing of
 * mdfeed is connected to any database; on starts them again.
 *
 * A worker that exits is started again after a backoff that grows while it
 * keeps failing quickly, so a broken worker neither spins nor takes the
 * cluster down.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "common.h"
#include "exchange.h"
#include "shard.h"
#include "shmem.h"
#include "workers.h"

#define RESTART_BACKOFF_MIN_MS 1000
#define RESTART_BACKOFF_MAX_MS 60000
/* a worker that lived this long was healthy: reset its backoff */
#define HEALTHY_RUN_MS 60000
/* looking again for a missing mdfeed.database */
#define DATABASE_BACKOFF_MIN_MS 1000
#define DATABASE_BACKOFF_MAX_MS 30000

typedef struct ManagedWorker
{
	MdWorkerRole role;
	int			slot;
	const char *function;
	const char *type;
	char		name[BGW_MAXLEN];	/* bgw_name: the type and what it serves */
	int			exchange;		/* index in the adapter registry, or -1 */
	int			part;			/* a model worker's number */
	BackgroundWorkerHandle *handle;
	int64		started_ms;
	int64		next_start_ms;
	int64		backoff_ms;
	bool		register_failed_logged;
} ManagedWorker;

static ManagedWorker managed[MD_MAX_WORKERS];
static int	nmanaged = 0;
/* the watch worker, which is also the schema probe */
static ManagedWorker *probe = NULL;
/* mdfeed.database, InvalidOid while it is not known to exist */
static Oid	dboid = InvalidOid;

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

/*
 * lookup_database returns the OID of mdfeed.database, or InvalidOid if it
 * does not exist.  pg_database is a shared catalog, readable without a
 * database connection, but its indexes may not be: without a relcache init
 * file only a database's backend can load them (as GetDatabaseTuple knows),
 * so this is a heap scan, of a catalog of a few rows.
 */
static Oid
lookup_database(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			oid = InvalidOid;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_database_datname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(mdfeed_database));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		oid = ((Form_pg_database) GETSTRUCT(tup))->oid;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	pgstat_report_stat(false);
	return oid;
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
	strlcpy(worker.bgw_name, w->name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, w->type, BGW_MAXLEN);
	worker.bgw_notify_pid = MyProcPid;
	args.dboid = dboid;
	args.slot = w->slot;
	args.exchange = w->exchange;
	args.part = w->part;
	memcpy(worker.bgw_extra, &args, sizeof(args));

	if (!RegisterDynamicBackgroundWorker(&worker, &w->handle))
	{
		w->handle = NULL;
		w->next_start_ms = md_now_ms() + RESTART_BACKOFF_MAX_MS / 4;
		if (!w->register_failed_logged)
			ereport(WARNING,
					(errmsg("could not start %s", w->name),
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
				(errmsg("%s exited; restarting it in %lld ms",
						w->name, (long long) w->backoff_ms)));
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
 * add_worker appends a worker of a role to the plan, in the next slot.
 */
static ManagedWorker *
add_worker(MdWorkerRole role, const char *function, const char *type, int exchange)
{
	ManagedWorker *w = &managed[nmanaged++];

	memset(w, 0, sizeof(*w));
	w->role = role;
	w->slot = nmanaged;
	w->function = function;
	w->type = type;
	w->exchange = exchange;
	if (exchange >= 0)
		snprintf(w->name, sizeof(w->name), "%s %s", type, md_exchange_at(exchange)->name);
	else
		snprintf(w->name, sizeof(w->name), "%s %d", type, w->slot);
	w->backoff_ms = RESTART_BACKOFF_MIN_MS;
	return w;
}

/*
 * plan_workers lays out the slots: the launcher in slot 0, then the
 * backfill workers, the watch worker, a stream worker per exchange with
 * market streams and the model workers.  The backfill workers leave room for the others: without
 * the probe nothing runs.
 */
static void
plan_workers(void)
{
	int			nstream = 0;
	int			nmodel = 0;

	for (int i = 0; i < md_num_exchanges(); i++)
		if (md_exchange_at(i)->stream != NULL)
			nstream++;
	nmanaged = 0;
	for (int i = 0; i < mdfeed_backfill_workers && nmanaged + 2 + nstream < MD_MAX_WORKERS; i++)
		add_worker(MD_ROLE_BACKFILL, "mdfeed_backfill_main", "mdfeed backfill worker", -1);
	if (nmanaged + 2 + nstream <= MD_MAX_WORKERS)
	{
		probe = add_worker(MD_ROLE_WATCH, "mdfeed_watch_main", "mdfeed watch worker", -1);
		for (int i = 0; i < md_num_exchanges(); i++)
			if (md_exchange_at(i)->stream != NULL)
				add_worker(MD_ROLE_STREAM, "mdfeed_stream_main", "mdfeed stream worker", i);
		for (int i = 0; i < mdfeed_model_workers && nmanaged < MD_MAX_WORKERS - 1; i++)
		{
			ManagedWorker *w = add_worker(MD_ROLE_MODEL, "mdfeed_model_main", "mdfeed model worker", -1);

			w->part = nmodel++;
			snprintf(w->name, sizeof(w->name), "mdfeed model worker %d", w->part);
		}
	}
}

/*
 * find_database looks up mdfeed.database when it is due.  It logs once
 * that the database is missing, and once that it appeared, and it forgets
 * the probe's finding when the database is another one than before.
 */
static void
find_database(int64 now, int64 *next_check_ms, int64 *backoff_ms, bool *missing_logged)
{
	Oid			found;

	if (now < *next_check_ms)
		return;
	found = lookup_database();
	if (!OidIsValid(found))
	{
		if (!*missing_logged)
			ereport(LOG,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("database \"%s\" does not exist; mdfeed waits for it",
							mdfeed_database),
					 errhint("Create the database and run CREATE EXTENSION mdfeed in it, or set mdfeed.database and restart the server.  mdfeed looks again at every configuration reload.")));
		*missing_logged = true;
		md_slot_set_state("waiting for database");
		*backoff_ms = Min(Max(*backoff_ms * 2, DATABASE_BACKOFF_MIN_MS),
						  DATABASE_BACKOFF_MAX_MS);
		*next_check_ms = now + *backoff_ms;
	}
	else
	{
		if (*missing_logged)
			ereport(LOG,
					(errmsg("database \"%s\" exists now: mdfeed starts its workers there",
							mdfeed_database)));
		*missing_logged = false;
		*backoff_ms = 0;
		*next_check_ms = 0;
	}
	if (found != dboid)
	{
		SpinLockAcquire(&md_shared->mutex);
		md_shared->schema_state = MD_SCHEMA_UNKNOWN;
		SpinLockRelease(&md_shared->mutex);
	}
	dboid = found;
}

/*
 * mdfeed_launcher_main is the launcher's entry point.
 */
void
mdfeed_launcher_main(Datum main_arg)
{
	bool		disabled_logged = false;
	bool		missing_logged = false;
	int64		next_db_check_ms = 0;
	int64		db_backoff_ms = 0;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* no database: see the header comment */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
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
		bool		probe_wanted;
		bool		probe_up;
		bool		ready;
		bool		models;

		CHECK_FOR_INTERRUPTS();
		if (md_worker_reload())
		{
			/* a reload is the way to say "the database is there now" */
			next_db_check_ms = 0;
		}

		if (!mdfeed_enabled)
		{
			if (!disabled_logged)
				ereport(LOG,
						(errmsg("mdfeed.enabled is off: mdfeed stops its workers")));
			disabled_logged = true;
			md_slot_set_state("disabled");
			dboid = InvalidOid;
			SpinLockAcquire(&md_shared->mutex);
			md_shared->schema_state = MD_SCHEMA_UNKNOWN;
			SpinLockRelease(&md_shared->mutex);
		}
		else
		{
			if (disabled_logged)
				ereport(LOG,
						(errmsg("mdfeed.enabled is on: mdfeed starts its workers")));
			disabled_logged = false;

			/*
			 * A running probe is connected to the database, so it exists;
			 * otherwise look before starting one.
			 */
			if (probe == NULL || probe->handle == NULL)
				find_database(md_now_ms(), &next_db_check_ms, &db_backoff_ms,
							  &missing_logged);
		}

		probe_wanted = mdfeed_enabled && OidIsValid(dboid) && probe != NULL;
		if (probe != NULL)
			check_worker(probe, probe_wanted);
		probe_up = probe != NULL && probe->handle != NULL;

		SpinLockAcquire(&md_shared->mutex);
		ready = md_shared->schema_state == MD_SCHEMA_READY;
		models = md_shared->models_active;
		SpinLockRelease(&md_shared->mutex);
		if (probe_wanted && ready)
			md_slot_set_state("running");
		else if (probe_wanted && probe_up)
			md_slot_set_state("waiting for schema");

		for (int i = 0; i < nmanaged; i++)
		{
			if (&managed[i] == probe)
				continue;
			check_worker(&managed[i],
						 probe_wanted && probe_up && ready &&
						 (managed[i].role != MD_ROLE_STREAM || mdfeed_stream_enabled) &&
						 (managed[i].role != MD_ROLE_MODEL || models) &&
						 !(md_replica_mode() &&
						   (managed[i].role == MD_ROLE_BACKFILL || managed[i].role == MD_ROLE_STREAM)));
		}

		md_worker_wait(1000);
	}
}
