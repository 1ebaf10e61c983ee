/*-------------------------------------------------------------------------
 *
 * model_batch.h
 *	  One batch of runs of one (model, symbol), and the SQL helpers the
 *	  model worker shares with it (model_batch.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_MODEL_BATCH_H
#define MDFEED_MODEL_BATCH_H

#include "executor/spi.h"
#include "utils/timestamp.h"

#include "common.h"
#include "interval.h"

/* a candle still missing this long after its close is asked for */
#define MD_MODEL_HOLE_GRACE_MS 30000

/* a pair due for a batch, as the worker's pass found it */
typedef struct MdDuePair
{
	char	   *model;
	char	   *symbol;
	int64		next_open;
	bool		rerun;
	bool		live;			/* its next candle is the one that closed last */
} MdDuePair;

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

#endif							/* MDFEED_MODEL_BATCH_H */
