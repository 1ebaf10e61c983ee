/*-------------------------------------------------------------------------
 *
 * models.c
 *	  The model worker: runs every registered model on every closed candle
 *	  of its exchange and interval, per (model, symbol) in open_time order.
 *
 * The state is in tables, not in the worker: mdfeed.model_progress holds,
 * per (model, symbol), next_open, the next candle to run on, and commits
 * with the outputs (model_batch.c runs one batch of a pair).  This file
 * decides which pairs are due and in what order, and keeps the progress
 * rows and the reruns up to date.
 *
 * A rewritten closed candle (a repair) lands in mdfeed.candle_changes,
 * through the candle tables' trigger; the first model worker turns each
 * into a rerun range on the pairs whose evaluated windows held it, and the
 * owning worker computes those outputs again before going on.  The first
 * worker also gives models on all symbols the symbols tracked since.
 *
 * Work is split between mdfeed.model_workers by a hash of (model, symbol),
 * so each pair has one worker and its runs stay in order.  A pass runs one
 * batch of every due pair, the pairs that are live (their next candle is
 * the newest) first; a batch is bounded (model_batch.c), and a pass gives
 * way to a fresh one when a closed candle is stored meanwhile, so a long
 * replay never keeps a live close waiting for more than a batch.  A pair is
 * due when its next candle is stored closed, or has been missing for
 * MD_MODEL_HOLE_GRACE_MS since it closed (the batch then asks for it), or has a
 * rerun; a pair whose candle has not arrived yet costs nothing per pass.
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
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common.h"
#include "exchange.h"
#include "model_batch.h"
#include "shard.h"
#include "shmem.h"
#include "store.h"
#include "workers.h"

/* the first worker adds the newly tracked symbols of models on all symbols */
#define TRACKED_REFRESH_MS 10000
/* candle_changes handled per pass */
#define CHANGES_PER_PASS 500
/* this worker's share: pairs whose hash modulo nparts is part */
static int	part = 0;
static int	nparts = 1;

static SPIPlanPtr due_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];
static SPIPlanPtr rerun_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];

/*
 * mark_reruns gives every pair of the exchange's interval and symbol that
 * has run on the candle opening at t (its next_open is later) a rerun of
 * the outputs whose windows held it: from t to after the window_size-th
 * closed candle from t on (to the end of time if fewer are stored).  One
 * UPDATE, which waits for a batch holding a pair's progress row and then
 * looks at next_open again: a batch that ran on t from the old candle
 * meanwhile gets its rerun too.
 */
static void
mark_reruns(const MdExchange *ex, const MdInterval *iv, Datum *values)
{
	int			e = md_exchange_id(ex);
	int			v = iv - md_intervals;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};

	if (rerun_plans[e][v] == NULL)
		rerun_plans[e][v] = md_keep_plan(psprintf(
												  "UPDATE mdfeed.model_progress p SET "
												  "rerun_from = LEAST(coalesce(p.rerun_from, $4), $4), "
												  "rerun_to = GREATEST(coalesce(p.rerun_to, r.reach), r.reach), "
												  "updated_at = pg_catalog.now() "
												  "FROM mdfeed.models m, LATERAL (SELECT coalesce(("
												  "  SELECT ((c.open_time AT TIME ZONE 'UTC') + '%s'::interval) AT TIME ZONE 'UTC' "
												  "  FROM mdfeed.%s c WHERE c.symbol = $3 AND c.closed AND c.open_time >= $4 "
												  "  ORDER BY c.open_time OFFSET m.window_size - 1 LIMIT 1), "
												  "  '9999-12-31 00:00:00+00'::timestamptz) AS reach) r "
												  "WHERE m.name = p.model AND m.exchange = $1 AND m.\"interval\" = $2 "
												  "AND p.symbol = $3 AND p.next_open > $4",
												  iv->pg_interval, md_candle_table(ex, iv)),
										 4, types);
	md_model_exec_plan(rerun_plans[e][v], values, NULL, false, SPI_OK_UPDATE, "marking model reruns");
}

