/*-------------------------------------------------------------------------
 *
 * http.h
 *	  Interruptible HTTP GETs over libcurl's multi interface: one at a time
 *	  (md_http_get), or several in flight (md_http_start).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_HTTP_H
#define MDFEED_HTTP_H

#include "lib/stringinfo.h"

#define MD_HTTP_HEADERS_SIZE 4096
#define MD_HTTP_MAX_HEADER_LINE 256

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
	/* the short header lines, "Name: value\n" each (md_http_header) */
	char		headers[MD_HTTP_HEADERS_SIZE];
	char		error[256];		/* transport error text */
	double		elapsed_s;
} MdHttpResponse;

/* returns true when the transfer should be abandoned (e.g. job canceled) */
typedef bool (*MdHttpAbortCheck) (void);

extern void md_http_get(const char *url, MdHttpResponse *resp, MdHttpAbortCheck abort_check);

/* several transfers in flight at once (the bulk archives' downloads) */
typedef struct MdHttpTransfer MdHttpTransfer;

extern MdHttpTransfer *md_http_start(const char *url, size_t max_bytes);
extern void md_http_pump(void);
extern bool md_http_done(const MdHttpTransfer *t);
extern MdHttpResponse *md_http_finish(MdHttpTransfer *t, MdHttpAbortCheck abort_check);
extern void md_http_release(MdHttpTransfer *t);
extern void md_http_cleanup(void);
extern bool md_http_header(const MdHttpResponse *resp, const char *name, char *out,
						   size_t outlen);
extern int	md_http_header_int(const MdHttpResponse *resp, const char *name);

#endif							/* MDFEED_HTTP_H */
