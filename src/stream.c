/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  The stream worker: live candles of one exchange, for every tracked
 *	  (symbol, interval), over the exchange's WebSocket market streams.
 *
 * The launcher starts one stream worker per exchange adapter that has
 * streams (MdWorkerArgs.exchange), so that one exchange's outage or garbage
 * never slows another's.  This file is the worker's loop: it reads which
 * keys are wanted (the desired set: mdfeed.tracked times the intervals), has
 * the connection pool (wsconn.c) carry them, writes what arrives through the
 * buffer (streambuf.c), and repairs over REST what a connection that was
 * down has missed: each key's pair gets a sync job.
 *
 * The loop: libwebsockets 4.1 as Debian builds it has no external poll
 * support, and lws_service() ignores its timeout, so a 50 ms lws_sul timer
 * bounds each lws_service() call; between calls the worker checks
 * interrupts, postmaster death and its latch, writes closed candles at once
 * and forming ones every mdfeed.stream_flush_interval, and manages the
 * connections.  Everything that may raise an error happens here, never
 * inside an lws callback, and no transaction is open across lws_service().
 *
 * Every log line and error of the worker carries the exchange in its
 * CONTEXT, and application_name says it too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common.h"
#include "exchange.h"
#include "jobs.h"
#include "shmem.h"
#include "streambuf.h"
#include "workers.h"
#include "wsconn.h"

#define DESIRED_REFRESH_MS 5000
#define STATS_MS 1000

static const MdExchange *ex = NULL;
static MemoryContext loop_ctx = NULL;

/*
 * desired_keys reads the tracked pairs of the exchange that this server
 * ingests (mdfeed.shard) and returns their keys.
 */
static List *
desired_keys(void)
{
	const MdInterval *ivs[32];
	int			niv = md_exchange_tracked_intervals(ex, ivs, lengthof(ivs));
	List	   *out = NIL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	md_begin_tx();
	values[0] = CStringGetTextDatum(ex->name);
	ret = SPI_execute_with_args("SELECT symbol FROM mdfeed.tracked WHERE exchange = $1 AND here ORDER BY symbol",
								1, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.tracked");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *sym = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		for (int j = 0; j < niv; j++)
		{
			const MdStreamKey *key = md_ws_key(sym, ivs[j]);
			MemoryContext old;

			if (key == NULL)
				continue;
			old = MemoryContextSwitchTo(loop_ctx);
			out = lappend(out, (void *) key);
			MemoryContextSwitchTo(old);
		}
	}
	md_commit_tx();
	return out;
}

/*
 * repair_holes queues a sync job for every key of a connection that was
 * down: the candles that closed meanwhile come over REST.  A pair with no
 * closed candle yet is left to the watch worker, which owns a new pair's
 * first fill (mdfeed.sync_pair), and what queued or running jobs will fetch
 * is not queued again (mdfeed.queue_job).
 */
static void
repair_holes(List *keys, bool only_if_behind, int64 as_of_ms)
{
	ListCell   *lc;

	md_begin_tx();
	foreach(lc, keys)
	{
		const MdStreamKey *key = lfirst(lc);

		md_queue_pair_sync(ex->name, key->symbol, key->iv->name, "stream", only_if_behind, as_of_ms);
	}
	md_commit_tx();
	md_wake_role(MD_ROLE_BACKFILL);
}

/*
 * Closes to make exact.  Where the stream's closed klines are not final
 * (MdStreamOps.closes_final is false: the socket's last snapshot of a bar
 * is not the bar), the stream's bars are stored as forming, and each is
 * brought over REST once final: the worker remembers the newest bar each
 * key carried, and once a bar is final (MD_CLOSE_GRACE_MS after its close:
 * by then the next bar has started, so the newest bar's predecessor counts
 * too) it queues a sync of the pair, whose first request stores the bar
 * closed (and which fetches nothing if the table already has it).  It is
 * the same repair a reconnect makes, one bar long.
 */
typedef struct CloseKey
{
	char		symbol[41];
	int			iv;
} CloseKey;

typedef struct CloseEntry
{
	CloseKey	key;
	int64		open_ms;		/* of the newest bar the stream carried */
	int64		close_ms;
	int64		queued_ms;		/* the close of the newest bar whose sync
								 * is queued */
	int64		due_ms;			/* the close being queued now */
} CloseEntry;