/*
 * consume_changes turns rewritten closed candles (mdfeed.candle_changes)
 * into reruns of the outputs whose windows held them, and forgets them.
 * Models that have not run on a candle yet will read it as it is now.
 */
static void
consume_changes(void)
{
	static SPIPlanPtr take_plan = NULL;
	static SPIPlanPtr forget_plan = NULL;
	SPITupleTable *changes;
	int			n;

	md_begin_tx();
	md_model_exec(&take_plan,
				  "SELECT exchange, \"interval\", symbol, open_time FROM mdfeed.candle_changes "
				  "ORDER BY changed_at LIMIT " CppAsString2(CHANGES_PER_PASS) " FOR UPDATE SKIP LOCKED",
				  0, NULL, NULL, NULL, false, SPI_OK_SELECT);
	changes = SPI_tuptable;
	n = SPI_processed;
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = changes->vals[i];
		char	   *exchange = SPI_getvalue(tup, changes->tupdesc, 1);
		char	   *interval = SPI_getvalue(tup, changes->tupdesc, 2);
		bool		isnull;
		const MdExchange *ex = md_exchange_lookup(exchange);
		const MdInterval *iv = ex ? md_exchange_interval(ex, interval) : NULL;
		Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
		Datum		values[4];

		values[0] = CStringGetTextDatum(exchange);
		values[1] = CStringGetTextDatum(interval);
		values[2] = CStringGetTextDatum(SPI_getvalue(tup, changes->tupdesc, 3));
		values[3] = SPI_getbinval(tup, changes->tupdesc, 4, &isnull);
		if (iv != NULL)
			mark_reruns(ex, iv, values);
		md_model_exec(&forget_plan,
					  "DELETE FROM mdfeed.candle_changes WHERE exchange = $1 AND \"interval\" = $2 "
					  "AND symbol = $3 AND open_time = $4",
					  4, types, values, NULL, false, SPI_OK_DELETE);
	}
	md_commit_tx();
}

/*
 * due_pairs lists this worker's pairs that have something to do: a rerun,
 * a stored next candle, or one missing for longer than MD_MODEL_HOLE_GRACE_MS;
 * and no retry or recheck time ahead.  Live pairs come first, then the
 * ones furthest ahead.
 */
