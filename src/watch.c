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
 *     interest and funding for every tracked symbol.
 *
 * It is also the schema probe: each pass first checks that the extension
 * is at the library's version, and waits otherwise (md_schema_ready).
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
#include "exchange.h"
#include "http.h"
#include "instruments.h"
#include "jobs.h"
#include "shmem.h"
#include "workers.h"

/*
 * candles that closed less than this ago may still be on their way: the
 * check stops at the start of the candle open this long ago
 */
#define TAIL_GRACE "15 seconds"

typedef struct SyncedPair
{
	char		key[64];		/* symbol|interval */
	bool		seen;
} SyncedPair;

static HTAB *synced = NULL;

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
 * tracked_symbols returns the tracked symbols of an exchange (in the current
 * transaction), as a palloc'd array.
 */
static char **
tracked_symbols(const MdExchange *ex, int *n)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(ex->name)};
	char	  **out;
	int			ret;

	ret = SPI_execute_with_args("SELECT symbol FROM mdfeed.tracked WHERE exchange = $1 ORDER BY symbol",
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
 * sync_new_pairs queues a sync job for every tracked pair not synced since
 * this worker started.  Returns the number queued.
 */
static int
sync_new_pairs(const MdExchange *ex)
{
	const MdInterval *ivs[32];
	int			niv = md_tracked_intervals(ivs, lengthof(ivs));
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
check_gaps(const MdExchange *ex)
{
	const MdInterval *ivs[32];
	int			niv = md_tracked_intervals(ivs, lengthof(ivs));
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
	const MdExchange *ex = &md_binance;
	HASHCTL		hctl;
	volatile int64 next_info = 0;
	volatile int64 next_gaps;
	volatile int64 next_rank = 0;
	volatile int64 next_derivs = 0;
	volatile int ranked_top_n = -1;
	volatile double ranked_min = -1;
	volatile int64 ranked_lists = -1;
	volatile int64 rank_retry_at = 0;

	md_worker_init("mdfeed watch worker");
	before_shmem_exit(watch_on_exit, (Datum) 0);
	md_slot_set_state("running");

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = 64;
	hctl.entrysize = sizeof(SyncedPair);
	synced = hash_create("mdfeed synced pairs", 1024, &hctl, HASH_ELEM | HASH_STRINGS);

	ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed watch", ALLOCSET_DEFAULT_SIZES);
	/* let the startup sync run before the first gap check */
	next_gaps = md_now_ms() + 5000;

	for (;;)
	{
		int64		now;
		int64		lists_version;

		CHECK_FOR_INTERRUPTS();
		md_worker_reload();

		/*
		 * The schema probe (see launcher.c): until the extension is at this
		 * library's version, do nothing else, and start afresh once it is.
		 */
		if (!md_schema_ready())
		{
			next_info = 0;
			if (hash_get_num_entries(synced) > 0)
			{
				hash_destroy(synced);
				synced = hash_create("mdfeed synced pairs", 1024, &hctl, HASH_ELEM | HASH_STRINGS);
			}
			md_worker_wait(1000);
			continue;
		}
		MemoryContextSwitchTo(ctx);
		now = md_now_ms();

		PG_TRY();
		{
			int			queued = 0;

			if (now >= next_info)
			{
				md_slot_set_state("refreshing instruments");
				refresh_instruments(ex);
				next_info = now + mdfeed_instruments_refresh_s * INT64CONST(1000);
			}
			md_slot_set_state("syncing");
			if (sync_new_pairs(ex) > 0)
			{
				/* newly tracked symbols get their derivatives now too */
				queued++;
				next_derivs = 0;
			}
			if (now >= next_gaps)
			{
				md_slot_set_state("checking gaps");
				queued += check_gaps(ex);
				next_gaps = md_now_ms() + mdfeed_gap_check_interval_s * INT64CONST(1000);
			}
			SpinLockAcquire(&md_shared->mutex);
			lists_version = md_shared->lists_version;
			SpinLockRelease(&md_shared->mutex);

			/*
			 * Rank when the settings change, when the lists change (a
			 * blacklisted symbol's place goes to the next one), and hourly; a
			 * failed ranking is tried again ten seconds later.
			 */
			if ((mdfeed_auto_track_top_n != ranked_top_n ||
				 mdfeed_auto_track_min_quote_volume != ranked_min ||
				 (mdfeed_auto_track_top_n > 0 &&
				  (now >= next_rank || lists_version != ranked_lists))) &&
				now >= rank_retry_at)
			{
				md_slot_set_state("ranking");
				if (rank_board(ex, mdfeed_auto_track_top_n, mdfeed_auto_track_min_quote_volume))
				{
					ranked_top_n = mdfeed_auto_track_top_n;
					ranked_min = mdfeed_auto_track_min_quote_volume;
					ranked_lists = lists_version;
					next_rank = now + 3600 * INT64CONST(1000);
					/* newly tracked symbols get their sync and derivatives now */
					queued += sync_new_pairs(ex);
					next_derivs = 0;
				}
				else
					rank_retry_at = now + 10 * INT64CONST(1000);
			}
			if (mdfeed_derivatives_enabled && now >= next_derivs)
			{
				md_slot_set_state("queueing derivatives");
				sync_derivatives(ex);
				queued++;
				/* just after the next hour, when new statistics exist */
				next_derivs = (now / 3600000 + 1) * 3600000 + 30000;
			}
			if (queued > 0)
				md_wake_role(MD_ROLE_BACKFILL);
			md_slot_set_state("idle");
			md_slot_set_error(NULL);
		}
		PG_CATCH();
		{
			(void) md_worker_recover(ctx);
			md_slot_set_state("idle after error");
			/* forget what was synced: the failed pass may not have queued it */
			hash_destroy(synced);
			synced = hash_create("mdfeed synced pairs", 1024, &hctl, HASH_ELEM | HASH_STRINGS);
		}
		PG_END_TRY();
		MemoryContextReset(ctx);

		md_worker_wait(1000);
	}
}
