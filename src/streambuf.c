/*-------------------------------------------------------------------------
 *
 * streambuf.c
 *	  The stream worker's buffer: kline events coalesced by candle, written
 *	  in one transaction with the NOTIFY of the closed ones, and the
 *	  event-to-commit latency of what was written.
 *
 * Events are coalesced in a hash keyed by (symbol, interval, open time):
 * the 250 ms updates of a forming candle become one row every
 * mdfeed.stream_flush_interval, which is what keeps the write load of a
 * whole board of forming candles low.  A closed version always wins over a
 * forming one (the table's upsert agrees: a stored closed candle is never
 * replaced by a forming one, so a late forming update written after its
 * close changes nothing).
 *
 * Closed candles are what applications wait for (LISTEN mdfeed_candles),
 * and there are few of them: the worker flushes them alone, at once, after
 * every lws_service() call that brought one (md_streambuf_flush(true)),
 * while forming updates wait for the interval.  Under a firehose of closes
 * the batches grow with the load, since whatever arrived while one was
 * being written goes into the next.
 *
 * Latency is measured from the exchange's event time to our commit: for a
 * forming candle from the oldest update coalesced, for a closed one from
 * its closing event.  Each kind keeps its last MD_LATENCY_SAMPLES samples, one
 * per candle written; the worker publishes their p50 and p99.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "common.h"
#include "store.h"
#include "latency.h"
#include "streambuf.h"
#include "workers.h"

#define DEC_LEN 48

typedef struct CandleKey
{
	char		symbol[41];
	int			iv;
	int64		open_ms;
} CandleKey;

typedef struct CandleEntry
{
	CandleKey	key;
	int64		close_ms;
	char		dec[MD_NUM_DECIMALS][DEC_LEN];
	bool		has_dec[MD_NUM_DECIMALS];	/* false: the exchange sent none */
	int64		trades;
	bool		closed;
	int64		first_event_ms; /* oldest event coalesced; the closing event
								 * of a closed candle */
} CandleEntry;

static const MdExchange *ex = NULL;
static MemoryContext buf_ctx = NULL;
static HTAB *buffer = NULL;
static int	nclosed = 0;		/* closed candles in the buffer */
static MdLatencyRing forming_latency;
static MdLatencyRing close_latency;

/*
 * new_buffer empties the buffer, and frees what it held.
 */
