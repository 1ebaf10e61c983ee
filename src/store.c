/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Writing candles into an exchange's candle tables, and its derivatives,
 *	  a batch at a time.
 *
 * A batch goes in as one INSERT ... SELECT FROM unnest(arrays) ON CONFLICT
 * DO UPDATE, prepared once per table and kept for the life of the process.
 * The upsert is idempotent: a row equal to what is stored is not touched
 * (no dead tuple, updated_at unchanged), and a closed candle is never
 * replaced by a forming one, so replaying anything changes nothing.
 *
 * A batch of one symbol's candles into a range where nothing is stored yet
 * (what a backfill writes) takes a faster path, the one COPY takes: the rows
 * go to the heap in one multi-insert and then into the indexes.  Should a
 * row appear meanwhile (the stream worker wrote the forming candle), the
 * unique index says so, the attempt is rolled back and the batch is upserted.
 * Tables with insert triggers or row security, or whose columns were
 * altered, always take the upsert.
 *
 * Every function takes the exchange: its adapter names the tables (the
 * family mdfeed.<candle_prefix><interval>) and says which columns they have
 * (candle_fields, candle_trades); a value the exchange does not send is
 * NULL.  The COPY path is for families of the full shape (Binance's), whose
 * columns it checks one by one.
 *
 * The caller runs inside a transaction with SPI connected, and must have
 * checked every decimal string (numeric_in would raise an error on garbage;
 * the parsers guarantee it does not get any).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "common.h"
#include "shmem.h"
#include "store.h"

#define NPARAMS (3 + MD_NUM_DECIMALS + 2)

/* the columns of MdCandleField's decimals */
static const char *const decimal_columns[MD_NUM_DECIMALS] = {
	"open", "high", "low", "close", "volume", "quote_volume",
	"taker_buy_base_volume", "taker_buy_quote_volume"
};

/* one prepared plan per table, kept across transactions */
static SPIPlanPtr upsert_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];

/*
 * has_field says whether the exchange's candle tables have a decimal column.
 */
static inline bool
has_field(const MdExchange *ex, int f)
{
	return (ex->candle_fields & (1u << f)) != 0;
}

/*
 * upsert_plan prepares the batch upsert of an exchange's table: the
 * columns are those its family has (MdExchange.candle_fields and
 * candle_trades), each fed by one array parameter.
 */
static SPIPlanPtr
upsert_plan(const MdExchange *ex, const MdInterval *iv)
{
	int			idx = iv - md_intervals;
	int			e = md_exchange_id(ex);
	char	   *table = md_candle_table(ex, iv);
	Oid			types[NPARAMS];
	StringInfoData cols,
				unnests,
				sets,
				olds,
				news;
	SPIPlanPtr	plan;
	int			p = 0;

	Assert(idx >= 0 && idx < md_num_intervals);
	if (upsert_plans[e][idx] != NULL)
		return upsert_plans[e][idx];

	initStringInfo(&cols);
	initStringInfo(&unnests);
	initStringInfo(&sets);
	initStringInfo(&olds);
	initStringInfo(&news);
	appendStringInfoString(&cols, "symbol, open_time, close_time");
	appendStringInfoString(&unnests, "pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)");
	appendStringInfoString(&sets, "close_time = excluded.close_time");
	appendStringInfoString(&olds, "c.close_time");
	appendStringInfoString(&news, "excluded.close_time");
	types[p++] = TEXTARRAYOID;
	types[p++] = TIMESTAMPTZARRAYOID;
	types[p++] = TIMESTAMPTZARRAYOID;
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
	{
		const char *c = decimal_columns[f];

		if (!has_field(ex, f))
			continue;
		types[p++] = NUMERICARRAYOID;
		appendStringInfo(&cols, ", %s", c);
		appendStringInfo(&unnests, ", pg_catalog.unnest($%d)", p);
		appendStringInfo(&sets, ", %s = excluded.%s", c, c);
		appendStringInfo(&olds, ", c.%s", c);
		appendStringInfo(&news, ", excluded.%s", c);
	}
	if (ex->candle_trades)
	{
		types[p++] = INT8ARRAYOID;
		appendStringInfoString(&cols, ", trades");
		appendStringInfo(&unnests, ", pg_catalog.unnest($%d)", p);
		appendStringInfoString(&sets, ", trades = excluded.trades");
		appendStringInfoString(&olds, ", c.trades");
		appendStringInfoString(&news, ", excluded.trades");
	}
	types[p++] = BOOLARRAYOID;
	appendStringInfoString(&cols, ", closed");
	appendStringInfo(&unnests, ", pg_catalog.unnest($%d)", p);
	appendStringInfoString(&sets, ", closed = excluded.closed");
	appendStringInfoString(&olds, ", c.closed");
	appendStringInfoString(&news, ", excluded.closed");

	/*
	 * Idempotent: a row equal to the stored one is not touched, and a closed
	 * candle is never replaced by a forming one.
	 */
	plan = md_keep_plan(psprintf("INSERT INTO mdfeed.%s AS c (%s) "
								 "SELECT u.* FROM ROWS FROM (%s) AS u(%s) "
								 "ON CONFLICT (symbol, open_time) DO UPDATE SET %s, "
								 "updated_at = pg_catalog.now() "
								 "WHERE (c.closed OPERATOR(pg_catalog.<=) excluded.closed) AND "
								 "(%s) IS DISTINCT FROM (%s)",
								 table, cols.data, unnests.data, cols.data, sets.data,
								 olds.data, news.data),
						p, types);
	upsert_plans[e][idx] = plan;
	return plan;
}

