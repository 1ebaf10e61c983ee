/*-------------------------------------------------------------------------
 *
 * budget.c
 *	  Each exchange's REST rate-limit budget, shared by every mdfeed process.
 *
 * Exchanges limit REST per IP address, so an exchange's budget lives in
 * shared memory and every worker draws from it before each request.  What
 * the limits are is the adapter's declaration (MdExchange.limits): a count
 * of units per clock window (Binance's weight a minute, which exchange info
 * may announce and the exchange's own used-weight header corrects, since it
 * also counts what anything else on this IP spent), or a token bucket for
 * a plain request rate.  mdfeed keeps its use under
 * mdfeed.rest_weight_share of every limit.
 *
 * An answer saying we are over the limit (Binance's 429) blocks that
 * exchange's calls until the exchange says; a ban (Binance's 418) does the
 * same for as long as it lasts.  Each exchange has its own budget, so one
 * exchange's limits never hold another's workers.
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

/* a bucket may hold this many requests: bursts stay short */
#define BUCKET_CAPACITY 10.0

/* failures in a row that make an outage, and how long it holds calls */
#define OUTAGE_AFTER 3
#define OUTAGE_HOLD_MIN_MS 1000
#define OUTAGE_HOLD_MAX_MS 10000

/* how long to hold back when the exchange does not say */
#define DEFAULT_THROTTLE_MS 5000
#define MAX_THROTTLE_MS (60 * 60 * 1000)
#define DEFAULT_BAN_MS 120000

/*
 * spender is the adapter whose budget ex spends: its own, or that of the
 * adapter it shares one with (two markets behind one host and one limit
 * per IP).  Every function here takes the limits from it.
 */
static inline const MdExchange *
spender(const MdExchange *ex)
{
	return ex->budget_of != NULL ? ex->budget_of : ex;
}

static MdBudget *
budget_of(const MdExchange *ex)
{
	return &md_shared->budgets[md_exchange_id(spender(ex))];
}

/*
 * md_budget_set_limit records a limit the exchange announced (exchange
 * info), in units per the limit's window.
 */
void
md_budget_set_limit(const MdExchange *ex, int limit_no, int limit)
{
	MdBudget   *b = budget_of(ex);

	ex = spender(ex);
	if (limit <= 0 || limit_no < 0 || limit_no >= ex->nlimits)
		return;
	SpinLockAcquire(&md_shared->mutex);
	b->limits[limit_no].limit = limit;
	SpinLockRelease(&md_shared->mutex);
}

/*
 * take_window takes cost units of a per-window limit, or returns how long
 * to wait for the next window.  Called under the spinlock.
 */
static int64
take_window(const MdRateLimit *rl, MdLimitState *st, int cost, int64 now)
{
	int64		window = now / rl->window_ms;
	int			allowed;

	if (st->window != window)
	{
		st->window = window;
		st->used = 0;
	}
	allowed = (int) (st->limit * mdfeed_rest_weight_share);
	if (allowed < cost)
		allowed = cost;			/* a tiny limit must still allow one request */
	if (st->used + cost <= allowed)
	{
		st->used += cost;
		return 0;
	}
	/* wait for the next window, plus a little for clock skew */
	return (window + 1) * rl->window_ms - now + 250;
}

/*
 * take_bucket takes cost tokens of a request-rate limit, refilled at
 * mdfeed.rest_weight_share of its rate, or returns how long to wait.
 * Called under the spinlock.
 */
static int64
take_bucket(const MdRateLimit *rl, MdLimitState *st, int cost, int64 now)
{
	double		rate = st->limit * mdfeed_rest_weight_share / (double) rl->window_ms;	/* per ms */
	double		capacity = Max(BUCKET_CAPACITY, cost);

	if (st->tokens_at_ms == 0)
		st->tokens = capacity;
	else
		st->tokens = Min(capacity, st->tokens + (now - st->tokens_at_ms) * rate);
	st->tokens_at_ms = now;
	if (st->tokens >= cost)
	{
		st->tokens -= cost;
		return 0;
	}
	return (int64) ((cost - st->tokens) / rate) + 1;
}

/*
 * budget_try takes an endpoint's cost if it can.  Otherwise it returns how
 * many milliseconds to wait before asking again.
 */
static int64
budget_try(const MdExchange *ex, const MdEndpoint *ep, int cost)
{
	MdBudget   *b = budget_of(ex);
	const MdRateLimit *rl = &spender(ex)->limits[ep->limit];
	MdLimitState *st = &b->limits[ep->limit];
	int64		now = md_now_ms();
	int64		wait_ms;

	SpinLockAcquire(&md_shared->mutex);
	if (b->blocked_until_ms > now)
		wait_ms = b->blocked_until_ms - now;
	else
	{
		b->banned = false;
		if (rl->kind == MD_LIMIT_WINDOW)
			wait_ms = take_window(rl, st, cost, now);
		else
			wait_ms = take_bucket(rl, st, cost, now);
		if (wait_ms == 0)
			b->requests++;
		else
			b->throttled++;
	}
	SpinLockRelease(&md_shared->mutex);
	return wait_ms;
}

/*
 * md_budget_acquire waits, interruptibly, until a request of the endpoint
 * costing cost units may be made.  It returns false if abort_check asked
 * to stop waiting.
 */
