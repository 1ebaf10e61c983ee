/*-------------------------------------------------------------------------
 *
 * store.h
 *	  Writing candles: batched, idempotent upserts through SPI.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_STORE_H
#define MDFEED_STORE_H

#include "executor/spi.h"

#include "exchange.h"

extern Datum md_cstring_array(char **vals, int n, bool numeric);
extern SPIPlanPtr md_keep_plan(const char *sql, int nargs, Oid *types);
extern int64 md_store_candles(const MdExchange *ex, const MdInterval *iv,
							   MdCandle *rows, int nrows);
extern int64 md_store_funding(const MdExchange *ex, const char *symbol,
							   MdFunding *rows, int n);
extern int64 md_store_open_interest(const MdExchange *ex, const char *symbol,
									 MdOpenInterest *rows, int n);
extern int64 md_store_open_interest_5m(const MdExchange *ex, const char *symbol,
										MdOpenInterest *rows, int n);
extern int64 md_fill_open_interest(const MdExchange *ex, const char *symbol,
								   MdOpenInterest *rows, int n);
extern void md_notify_candle(const char *exchange, const char *symbol,
							 const MdInterval *iv, int64 open_ms);

#endif
