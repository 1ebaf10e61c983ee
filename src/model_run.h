/*-------------------------------------------------------------------------
 *
 * model_run.h
 *	  One model run as the model's owner, and the checks of a model's
 *	  function and owner (model_run.c).  Models are users' functions run on
 *	  every closed candle: models.c runs the worker, model_batch.c one batch
 *	  of runs of a (model, symbol), sql_models.c the SQL API.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_MODEL_RUN_H
#define MDFEED_MODEL_RUN_H

#include "fmgr.h"
#include "utils/resowner.h"

#include "exchange.h"
#include "interval.h"

/* the longest window a model may ask for, in candles */
#define MD_MODEL_MAX_WINDOW 10000

/*
 * What one model run needs: the function, looked up once per batch, and
 * the role it runs as.
 */
typedef struct MdModelCall
{
	FmgrInfo	flinfo;
	Oid			owner;
	Datum		symbol;			/* text */
	Datum		interval;		/* text */
	Oid			candle_type;
	int16		candle_len;
	bool		candle_byval;
	char		candle_align;
	/* the group of runs sharing a subtransaction */
	bool		in_group;
	MemoryContext group_cxt;
	ResourceOwner group_owner;
} MdModelCall;

extern bool md_in_model_run;
extern Oid	md_candle_type(void);
extern Oid	md_function_owner(Oid fn);
extern void md_model_session_reset(void);
extern char *md_model_function_problem(Oid fn, char **hint);
extern char *md_model_owner_problem(Oid owner, Oid fn, const MdExchange *ex,
									const MdInterval *iv, char **hint);
extern void md_model_call_init(MdModelCall *call, Oid fn, Oid owner, const char *symbol,
							   const char *interval, MemoryContext cxt);
extern void md_model_group_begin(MdModelCall *call);
extern bool md_model_group_run(MdModelCall *call, Datum *window, int n, MemoryContext result_cxt,
							   Datum *result, bool *isnull, ErrorData **error);
extern void md_model_group_end(MdModelCall *call);

#endif							/* MDFEED_MODEL_RUN_H */