bool
md_budget_acquire(const MdExchange *ex, const MdEndpoint *ep, int cost,
				  bool (*abort_check) (void))
{
	Assert(ep->limit >= 0 && ep->limit < spender(ex)->nlimits);
	for (;;)
	{
		int64		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (abort_check && abort_check())
			return false;
		wait_ms = budget_try(ex, ep, cost);
		if (wait_ms <= 0)
			return true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(wait_ms, 1000), MD_WAIT_EVENT);
		ResetLatch(MyLatch);
	}
}

/*
 * md_budget_report takes in what an answer said about the budget: the
 * exchange's own count of its first limit, and whether it throttled or
 * banned this IP.
 */
void
md_budget_report(const MdExchange *ex, const MdAnswer *ans)
{
	MdBudget   *b = budget_of(ex);
	MdLimitState *st = &b->limits[0];
	int64		now = md_now_ms();
	int64		until = 0;

	ex = spender(ex);
	SpinLockAcquire(&md_shared->mutex);
	if (ans->used >= 0 && ex->limits[0].kind == MD_LIMIT_WINDOW &&
		st->window == now / ex->limits[0].window_ms && ans->used > st->used)
		st->used = ans->used;
	if (ans->kind == MD_ANSWER_THROTTLED)
	{
		b->rate_limited++;
		until = ans->until_ms > now ? ans->until_ms : now + DEFAULT_THROTTLE_MS;
		/* a throttle is a window's end: a Retry-After of years is garbage */
		until = Min(until, now + MAX_THROTTLE_MS);
		b->blocked_until_ms = Max(b->blocked_until_ms, until);
	}
	else if (ans->kind == MD_ANSWER_BANNED)
	{
		b->bans++;
		until = ans->until_ms > now ? ans->until_ms : now + DEFAULT_BAN_MS;
		b->blocked_until_ms = Max(b->blocked_until_ms, until);
		b->banned = true;
	}
	SpinLockRelease(&md_shared->mutex);

	if (ans->kind == MD_ANSWER_BANNED)
		ereport(WARNING,
				(errmsg("%s banned this IP address from REST calls for %lld s",
						ex->name, (long long) ((until - now) / 1000)),
				 errdetail("Every mdfeed REST call to %s waits until the ban ends; other exchanges go on.",
						   ex->name),
				 errhint("Lower mdfeed.rest_weight_share if other programs share this IP address.")));
}

/*
 * md_budget_snapshot copies an exchange's budget, for status functions.
 */
void
md_budget_snapshot(const MdExchange *ex, MdBudget *out)
{
	SpinLockAcquire(&md_shared->mutex);
	*out = *budget_of(ex);
	SpinLockRelease(&md_shared->mutex);
}

/*
 * md_budget_blocked_until is when the exchange lets this server call it
 * again after a throttle or a ban, or 0 if it does not hold it back.
 */
int64
md_budget_blocked_until(const MdExchange *ex)
{
	int64		until;

	SpinLockAcquire(&md_shared->mutex);
	until = budget_of(ex)->blocked_until_ms;
	SpinLockRelease(&md_shared->mutex);
	return until > md_now_ms() ? until : 0;
}

/*
 * md_budget_note_outcome records whether the exchange answered a call.
 * After OUTAGE_AFTER failures in a row (a refused connection, a timeout, a
 * 5xx: not a refusal or a throttle, which are answers) it counts as down
 * for a while that doubles with every further failure, up to
 * OUTAGE_HOLD_MAX_MS; one answer ends that.  A lone failure is a blip, and
 * changes nothing.  The backfill pool uses it to keep one exchange's
 * outage from holding every worker (jobs.c, jobrun.c), and the watch
 * worker to put off its calls.
 */
void
md_budget_note_outcome(const MdExchange *ex, bool answered)
{
	MdBudget   *b = budget_of(ex);
	int64		now = md_now_ms();

	SpinLockAcquire(&md_shared->mutex);
	if (answered)
	{
		b->failures = 0;
		b->failing_until_ms = 0;
	}
	else if (++b->failures >= OUTAGE_AFTER)
	{
		int			doublings = Min(b->failures - OUTAGE_AFTER, 5);

		b->failing_until_ms = Max(b->failing_until_ms,
								  now + Min(OUTAGE_HOLD_MIN_MS << doublings, OUTAGE_HOLD_MAX_MS));
	}
	SpinLockRelease(&md_shared->mutex);
}

/*
 * md_exchange_available says whether a REST call to the exchange may go
 * now and is expected to be answered: it does not hold this server back
 * (a throttle, a ban) and its last calls did not fail.
 */
bool
md_exchange_available(const MdExchange *ex)
{
	MdBudget   *b = budget_of(ex);
	int64		now = md_now_ms();
	bool		ok;

	SpinLockAcquire(&md_shared->mutex);
	ok = b->blocked_until_ms <= now && b->failing_until_ms <= now;
	SpinLockRelease(&md_shared->mutex);
	return ok;
}

/*
 * md_same_budget says whether two adapters spend one budget (one exchange).
 */
bool
md_same_budget(const MdExchange *a, const MdExchange *b)
{
	return spender(a) == spender(b);
}
