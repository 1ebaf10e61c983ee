/*-------------------------------------------------------------------------
 *
 * binance_sql.c
 *	  The SQL functions of mdfeed 1.0 whose names fix the exchange to
 *	  Binance USD-M: mdfeed.parse_binance_klines, parse_binance_stream,
 *	  ingest_binance_klines and interval_table.
 *
 * 1.2 gave every parser the exchange as an argument (mdfeed.parse_klines
 * and friends, sql_parse.c).  The 1.0 names stay, since users' code calls
 * them and a released script's functions must keep their symbols; each is
 * the generic function with the exchange fixed, so nothing here parses.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "common.h"
#include "exchange.h"
#include "sql_args.h"
#include "sql_parse.h"

PG_FUNCTION_INFO_V1(mdfeed_parse_binance_klines);
PG_FUNCTION_INFO_V1(mdfeed_parse_binance_stream);
PG_FUNCTION_INFO_V1(mdfeed_ingest_binance_klines);
PG_FUNCTION_INFO_V1(mdfeed_interval_table);

/*
 * mdfeed_parse_binance_klines is mdfeed.parse_klines('binance', body,
 * interval).
 */
Datum
mdfeed_parse_binance_klines(PG_FUNCTION_ARGS)
{
	return md_sql_parse_klines(fcinfo, &md_binance, PG_GETARG_TEXT_PP(0),
							   text_to_cstring(PG_GETARG_TEXT_PP(1)));
}

/*
 * mdfeed_parse_binance_stream is mdfeed.parse_stream('binance', frame).
 */
Datum
mdfeed_parse_binance_stream(PG_FUNCTION_ARGS)
{
	return md_sql_parse_stream(fcinfo, &md_binance, PG_GETARG_TEXT_PP(0));
}

/*
 * mdfeed_ingest_binance_klines is mdfeed.ingest_klines('binance', ...).
 */
Datum
mdfeed_ingest_binance_klines(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(md_sql_ingest_klines(&md_binance, text_to_cstring(PG_GETARG_TEXT_PP(0)),
										 text_to_cstring(PG_GETARG_TEXT_PP(1)),
										 PG_GETARG_TEXT_PP(2),
										 md_timestamptz_to_ms(PG_GETARG_TIMESTAMPTZ(3))));
}

/*
 * mdfeed_interval_table names Binance's table of an interval, as 1.0's
 * mdfeed.interval_table did (mdfeed.candle_table takes the exchange).
 */
Datum
mdfeed_interval_table(PG_FUNCTION_ARGS)
{
	const MdInterval *iv = md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_TEXT_P(cstring_to_text(md_candle_table(&md_binance, iv)));
}