static List *
due_pairs(MemoryContext cxt)
{
	static SPIPlanPtr combos_plan = NULL;
	SPITupleTable *combos;
	int			ncombos;
	List	   *due = NIL;

	md_begin_tx();
	md_model_exec(&combos_plan,
			 "SELECT DISTINCT exchange, \"interval\" FROM mdfeed.models WHERE state = 'active'",
			 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	combos = SPI_tuptable;
	ncombos = SPI_processed;
	for (int c = 0; c < ncombos; c++)
	{
		const MdExchange *ex = md_exchange_lookup(SPI_getvalue(combos->vals[c], combos->tupdesc, 1));
		const MdInterval *iv = ex ? md_exchange_interval(ex, SPI_getvalue(combos->vals[c], combos->tupdesc, 2)) : NULL;
		Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
		Datum		values[4];
		int			e,
					v;

		if (iv == NULL)
			continue;
		e = md_exchange_id(ex);
		v = iv - md_intervals;
		if (due_plans[e][v] == NULL)
			due_plans[e][v] = md_keep_plan(psprintf(
													"SELECT p.model, p.symbol, p.next_open, p.rerun_from IS NOT NULL, "
													"p.rerun_from IS NULL AND p.next_open >= "
													"  ((mdfeed.interval_floor(m.\"interval\", pg_catalog.now()) AT TIME ZONE 'UTC') "
													"   - '%s'::interval) AT TIME ZONE 'UTC' "
													"FROM mdfeed.model_progress p JOIN mdfeed.models m ON m.name = p.model "
													"WHERE m.state = 'active' AND m.exchange = $1 AND m.\"interval\" = $2 "
													"AND (pg_catalog.hashtext(p.model || '/' || p.symbol) & 2147483647) %% $3 = $4 "
													"AND (p.retry_at IS NULL OR p.retry_at <= pg_catalog.now()) "
													"AND (p.symbol = ANY (m.symbols) OR (m.symbols IS NULL AND EXISTS ("
													"  SELECT 1 FROM mdfeed.tracked t WHERE t.exchange = m.exchange AND t.symbol = p.symbol "
													"  AND " MD_SQL_MODEL_PAIR("t") "))) "
													"AND (p.rerun_from IS NOT NULL OR p.retry_at IS NOT NULL "
													"  OR EXISTS (SELECT 1 FROM mdfeed.%s c WHERE c.symbol = p.symbol "
													"    AND c.open_time = p.next_open AND c.closed) "
													"  OR ((p.next_open AT TIME ZONE 'UTC') + '%s'::interval) AT TIME ZONE 'UTC' "
													"     <= pg_catalog.now() - interval '%d milliseconds')",
													iv->pg_interval, md_candle_table(ex, iv), iv->pg_interval,
													MD_MODEL_HOLE_GRACE_MS),
										   4, types);
		values[0] = CStringGetTextDatum(ex->name);
		values[1] = CStringGetTextDatum(iv->name);
		values[2] = Int32GetDatum(nparts);
		values[3] = Int32GetDatum(part);
		md_model_exec_plan(due_plans[e][v], values, NULL, true, SPI_OK_SELECT, "finding due model runs");
		for (int i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);
			MdDuePair    *p = palloc(sizeof(MdDuePair));
			bool		isnull;

			p->model = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			p->symbol = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
			p->next_open = md_model_get_ms(i, 3, &isnull);
			p->rerun = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull));
			p->live = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 5, &isnull));
			due = lappend(due, p);
			MemoryContextSwitchTo(old);
		}
	}
	md_commit_tx();
	return due;
}

/*
 * due_order puts live pairs (the next candle is the one that closed last)
 * first, then replays and reruns, in a fixed order the pass rotates over.
 */
static int
due_order(const ListCell *a, const ListCell *b)
{
	const MdDuePair *x = lfirst(a);
	const MdDuePair *y = lfirst(b);
	int			c;

	if (x->live != y->live)
		return x->live ? -1 : 1;
	c = strcmp(x->model, y->model);
	return c != 0 ? c : strcmp(x->symbol, y->symbol);
}

/*
 * add_tracked_symbols gives the models on all symbols the symbols tracked
 * since the last look.
 */
static void
add_tracked_symbols(void)
{
	md_begin_tx();
	(void) md_model_add_progress(NULL);
	md_commit_tx();
}

/*
 * publish_stats copies the runs and the live latency into the slot.
 */
static void
publish_stats(void)
{
	int64		runs,
				p50,
				p99;

	md_model_stats(&runs, &p50, &p99);
	SpinLockAcquire(&md_shared->mutex);
	md_my_slot->messages = runs;
	md_my_slot->latency_p50_ms = p50;
	md_my_slot->latency_p99_ms = p99;
	md_my_slot->close_latency_p50_ms = p50;
	md_my_slot->close_latency_p99_ms = p99;
	if (runs > 0)
		md_my_slot->last_message_at = GetCurrentTimestamp();
	SpinLockRelease(&md_shared->mutex);
}

/*
 * list_due does the pass's upkeep (the first worker: the candle changes
 * and the newly tracked symbols) and lists the due pairs, live ones first;
 * after an error it recovers and returns NIL.
 */
