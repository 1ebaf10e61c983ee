/*-------------------------------------------------------------------------
 *
 * models.h
 *	  Models: users' functions run on every closed candle (models.c runs
 *	  the worker, model_batch.c one batch of runs of a (model, symbol),
 *	  model_run.c one run as the model's owner, sql_models.c the SQL API).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_MODELS_H
#define MDFEED_MODELS_H

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "common.h"

#include "exchange.h"
#include "interval.h"

/* the longest window a model may ask for, in candles */
#define MD_MODEL_MAX_WINDOW 10000
/* a candle still missing this long after its close is asked for */
#define MD_MODEL_HOLE_GRACE_MS 30000

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

/* model_run.c */
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

/* a pair due for a batch, as the worker's pass found it */
typedef struct MdDuePair
{
	char	   *model;
	char	   *symbol;
	int64		next_open;
	bool		rerun;
	bool		live;			/* its next candle is the one that closed last */
} MdDuePair;

/* model_batch.c */
extern int64 md_model_first_open(const MdInterval *iv, int64 from_ms);
extern int	md_model_add_progress(const char *model);
extern bool md_model_run_batch(const MdDuePair *p, MemoryContext cxt);
extern void md_model_stats(int64 *runs, int64 *p50, int64 *p99);
extern void md_model_exec_plan(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only,
							   int expect, const char *what);
extern void md_model_exec(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
						  const char *nulls, bool read_only, int expect);

/* a timestamptz column of the last SPI result, in ms (-1 if NULL) */
static inline int64
md_model_get_ms(int row, int col, bool *isnull)
{
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);

	return *isnull ? -1 : md_timestamptz_to_ms(DatumGetTimestampTz(d));
}

static inline Datum
md_model_ts(int64 ms)
{
	return TimestampTzGetDatum(md_ms_to_timestamptz(ms));
}

#endif							/* MDFEED_MODELS_H */
