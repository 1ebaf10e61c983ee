/*-------------------------------------------------------------------------
 *
 * rest.h
 *	  One budgeted REST call to an exchange.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_REST_H
#define MDFEED_REST_H

#include "exchange.h"
#include "http.h"

extern bool md_rest_get(const MdExchange *ex, const char *path, int weight,
						MdHttpResponse *resp, MdHttpAbortCheck abort_check);
extern bool md_rest_get_counted(const MdExchange *ex, const char *path, int bucket,
								int per_5min, MdHttpResponse *resp,
								MdHttpAbortCheck abort_check);

#endif
