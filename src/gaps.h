/*-------------------------------------------------------------------------
 *
 * gaps.h
 *	  Finding the candles missing from a stored range.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_GAPS_H
#define MDFEED_GAPS_H

#include "exchange.h"

extern bool md_first_gap(const MdExchange *ex, const MdInterval *iv, const char *symbol,
						 int64 from_ms, int64 to_ms,
						 int64 *gap_start_ms, int64 *gap_end_ms);

#endif
