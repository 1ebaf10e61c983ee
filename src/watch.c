/*-------------------------------------------------------------------------
 *
 * watch.c
 *	  The watch worker: the periodic work that keeps tracked data complete.
 *
 * Every action it takes is a job for the backfill workers:
 *   - exchange info: refreshes mdfeed.instruments, so that listings,
 *     delistings and the weight limit are followed;
 *   - startup sync: every tracked (symbol, interval) it has not synced
 *     since it started (all of them at server start, a symbol just
 *     whitelisted, an interval just added to mdfeed.intervals) is brought up
 *     to date from its newest closed candle, while the stream runs; the
 *     first fill of a new pair is this worker's alone (the stream's repairs
 *     and the gap watchdog leave it to this sync);
 *   - gap watchdog: every mdfeed.gap_check_interval it looks for missing
 *     closed candles in the last mdfeed.gap_lookback, the tail included,
 *     and queues repairs, except for ranges the exchange confirmed empty;
 *   - liquidity: with mdfeed.auto_track_top_n set, it ranks the board by
 *     24 h quote volume at once (and again when the settings change) and
 *     then hourly, and makes the top of it mdfeed.auto_tracked;
 *   - derivatives: just after every hour, it queues the collection of open
 *     interest and funding for every tracked symbol;
 *   - prune: hourly, it deletes the upkeep jobs that succeeded over a day
 *     ago (a stream whose closes are made exact over REST queues one a
 *     bar).
 *
 * The schedule is a table, as in pg_cron: watch_tasks[] holds each task's
 * name, period (a setting or a constant), how its next due time follows
 * from a run, an optional check (enabled, due by its period, or due at
 * once) and its run function.  Each pass, about once a second, the loop
 * walks the table in order for every exchange the worker serves, runs what
 * is due and records when it ran and is due next; the time kept per
 * exchange (WatchSite) is apart from the table, so one table serves any
 * number of exchanges.  Tasks may make another task due at once (a newly
 * tracked symbol gets its derivatives at once): the order of the table is
 * the order they run in within a pass.  A pass works in a memory context
 * that is reset after it; an error ends that exchange's pass, and the
 * next pass starts over.
 *
 * It is also the schema probe: each pass first checks that the extension
 * is at the library's version, and waits otherwise (md_schema_ready).  In
 * replica mode (mdfeed.mode) it is only that and the models' probe.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "common.h"
#include "budget.h"
#include "exchange.h"
#include "http.h"
#include "instruments.h"
#include "jobs.h"
#include "shard.h"
#include "shmem.h"
#include "workers.h"

/*
 * candles that closed less than this ago may still be on their way: the
 * check stops at the start of the candle open this long ago
 */
#define TAIL_GRACE "15 seconds"

/* a task that calls an exchange whose calls fail is tried this much later */
#define UNAVAILABLE_RETRY_MS 10000

typedef struct SyncedPair
{
	char		key[64];		/* symbol|interval */
	bool		seen;
} SyncedPair;

/* the tasks, in the order a pass runs them */
typedef enum WatchTaskId
{
	WATCH_INSTRUMENTS,
	WATCH_SYNC,
	WATCH_GAPS,
	WATCH_RANK,
	WATCH_DERIVS,
	WATCH_PRUNE,
	WATCH_NTASKS
} WatchTaskId;

/* what a task's check says of this pass */
typedef enum WatchWhen
{
	WATCH_OFF,					/* not now, due or not */
	WATCH_WHEN_DUE,				/* if its period has passed */
	WATCH_NOW					/* at once, due or not */
} WatchWhen;

/* how the next due time follows from a run */
typedef enum WatchAnchor
{
	WATCH_AFTER_START,			/* a period after the pass began */
	WATCH_AFTER_END,			/* a period after the run ended */
	WATCH_ALIGNED				/* offset_s past the next multiple of the period */
} WatchAnchor;

/* when a task of one exchange ran and runs next (times in ms) */
typedef struct WatchTaskState
{
	int64		last_run;		/* when the pass of its last run began; 0: never */
	int64		next_due;		/* due once the time reaches this */
	int64		not_before;		/* after a failed run: not again before this */
} WatchTaskState;

