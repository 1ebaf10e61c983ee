/*-------------------------------------------------------------------------
 *
 * candles.h
 *	  The candles job runner (candles.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_CANDLES_H
#define MDFEED_CANDLES_H

#include "jobs.h"

extern void md_run_candles_job(const MdJob *job);

#endif
