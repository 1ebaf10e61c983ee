/*-------------------------------------------------------------------------
 *
 * sql_exchanges.c
 *	  SQL functions that ask the exchange adapters what they declare: which
 *	  table holds an exchange's interval, and how each exchange's REST
 *	  budget stands.
 *
 * The SQL side never knows an exchange's words: mdfeed_gaps and
 * mdfeed.sync_pair get their table from mdfeed.candle_table, and the
 * errors about an exchange name it and list what it offers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"
#include "utils/timestamp.h"

#include "common.h"
#include "budget.h"
#include "exchange.h"
#include "sql_exchanges.h"

PG_FUNCTION_INFO_V1(mdfeed_candle_table);
PG_FUNCTION_INFO_V1(mdfeed_budgets);

/*
 * md_sql_exchange finds the adapter a user named, or raises the error of an
 * unknown exchange.
 */
const MdExchange *
md_sql_exchange(const char *name)
{
	const MdExchange *ex = md_exchange_lookup(name);

	if (ex == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown exchange \"%s\"", name),
				 errhint("Valid exchanges are: %s.", md_exchange_names())));
	return ex;
}

/*
 * md_sql_interval finds an interval the exchange offers, or raises an error
 * naming the exchange and listing what it offers.
 */
const MdInterval *
md_sql_interval(const MdExchange *ex, const char *name)
{
	const MdInterval *iv = md_exchange_interval(ex, name);

	if (iv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 md_interval_lookup(name) == NULL ?
				 errmsg("invalid interval \"%s\"", name) :
				 errmsg("%s does not offer interval \"%s\"", ex->name, name),
				 errhint("%s offers %s (1m is a minute, 1M a month).",
						 ex->name, md_exchange_interval_names(ex))));
	return iv;
}

/*
 * mdfeed_candle_table names the table (in schema mdfeed) holding an
 * exchange's candles of an interval.
 */
Datum
mdfeed_candle_table(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_sql_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	const MdInterval *iv = md_sql_interval(ex, text_to_cstring(PG_GETARG_TEXT_PP(1)));

	PG_RETURN_TEXT_P(cstring_to_text(md_candle_table(ex, iv)));
}

/*
 * mdfeed_budgets shows every limit of every exchange's REST budget: one row
 * per (exchange, limit).
 */
Datum
mdfeed_budgets(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		now = md_now_ms();

	InitMaterializedSRF(fcinfo, 0);
	md_require_workers();
	for (int e = 0; e < md_num_exchanges(); e++)
	{
		const MdExchange *ex = md_exchange_by_id(e);
		MdBudget	b;

		md_budget_snapshot(ex, &b);
		for (int l = 0; l < ex->nlimits; l++)
		{
			const MdRateLimit *rl = &ex->limits[l];
			const MdLimitState *st = &b.limits[l];
			Datum		values[11];
			bool		nulls[11] = {0};
			Interval   *window;

			values[0] = CStringGetTextDatum(ex->name);
			values[1] = CStringGetTextDatum(rl->name);
			values[2] = Int32GetDatum(st->limit);
			window = palloc0(sizeof(Interval));
			window->time = rl->window_ms * INT64CONST(1000);
			values[3] = IntervalPGetDatum(window);
			/* a window's count; a token bucket has none to show */
			if (rl->kind == MD_LIMIT_WINDOW)
				values[4] = Int32GetDatum(st->window == now / rl->window_ms ? st->used : 0);
			else
				nulls[4] = true;
			if (b.blocked_until_ms > now)
				values[5] = TimestampTzGetDatum(md_ms_to_timestamptz(b.blocked_until_ms));
			else
				nulls[5] = true;
			values[6] = BoolGetDatum(b.blocked_until_ms > now && b.banned);
			values[7] = Int64GetDatum(b.requests);
			values[8] = Int64GetDatum(b.throttled);
			values[9] = Int64GetDatum(b.rate_limited);
			values[10] = Int64GetDatum(b.bans);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