/* what the board was ranked with */
typedef struct RankInputs
{
	int			top_n;
	double		min_qv;
	int64		lists_version;
	int			shard_k;		/* mdfeed.shard: a new shard keeps other symbols */
	int			shard_n;
} RankInputs;

/* what the watch worker keeps for one exchange */
typedef struct WatchSite
{
	const MdExchange *ex;
	HTAB	   *synced;			/* the pairs synced, as SyncedPair */
	WatchTaskState tasks[WATCH_NTASKS];
	int			shard_k;		/* mdfeed.shard when the jobs were last pruned */
	int			shard_n;		/* for it (-1: not yet) */
	RankInputs	ranked;			/* of the last ranking; -1: none yet */
	RankInputs	rank_now;		/* read by rank_check for run_rank */
} WatchSite;

/* one periodic task */
typedef struct WatchTask
{
	const char *name;
	const char *state;			/* mdfeed.workers.state while it runs */
	const int  *period_s;		/* a setting or a constant; NULL: every pass */
	WatchAnchor anchor;
	int			offset_s;		/* for WATCH_ALIGNED */
	int			first_after_s;	/* first due this long after the worker starts */
	int			retry_s;		/* the wait after a failed run */
	bool		calls_rest;		/* waits for the exchange's REST budget:
								 * not run while the exchange holds this
								 * server back, so that it never holds
								 * another exchange's tasks */
	bool		again_when_ready;	/* due at once after the schema probe waited */
	/* NULL: WATCH_WHEN_DUE */
	WatchWhen	(*check) (WatchSite *site);
	/* the number of jobs it queued, or -1 if it failed */
	int			(*run) (WatchSite *site);
} WatchTask;

/* the exchanges served, each with its own schedule */
static WatchSite *sites = NULL;
static int	nsites = 0;

/*
 * refresh_instruments fetches exchange info with no transaction open, then
 * stores it in a short one.
 */
static void
refresh_instruments(const MdExchange *ex)
{
	char	   *err = NULL;
	char	   *body = md_fetch_exchange_info(ex, &err);
	int			n;

	if (body == NULL)
	{
		md_slot_set_error(err);
		ereport(LOG, (errmsg("mdfeed watch worker: %s", err)));
		return;
	}
	md_begin_tx();
	n = md_store_instruments(ex, body, &err);
	md_commit_tx();
	if (n < 0)
	{
		md_slot_set_error(err);
		ereport(LOG, (errmsg("mdfeed watch worker: malformed exchange info: %s", err)));
	}
	else
		elog(DEBUG1, "mdfeed watch worker: %s lists %d instruments", ex->name, n);
}

/*
 * tracked_symbols returns the tracked symbols of an exchange that this
 * server ingests (mdfeed.shard), in the current transaction, as a palloc'd
 * array.  A change of the shard takes effect at the next pass: the pairs
 * it gained are synced (sync_new_pairs has not seen them), the ones it
 * lost are forgotten.
 */
static char **
tracked_symbols(const MdExchange *ex, int *n)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(ex->name)};
	char	  **out;
	int			ret;

	ret = SPI_execute_with_args("SELECT symbol FROM mdfeed.tracked WHERE exchange = $1 AND here ORDER BY symbol",
								1, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.tracked");
	*n = (int) SPI_processed;
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
	return out;
}

/*
 * new_synced_table returns an empty table of synced pairs.
 */
static HTAB *
new_synced_table(void)
{
	HASHCTL		hctl;

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = 64;
	hctl.entrysize = sizeof(SyncedPair);
	return hash_create("mdfeed synced pairs", 1024, &hctl, HASH_ELEM | HASH_STRINGS);
}

/*
 * forget_synced forgets every pair synced on the site, so the next pass
 * syncs them all again.
 */
static void
forget_synced(WatchSite *site)
{
	hash_destroy(site->synced);
	site->synced = new_synced_table();
}

/*
 * sync_new_pairs queues a sync job for every tracked pair not synced since
 * this worker started.  Returns the number queued.
 */
