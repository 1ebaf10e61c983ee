/*-------------------------------------------------------------------------
 *
 * sql_exchanges.h
 *	  Resolving the exchange and interval a SQL caller named, with the
 *	  errors that name the exchange.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_SQL_EXCHANGES_H
#define MDFEED_SQL_EXCHANGES_H

#include "exchange.h"

extern const MdExchange *md_sql_exchange(const char *name);
extern const MdInterval *md_sql_interval(const MdExchange *ex, const char *name);

#endif
