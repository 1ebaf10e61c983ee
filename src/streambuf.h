/*-------------------------------------------------------------------------
 *
 * streambuf.h
 *	  The stream worker's buffer of candles on their way to the tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_STREAMBUF_H
#define MDFEED_STREAMBUF_H

#include "exchange.h"

extern void md_streambuf_init(const MdExchange *ex);
extern bool md_streambuf_add(const MdStreamKline *k);
extern bool md_streambuf_has_closed(void);
extern void md_streambuf_flush(bool closed_only);
extern void md_streambuf_discard(void);
extern void md_streambuf_latency(int64 *p50, int64 *p99, int64 *close_p50, int64 *close_p99);

#endif							/* MDFEED_STREAMBUF_H */
