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
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
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

	/*
	 * Workers run as a superuser: no name in their SQL may resolve through
	 * a search_path that a database or role setting (ALTER DATABASE ... SET
	 * search_path, which the database's owner may do) points at a schema
	 * someone else can create objects in.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
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

/*
 * md_extension_schema returns the quoted name of the schema holding the
 * extension's unqualified functions (mdfeed_gaps and friends), for SQL that
 * workers run with a pg_catalog-only search_path.  Call it in a
 * transaction.
 */
const char *
md_extension_schema(void)
{
	static char *schema = NULL;
	bool		isnull;
	Datum		d;

	if (schema != NULL)
		return schema;
	if (SPI_execute("SELECT n.nspname FROM pg_catalog.pg_extension e "
					"JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
					"WHERE e.extname OPERATOR(pg_catalog.=) 'mdfeed'", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "extension \"mdfeed\" is not installed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	schema = MemoryContextStrdup(TopMemoryContext, quote_identifier(NameStr(*DatumGetName(d))));
	return schema;
}