/* the candle tables' columns, in order */
static const char *const candle_columns[] = {
	"symbol", "open_time", "close_time", "open", "high", "low", "close", "volume",
	"quote_volume", "taker_buy_base_volume", "taker_buy_quote_volume", "trades", "closed",
	"updated_at"
};

#define NCANDLECOLS lengthof(candle_columns)

static SPIPlanPtr range_plans[MD_MAX_EXCHANGES][MD_NUM_INTERVALS];

/*
 * range_is_empty says whether nothing at all is stored for the symbol
 * between two open times.
 */
static bool
range_is_empty(const MdExchange *ex, const MdInterval *iv, const char *symbol,
			   int64 first_ms, int64 last_ms)
{
	int			idx = iv - md_intervals;
	int			e = md_exchange_id(ex);
	Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[3];
	int			ret;

	if (range_plans[e][idx] == NULL)
	{
		char	   *sql = psprintf("SELECT 1 FROM mdfeed.%s WHERE symbol = $1 AND open_time BETWEEN $2 AND $3 LIMIT 1",
								   md_candle_table(ex, iv));

		range_plans[e][idx] = md_keep_plan(sql, 3, types);
	}
	values[0] = CStringGetTextDatum(symbol);
	values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(first_ms));
	values[2] = TimestampTzGetDatum(md_ms_to_timestamptz(last_ms));
	ret = SPI_execute_plan(range_plans[e][idx], values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "range check on mdfeed.%s failed", md_candle_table(ex, iv));
	return SPI_processed == 0;
}

/*
 * insert_trigger_fires says whether an INSERT into the table now would fire
 * a trigger: one enabled for the current session_replication_role.  The
 * merge trigger of replicated tables (replica.c) is ENABLE REPLICA and does
 * not fire for a worker's own writes.
 */
static bool
insert_trigger_fires(Relation rel)
{
	TriggerDesc *trig = rel->trigdesc;

	if (trig == NULL)
		return false;
	for (int i = 0; i < trig->numtriggers; i++)
	{
		Trigger    *t = &trig->triggers[i];

		if (!TRIGGER_FOR_INSERT(t->tgtype) || t->tgenabled == TRIGGER_DISABLED)
			continue;
		if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA ?
			t->tgenabled != TRIGGER_FIRES_ON_ORIGIN :
			t->tgenabled != TRIGGER_FIRES_ON_REPLICA)
			return true;
	}
	return false;
}

/*
 * fast_insert_possible says whether the table is as the extension made it.
 * Triggers on UPDATE alone (candle_changed, which records rewrites for the
 * models) do not matter to rows that are only inserted; a trigger on
 * INSERT that would fire would be skipped by the multi-insert, so it takes
 * the upsert.
 */
static bool
fast_insert_possible(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	if (insert_trigger_fires(rel))
		return false;
	if (rel->rd_rel->relrowsecurity || desc->natts != NCANDLECOLS)
		return false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), candle_columns[i]) != 0)
			return false;
	}
	return true;
}

/*
 * fast_insert writes rows as COPY would: heap multi-insert, then the index
 * entries.  A duplicate raises unique_violation.  Returns false, having done
 * nothing, if the table does not allow it.
 */