static List *
list_due(MemoryContext cxt)
{
	static int64 tracked_at_ms = 0;
	static int64 seen_versions = -1;
	List	   *volatile due = NIL;
	int64		versions;

	SpinLockAcquire(&md_shared->mutex);
	versions = md_shared->models_version + md_shared->lists_version;
	SpinLockRelease(&md_shared->mutex);
	PG_TRY();
	{
		if (part == 0)
		{
			consume_changes();
			if (versions != seen_versions || md_now_ms() - tracked_at_ms >= TRACKED_REFRESH_MS)
			{
				add_tracked_symbols();
				seen_versions = versions;
				tracked_at_ms = md_now_ms();
			}
		}
		due = due_pairs(cxt);
		list_sort(due, due_order);
	}
	PG_CATCH();
	{
		(void) md_worker_recover(cxt);
		due = NIL;
	}
	PG_END_TRY();
	return due;
}

/*
 * run_pair runs one batch of a pair; an error that is not the model's own
 * (those are recorded with the model) is logged, and the pass goes on.
 * Returns whether the pair has more to do at once.
 */
static bool
run_pair(const MdDuePair *p, MemoryContext cxt)
{
	volatile bool more = false;

	PG_TRY();
	{
		more = md_model_run_batch(p, cxt);
	}
	PG_CATCH();
	{
		(void) md_worker_recover(cxt);
	}
	PG_END_TRY();
	CHECK_FOR_INTERRUPTS();
	return more;
}

/*
 * model_pass runs one batch of every due pair: the live ones, then the
 * others (replays, reruns) starting where the last pass stopped.  Once one
 * of those ran, a closed candle stored meanwhile (the latch) ends the pass,
 * so that live runs wait for one batch at most, and every pair still gets
 * its turn.  Returns whether some pair has more to do at once.
 */
static bool
model_pass(MemoryContext cxt)
{
	static uint64 rotation = 0;
	List	   *due = list_due(cxt);
	int			nlive = 0;
	int			nrest;
	bool		more = false;
	ListCell   *lc;

	md_slot_set_state(due != NIL ? "running models" : "idle");
	foreach(lc, due)
		nlive += ((MdDuePair *) lfirst(lc))->live ? 1 : 0;
	nrest = list_length(due) - nlive;
	for (int i = 0; i < nlive; i++)
		more |= run_pair(list_nth(due, i), cxt);
	for (int k = 0; k < nrest; k++)
	{
		if (k > 0 && MyLatch->is_set)
		{
			more = true;
			break;
		}
		more |= run_pair(list_nth(due, nlive + (int) ((rotation + k) % nrest)), cxt);
		rotation++;
	}
	publish_stats();
	return more;
}

/*
 * mdfeed_model_main is the entry point of a model worker.
 */
void
mdfeed_model_main(Datum main_arg)
{
	MdWorkerArgs args;
	MemoryContext ctx;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	md_worker_init(MyBgworkerEntry->bgw_name);
	part = args.part;
	nparts = Max(mdfeed_model_workers, 1);
	md_slot_set_state("starting");
	ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed model pass", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		bool		more;

		CHECK_FOR_INTERRUPTS();
		md_worker_reload();
		MemoryContextSwitchTo(ctx);
		more = model_pass(ctx);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(ctx);
		if (more)
			ResetLatch(MyLatch);
		else
			md_worker_wait(1000);
	}
}

/*
 * md_models_probe publishes, for the launcher, whether any model is
 * active, and wakes it when that changed.  The watch worker calls it on
 * each pass, once it found the schema ready.
 */
void
md_models_probe(void)
{
	bool		active;
	bool		changed;
	Latch	   *launcher;
	bool		isnull;

	md_begin_tx();
	if (SPI_execute("SELECT EXISTS (SELECT 1 FROM mdfeed.models WHERE state OPERATOR(pg_catalog.=) 'active')",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.models");
	active = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	md_commit_tx();

	SpinLockAcquire(&md_shared->mutex);
	changed = md_shared->models_active != active;
	md_shared->models_active = active;
	launcher = md_shared->launcher_latch;
	SpinLockRelease(&md_shared->mutex);
	if (changed && launcher != NULL)
		SetLatch(launcher);
}
