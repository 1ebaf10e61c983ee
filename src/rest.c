/*-------------------------------------------------------------------------
 *
 * rest.c
 *	  One REST call to an exchange, paid for from the shared budget.
 *
 * Every REST request of every mdfeed process goes through here, so none can
 * forget the budget: weight is taken before the request, and what the
 * answer says about the limit (the used-weight header, 429, 418) is
 * reported back before anyone looks at the body.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "common.h"
#include "budget.h"
#include "rest.h"
#include "shmem.h"

/*
 * rest_get fills resp with the answer to GET <base><path>, after taking
 * its cost from the budget: weight, or when bucket >= 0 one request of that
 * endpoint's own budget.  It returns false, with nothing to look at, if
 * abort_check asked to stop.
 */
static bool
rest_get(const MdExchange *ex, const char *path, int weight, int bucket, int per_5min,
		 MdHttpResponse *resp, MdHttpAbortCheck abort_check)
{
	char	   *url = psprintf("%s%s", ex->rest_base_url(), path);

	md_require_workers();
	if (bucket >= 0 ? !md_budget_acquire_request(bucket, per_5min, abort_check)
		: !md_budget_acquire(weight, abort_check))
	{
		pfree(url);
		return false;
	}
	md_http_get(url, resp, abort_check);
	pfree(url);
	if (resp->outcome == MD_HTTP_ABORTED)
		return false;
	md_budget_report(resp->status, resp->used_weight, resp->retry_after_s,
					 resp->status == 418 ? ex->ban_until_ms(resp->body.data, resp->body.len) : 0);
	if (md_my_slot)
	{
		SpinLockAcquire(&md_shared->mutex);
		md_my_slot->last_message_at = GetCurrentTimestamp();
		SpinLockRelease(&md_shared->mutex);
	}
	return true;
}

/*
 * md_rest_get is the one budgeted REST call of endpoints limited by weight.
 */
bool
md_rest_get(const MdExchange *ex, const char *path, int weight, MdHttpResponse *resp,
			MdHttpAbortCheck abort_check)
{
	return rest_get(ex, path, weight, -1, 0, resp, abort_check);
}

/*
 * md_rest_get_counted is md_rest_get for endpoints limited by a count of
 * requests rather than by weight.
 */
bool
md_rest_get_counted(const MdExchange *ex, const char *path, int bucket, int per_5min,
					MdHttpResponse *resp, MdHttpAbortCheck abort_check)
{
	return rest_get(ex, path, 0, bucket, per_5min, resp, abort_check);
}
