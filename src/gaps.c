/*-------------------------------------------------------------------------
 *
 * gaps.c
 *	  Finding ranges of candles not yet stored as closed.
 *
 * A backfill asks the exchange only for what is missing, so a job that is
 * resumed, or that covers a range already partly stored, downloads nothing
 * twice.  A gap is found from the stored rows themselves: the first closed
 * candle at or after the start, then the first stored candle whose successor
 * is not stored.  Successors are computed in UTC on timestamp without time
 * zone, which makes calendar months right whatever the session's TimeZone.
 *
 * Runs inside a transaction with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "mdfeed.h"
#include "gaps.h"
#include "store.h"

static SPIPlanPtr first_plans[32];
static SPIPlanPtr next_plans[32];

/*
 * md_first_gap finds the first range in [from_ms, to_ms) of candles not
 * stored as closed.  from_ms must be a candle's open time.  Returns false
 * when nothing is missing.
 */
bool
md_first_gap(const MdInterval *iv, const char *symbol, int64 from_ms, int64 to_ms,
			 int64 *gap_start_ms, int64 *gap_end_ms)
{
	int			idx = iv - md_intervals;
	Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[3];
	bool		isnull;
	int			ret;
	Datum		d;

	if (from_ms >= to_ms)
		return false;

	if (first_plans[idx] == NULL)
	{
		char	   *sql;

		sql = psprintf("SELECT pg_catalog.min(open_time) FROM mdfeed.%s "
					   "WHERE symbol = $1 AND closed AND open_time >= $2 AND open_time < $3",
					   iv->table);
		first_plans[idx] = md_keep_plan(sql, 3, types);
		/*
		 * The first stored candle whose successor is missing, and where the
		 * next stored one begins (or the end of the range).
		 */
		sql = psprintf("SELECT nxt_expected, nxt_stored FROM ("
					   " SELECT ((open_time AT TIME ZONE 'UTC') + '%s'::interval) AT TIME ZONE 'UTC' AS nxt_expected,"
					   "  pg_catalog.lead(open_time, 1, $3) OVER (ORDER BY open_time) AS nxt_stored"
					   " FROM mdfeed.%s WHERE symbol = $1 AND closed AND open_time >= $2 AND open_time < $3"
					   ") s WHERE nxt_stored > nxt_expected LIMIT 1",
					   iv->pg_interval, iv->table);
		next_plans[idx] = md_keep_plan(sql, 3, types);
	}

	values[0] = CStringGetTextDatum(symbol);
	values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(from_ms));
	values[2] = TimestampTzGetDatum(md_ms_to_timestamptz(to_ms));

	ret = SPI_execute_plan(first_plans[idx], values, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "gap query on mdfeed.%s failed", iv->table);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
	{
		*gap_start_ms = from_ms;
		*gap_end_ms = to_ms;
		return true;
	}
	if (md_timestamptz_to_ms(DatumGetTimestampTz(d)) > from_ms)
	{
		*gap_start_ms = from_ms;
		*gap_end_ms = md_timestamptz_to_ms(DatumGetTimestampTz(d));
		return true;
	}

	ret = SPI_execute_plan(next_plans[idx], values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "gap query on mdfeed.%s failed", iv->table);
	if (SPI_processed == 0)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*gap_start_ms = md_timestamptz_to_ms(DatumGetTimestampTz(d));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*gap_end_ms = md_timestamptz_to_ms(DatumGetTimestampTz(d));
	if (*gap_start_ms >= to_ms)
		return false;
	return true;
}