static bool
fast_insert(const MdExchange *ex, const MdInterval *iv, MdCandle *rows, int nrows)
{
	Oid			relid = get_relname_relid(md_candle_table(ex, iv), get_namespace_oid("mdfeed", false));
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot **slots;
	BulkInsertState bis;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	CommandId	cid = GetCurrentCommandId(true);
	TupleDesc	desc;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, RowExclusiveLock);
	if (!fast_insert_possible(rel))
	{
		table_close(rel, RowExclusiveLock);
		return false;
	}

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slots = palloc(sizeof(TupleTableSlot *) * nrows);

	/*
	 * The slots share a copy of the descriptor, which is not reference
	 * counted: with the relation's own, every slot would pin it in the
	 * resource owner, whose search for it at release is linear, and a batch
	 * of n rows would cost n squared.
	 */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	for (int i = 0; i < nrows; i++)
	{
		TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, table_slot_callbacks(rel));
		Datum	   *v = slot->tts_values;

		ExecClearTuple(slot);
		memset(slot->tts_isnull, 0, sizeof(bool) * NCANDLECOLS);
		v[0] = CStringGetTextDatum(rows[i].symbol);
		v[1] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].open_ms));
		v[2] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].close_ms));
		for (int f = 0; f < MD_NUM_DECIMALS; f++)
			v[3 + f] = DirectFunctionCall3(numeric_in, CStringGetDatum(rows[i].dec[f]),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		v[11] = Int64GetDatum(rows[i].trades);
		v[12] = BoolGetDatum(rows[i].closed);
		v[13] = TimestampTzGetDatum(now);
		ExecStoreVirtualTuple(slot);
		slots[i] = slot;
	}

	bis = GetBulkInsertState();
	table_multi_insert(rel, slots, nrows, cid, 0, bis);
	FreeBulkInsertState(bis);
	for (int i = 0; i < nrows; i++)
	{
		ResetPerTupleExprContext(estate);
		(void) ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
		ExecDropSingleTupleTableSlot(slots[i]);
	}
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, RowExclusiveLock);
	return true;
}

/*
 * try_fast_insert runs fast_insert in a subtransaction; a unique violation
 * (a row appeared since the range was checked) rolls it back.  Returns
 * whether the rows were written.
 */
static bool
try_fast_insert(const MdExchange *ex, const MdInterval *iv, MdCandle *rows, int nrows)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool done = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		done = fast_insert(ex, iv, rows, nrows);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			ReThrowError(edata);
		FreeErrorData(edata);
		done = false;
	}
	PG_END_TRY();
	return done;
}

/*
 * md_store_candles upserts rows (no two with the same symbol and open time)
 * and returns how many rows were inserted or changed.
 */
