/*-------------------------------------------------------------------------
 *
 * models.h
 *	  Models: users' functions run on every closed candle (models.c runs
 *	  the worker, model_run.c one run as the model's owner, sql_models.c
 *	  the SQL API).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_MODELS_H
#define MDFEED_MODELS_H

#include "fmgr.h"

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
} MdModelCall;

/* model_run.c */
extern Oid	md_candle_type(void);
extern char *md_model_function_problem(Oid fn, char **hint);
extern char *md_model_owner_problem(Oid owner, Oid fn, const MdExchange *ex,
									const MdInterval *iv, char **hint);
extern void md_model_call_init(MdModelCall *call, Oid fn, Oid owner, const char *symbol,
							   const char *interval, MemoryContext cxt);
extern bool md_model_call(MdModelCall *call, Datum *window, int n, MemoryContext result_cxt,
						  Datum *result, bool *isnull, ErrorData **error);

/* models.c */
extern int64 md_model_first_open(const MdInterval *iv, int64 from_ms);
extern int	md_model_add_progress(const char *model);

#endif							/* MDFEED_MODELS_H */