static int
sync_new_pairs(WatchSite *site)
{
	const MdExchange *ex = site->ex;
	HTAB	   *synced = site->synced;
	const MdInterval *ivs[32];
	int			niv = md_exchange_tracked_intervals(ex, ivs, lengthof(ivs));
	int			nsym;
	char	  **syms;
	int			queued = 0;
	HASH_SEQ_STATUS seq;
	SyncedPair *p;

	md_begin_tx();
	syms = tracked_symbols(ex, &nsym);

	hash_seq_init(&seq, synced);
	while ((p = hash_seq_search(&seq)) != NULL)
		p->seen = false;

	for (int i = 0; i < nsym; i++)
	{
		for (int j = 0; j < niv; j++)
		{
			char		key[64];
			bool		found;

			snprintf(key, sizeof(key), "%s|%s", syms[i], ivs[j]->name);
			p = hash_search(synced, key, HASH_ENTER, &found);
			p->seen = true;
			if (!found)
			{
				md_queue_pair_sync(ex->name, syms[i], ivs[j]->name, "sync", false, 0);
				queued++;
			}
		}
	}

	/* forget pairs no longer tracked, so tracking them again syncs them */
	hash_seq_init(&seq, synced);
	while ((p = hash_seq_search(&seq)) != NULL)
		if (!p->seen)
			hash_search(synced, p->key, HASH_REMOVE, NULL);
	md_commit_tx();
	return queued;
}

/*
 * check_gaps queues a repair for every range of missing closed candles of
 * tracked pairs in the last mdfeed.gap_lookback.  Returns the number of
 * gaps found.  A pair sync_new_pairs has not seen yet (tracked since it
 * looked) is skipped: its first fill is the sync's, not a repair's.
 */
static int
check_gaps(WatchSite *site)
{
	const MdExchange *ex = site->ex;
	HTAB	   *synced = site->synced;
	const MdInterval *ivs[32];
	int			niv = md_exchange_tracked_intervals(ex, ivs, lengthof(ivs));
	int			nsym;
	char	  **syms;
	int			gaps = 0;

	md_begin_tx();
	syms = tracked_symbols(ex, &nsym);
	for (int i = 0; i < nsym; i++)
	{
		for (int j = 0; j < niv; j++)
		{
			Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};
			Datum		values[4];
			int			ret;
			char		key[64];

			snprintf(key, sizeof(key), "%s|%s", syms[i], ivs[j]->name);
			if (hash_search(synced, key, HASH_FIND, NULL) == NULL)
				continue;
			values[0] = CStringGetTextDatum(syms[i]);
			values[1] = CStringGetTextDatum(ivs[j]->name);
			values[2] = Int32GetDatum(mdfeed_gap_lookback_min);
			values[3] = CStringGetTextDatum(ex->name);
			/* the worker's search_path is pg_catalog only: qualify mdfeed_gaps */
			ret = SPI_execute_with_args(psprintf(
				"SELECT count(mdfeed.queue_sync($4, $1, $2, g.gap_start, g.gap_end, 'repair')) "
				"FROM %s.mdfeed_gaps($1, $2, pg_catalog.now() - pg_catalog.make_interval(mins => $3), "
				"mdfeed.interval_floor($2, pg_catalog.now() - interval '" TAIL_GRACE "'), $4) g "
				"WHERE NOT g.exchange_has_none", md_extension_schema()),
				4, types, values, NULL, false, 1);
			if (ret != SPI_OK_SELECT)
				elog(ERROR, "gap check failed");
			{
				bool		isnull;

				gaps += (int) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			}
		}
	}
	md_commit_tx();
	if (gaps > 0)
		ereport(LOG, (errmsg("mdfeed gap watchdog queued repairs of %d gaps", gaps)));
	return gaps;
}

/*
 * rank_board fetches every ticker (no transaction open) and makes the top of
 * the board the auto-tracked set; with auto-tracking off, it empties it.
 */