int64
md_store_candles(const MdExchange *ex, const MdInterval *iv, MdCandle *rows, int nrows)
{
	MemoryContext tmp,
				old;
	SPIPlanPtr	plan;
	Datum		values[NPARAMS];
	char		nulls[NPARAMS];
	Datum	   *col;
	int			ret;
	int			p;
	int64		written;

	if (nrows <= 0)
		return 0;

	/* closed candles: the model workers look when this commits */
	for (int i = 0; i < nrows; i++)
		if (rows[i].closed)
		{
			md_at_commit(MD_WAKE_MODELS);
			break;
		}

	/* one symbol's batch into an empty range: the COPY path */
	if (nrows >= 8 && ex->candle_fields == MD_ALL_CANDLE_FIELDS && ex->candle_trades)
	{
		bool		one_symbol = true;

		for (int i = 1; i < nrows && one_symbol; i++)
			one_symbol = strcmp(rows[i].symbol, rows[0].symbol) == 0 &&
				rows[i].open_ms > rows[i - 1].open_ms;
		if (one_symbol &&
			range_is_empty(ex, iv, rows[0].symbol, rows[0].open_ms, rows[nrows - 1].open_ms) &&
			try_fast_insert(ex, iv, rows, nrows))
			return nrows;
	}

	plan = upsert_plan(ex, iv);

	tmp = AllocSetContextCreate(CurrentMemoryContext, "mdfeed upsert", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);

	memset(nulls, ' ', sizeof(nulls));
	col = palloc(sizeof(Datum) * nrows);
	for (int i = 0; i < nrows; i++)
		col[i] = CStringGetTextDatum(rows[i].symbol);
	values[0] = PointerGetDatum(construct_array(col, nrows, TEXTOID, -1, false, TYPALIGN_INT));

	col = palloc(sizeof(Datum) * nrows);
	for (int i = 0; i < nrows; i++)
		col[i] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].open_ms));
	values[1] = PointerGetDatum(construct_array(col, nrows, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	col = palloc(sizeof(Datum) * nrows);
	for (int i = 0; i < nrows; i++)
		col[i] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].close_ms));
	values[2] = PointerGetDatum(construct_array(col, nrows, TIMESTAMPTZOID, sizeof(TimestampTz),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	p = 3;
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
	{
		char	  **strs;

		if (!has_field(ex, f))
			continue;
		/* an exchange that does not send a value leaves it NULL */
		strs = palloc(sizeof(char *) * nrows);
		for (int i = 0; i < nrows; i++)
			strs[i] = rows[i].dec[f];
		values[p++] = md_cstring_array(strs, nrows, true);
	}
	if (ex->candle_trades)
	{
		col = palloc(sizeof(Datum) * nrows);
		for (int i = 0; i < nrows; i++)
			col[i] = Int64GetDatum(rows[i].trades);
		values[p++] = PointerGetDatum(construct_array(col, nrows, INT8OID, sizeof(int64),
													  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	col = palloc(sizeof(Datum) * nrows);
	for (int i = 0; i < nrows; i++)
		col[i] = BoolGetDatum(rows[i].closed);
	values[p++] = PointerGetDatum(construct_array(col, nrows, BOOLOID, 1, true, TYPALIGN_CHAR));

	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "upsert into mdfeed.%s failed: %s", md_candle_table(ex, iv),
			 SPI_result_code_string(ret));
	written = (int64) SPI_processed;

	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
	return written;
}

/*
 * md_notify_candle sends NOTIFY mdfeed_candles for a closed candle; it is
 * delivered when the caller's transaction commits, with the candle.
 */
void
md_notify_candle(const char *exchange, const char *symbol, const MdInterval *iv, int64 open_ms)
{
	char		payload[256];
	char		when[32];

	md_utc_string(open_ms, when, sizeof(when));
	snprintf(payload, sizeof(payload),
			 "{\"exchange\":\"%s\",\"symbol\":\"%s\",\"interval\":\"%s\",\"open_time\":\"%s\"}",
			 exchange, symbol, iv->name, when);
	Async_Notify("mdfeed_candles", payload);
}

static SPIPlanPtr funding_plans[MD_MAX_EXCHANGES];
static SPIPlanPtr oi_plans[MD_MAX_EXCHANGES];

/*
 * md_keep_plan prepares a statement and keeps its plan for the life of the
 * process.
 */
SPIPlanPtr
md_keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep a plan");
	return plan;
}

/*
 * md_cstring_array builds a one-dimensional text[] or numeric[] from C
 * strings, a NULL string making a NULL element.
 */
Datum
md_cstring_array(char **vals, int n, bool numeric)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = vals[i] == NULL;
		if (vals[i] == NULL)
			d[i] = (Datum) 0;
		else if (numeric)
			d[i] = DirectFunctionCall3(numeric_in, CStringGetDatum(vals[i]),
									   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
		else
			d[i] = CStringGetTextDatum(vals[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs,
											  numeric ? NUMERICOID : TEXTOID, -1, false,
											  TYPALIGN_INT));
}

static Datum
timestamptz_array(int64 *ms, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(md_ms_to_timestamptz(ms[i]));
	return PointerGetDatum(construct_array(d, n, TIMESTAMPTZOID, sizeof(TimestampTz),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * upsert_series runs a derivatives upsert (sql_format names the table with
 * %s) whose parameters are the symbol,
 * the rows' times and two numeric columns given as decimal strings.
 */
static int64
upsert_series(SPIPlanPtr *plan, const char *sql_format, const char *table, const char *symbol,
			  int64 *ms, char **a, char **b, int n)
{
	Oid			types[4] = {TEXTOID, TIMESTAMPTZARRAYOID, NUMERICARRAYOID, NUMERICARRAYOID};
	Datum		values[4];
	int			ret;

	if (*plan == NULL)
		*plan = md_keep_plan(psprintf(sql_format, table), 4, types);
	values[0] = CStringGetTextDatum(symbol);
	values[1] = timestamptz_array(ms, n);
	values[2] = md_cstring_array(a, n, true);
	values[3] = md_cstring_array(b, n, true);
	ret = SPI_execute_plan(*plan, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "upsert into mdfeed.%s failed: %s", table, SPI_result_code_string(ret));
	return (int64) SPI_processed;
}

/*
 * md_store_funding upserts funding events.  The key is the funding time
 * rounded down to the minute: the exchange reports each event a few
 * milliseconds past its boundary, and the exact time it sent is kept in
 * exchange_time.
 */
int64
md_store_funding(const MdExchange *ex, const char *symbol, MdFunding *rows, int n)
{
	int64	   *ms;
	char	  **rate;
	char	  **mark;

	if (n <= 0)
		return 0;
	ms = palloc(sizeof(int64) * n);
	rate = palloc(sizeof(char *) * n);
	mark = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
	{
		ms[i] = rows[i].funding_ms;
		rate[i] = rows[i].rate;
		mark[i] = rows[i].mark_price;
	}
	return upsert_series(&funding_plans[md_exchange_id(ex)],
						 "INSERT INTO mdfeed.%s AS f (symbol, funding_time, funding_rate, mark_price, exchange_time) "
						 "SELECT $1, pg_catalog.date_trunc('minute', t, 'UTC'), r, m, t "
						 "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(t, r, m) "
						 "ON CONFLICT (symbol, funding_time) DO UPDATE SET funding_rate = excluded.funding_rate, "
						 "mark_price = coalesce(excluded.mark_price, f.mark_price), exchange_time = excluded.exchange_time, "
						 "updated_at = pg_catalog.now() "
						 "WHERE (f.funding_rate, f.mark_price, f.exchange_time) IS DISTINCT FROM "
						 "(excluded.funding_rate, coalesce(excluded.mark_price, f.mark_price), excluded.exchange_time)",
						 ex->funding_table, symbol, ms, rate, mark, n);
}

/*
 * store_oi writes open-interest statistics into table: an upsert, or
 * (keep_stored) an insert of the times not stored yet.
 */
static int64
store_oi(SPIPlanPtr *plan, const char *table, bool keep_stored, const char *symbol,
		 MdOpenInterest *rows, int n)
{
	int64	   *ms;
	char	  **soi;
	char	  **soiv;

	if (n <= 0)
		return 0;
	ms = palloc(sizeof(int64) * n);
	soi = palloc(sizeof(char *) * n);
	soiv = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
	{
		ms[i] = rows[i].ts_ms;
		soi[i] = rows[i].sum_open_interest;
		soiv[i] = rows[i].sum_open_interest_value;
	}
	return upsert_series(plan, keep_stored ?
						 "INSERT INTO mdfeed.%s AS o (symbol, ts, sum_open_interest, sum_open_interest_value) "
						 "SELECT $1, t, a, b "
						 "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(t, a, b) "
						 "ON CONFLICT (symbol, ts) DO NOTHING" :
						 "INSERT INTO mdfeed.%s AS o (symbol, ts, sum_open_interest, sum_open_interest_value) "
						 "SELECT $1, t, a, b "
						 "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(t, a, b) "
						 "ON CONFLICT (symbol, ts) DO UPDATE SET sum_open_interest = excluded.sum_open_interest, "
						 "sum_open_interest_value = excluded.sum_open_interest_value, updated_at = pg_catalog.now() "
						 "WHERE (o.sum_open_interest, o.sum_open_interest_value) IS DISTINCT FROM "
						 "(excluded.sum_open_interest, excluded.sum_open_interest_value)",
						 table, symbol, ms, soi, soiv, n);
}

/*
 * md_store_open_interest upserts hourly open-interest statistics.
 */
int64
md_store_open_interest(const MdExchange *ex, const char *symbol, MdOpenInterest *rows, int n)
{
	return store_oi(&oi_plans[md_exchange_id(ex)], ex->open_interest_table, false, symbol, rows, n);
}

/*
 * md_store_open_interest_5m upserts the five-minute statistics of the bulk
 * archives.
 */
int64
md_store_open_interest_5m(const MdExchange *ex, const char *symbol, MdOpenInterest *rows, int n)
{
	static SPIPlanPtr plans[MD_MAX_EXCHANGES];

	return store_oi(&plans[md_exchange_id(ex)], ex->archive->open_interest_5m_table, false,
					symbol, rows, n);
}

/*
 * md_fill_open_interest adds hourly statistics (the archives' full-hour
 * rows) for the hours not stored yet: what REST stored stays.
 */
int64
md_fill_open_interest(const MdExchange *ex, const char *symbol, MdOpenInterest *rows, int n)
{
	static SPIPlanPtr plans[MD_MAX_EXCHANGES];

	return store_oi(&plans[md_exchange_id(ex)], ex->open_interest_table, true, symbol, rows, n);
}
