/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  What every mdfeed background worker does the same way: start up, and
 *	  run short transactions; and the schema probe.
 *
 * The probe compares pg_extension.extversion with MD_SCHEMA_VERSION, the
 * schema this library was built for.  The library may be newer than the
 * schema (a new build installed, ALTER EXTENSION UPDATE not run yet) or
 * older (the reverse); either way its workers would fail in a loop or write
 * rows the schema does not expect, so the launcher starts them only once
 * the probe, run by the watch worker, has found the right version.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

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

#include "common.h"
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
 * md_worker_reload rereads the configuration if a SIGHUP asked for it, and
 * says whether it did.
 */
bool
md_worker_reload(void)
{
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

/*
 * md_worker_wait sleeps until the latch is set or timeout_ms pass, and
 * exits if the postmaster dies: the one wait of every worker's loop.
 */
void
md_worker_wait(long timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 timeout_ms, MD_WAIT_EVENT);
	ResetLatch(MyLatch);
}

/*
 * md_worker_recover is a worker loop's PG_CATCH: it reports the error,
 * leaves every transaction, records the message in the worker's slot and
 * returns a copy of the error, allocated in ctx.  The worker goes on.
 */
ErrorData *
md_worker_recover(MemoryContext ctx)
{
	ErrorData  *edata;

	HOLD_INTERRUPTS();
	MemoryContextSwitchTo(ctx);
	edata = CopyErrorData();
	EmitErrorReport();
	FlushErrorState();
	AbortOutOfAnyTransaction();
	RESUME_INTERRUPTS();
	md_slot_set_error(edata->message);
	return edata;
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
 * version_cmp compares two dotted version strings of unsigned integers
 * ("1.10" > "1.9").  It returns false if either one is not such a string.
 */
static bool
version_cmp(const char *a, const char *b, int *result)
{
	for (;;)
	{
		char	   *ea;
		char	   *eb;
		long		na;
		long		nb;

		if (!isdigit((unsigned char) *a) || !isdigit((unsigned char) *b))
			return false;
		na = strtol(a, &ea, 10);
		nb = strtol(b, &eb, 10);
		if (na != nb)
		{
			*result = na < nb ? -1 : 1;
			return true;
		}
		if (*ea == '.' && *eb == '.')
		{
			a = ea + 1;
			b = eb + 1;
			continue;
		}
		/* "1.1" = "1.1", and "1.1" < "1.1.1" */
		if ((*ea != '\0' && *ea != '.') || (*eb != '\0' && *eb != '.'))
			return false;
		*result = *ea == *eb ? 0 : (*ea == '\0' ? -1 : 1);
		return true;
	}
}

/*
 * md_schema_ready is the probe: it reads the version of the extension in
 * this database in a short transaction, publishes what it found for the
 * launcher (waking it on a change), and logs each new finding once, with
 * what to do about it.  It returns true if the schema is the one this
 * library needs.
 */
bool
md_schema_ready(void)
{
	char		version[64] = "";
	MdSchemaState state;
	bool		changed;
	bool		log_it;
	MdSchemaState logged_before;
	Latch	   *launcher;
	int			cmp;

	md_begin_tx();
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'mdfeed'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_extension");
	if (SPI_processed > 0)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		strlcpy(version, v ? v : "?", sizeof(version));
	}
	md_commit_tx();

	if (version[0] == '\0')
		state = MD_SCHEMA_ABSENT;
	else if (strcmp(version, MD_SCHEMA_VERSION) == 0)
		state = MD_SCHEMA_READY;
	else if (version_cmp(version, MD_SCHEMA_VERSION, &cmp) && cmp < 0)
		state = MD_SCHEMA_OLDER;
	else
		state = MD_SCHEMA_NEWER;

	SpinLockAcquire(&md_shared->mutex);
	changed = md_shared->schema_state != state;
	md_shared->schema_state = state;
	logged_before = md_shared->schema_logged;
	log_it = state != logged_before ||
		strcmp(md_shared->schema_logged_version, version) != 0;
	if (log_it)
	{
		md_shared->schema_logged = state;
		strlcpy(md_shared->schema_logged_version, version,
				sizeof(md_shared->schema_logged_version));
	}
	launcher = md_shared->launcher_latch;
	SpinLockRelease(&md_shared->mutex);
	if (changed && launcher != NULL)
		SetLatch(launcher);

	if (log_it)
	{
		switch (state)
		{
			case MD_SCHEMA_ABSENT:
				ereport(LOG,
						(errmsg("mdfeed is waiting for CREATE EXTENSION mdfeed in database \"%s\"",
								mdfeed_database)));
				break;
			case MD_SCHEMA_OLDER:
				ereport(LOG,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("extension mdfeed in database \"%s\" has version %s, but the loaded mdfeed library needs version %s",
								mdfeed_database, version, MD_SCHEMA_VERSION),
						 errdetail("mdfeed's workers wait until the extension is updated."),
						 errhint("Run ALTER EXTENSION mdfeed UPDATE.")));
				break;
			case MD_SCHEMA_NEWER:
				ereport(LOG,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("extension mdfeed in database \"%s\" has version %s, but the loaded mdfeed library needs version %s",
								mdfeed_database, version, MD_SCHEMA_VERSION),
						 errdetail("mdfeed's workers wait until the library matches the extension."),
						 errhint("Install the mdfeed build for version %s and restart the server.",
								 version)));
				break;
			case MD_SCHEMA_READY:
				if (logged_before != MD_SCHEMA_UNKNOWN)
					ereport(LOG,
							(errmsg("extension mdfeed %s is installed in database \"%s\": mdfeed's workers start",
									version, mdfeed_database)));
				break;
			case MD_SCHEMA_UNKNOWN:
				break;
		}
	}
	if (state != MD_SCHEMA_READY)
		md_slot_set_state(state == MD_SCHEMA_ABSENT ? "waiting for extension" :
						  "waiting for schema update");
	return state == MD_SCHEMA_READY;
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