static bool
rank_board(const MdExchange *ex, int top_n, double min_qv)
{
	MdTicker   *t = NULL;
	int			n = 0;
	char	   *err = NULL;
	Oid			types[5] = {TEXTOID, TEXTARRAYOID, NUMERICARRAYOID, NUMERICOID, INT4OID};
	Datum		values[5];
	Datum	   *syms;
	Datum	   *qvs;
	int			ret;

	if (top_n > 0 && !md_fetch_tickers(ex, &t, &n, &err))
	{
		md_slot_set_error(err);
		ereport(LOG, (errmsg("mdfeed watch worker: could not rank %s: %s", ex->name, err)));
		return false;
	}
	syms = palloc(sizeof(Datum) * Max(n, 1));
	qvs = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		syms[i] = CStringGetTextDatum(t[i].symbol);
		qvs[i] = DirectFunctionCall3(numeric_in, CStringGetDatum(t[i].quote_volume),
									 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	}
	values[0] = CStringGetTextDatum(ex->name);
	values[1] = PointerGetDatum(construct_array(syms, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(qvs, n, NUMERICOID, -1, false, TYPALIGN_INT));
	values[3] = DirectFunctionCall1(float8_numeric, Float8GetDatum(min_qv));
	values[4] = Int32GetDatum(top_n);
	md_begin_tx();
	ret = SPI_execute_with_args("SELECT mdfeed.apply_auto_track($1, $2, $3, $4, $5)",
								5, types, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not apply the ranking");
	md_commit_tx();
	md_wake_role(MD_ROLE_STREAM);
	return true;
}

/*
 * sync_derivatives queues the collection of open interest and funding for
 * every tracked symbol.
 */
static void
sync_derivatives(const MdExchange *ex)
{
	int			nsym;
	char	  **syms;

	md_begin_tx();
	syms = tracked_symbols(ex, &nsym);
	for (int i = 0; i < nsym; i++)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, INTERVALOID};
		Datum		values[3];

		values[0] = CStringGetTextDatum(ex->name);
		values[1] = CStringGetTextDatum(syms[i]);
		values[2] = md_sync_lookback();
		if (SPI_execute_with_args("SELECT mdfeed.sync_derivs($1, $2, $3)", 3, types, values, NULL,
								  false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not queue derivatives collection");
	}
	md_commit_tx();
}

/*
 * run_instruments is the exchange-info task.
 */
static int
run_instruments(WatchSite *site)
{
	refresh_instruments(site->ex);
	return 0;
}

/*
 * drop_lost_pairs cancels, once mdfeed.shard has changed (and at start),
 * the upkeep jobs (syncs, repairs, the stream's, derivatives) of pairs this
 * server no longer ingests: the new owner fills them from its own budget.
 * Users' jobs are kept.  A running one stops at its next page.
 */
static void
drop_lost_pairs(WatchSite *site)
{
	int			k,
				n;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	md_shard_get(&k, &n);
	if (k == site->shard_k && n == site->shard_n)
		return;
	md_begin_tx();
	values[0] = CStringGetTextDatum(site->ex->name);
	values[1] = CStringGetTextDatum(psprintf("mdfeed.shard is %d/%d: another shard ingests the pair", k, n));
	if (SPI_execute_with_args("UPDATE mdfeed.jobs SET state = 'canceled', error = $2, "
							  "finished_at = pg_catalog.now(), updated_at = pg_catalog.now() "
							  "WHERE exchange OPERATOR(pg_catalog.=) $1 "
							  "AND origin OPERATOR(pg_catalog.<>) 'user' "
							  "AND state OPERATOR(pg_catalog.=) ANY ('{queued,running}'::pg_catalog.text[]) "
							  "AND NOT mdfeed.shard_here(exchange, symbol)",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not cancel the jobs of pairs another shard ingests");
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("mdfeed watch worker: canceled " UINT64_FORMAT " %s upkeep jobs of pairs another shard ingests now",
						SPI_processed, site->ex->name)));
	md_commit_tx();
	site->shard_k = k;
	site->shard_n = n;
}

/*
 * run_sync is the startup-sync task: symbols it syncs get their derivatives
 * at once too.  A change of mdfeed.shard drops the upkeep of the pairs the
 * server lost first.
 */
static int
run_sync(WatchSite *site)
{
	int			queued;

	drop_lost_pairs(site);
	queued = sync_new_pairs(site);

	if (queued > 0)
		site->tasks[WATCH_DERIVS].next_due = 0;
	return queued;
}

/*
 * rank_check says when the board is ranked: at once when the settings
 * changed since the last ranking (to empty mdfeed.auto_tracked when
 * auto-tracking was turned off) or, with auto-tracking on, when the shard
 * changed (the shard keeps the ranked symbols it owns) or the lists
 * changed (a blacklisted symbol's place goes to the next one); hourly
 * otherwise.  It keeps what it read, for run_rank to rank with.
 */
static WatchWhen
rank_check(WatchSite *site)
{
	RankInputs *now = &site->rank_now;

	if (site->ex->parse_tickers == NULL)
		return WATCH_OFF;		/* the exchange publishes no tickers */
	now->top_n = mdfeed_auto_track_top_n;
	now->min_qv = mdfeed_auto_track_min_quote_volume;
	SpinLockAcquire(&md_shared->mutex);
	now->lists_version = md_shared->lists_version;
	SpinLockRelease(&md_shared->mutex);
	md_shard_get(&now->shard_k, &now->shard_n);

	if (now->top_n != site->ranked.top_n || now->min_qv != site->ranked.min_qv)
		return WATCH_NOW;
	if (now->top_n > 0 &&
		(now->shard_k != site->ranked.shard_k || now->shard_n != site->ranked.shard_n))
		return WATCH_NOW;
	if (now->top_n <= 0)
		return WATCH_OFF;
	return now->lists_version != site->ranked.lists_version ? WATCH_NOW : WATCH_WHEN_DUE;
}

/*
 * run_rank is the liquidity task: it ranks the board with what rank_check
 * read, then syncs the symbols that became tracked, and makes their
 * derivatives due at once.
 */
static int
run_rank(WatchSite *site)
{
	int			queued;

	if (!rank_board(site->ex, site->rank_now.top_n, site->rank_now.min_qv))
		return -1;
	site->ranked = site->rank_now;
	queued = sync_new_pairs(site);
	site->tasks[WATCH_DERIVS].next_due = 0;
	return queued;
}

/*
 * derivs_check turns the derivatives task off with mdfeed.derivatives_enabled.
 */
static WatchWhen
derivs_check(WatchSite *site)
{
	if (site->ex->funding_path == NULL && site->ex->oi_path == NULL)
		return WATCH_OFF;		/* the exchange has no derivatives data */
	return mdfeed_derivatives_enabled ? WATCH_WHEN_DUE : WATCH_OFF;
}

/*
 * run_derivs is the derivatives task.
 */
static int
run_derivs(WatchSite *site)
{
	sync_derivatives(site->ex);
	return 1;
}

/*
 * run_prune deletes the exchange's upkeep jobs (syncs, repairs, the
 * stream's) that succeeded more than a day ago.  They are mdfeed's own
 * bookkeeping, and a stream whose closes are made exact over REST queues
 * one for every bar it closes: kept forever they would outgrow the data.
 * Users' jobs, and jobs that failed, are kept.
 */
static int
run_prune(WatchSite *site)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	md_begin_tx();
	values[0] = CStringGetTextDatum(site->ex->name);
	ret = SPI_execute_with_args("DELETE FROM mdfeed.jobs WHERE exchange = $1 AND origin <> 'user' "
								"AND state = 'succeeded' "
								"AND finished_at < pg_catalog.now() - interval '1 day'",
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not prune mdfeed.jobs");
	if (SPI_processed > 0)
		elog(DEBUG1, "mdfeed watch worker: deleted " UINT64_FORMAT " %s upkeep jobs that succeeded over a day ago",
			 SPI_processed, site->ex->name);
	md_commit_tx();
	return 0;					/* it queues nothing */
}

/* the period of the hourly tasks */
static const int one_hour_s = 3600;

/* the schedule: each pass runs what is due, in this order */
static const WatchTask watch_tasks[WATCH_NTASKS] = {
	[WATCH_INSTRUMENTS] = {
		.name = "instruments",
		.state = "refreshing instruments",
		.period_s = &mdfeed_instruments_refresh_s,
		.anchor = WATCH_AFTER_START,
		.again_when_ready = true,
		.calls_rest = true,
		.run = run_instruments,
	},
	[WATCH_SYNC] = {
		.name = "sync",
		.state = "syncing",
		.period_s = NULL,
		.run = run_sync,
	},
	[WATCH_GAPS] = {
		.name = "gaps",
		.state = "checking gaps",
		.period_s = &mdfeed_gap_check_interval_s,
		.anchor = WATCH_AFTER_END,
		/* let the startup sync run before the first gap check */
		.first_after_s = 5,
		.run = check_gaps,
	},
	[WATCH_RANK] = {
		.name = "liquidity",
		.state = "ranking",
		.period_s = &one_hour_s,
		.anchor = WATCH_AFTER_START,
		/* a failed ranking is tried again ten seconds later */
		.retry_s = 10,
		.calls_rest = true,
		.check = rank_check,
		.run = run_rank,
	},
	[WATCH_DERIVS] = {
		.name = "derivatives",
		.state = "queueing derivatives",
		.period_s = &one_hour_s,
		/* just after the next hour, when new statistics exist */
		.anchor = WATCH_ALIGNED,
		.offset_s = 30,
		.check = derivs_check,
		.run = run_derivs,
	},
	[WATCH_PRUNE] = {
		.name = "prune",
		.state = "pruning jobs",
		.period_s = &one_hour_s,
		.anchor = WATCH_AFTER_START,
		.first_after_s = 60,
		.run = run_prune,
	},
};

/*
 * next_due returns when a task that ran in the pass begun at now is due
 * again.
 */
static int64
next_due(const WatchTask *task, int64 now)
{
	int64		period_ms;

	if (task->period_s == NULL)
		return 0;
	period_ms = *task->period_s * INT64CONST(1000);
	switch (task->anchor)
	{
		case WATCH_AFTER_START:
			return now + period_ms;
		case WATCH_AFTER_END:
			return md_now_ms() + period_ms;
		case WATCH_ALIGNED:
			return (now / period_ms + 1) * period_ms + task->offset_s * INT64CONST(1000);
	}
	return 0;					/* keep the compiler quiet */
}

/*
 * run_due_tasks walks the table once for a site: runs every task that is
 * due at now (the time the pass began), records when it is due next, and
 * wakes the backfill workers if any queued jobs.
 */
static void
run_due_tasks(WatchSite *site, int64 now)
{
	int			queued = 0;

	for (int i = 0; i < WATCH_NTASKS; i++)
	{
		const WatchTask *task = &watch_tasks[i];
		WatchTaskState *st = &site->tasks[i];
		WatchWhen	when = task->check ? task->check(site) : WATCH_WHEN_DUE;
		int			n;

		if (when == WATCH_OFF || now < st->not_before ||
			(when == WATCH_WHEN_DUE && now < st->next_due))
			continue;
		if (task->calls_rest && md_budget_blocked_until(site->ex) > now)
		{
			/* throttled or banned: try when the exchange allows it */
			st->not_before = md_budget_blocked_until(site->ex);
			continue;
		}
		if (task->calls_rest && !md_exchange_available(site->ex))
		{
			/*
			 * its calls fail (an outage): try again in a while, so that a
			 * stalled exchange does not hold the other exchanges' tasks
			 */
			st->not_before = now + UNAVAILABLE_RETRY_MS;
			continue;
		}
		md_slot_set_state(task->state);
		n = task->run(site);
		if (n < 0)
		{
			st->not_before = now + task->retry_s * INT64CONST(1000);
			continue;
		}
		elog(DEBUG2, "mdfeed watch worker: task %s of %s queued %d jobs",
			 task->name, site->ex->name, n);
		queued += n;
		st->last_run = now;
		st->next_due = next_due(task, now);
	}
	if (queued > 0)
		md_wake_role(MD_ROLE_BACKFILL);
}

/*
 * init_site sets up the schedule of one exchange: every task due at once,
 * but for its first_after_s.
 */
static void
init_site(WatchSite *site, const MdExchange *ex)
{
	int64		now = md_now_ms();

	site->ex = ex;
	site->synced = new_synced_table();
	for (int i = 0; i < WATCH_NTASKS; i++)
	{
		site->tasks[i].last_run = 0;
		site->tasks[i].next_due = watch_tasks[i].first_after_s > 0 ?
			now + watch_tasks[i].first_after_s * INT64CONST(1000) : 0;
		site->tasks[i].not_before = 0;
	}
	site->ranked.top_n = -1;
	site->ranked.min_qv = -1;
	site->ranked.lists_version = -1;
	site->ranked.shard_k = -1;
	site->ranked.shard_n = -1;
	site->shard_k = -1;
	site->shard_n = -1;
}

/*
 * init_sites gives every registered exchange its schedule: one watch
 * worker serves them all, each with its own times.  A task that calls REST
 * is not run while its exchange throttles or bans this server, so that
 * wait never holds the other exchanges' tasks; a slow answer still holds
 * them for as long as it takes (mdfeed.http_timeout at most).
 */
static void
init_sites(void)
{
	nsites = md_num_exchanges();
	sites = MemoryContextAllocZero(TopMemoryContext, sizeof(WatchSite) * nsites);
	for (int s = 0; s < nsites; s++)
		init_site(&sites[s], md_exchange_at(s));
}

/*
 * wait_for_schema is a pass while the extension is not at the library's
 * version (see launcher.c): nothing runs, and once it is, everything
 * starts afresh (what asks for it is due at once, every pair is synced).
 */
static void
wait_for_schema(void)
{
	for (int s = 0; s < nsites; s++)
	{
		WatchSite  *site = &sites[s];

		for (int i = 0; i < WATCH_NTASKS; i++)
			if (watch_tasks[i].again_when_ready)
				site->tasks[i].next_due = 0;
		if (hash_get_num_entries(site->synced) > 0)
			forget_synced(site);
	}
}

/*
 * site_pass runs one pass of a site's tasks in ctx; after an error it
 * recovers, forgets what was synced (the failed pass may not have queued
 * it) and returns false.
 */
static bool
site_pass(WatchSite *site, int64 now, MemoryContext ctx)
{
	volatile bool ok = true;

	PG_TRY();
	{
		run_due_tasks(site, now);
	}
	PG_CATCH();
	{
		(void) md_worker_recover(ctx);
		md_slot_set_state("idle after error");
		forget_synced(site);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * watch_pass runs every site's due tasks; the worker is idle after it.
 */
static void
watch_pass(MemoryContext ctx)
{
	int64		now = md_now_ms();
	bool		ok = true;

	for (int s = 0; s < nsites; s++)
		ok &= site_pass(&sites[s], now, ctx);
	if (ok)
	{
		md_slot_set_state("idle");
		md_slot_set_error(NULL);
	}
}

/*
 * watch_on_exit frees what the worker holds outside PostgreSQL.
 */
static void
watch_on_exit(int code, Datum arg)
{
	md_http_cleanup();
}

/*
 * mdfeed_watch_main is the entry point of the watch worker.
 */
void
mdfeed_watch_main(Datum main_arg)
{
	MemoryContext ctx;

	md_worker_init("mdfeed watch worker");
	before_shmem_exit(watch_on_exit, (Datum) 0);
	md_slot_set_state("running");
	init_sites();
	ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed watch", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		md_worker_reload();
		if (!md_schema_ready())
		{
			wait_for_schema();
			md_worker_wait(1000);
			continue;
		}
		md_models_probe();
		if (md_replica_mode())
		{
			/* an analytics server: its data arrives by replication */
			md_slot_set_state("replica: no exchange tasks");
			md_worker_wait(1000);
			continue;
		}
		MemoryContextSwitchTo(ctx);
		watch_pass(ctx);
		MemoryContextReset(ctx);
		md_worker_wait(1000);
	}
}
