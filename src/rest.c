/*-------------------------------------------------------------------------
 *
 * rest.c
 *	  One REST call to an exchange, paid for from that exchange's budget.
 *
 * Every REST request of every mdfeed process goes through here, so none can
 * forget the budget: the endpoint's cost is taken before the request, the
 * adapter classifies the answer, and what it says about the limits (the
 * exchange's count of what was used, a throttle, a ban) is reported back to
 * the budget before anyone looks at the body.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "common.h"
#include "budget.h"
#include "rest.h"
#include "shard.h"
#include "shmem.h"

/*
 * md_rest_call fills resp with the answer to GET <base><path> (path NULL:
 * the endpoint's own) and ans with what the adapter makes of it, after
 * taking cost units (cost < 0: the endpoint's cost) from the exchange's
 * budget.  A transfer that failed is classified MD_ANSWER_RETRY.  It
 * returns false, with nothing to look at, if abort_check asked to stop.
 */
bool
md_rest_call(const MdExchange *ex, const MdEndpoint *ep, const char *path, int cost,
			 MdHttpResponse *resp, MdAnswer *ans, MdHttpAbortCheck abort_check)
{
	const char *base = ep->base_url ? ep->base_url() : ex->rest_base_url();
	char	   *url = psprintf("%s%s", base, path ? path : ep->path);

	md_require_workers();
	md_require_ingest();
	if (!md_budget_acquire(ex, ep, cost >= 0 ? cost : ep->cost, abort_check))
	{
		pfree(url);
		return false;
	}
	md_http_get(url, resp, abort_check);
	pfree(url);
	if (resp->outcome == MD_HTTP_ABORTED)
		return false;

	memset(ans, 0, sizeof(*ans));
	ans->used = -1;
	if (resp->outcome == MD_HTTP_OK)
		ex->classify(resp, ans);
	else
		ans->kind = MD_ANSWER_RETRY;
	/* the exchange's count is of the first limit, its host's: not another's */
	if (ep->limit != 0)
		ans->used = -1;
	md_budget_report(ex, ans);
	/* whether it answers, for whoever decides what to call next */
	md_budget_note_outcome(ex, resp->outcome == MD_HTTP_OK && ans->kind != MD_ANSWER_RETRY);
	if (md_my_slot)
	{
		SpinLockAcquire(&md_shared->mutex);
		md_my_slot->last_message_at = GetCurrentTimestamp();
		SpinLockRelease(&md_shared->mutex);
	}
	return true;
}
