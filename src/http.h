/*-------------------------------------------------------------------------
 *
 * http.h
 *	  One interruptible HTTP GET at a time over libcurl's multi interface.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_HTTP_H
#define MDFEED_HTTP_H

#include "lib/stringinfo.h"

typedef enum MdHttpOutcome
{
	MD_HTTP_OK,					/* a complete answer arrived (any status) */
	MD_HTTP_TRANSPORT_ERROR,	/* connect, reset, timeout, truncated body */
	MD_HTTP_TOO_LARGE,			/* over mdfeed.rest_max_response_size */
	MD_HTTP_ABORTED				/* the abort callback said stop */
} MdHttpOutcome;

typedef struct MdHttpResponse
{
	MdHttpOutcome outcome;
	long		status;			/* HTTP status, 0 if none */
	StringInfoData body;
	int			used_weight;	/* X-MBX-USED-WEIGHT-1M, -1 if absent */
	int			retry_after_s;	/* Retry-After, -1 if absent */
	char		error[256];		/* transport error text */
	double		elapsed_s;
} MdHttpResponse;

/* returns true when the transfer should be abandoned (e.g. job canceled) */
typedef bool (*MdHttpAbortCheck) (void);

extern void md_http_get(const char *url, MdHttpResponse *resp, MdHttpAbortCheck abort_check);
extern void md_http_cleanup(void);

#endif							/* MDFEED_HTTP_H */
