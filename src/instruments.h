/*-------------------------------------------------------------------------
 *
 * instruments.h
 *	  What the exchange lists: fetched from exchange info into
 *	  mdfeed.instruments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_INSTRUMENTS_H
#define MDFEED_INSTRUMENTS_H

#include "exchange.h"

extern char *md_fetch_exchange_info(const MdExchange *ex, char **err);
extern int	md_store_instruments(const MdExchange *ex, const char *body, char **err);
extern bool md_fetch_tickers(const MdExchange *ex, MdTicker **out, int *n, char **err);

#endif
