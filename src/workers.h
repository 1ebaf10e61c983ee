/*-------------------------------------------------------------------------
 *
 * workers.h
 *	  Entry points of mdfeed's background workers and what they are given.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_WORKERS_H
#define MDFEED_WORKERS_H

#include "postmaster/bgworker.h"

/* passed in bgw_extra */
typedef struct MdWorkerArgs
{
	Oid			dboid;
	int			slot;
	int			exchange;		/* index in the adapter registry, or -1 */
	int			part;			/* a model worker's number, from 0 */
} MdWorkerArgs;

extern PGDLLEXPORT void mdfeed_launcher_main(Datum main_arg);
extern PGDLLEXPORT void mdfeed_backfill_main(Datum main_arg);
extern PGDLLEXPORT void mdfeed_stream_main(Datum main_arg);
extern PGDLLEXPORT void mdfeed_watch_main(Datum main_arg);
extern PGDLLEXPORT void mdfeed_model_main(Datum main_arg);

extern void md_register_launcher(void);

/* worker.c */
extern void md_worker_init(const char *name);
extern bool md_worker_reload(void);
extern void md_worker_wait(long timeout_ms);
extern ErrorData *md_worker_recover(MemoryContext ctx);
extern void md_begin_tx(void);
extern void md_commit_tx(void);
extern void md_abort_tx(void);
extern const char *md_extension_schema(void);
extern bool md_schema_ready(void);

/* models.c: the probe's look at mdfeed.models, for the launcher */
extern void md_models_probe(void);

#endif
