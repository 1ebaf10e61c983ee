/*-------------------------------------------------------------------------
 *
 * wsconn.h
 *	  The stream worker's pool of WebSocket connections to one exchange.
 *
 * Each connection is in one state of MdWsState; wsconn.c holds the only
 * code that moves it from one to another.  What a connection carries is a
 * list of interned keys (md_ws_key): one MdStreamKey per (symbol, interval)
 * for the life of the worker, so that keys are compared as pointers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_WSCONN_H
#define MDFEED_WSCONN_H

#include "exchange.h"

typedef enum MdWsState
{
	MD_WS_IDLE = 0,				/* the slot carries nothing */
	MD_WS_WAITING_RETRY,		/* carries keys, not connected: connects at
								 * next_attempt_ms (at once when new, after a
								 * backoff when lost) */
	MD_WS_CONNECTING,			/* connect sent, handshake under way */
	MD_WS_OPEN,					/* established */
	MD_WS_RETIRING				/* closing: replaced by its successor, or no
								 * longer needed */
} MdWsState;

/* called for every kline event; false if it could not be taken */
typedef bool (*MdWsKlineFn) (const MdStreamKline *k);

/*
 * called, outside libwebsockets, to repair the holes of a connection's
 * keys: every one, or (only_if_behind) those whose newest stored closed
 * candle is older than the one closed by as_of_ms
 */
typedef void (*MdWsRepairFn) (List *keys, bool only_if_behind, int64 as_of_ms);

extern void md_ws_init(const MdExchange *ex, MdWsKlineFn on_kline);
extern void md_ws_shutdown(void);
extern void md_ws_service(void);
extern const MdStreamKey *md_ws_key(const char *symbol, const MdInterval *iv);
extern int	md_ws_set_keys(List *want);
extern void md_ws_manage(MdWsRepairFn repair);
extern void md_ws_stats(int64 *frames, int64 *malformed, int64 *reconnects, int *connections);

#endif							/* MDFEED_WSCONN_H */
