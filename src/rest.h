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

extern bool md_rest_call(const MdExchange *ex, const MdEndpoint *ep, const char *path,
						 int cost, MdHttpResponse *resp, MdAnswer *ans,
						 MdHttpAbortCheck abort_check);

#endif