static HTAB *closes = NULL;

/* how far the exchange's clock may run ahead of ours */
#define CLOCK_SKEW_MS 60000
/* a closed bar is fetched this long after the exchange takes it as final */
#define CLOSE_MARGIN_MS 200

/*
 * note_close remembers the newest bar of a key.  Called inside lws
 * callbacks: it raises no error but for want of memory.
 */
static void
note_close(const MdStreamKline *k)
{
	CloseKey	key;
	CloseEntry *e;
	bool		found;

	memset(&key, 0, sizeof(key));
	if (strlen(k->symbol) >= sizeof(key.symbol))
		return;
	/*
	 * A bar that opens after the present bar's end is no bar of the
	 * present (a skewed clock, garbage): it must not stand for the pair's
	 * newest, or the live bars after it would never be made exact.
	 */
	if (k->candle.open_ms > md_interval_next(k->iv, md_interval_floor(k->iv, md_now_ms())) + CLOCK_SKEW_MS)
		return;
	strcpy(key.symbol, k->symbol);
	key.iv = k->iv - md_intervals;
	e = hash_search(closes, &key, HASH_ENTER, &found);
	/* the bars before the first one it carried are repair_holes' business */
	if (!found)
		e->queued_ms = k->candle.open_ms - 1;
	if (!found || k->candle.close_ms > e->close_ms)
	{
		e->open_ms = k->candle.open_ms;
		e->close_ms = k->candle.close_ms;
	}
}

/*
 * on_kline takes every kline event of the connections.
 */
static bool
on_kline(const MdStreamKline *k)
{
	if (!md_streambuf_add(k))
		return false;
	if (closes != NULL)
		note_close(k);
	return true;
}

/*
 * queue_closed_bars queues the syncs that make the bars closed by now
 * exact.
 */
static void
queue_closed_bars(int64 now)
{
	HASH_SEQ_STATUS seq;
	CloseEntry *e;
	List	   *queued = NIL;
	ListCell   *lc;
	MemoryContext cxt = CurrentMemoryContext;	/* the loop's: outlives the
												 * transaction */

	if (closes == NULL)
		return;
	hash_seq_init(&seq, closes);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		int64		final_by = now - MD_CLOSE_GRACE_MS - CLOSE_MARGIN_MS;
		int64		due;

		/*
		 * The newest bar once it is final, else the one before it (the
		 * next bar starts before its predecessor is final): the sync's
		 * first request then stores it closed.
		 */
		if (e->close_ms < final_by)
			due = e->close_ms;
		else if (e->open_ms - 1 < final_by)
			due = e->open_ms - 1;
		else
			continue;
		if (due <= e->queued_ms)
			continue;
		e->due_ms = due;
		if (queued == NIL)
			md_begin_tx();
		md_queue_pair_sync(ex->name, e->key.symbol, md_intervals[e->key.iv].name, "stream",
						   true, due + 1);
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			queued = lappend(queued, e);
			MemoryContextSwitchTo(old);
		}
	}
	if (queued == NIL)
		return;
	md_commit_tx();
	MemoryContextSwitchTo(cxt);
	/* only once they are committed: a failed queueing is tried again */
	foreach(lc, queued)
	{
		CloseEntry *q = lfirst(lc);

		q->queued_ms = q->due_ms;
	}
	md_wake_role(MD_ROLE_BACKFILL);
}

/*
 * publish_stats copies the worker's counters and latencies into its slot.
 */
static void
publish_stats(void)
{
	int64		frames,
				malformed,
				reconnects;
	int			connections;
	int64		p50,
				p99,
				close_p50,
				close_p99;

	md_ws_stats(&frames, &malformed, &reconnects, &connections);
	md_streambuf_latency(&p50, &p99, &close_p50, &close_p99);
	SpinLockAcquire(&md_shared->mutex);
	md_my_slot->messages = frames;
	md_my_slot->malformed = malformed;
	md_my_slot->reconnects = reconnects;
	md_my_slot->latency_p50_ms = p50;
	md_my_slot->latency_p99_ms = p99;
	md_my_slot->close_latency_p50_ms = close_p50;
	md_my_slot->close_latency_p99_ms = close_p99;
	md_my_slot->last_message_at = frames > 0 ? GetCurrentTimestamp() : 0;
	md_my_slot->connections = connections;
	SpinLockRelease(&md_shared->mutex);
}

