/*-------------------------------------------------------------------------
 *
 * sql_parse.h
 *	  The parser functions of sql_parse.c, for SQL entry points that fix
 *	  the exchange (binance_sql.c keeps 1.0's).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_SQL_PARSE_H
#define MDFEED_SQL_PARSE_H

#include "fmgr.h"

#include "exchange.h"

extern Datum md_sql_parse_klines(FunctionCallInfo fcinfo, const MdExchange *ex, text *body,
								 const char *interval);
extern Datum md_sql_parse_stream(FunctionCallInfo fcinfo, const MdExchange *ex, text *frame);
extern int64 md_sql_ingest_klines(const MdExchange *ex, const char *symbol, const char *interval,
								  text *body, int64 server_ms);

#endif
