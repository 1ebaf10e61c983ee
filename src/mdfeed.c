/*-------------------------------------------------------------------------
 *
 * mdfeed.c
 *	  Module entry point: settings, shared memory, and the launcher.
 *
 * Loaded by shared_preload_libraries, mdfeed reserves its shared memory and
 * registers the launcher, which starts every other worker.  Loaded any other
 * way, only the settings and the SQL functions exist, and functions that
 * need a worker say how to preload the library.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "common.h"
#include "shmem.h"
#include "workers.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void
request_shared_memory(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	md_shmem_request();
}

void
_PG_init(void)
{
	md_define_gucs();
	md_install_log_redaction();

	if (!process_shared_preload_libraries_in_progress)
		return;

	md_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = request_shared_memory;
	md_shmem_startup();
	md_register_launcher();
}
