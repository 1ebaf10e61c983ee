/*-------------------------------------------------------------------------
 *
 * derivs.h
 *	  The open-interest and funding job runners (derivs.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_DERIVS_H
#define MDFEED_DERIVS_H

#include "jobs.h"

extern void md_run_funding_job(const MdJob *job);
extern void md_run_open_interest_job(const MdJob *job);

#endif
