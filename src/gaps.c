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
 * A range the exchange has confirmed it has no candles for (before a
 * listing, a maintenance window: mdfeed.exchange_gaps) is not missing: a
 * gap that starts in one begins where it ends, and one that lies wholly in
 * one is passed over, so asking again for the same range costs nothing.
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

#include "common.h"
#include "gaps.h"
#include "store.h"

/* by exchange and interval: one table each */
static SPIPlanPtr first_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];
static SPIPlanPtr next_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];

/*
 * stored_gap finds the first range in [from_ms, to_ms) of candles not
 * stored as closed, from the stored rows alone.
 */
static bool
stored_gap(const MdExchange *ex, const MdInterval *iv, const char *symbol,
		   int64 from_ms, int64 to_ms, int64 *gap_start_ms, int64 *gap_end_ms)
{
	int			idx = iv - md_intervals;
	int			e = md_exchange_id(ex);
	char	   *table = md_candle_table(ex, iv);
	Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[3];
	bool		isnull;
	int			ret;
	Datum		d;

	if (from_ms >= to_ms)
		return false;

	if (first_plans[e][idx] == NULL)
	{
		char	   *sql;

		sql = psprintf("SELECT pg_catalog.min(open_time) FROM mdfeed.%s "
					   "WHERE symbol = $1 AND closed AND open_time >= $2 AND open_time < $3",
					   table);
		first_plans[e][idx] = md_keep_plan(sql, 3, types);
		/*
		 * The first stored candle whose successor is missing, and where the
		 * next stored one begins (or the end of the range).
		 */
		sql = psprintf("SELECT nxt_expected, nxt_stored FROM ("
					   " SELECT ((open_time AT TIME ZONE 'UTC') + '%s'::interval) AT TIME ZONE 'UTC' AS nxt_expected,"
					   "  pg_catalog.lead(open_time, 1, $3) OVER (ORDER BY open_time) AS nxt_stored"
					   " FROM mdfeed.%s WHERE symbol = $1 AND closed AND open_time >= $2 AND open_time < $3"
					   ") s WHERE nxt_stored > nxt_expected LIMIT 1",
					   iv->pg_interval, table);
		next_plans[e][idx] = md_keep_plan(sql, 3, types);
	}

	values[0] = CStringGetTextDatum(symbol);
	values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(from_ms));
	values[2] = TimestampTzGetDatum(md_ms_to_timestamptz(to_ms));

	ret = SPI_execute_plan(first_plans[e][idx], values, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "gap query on mdfeed.%s failed", table);
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

	ret = SPI_execute_plan(next_plans[e][idx], values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "gap query on mdfeed.%s failed", table);
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

/*
 * confirmed_empty_until returns the end of the longest range the exchange
 * confirmed empty that contains ms, or -1 if none does.
 */
static int64
confirmed_empty_until(const MdExchange *ex, const MdInterval *iv, const char *symbol, int64 ms)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[4];
	bool		isnull;
	Datum		d;

	if (plan == NULL)
	{
		Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};

		plan = md_keep_plan("SELECT pg_catalog.max(to_time) FROM mdfeed.exchange_gaps "
							"WHERE exchange = $1 AND symbol = $2 AND \"interval\" = $3 "
							"AND from_time <= $4 AND to_time > $4", 4, types);
	}
	values[0] = CStringGetTextDatum(ex->name);
	values[1] = CStringGetTextDatum(symbol);
	values[2] = CStringGetTextDatum(iv->name);
	values[3] = TimestampTzGetDatum(md_ms_to_timestamptz(ms));
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "query on mdfeed.exchange_gaps failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? -1 : md_timestamptz_to_ms(DatumGetTimestampTz(d));
}

/*
 * md_first_gap finds the first range in [from_ms, to_ms) of candles not
 * stored as closed and not confirmed empty by the exchange.  from_ms must
 * be a candle's open time.  Returns false when nothing is missing.
 */
bool
md_first_gap(const MdExchange *ex, const MdInterval *iv, const char *symbol,
			 int64 from_ms, int64 to_ms, int64 *gap_start_ms, int64 *gap_end_ms)
{
	while (stored_gap(ex, iv, symbol, from_ms, to_ms, gap_start_ms, gap_end_ms))
	{
		int64		empty_until = confirmed_empty_until(ex, iv, symbol, *gap_start_ms);

		if (empty_until < 0)
			return true;
		if (empty_until < *gap_end_ms)
		{
			/* confirmed ranges end at a candle's open time */
			*gap_start_ms = empty_until;
			return true;
		}
		/* all of this gap is confirmed empty: look on after it */
		from_ms = *gap_end_ms;
	}
	return false;
}