static void
new_buffer(void)
{
	HASHCTL		hctl;

	MemoryContextReset(buf_ctx);
	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = sizeof(CandleKey);
	hctl.entrysize = sizeof(CandleEntry);
	hctl.hcxt = buf_ctx;
	buffer = hash_create("mdfeed stream buffer", 4096, &hctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	nclosed = 0;
}

/*
 * md_streambuf_init sets up the buffer of a stream worker of an exchange.
 */
void
md_streambuf_init(const MdExchange *exchange)
{
	ex = exchange;
	buf_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream buffer", ALLOCSET_DEFAULT_SIZES);
	new_buffer();
}

/*
 * md_streambuf_add keeps the latest state of a candle until it is written.
 * A closed version is never replaced by a forming one, and among versions
 * of the same kind the later event wins.  It returns false, keeping
 * nothing, for an event whose strings are too long to be stored.  Called
 * inside lws callbacks: it raises no error.
 */
bool
md_streambuf_add(const MdStreamKline *k)
{
	CandleKey	key;
	CandleEntry *e;
	bool		found;

	memset(&key, 0, sizeof(key));
	if (strlen(k->symbol) >= sizeof(key.symbol))
		return false;
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
		if (k->candle.dec[f] != NULL && strlen(k->candle.dec[f]) >= DEC_LEN)
			return false;
	strcpy(key.symbol, k->symbol);
	key.iv = k->iv - md_intervals;
	key.open_ms = k->candle.open_ms;
	e = hash_search(buffer, &key, HASH_ENTER, &found);
	if (!found)
		e->first_event_ms = k->event_ms;
	else if (e->closed && !k->candle.closed)
		return true;
	else if (!e->closed && k->candle.closed)
		e->first_event_ms = k->event_ms;	/* the close starts its own clock */
	else
		e->first_event_ms = Min(e->first_event_ms, k->event_ms);
	if (k->candle.closed && !(found && e->closed))
		nclosed++;
	e->close_ms = k->candle.close_ms;
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
	{
		/* a field the exchange does not send stays NULL */
		e->has_dec[f] = k->candle.dec[f] != NULL;
		strcpy(e->dec[f], e->has_dec[f] ? k->candle.dec[f] : "");
	}
	e->trades = k->candle.trades;
	e->closed = k->candle.closed;
	return true;
}

/*
 * md_streambuf_has_closed says whether a closed candle waits to be
 * written.
 */
bool
md_streambuf_has_closed(void)
{
	return nclosed > 0;
}

/*
 * md_streambuf_flush writes the buffered candles (only the closed ones if
 * closed_only), one transaction for all of them, with a NOTIFY
 * mdfeed_candles for each closed one, and takes them out of the buffer.
 */
void
md_streambuf_flush(bool closed_only)
{
	long		n = closed_only ? nclosed : hash_get_num_entries(buffer);
	MdCandle   *rows[32];
	int			counts[32] = {0};
	HASH_SEQ_STATUS seq;
	CandleEntry *e;
	MemoryContext tmp,
				old;
	int64		committed;

	if (n == 0)
		return;
	tmp = AllocSetContextCreate(CurrentMemoryContext, "mdfeed flush", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(tmp);
	/* size each interval's batch by what the buffer holds of it */
	hash_seq_init(&seq, buffer);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (e->closed || !closed_only)
			counts[e->key.iv]++;
	for (int i = 0; i < md_num_intervals; i++)
	{
		rows[i] = counts[i] > 0 ? palloc(sizeof(MdCandle) * counts[i]) : NULL;
		counts[i] = 0;
	}

	md_begin_tx();
	hash_seq_init(&seq, buffer);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		MdCandle   *c;

		if (closed_only && !e->closed)
			continue;
		c = &rows[e->key.iv][counts[e->key.iv]++];
		c->symbol = e->key.symbol;
		c->open_ms = e->key.open_ms;
		c->close_ms = e->close_ms;
		for (int f = 0; f < MD_NUM_DECIMALS; f++)
			c->dec[f] = e->has_dec[f] ? e->dec[f] : NULL;
		c->trades = e->trades;
		c->closed = e->closed;
		if (e->closed)
			md_notify_candle(ex->name, e->key.symbol, &md_intervals[e->key.iv], e->key.open_ms);
	}
	for (int i = 0; i < md_num_intervals; i++)
		if (counts[i] > 0)
			md_store_candles(ex, &md_intervals[i], rows[i], counts[i]);
	md_commit_tx();

	committed = md_now_ms();
	hash_seq_init(&seq, buffer);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (closed_only && !e->closed)
			continue;
		md_latency_record(e->closed ? &close_latency : &forming_latency,
					   committed - e->first_event_ms);
		if (closed_only)
			(void) hash_search(buffer, &e->key, HASH_REMOVE, NULL);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
	if (closed_only)
		nclosed = 0;
	else
		new_buffer();
}

/*
 * md_streambuf_discard drops what the buffer holds, after a failed flush:
 * forming updates come again, and the gap watchdog repairs lost closes.
 */
void
md_streambuf_discard(void)
{
	new_buffer();
}

/*
 * md_streambuf_latency gives the p50 and p99 of the event-to-commit
 * latency of the forming updates and of the closed candles written
 * recently, -1 where there are none.
 */
void
md_streambuf_latency(int64 *p50, int64 *p99, int64 *close_p50, int64 *close_p99)
{
	md_latency_percentiles(&forming_latency, p50, p99);
	md_latency_percentiles(&close_latency, close_p50, close_p99);
}
