/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  What every mdfeed background worker does the same way: start up, and
 *	  run short transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "mdfeed.h"
#include "shmem.h"
#include "workers.h"

/*
 * md_worker_init sets up a worker started by the launcher: SIGTERM ends it
 * (die), SIGHUP rereads the configuration, it connects to the launcher's
 * database and takes its status slot.
 */
void
md_worker_init(const char *name)
{
	MdWorkerArgs args;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	md_slot_attach(args.slot);
	pgstat_report_appname(name);

	/*
	 * Everything a worker writes can be fetched again, and a job's progress
	 * commits with its data, so a crash that loses the last few commits only
	 * means a page is fetched again.  Waiting for a WAL flush at every page
	 * would make ingest several times slower.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * md_begin_tx starts a short transaction with SPI connected and a snapshot.
 */
void
md_begin_tx(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

/*
 * md_commit_tx commits it, and reports statistics so that autovacuum sees
 * the writes of a process that never goes idle.
 */
void
md_commit_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

void
md_abort_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	AbortCurrentTransaction();
}