/*
 * stream_on_exit closes every connection.
 */
static void
stream_on_exit(int code, Datum arg)
{
	md_ws_shutdown();
}

/*
 * stream_error_context names the exchange in every message of the worker.
 */
static void
stream_error_context(void *arg)
{
	errcontext("mdfeed stream worker of exchange \"%s\"", ex->name);
}

/*
 * mdfeed_stream_main is the entry point of the stream worker of the
 * exchange its arguments name.
 */
void
mdfeed_stream_main(Datum main_arg)
{
	MdWorkerArgs args;
	ErrorContextCallback errcb;
	volatile int64 next_flush;
	volatile int64 next_refresh = 0;
	volatile int64 next_stats = 0;
	volatile int64 last_frames = -1;
	volatile bool closes_at_once = true;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	ex = md_exchange_at(args.exchange);
	md_worker_init(ex != NULL ? psprintf("mdfeed stream worker %s", ex->name) :
				   "mdfeed stream worker");
	if (ex == NULL || ex->stream == NULL)
		ereport(FATAL,
				(errmsg("mdfeed stream worker started for exchange %d, which has no market streams",
						args.exchange)));
	md_slot_set_exchange(ex->name);
	errcb.callback = stream_error_context;
	errcb.arg = NULL;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	md_streambuf_init(ex);
	if (!ex->stream->closes_final)
	{
		HASHCTL		hctl;

		memset(&hctl, 0, sizeof(hctl));
		hctl.keysize = sizeof(CloseKey);
		hctl.entrysize = sizeof(CloseEntry);
		closes = hash_create("mdfeed stream closes", 256, &hctl, HASH_ELEM | HASH_BLOBS);
	}
	md_ws_init(ex, on_kline);
	before_shmem_exit(stream_on_exit, (Datum) 0);
	md_slot_set_state("streaming");

	loop_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream loop", ALLOCSET_DEFAULT_SIZES);
	next_flush = md_now_ms() + mdfeed_stream_flush_ms;
	for (;;)
	{
		int64		now;
		int64		frames;
		int64		unused;
		int			unused_conns;

		MemoryContextSwitchTo(loop_ctx);
		MemoryContextReset(loop_ctx);
		md_ws_service();

		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (MyLatch->is_set)
		{
			ResetLatch(MyLatch);
			next_refresh = 0;
		}
		if (md_worker_reload())
			next_refresh = 0;

		now = md_now_ms();
		PG_TRY();
		{
			/*
			 * Closed candles go out at once, forming updates every
			 * mdfeed.stream_flush_interval.  After a failed write, closes
			 * wait for the interval too until one succeeds, so that a
			 * broken table is not retried and logged on every pass.
			 */
			if (closes_at_once && md_streambuf_has_closed())
				md_streambuf_flush(true);
			if (now >= next_flush)
			{
				next_flush = now + mdfeed_stream_flush_ms;
				md_streambuf_flush(false);
				closes_at_once = true;
			}
			if (now >= next_refresh)
			{
				int			carried;

				next_refresh = now + DESIRED_REFRESH_MS;
				carried = md_ws_set_keys(desired_keys());
				SpinLockAcquire(&md_shared->mutex);
				md_my_slot->streams = carried;
				SpinLockRelease(&md_shared->mutex);
			}
			md_ws_manage(repair_holes);
			queue_closed_bars(now);
		}
		PG_CATCH();
		{
			/*
			 * A failed flush loses only forming updates and closed candles
			 * the gap watchdog will repair; report it and go on streaming.
			 */
			(void) md_worker_recover(loop_ctx);
			md_streambuf_discard();
			closes_at_once = false;
		}
		PG_END_TRY();
		md_ws_stats(&frames, &unused, &unused, &unused_conns);
		if (now >= next_stats || frames - last_frames > 10000)
		{
			publish_stats();
			last_frames = frames;
			next_stats = now + STATS_MS;
		}
	}
}
