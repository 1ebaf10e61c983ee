/*-------------------------------------------------------------------------
 *
 * redact.h
 *	  Scrubbing of mdfeed's secrets from error reports (see redact.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_REDACT_H
#define MDFEED_REDACT_H

#include "utils/elog.h"

extern void md_redact_error(ErrorData *edata, const char *key, const char *secret);

#endif							/* MDFEED_REDACT_H */
