/*-------------------------------------------------------------------------
 *
 * budget.h
 *	  Each exchange's REST rate-limit budget, shared by every mdfeed process.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_BUDGET_H
#define MDFEED_BUDGET_H

#include "exchange.h"
#include "shmem.h"

extern void md_budget_set_limit(const MdExchange *ex, int limit_no, int limit);
extern bool md_budget_acquire(const MdExchange *ex, const MdEndpoint *ep, int cost,
							  bool (*abort_check) (void));
extern void md_budget_report(const MdExchange *ex, const MdAnswer *ans);
extern void md_budget_snapshot(const MdExchange *ex, MdBudget *out);
extern int64 md_budget_blocked_until(const MdExchange *ex);
extern void md_budget_note_outcome(const MdExchange *ex, bool ok, int64 retry_at_ms);
extern bool md_exchange_available(const MdExchange *ex);
extern bool md_same_budget(const MdExchange *a, const MdExchange *b);

#endif
