/*-------------------------------------------------------------------------
 *
 * budget.c
 *	  The REST rate-limit budget, shared by every mdfeed process.
 *
 * Binance limits REST weight per IP address and per clock minute, so the
 * budget lives in shared memory and every worker draws from it before each
 * request.  mdfeed keeps its use under mdfeed.rest_weight_share of the
 * limit exchangeInfo announces, and corrects its own count with the
 * exchange's X-MBX-USED-WEIGHT-1M header, which also counts weight spent by
 * anything else on this IP.  A 429 blocks every worker until Retry-After;
 * a 418 (an IP ban) does the same for as long as the ban lasts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "common.h"
#include "budget.h"
#include "shmem.h"

/*
 * md_budget_set_limit records the limit exchangeInfo announced.
 */
void
md_budget_set_limit(int limit_per_minute)
{
	if (limit_per_minute <= 0)
		return;
	SpinLockAcquire(&md_shared->mutex);
	md_shared->budget.limit_per_minute = limit_per_minute;
	SpinLockRelease(&md_shared->mutex);
}

/*
 * md_budget_try takes weight from the budget if it can.  Otherwise it
 * returns how many milliseconds to wait before asking again.
 */
static int64
md_budget_try(int weight)
{
	MdBudget   *b = &md_shared->budget;
	int64		now = md_now_ms();
	int64		minute = now / 60000;
	int64		wait_ms = 0;
	int			allowed;

	SpinLockAcquire(&md_shared->mutex);
	if (b->blocked_until_ms > now)
		wait_ms = b->blocked_until_ms - now;
	else
	{
		b->banned = false;
		if (b->window_minute != minute)
		{
			b->window_minute = minute;
			b->used = 0;
		}
		allowed = (int) (b->limit_per_minute * mdfeed_rest_weight_share);
		if (allowed < weight)
			allowed = weight;	/* a tiny limit must still allow one request */
		if (b->used + weight <= allowed)
		{
			b->used += weight;
			b->requests++;
		}
		else
		{
			/* wait for the next window, plus a little for clock skew */
			wait_ms = (minute + 1) * 60000 - now + 250;
			b->throttled++;
		}
	}
	SpinLockRelease(&md_shared->mutex);
	return wait_ms;
}

/*
 * md_budget_acquire waits, interruptibly, until weight may be spent.  It
 * returns false if abort_check asked to stop waiting.
 */
bool
md_budget_acquire(int weight, bool (*abort_check) (void))
{
	for (;;)
	{
		int64		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (abort_check && abort_check())
			return false;
		wait_ms = md_budget_try(weight);
		if (wait_ms <= 0)
			return true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(wait_ms, 1000), MD_WAIT_EVENT);
		ResetLatch(MyLatch);
	}
}

/* a bucket may hold this many requests: bursts stay short */
#define BUCKET_CAPACITY 10.0

/*
 * md_budget_try_request takes a token from the bucket of an endpoint with
 * its own request limit (funding, open interest), refilled at
 * mdfeed.rest_weight_share of its limit.  Returns the wait in ms, or 0.
 */
static int64
md_budget_try_request(int bucket, int per_5min)
{
	MdBudget   *b = &md_shared->budget;
	int64		now = md_now_ms();
	double		rate = per_5min * mdfeed_rest_weight_share / 300000.0;	/* per ms */
	int64		wait_ms = 0;

	SpinLockAcquire(&md_shared->mutex);
	if (b->blocked_until_ms > now)
		wait_ms = b->blocked_until_ms - now;
	else
	{
		if (b->tokens_at_ms[bucket] == 0)
			b->tokens[bucket] = BUCKET_CAPACITY;
		else
			b->tokens[bucket] = Min(BUCKET_CAPACITY,
									b->tokens[bucket] + (now - b->tokens_at_ms[bucket]) * rate);
		b->tokens_at_ms[bucket] = now;
		if (b->tokens[bucket] >= 1.0)
		{
			b->tokens[bucket] -= 1.0;
			b->requests++;
		}
		else
		{
			wait_ms = (int64) ((1.0 - b->tokens[bucket]) / rate) + 1;
			b->throttled++;
		}
	}
	SpinLockRelease(&md_shared->mutex);
	return wait_ms;
}

/*
 * md_budget_acquire_request waits, interruptibly, for a request of an
 * endpoint with its own request limit.  Returns false if abort_check asked
 * to stop.
 */
bool
md_budget_acquire_request(int bucket, int per_5min, bool (*abort_check) (void))
{
	for (;;)
	{
		int64		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (abort_check && abort_check())
			return false;
		wait_ms = md_budget_try_request(bucket, per_5min);
		if (wait_ms <= 0)
			return true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(wait_ms, 1000), MD_WAIT_EVENT);
		ResetLatch(MyLatch);
	}
}

/*
 * md_budget_report takes in what an answer said about the budget: the
 * exchange's own count of weight used, and 429 or 418 with Retry-After.
 */
void
md_budget_report(long status, int used_weight, int retry_after_s, int64 ban_until_ms)
{
	MdBudget   *b = &md_shared->budget;
	int64		now = md_now_ms();
	int64		until = 0;

	SpinLockAcquire(&md_shared->mutex);
	if (used_weight >= 0 && b->window_minute == now / 60000 && used_weight > b->used)
		b->used = used_weight;
	if (status == 429)
	{
		b->got_429++;
		until = now + (retry_after_s > 0 ? retry_after_s * INT64CONST(1000) : 5000);
		b->blocked_until_ms = Max(b->blocked_until_ms, until);
	}
	else if (status == 418)
	{
		b->got_418++;
		if (ban_until_ms > now)
			until = ban_until_ms;
		else
			until = now + (retry_after_s > 0 ? retry_after_s * INT64CONST(1000) : 120000);
		b->blocked_until_ms = Max(b->blocked_until_ms, until);
		b->banned = true;
	}
	SpinLockRelease(&md_shared->mutex);

	if (status == 418)
		ereport(WARNING,
				(errmsg("the exchange banned this IP address from REST calls for %lld s",
						(long long) ((until - now) / 1000)),
				 errdetail("Every mdfeed REST call waits until the ban ends."),
				 errhint("Lower mdfeed.rest_weight_share if other programs share this IP address.")));
}
