/*-------------------------------------------------------------------------
 *
 * store.h
 *	  Writing candles: batched, idempotent upserts through SPI.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_STORE_H
#define MDFEED_STORE_H

#include "exchange.h"

extern int64 md_store_candles(const MdInterval *iv, const char *symbol,
							  MdCandle *rows, int nrows);

#endif
