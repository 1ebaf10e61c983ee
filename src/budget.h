/*-------------------------------------------------------------------------
 *
 * budget.h
 *	  The REST rate-limit budget shared by every mdfeed process.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_BUDGET_H
#define MDFEED_BUDGET_H

extern void md_budget_set_limit(int limit_per_minute);
extern bool md_budget_acquire(int weight, bool (*abort_check) (void));
extern bool md_budget_acquire_request(int bucket, int per_5min, bool (*abort_check) (void));
extern void md_budget_report(long status, int used_weight, int retry_after_s,
							 int64 ban_until_ms);

#endif
