/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  The stream worker: live candles of every tracked (symbol, interval)
 *	  over the exchange's WebSocket market streams.
 *
 * One libwebsockets context holds every connection; each connection carries
 * at most mdfeed.streams_per_connection streams, and sends at most
 * CLIENT_MSGS_PER_SEC messages a second (Binance drops a connection over
 * 10).  Kline events are parsed as they arrive and coalesced in a hash keyed
 * by (symbol, interval, open time): the 250 ms updates of a forming candle
 * become one row, and a closed version always wins.  Every
 * mdfeed.stream_flush_interval the buffer is written in one transaction and
 * NOTIFY mdfeed_candles announces the closed candles.
 *
 * The loop: libwebsockets 4.1 as Debian builds it has no external poll
 * support, and lws_service() ignores its timeout, so a 50 ms lws_sul timer
 * bounds each lws_service() call; between calls the worker checks
 * interrupts, postmaster death and its latch, flushes, and manages
 * connections.  Nothing inside an lws callback may raise an error: a
 * longjmp out of libwebsockets would leave it broken.
 *
 * A connection that drops is reconnected with capped, jittered backoff; one
 * silent for mdfeed.stream_silence_timeout is taken for dead; one near
 * Binance's 24 h limit is replaced by a new connection first, so no candle
 * is lost.  After a reconnect (or a restart of this worker) the hole is
 * repaired over REST: each stream's pair gets a sync job.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libwebsockets.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "common.h"
#include "exchange.h"
#include "jobs.h"
#include "shmem.h"
#include "store.h"
#include "workers.h"

#define TICK_US (50 * LWS_US_PER_MS)
#define CLIENT_MSGS_PER_SEC 5
#define RECONNECT_MIN_MS 500
#define RECONNECT_MAX_MS 30000
#define DESIRED_REFRESH_MS 5000
#define MAX_FRAME_BYTES (4 * 1024 * 1024)
#define DEC_LEN 48
#define LATENCY_SAMPLES 16384
#define SECOND_REPAIR_MS 5000
/* and this long after the exchange has answered the last SUBSCRIBE */
#define ANSWERED_REPAIR_MS 2000
/* a reply this late is taken as lost */
#define REPLY_WAIT_MS 10000

typedef struct Conn
{
	int			id;
	bool		in_use;
	struct lws *wsi;
	bool		open;			/* established */
	bool		connecting;
	bool		retiring;		/* replaced; close once the successor has data */
	int			successor;		/* index of the replacement, or -1 */
	int64		connected_at;
	int64		last_rx_ms;
	int64		next_attempt_ms;
	int64		backoff_ms;
	bool		repair_on_open; /* queue hole repairs when established */
	int64		second_repair_at;	/* and again (after a SUBSCRIBE too) at
									 * this time, or 0 */
	int64		repair_as_of;	/* for the candles closed by this time */
	bool		got_data;
	/* streams this connection should carry, and what to (un)subscribe */
	List	   *desired;		/* of char * (stream names) */
	List	   *to_sub;
	List	   *to_unsub;
	int64		sent_at[CLIENT_MSGS_PER_SEC];	/* ring of send times */
	int			sent_pos;
	int64		next_id;
	int			awaiting_replies;	/* (UN)SUBSCRIBEs not yet answered */
	int64		last_sent_ms;	/* when the last of them was sent */
	StringInfoData rx;
} Conn;

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
	int64		trades;
	bool		closed;
	int64		first_event_ms; /* oldest exchange event time coalesced */
} CandleEntry;

static const MdExchange *ex = &md_binance;
static struct lws_context *lws_ctx = NULL;
static lws_sorted_usec_list_t tick_sul;
static Conn *conns = NULL;
static int	nconns = 0;
static MemoryContext conn_ctx = NULL;
static MemoryContext frame_ctx = NULL;
static MemoryContext buf_ctx = NULL;
static HTAB *buffer = NULL;
static int64 frames_total = 0;
static int64 frames_malformed = 0;
static int64 reconnects = 0;
static MemoryContext loop_ctx = NULL;

/* event-to-commit latencies of recent flushes, in ms */
static int64 latencies[LATENCY_SAMPLES];
static int	nlatencies = 0;
static int	latency_pos = 0;

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
}

/*
 * coalesce keeps the latest state of a candle until the next flush.  A
 * closed version is never replaced by a forming one, and among versions of
 * the same kind the later event wins.
 */
static void
coalesce(MdStreamKline *k)
{
	CandleKey	key;
	CandleEntry *e;
	bool		found;

	memset(&key, 0, sizeof(key));
	if (strlen(k->symbol) >= sizeof(key.symbol))
	{
		frames_malformed++;
		return;
	}
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
		if (strlen(k->candle.dec[f]) >= DEC_LEN)
		{
			frames_malformed++;
			return;
		}
	strcpy(key.symbol, k->symbol);
	key.iv = k->iv - md_intervals;
	key.open_ms = k->candle.open_ms;
	e = hash_search(buffer, &key, HASH_ENTER, &found);
	if (found)
	{
		if (e->closed && !k->candle.closed)
			return;
		e->first_event_ms = Min(e->first_event_ms, k->event_ms);
	}
	else
		e->first_event_ms = k->event_ms;
	e->close_ms = k->candle.close_ms;
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
		strcpy(e->dec[f], k->candle.dec[f]);
	e->trades = k->candle.trades;
	e->closed = k->candle.closed;
}

/*
 * arm_check schedules, delay_ms from now, the check that every pair of the
 * connection has stored the newest candle closed by as_of_ms: a close that
 * went out before a subscription took effect never reaches the stream.  Only
 * the closes up to the moment the subscriptions were known to be in place
 * count, so that one the stream did hear but has not written yet is not
 * taken for a hole.
 */
static void
arm_check(Conn *c, int64 as_of_ms, int64 delay_ms)
{
	c->repair_as_of = as_of_ms;
	c->second_repair_at = md_now_ms() + delay_ms;
}

/*
 * handle_frame parses one complete message.  Called inside an lws callback:
 * it must not raise an error.
 */
static void
handle_frame(Conn *c, const char *data, size_t len)
{
	MemoryContext old = MemoryContextSwitchTo(frame_ctx);
	MdStreamKline k;
	char	   *err = NULL;

	frames_total++;
	switch (ex->parse_stream_frame(data, len, &k, &err))
	{
		case MD_FRAME_KLINE:
			coalesce(&k);
			c->got_data = true;
			break;
		case MD_FRAME_REPLY:
			/* answered in order: the subscriptions are now in effect */
			if (c->awaiting_replies > 0 && --c->awaiting_replies == 0)
				arm_check(c, md_now_ms(), ANSWERED_REPAIR_MS);
			if (memmem(data, len, "\"error\"", 7) != NULL)
				elog(LOG, "mdfeed stream connection %d: the exchange refused a request: %.*s",
					 c->id, (int) Min(len, 300), data);
			break;
		case MD_FRAME_OTHER:
			break;
		case MD_FRAME_MALFORMED:
			frames_malformed++;
			elog(DEBUG1, "mdfeed stream connection %d: malformed frame skipped: %s", c->id, err);
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(frame_ctx);
}

static Conn *
conn_of(struct lws *wsi)
{
	intptr_t	idx = (intptr_t) lws_get_opaque_user_data(wsi);

	if (idx <= 0 || idx > nconns)
		return NULL;
	return &conns[idx - 1];
}

static bool
rate_allows(Conn *c, int64 now)
{
	/* the oldest of the last CLIENT_MSGS_PER_SEC sends must be a second old */
	return now - c->sent_at[c->sent_pos] >= 1000;
}

/*
 * send_pending writes one SUBSCRIBE or UNSUBSCRIBE with as many streams as
 * a message may carry.  Called from the WRITEABLE callback.
 */
static int
send_pending(Conn *c, struct lws *wsi)
{
	int64		now = md_now_ms();
	List	  **which;
	bool		subscribe;
	char	   *names[1024];
	int			n = 0;
	char	   *msg;
	unsigned char *buf;
	size_t		len;
	int			written;
	MemoryContext old;

	if (c->to_unsub != NIL)
	{
		which = &c->to_unsub;
		subscribe = false;
	}
	else if (c->to_sub != NIL)
	{
		which = &c->to_sub;
		subscribe = true;
	}
	else
		return 0;
	if (!rate_allows(c, now))
		return 0;				/* the main loop asks again later */

	old = MemoryContextSwitchTo(conn_ctx);
	while (*which != NIL && n < mdfeed_streams_per_connection && n < lengthof(names))
	{
		names[n++] = linitial(*which);
		*which = list_delete_first(*which);
	}
	msg = ex->subscribe_message(subscribe, names, n, ++c->next_id);
	len = strlen(msg);
	buf = palloc(LWS_PRE + len);
	memcpy(buf + LWS_PRE, msg, len);
	written = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
	pfree(buf);
	pfree(msg);
	MemoryContextSwitchTo(old);
	c->sent_at[c->sent_pos] = now;
	c->sent_pos = (c->sent_pos + 1) % CLIENT_MSGS_PER_SEC;
	if (written < (int) len)
		return -1;
	c->awaiting_replies++;
	c->last_sent_ms = now;

	/*
	 * A stream added to a connection already open (a symbol whitelisted, a
	 * new interval) may miss the close of its forming candle just as a new
	 * connection's streams may: check its newest closed candle once the
	 * subscription is in place (when the exchange answers, or after this
	 * long if the answer is lost).
	 */
	if (subscribe)
		arm_check(c, now, SECOND_REPAIR_MS);
	if (c->to_sub != NIL || c->to_unsub != NIL)
		lws_callback_on_writable(wsi);
	return 0;
}

static void
conn_lost(Conn *c, const char *why)
{
	int64		lived = c->open ? md_now_ms() - c->connected_at : 0;

	if (c->open || c->connecting)
		elog(c->retiring ? DEBUG1 : LOG, "mdfeed stream connection %d %s: %s",
			 c->id, c->open ? "closed" : "failed", why);
	c->wsi = NULL;
	c->open = false;
	c->connecting = false;
	if (c->retiring || c->desired == NIL)
	{
		/* replaced by its successor, or no longer needed */
		c->in_use = false;
		list_free(c->desired);
		c->desired = NIL;
		return;
	}
	reconnects++;
	c->repair_on_open = true;
	if (lived > 60000)
		c->backoff_ms = RECONNECT_MIN_MS;
	else
		c->backoff_ms = Min(Max(c->backoff_ms * 2, RECONNECT_MIN_MS), RECONNECT_MAX_MS);
	c->next_attempt_ms = md_now_ms() + c->backoff_ms / 2 +
		(int64) (pg_prng_double(&pg_global_prng_state) * (c->backoff_ms / 2));
	md_slot_set_error(why);
}

/*
 * stream_callback is libwebsockets' view of our connections.  No errors may
 * be raised in here.
 */
static int
stream_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	Conn	   *c = conn_of(wsi);

	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			if (c == NULL)
				return -1;
			c->open = true;
			c->connecting = false;
			c->wsi = wsi;
			c->connected_at = c->last_rx_ms = md_now_ms();
			resetStringInfo(&c->rx);
			/* the URL carried the first stream; subscribe the others */
			{
				MemoryContext old = MemoryContextSwitchTo(conn_ctx);

				list_free(c->to_sub);
				list_free(c->to_unsub);
				c->to_unsub = NIL;
				c->awaiting_replies = 0;
				c->to_sub = list_copy(c->desired);
				if (c->to_sub != NIL)
					c->to_sub = list_delete_first(c->to_sub);
				MemoryContextSwitchTo(old);
			}
			if (c->to_sub != NIL)
				lws_callback_on_writable(wsi);
			break;

		case LWS_CALLBACK_CLIENT_RECEIVE:
			if (c == NULL)
				return -1;
			c->last_rx_ms = md_now_ms();
			if (c->rx.len + len > MAX_FRAME_BYTES)
			{
				/* garbage: drop the message */
				frames_malformed++;
				resetStringInfo(&c->rx);
				return 0;
			}
			if (lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) &&
				lws_remaining_packet_payload(wsi) == 0 && c->rx.len == 0)
			{
				handle_frame(c, in, len);
				break;
			}
			appendBinaryStringInfo(&c->rx, in, len);
			if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
			{
				handle_frame(c, c->rx.data, c->rx.len);
				resetStringInfo(&c->rx);
			}
			break;

		case LWS_CALLBACK_CLIENT_WRITEABLE:
			if (c == NULL)
				return -1;
			return send_pending(c, wsi);

		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			if (c != NULL && c->connecting)
				conn_lost(c, in ? (const char *) in : "connection error");
			break;

		case LWS_CALLBACK_CLIENT_CLOSED:
			if (c != NULL && c->open)
				conn_lost(c, "closed");
			break;

		case LWS_CALLBACK_WSI_DESTROY:
			if (c != NULL && (c->open || c->connecting))
				conn_lost(c, "connection destroyed");
			break;

		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{"mdfeed-stream", stream_callback, 0, 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/* lws log lines go to the server log */
static void
lws_log_emit(int level, const char *line)
{
	int			len = strlen(line);

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	elog(level == LLL_ERR ? LOG : DEBUG1, "libwebsockets: %.*s", len, line);
}

static void
tick(lws_sorted_usec_list_t *sul)
{
	/* nothing to do: firing makes lws_service() return */
	lws_sul_schedule(lws_ctx, 0, &tick_sul, tick, TICK_US);
}

static Conn *
new_conn(void)
{
	for (int i = 0; i < nconns; i++)
		if (!conns[i].in_use)
		{
			Conn	   *c = &conns[i];
			int			id = c->id;

			memset(c, 0, sizeof(*c));
			c->id = id;
			c->in_use = true;
			c->successor = -1;
			c->backoff_ms = RECONNECT_MIN_MS;

			/*
			 * Whatever closed before this connection first delivers data
			 * (this worker just started: server start, crash restart) is
			 * repaired over REST; the pairs' sync jobs are deduplicated.
			 */
			c->repair_on_open = true;
			{
				MemoryContext old = MemoryContextSwitchTo(conn_ctx);

				initStringInfo(&c->rx);
				MemoryContextSwitchTo(old);
			}
			return c;
		}
	return NULL;
}

/*
 * conn_connect opens a connection whose URL names its first stream.
 */
static void
conn_connect(Conn *c)
{
	struct lws_client_connect_info cci;
	char	   *url;
	char	   *copy;
	const char *prot;
	const char *ads;
	const char *path;
	int			port;
	char	   *fullpath;
	struct lws *wsi;

	if (c->desired == NIL)
		return;
	url = ex->stream_url(ex->ws_base_url(), linitial(c->desired));
	copy = pstrdup(url);
	if (lws_parse_uri(copy, &prot, &ads, &port, &path) != 0)
	{
		md_slot_set_error("cannot parse mdfeed.binance_ws_url");
		c->next_attempt_ms = md_now_ms() + RECONNECT_MAX_MS;
		return;
	}
	fullpath = psprintf("/%s", path);

	memset(&cci, 0, sizeof(cci));
	cci.context = lws_ctx;
	cci.address = ads;
	cci.port = port;
	cci.path = fullpath;
	cci.host = ads;
	cci.origin = ads;
	cci.ssl_connection = strcmp(prot, "wss") == 0 ? LCCSCF_USE_SSL : 0;
	cci.protocol = NULL;
	cci.local_protocol_name = "mdfeed-stream";
	cci.opaque_user_data = (void *) (intptr_t) (c - conns + 1);
	c->connecting = true;
	c->open = false;
	c->got_data = false;
	wsi = lws_client_connect_via_info(&cci);
	if (wsi == NULL)
	{
		/* failed at once (the callback may have said so already) */
		c->connecting = false;
		c->wsi = NULL;
		c->backoff_ms = Min(Max(c->backoff_ms * 2, RECONNECT_MIN_MS), RECONNECT_MAX_MS);
		c->next_attempt_ms = md_now_ms() + c->backoff_ms;
	}
	else if (c->connecting || c->open)
		c->wsi = wsi;
}

/*
 * desired_streams reads the tracked pairs and returns their stream names.
 */
static List *
desired_streams(void)
{
	const MdInterval *ivs[32];
	int			niv = md_tracked_intervals(ivs, lengthof(ivs));
	List	   *out = NIL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int			ret;

	md_begin_tx();
	values[0] = CStringGetTextDatum(ex->name);
	ret = SPI_execute_with_args("SELECT symbol FROM mdfeed.tracked WHERE exchange = $1 ORDER BY symbol",
								1, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.tracked");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *sym = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		for (int j = 0; j < niv; j++)
		{
			MemoryContext old = MemoryContextSwitchTo(loop_ctx);

			out = lappend(out, ex->stream_name(sym, ivs[j]));
			MemoryContextSwitchTo(old);
		}
	}
	md_commit_tx();
	return out;
}

static bool
list_has_string(List *l, const char *s)
{
	ListCell   *lc;

	foreach(lc, l)
		if (strcmp((char *) lfirst(lc), s) == 0)
		return true;
	return false;
}

static List *
list_remove_string(List *l, const char *s)
{
	ListCell   *lc;

	foreach(lc, l)
	{
		if (strcmp((char *) lfirst(lc), s) == 0)
			return foreach_delete_current(l, lc);
	}
	return l;
}

/*
 * apply_desired turns the tracked set into subscriptions: streams no longer
 * wanted are unsubscribed, new ones go to a connection with room (a new
 * connection if none has), and a connection left with nothing is closed.
 */
static void
apply_desired(List *want)
{
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(conn_ctx);
	int			total = 0;

	for (int i = 0; i < nconns; i++)
	{
		Conn	   *c = &conns[i];
		List	   *keep = NIL;

		if (!c->in_use || c->retiring)
			continue;
		foreach(lc, c->desired)
		{
			char	   *s = lfirst(lc);

			if (list_has_string(want, s))
				keep = lappend(keep, s);	/* already in conn_ctx */
			else
			{
				c->to_sub = list_remove_string(c->to_sub, s);
				if (c->open)
					c->to_unsub = lappend(c->to_unsub, s);
			}
		}
		list_free(c->desired);
		c->desired = keep;
		if (keep == NIL && c->wsi != NULL)
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		else if (keep == NIL)
			c->in_use = false;
	}

	foreach(lc, want)
	{
		char	   *s = lfirst(lc);
		bool		have = false;
		Conn	   *target = NULL;

		for (int i = 0; i < nconns && !have; i++)
			if (conns[i].in_use && !conns[i].retiring && list_has_string(conns[i].desired, s))
				have = true;
		if (have)
			continue;
		for (int i = 0; i < nconns && target == NULL; i++)
			if (conns[i].in_use && !conns[i].retiring &&
				list_length(conns[i].desired) < mdfeed_streams_per_connection)
				target = &conns[i];
		if (target == NULL)
		{
			target = new_conn();
			if (target == NULL)
			{
				md_slot_set_error("too many connections: raise mdfeed.streams_per_connection");
				break;
			}
			target->next_attempt_ms = 0;
		}
		target->desired = lappend(target->desired, pstrdup(s));
		if (target->open)
			target->to_sub = lappend(target->to_sub, pstrdup(s));
	}
	MemoryContextSwitchTo(old);

	for (int i = 0; i < nconns; i++)
		if (conns[i].in_use && !conns[i].retiring)
		{
			total += list_length(conns[i].desired);
			if (conns[i].open && (conns[i].to_sub != NIL || conns[i].to_unsub != NIL))
				lws_callback_on_writable(conns[i].wsi);
		}
	SpinLockAcquire(&md_shared->mutex);
	md_my_slot->streams = total;
	SpinLockRelease(&md_shared->mutex);
}

/*
 * repair_holes queues a sync job for every stream of a connection that was
 * down: the candles that closed meanwhile come over REST.  A pair with no
 * closed candle yet is left to the watch worker, which owns a new pair's
 * first fill (mdfeed.sync_pair), and what queued or running jobs will fetch
 * is not queued again (mdfeed.queue_job).
 */
static void
repair_holes(Conn *c, bool only_if_behind, int64 as_of_ms)
{
	ListCell   *lc;

	md_begin_tx();
	foreach(lc, c->desired)
	{
		char	   *s = lfirst(lc);
		char	   *at = strchr(s, '@');
		char	   *sym;
		const char *ivname = at ? strstr(at, "_") : NULL;
		if (at == NULL || ivname == NULL)
			continue;
		ivname++;
		/* stream names are lower case; the interval keeps its case (1M) */
		sym = asc_toupper(s, at - s);
		if (md_interval_lookup(ivname) == NULL)
			continue;
		md_queue_pair_sync(ex->name, sym, ivname, "stream", only_if_behind, as_of_ms);
	}
	md_commit_tx();
	md_wake_role(MD_ROLE_BACKFILL);
}

static void
record_latency(int64 ms)
{
	latencies[latency_pos] = ms;
	latency_pos = (latency_pos + 1) % LATENCY_SAMPLES;
	if (nlatencies < LATENCY_SAMPLES)
		nlatencies++;
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y;
}

/*
 * flush writes the coalesced candles, one transaction for all of them.
 */
static void
flush(void)
{
	long		n = hash_get_num_entries(buffer);
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
		MdCandle   *c = &rows[e->key.iv][counts[e->key.iv]++];

		c->symbol = e->key.symbol;
		c->open_ms = e->key.open_ms;
		c->close_ms = e->close_ms;
		for (int f = 0; f < MD_NUM_DECIMALS; f++)
			c->dec[f] = e->dec[f];
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
		record_latency(committed - e->first_event_ms);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(tmp);
	new_buffer();
}

/*
 * manage_conns connects what needs connecting, replaces old and silent
 * connections, and retires replaced ones once their successor has data.
 */
static void
manage_conns(void)
{
	int64		now = md_now_ms();

	for (int i = 0; i < nconns; i++)
	{
		Conn	   *c = &conns[i];

		if (!c->in_use)
			continue;
		if (c->wsi == NULL && !c->connecting && c->desired != NIL && now >= c->next_attempt_ms)
		{
			conn_connect(c);
			continue;
		}
		if (c->open && c->repair_on_open)
		{
			c->repair_on_open = false;
			repair_holes(c, false, 0);

			/*
			 * Once more when the subscriptions are surely in place and a
			 * candle that closed while they were being made is final: its
			 * closing event may have been sent before we subscribed.
			 */
			arm_check(c, now, SECOND_REPAIR_MS);
		}
		if (c->open && c->second_repair_at != 0 && now >= c->second_repair_at)
		{
			c->second_repair_at = 0;
			repair_holes(c, true, c->repair_as_of);
		}
		if (c->open && now - c->last_rx_ms > mdfeed_stream_silence_s * INT64CONST(1000))
		{
			elog(LOG, "mdfeed stream connection %d silent for %d s: reconnecting", c->id,
				 mdfeed_stream_silence_s);
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			c->last_rx_ms = now;
			continue;
		}
		if (c->open && !c->retiring && c->successor < 0 &&
			now - c->connected_at > mdfeed_stream_max_age_s * INT64CONST(1000))
		{
			Conn	   *s = new_conn();

			if (s != NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(conn_ctx);
				ListCell   *lc;

				foreach(lc, c->desired)
					s->desired = lappend(s->desired, pstrdup(lfirst(lc)));
				MemoryContextSwitchTo(old);
				s->next_attempt_ms = 0;
				/* its predecessor streams until it does: there is no hole */
				s->repair_on_open = false;
				c->successor = s - conns;
				elog(LOG, "mdfeed stream connection %d is %d s old: opening connection %d to replace it",
					 c->id, (int) ((now - c->connected_at) / 1000), s->id);
			}
		}
		if (c->successor >= 0 && !c->retiring)
		{
			Conn	   *s = &conns[c->successor];

			/*
			 * Only once the successor streams, and the exchange has answered
			 * all its SUBSCRIBEs (it carries every stream), is the old one
			 * stopped, so that no close falls between the two.  A reply
			 * that never comes holds the old one for REPLY_WAIT_MS at most.
			 */
			if (s->in_use && s->open && s->got_data && s->to_sub == NIL &&
				(s->awaiting_replies == 0 || now - s->last_sent_ms > REPLY_WAIT_MS))
			{
				c->retiring = true;
				c->successor = -1;
				lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			}
		}
		if (c->open && (c->to_sub != NIL || c->to_unsub != NIL) && rate_allows(c, now))
			lws_callback_on_writable(c->wsi);
	}
}

static void
publish_stats(void)
{
	int64		p50 = -1,
				p99 = -1;

	if (nlatencies > 0)
	{
		int64	   *copy = palloc(sizeof(int64) * nlatencies);

		memcpy(copy, latencies, sizeof(int64) * nlatencies);
		qsort(copy, nlatencies, sizeof(int64), cmp_int64);
		p50 = copy[nlatencies / 2];
		p99 = copy[Min(nlatencies - 1, (int) (nlatencies * 0.99))];
		pfree(copy);
	}
	SpinLockAcquire(&md_shared->mutex);
	md_my_slot->messages = frames_total;
	md_my_slot->malformed = frames_malformed;
	md_my_slot->reconnects = reconnects;
	md_my_slot->latency_p50_ms = p50;
	md_my_slot->latency_p99_ms = p99;
	md_my_slot->last_message_at = frames_total > 0 ? GetCurrentTimestamp() : 0;
	md_my_slot->connections = 0;
	for (int i = 0; i < nconns; i++)
		if (conns[i].in_use && conns[i].open)
			md_my_slot->connections++;
	SpinLockRelease(&md_shared->mutex);
}

static void
stream_on_exit(int code, Datum arg)
{
	if (lws_ctx != NULL)
	{
		struct lws_context *ctx = lws_ctx;

		lws_ctx = NULL;
		nconns = 0;				/* callbacks during destroy find no connection */
		lws_context_destroy(ctx);
	}
}

/*
 * mdfeed_stream_main is the entry point of the stream worker.
 */
void
mdfeed_stream_main(Datum main_arg)
{
	struct lws_context_creation_info info;
	volatile int64 next_flush;
	volatile int64 next_refresh = 0;
	volatile int64 next_stats = 0;
	volatile int64 last_frames = -1;

	md_worker_init("mdfeed stream worker");


	conn_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream connections", ALLOCSET_DEFAULT_SIZES);
	frame_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream frame", ALLOCSET_DEFAULT_SIZES);
	buf_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream buffer", ALLOCSET_DEFAULT_SIZES);
	new_buffer();

	nconns = 64;
	conns = MemoryContextAllocZero(TopMemoryContext, sizeof(Conn) * nconns);
	for (int i = 0; i < nconns; i++)
		conns[i].id = i + 1;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.fd_limit_per_thread = 2 * nconns + 8;
	info.connect_timeout_secs = 10;
	info.timeout_secs = 20;
	lws_ctx = lws_create_context(&info);
	if (lws_ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create a libwebsockets context")));
	before_shmem_exit(stream_on_exit, (Datum) 0);
	lws_sul_schedule(lws_ctx, 0, &tick_sul, tick, TICK_US);
	md_slot_set_state("streaming");

	loop_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream loop", ALLOCSET_DEFAULT_SIZES);
	next_flush = md_now_ms() + mdfeed_stream_flush_ms;
	for (;;)
	{
		int64		now;

		MemoryContextSwitchTo(loop_ctx);
		MemoryContextReset(loop_ctx);
		lws_service(lws_ctx, 0);

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
			if (now >= next_flush)
			{
				next_flush = now + mdfeed_stream_flush_ms;
				flush();
			}
			if (now >= next_refresh)
			{
				List	   *want;

				next_refresh = now + DESIRED_REFRESH_MS;
				want = desired_streams();
				apply_desired(want);
			}
			manage_conns();
		}
		PG_CATCH();
		{
			/*
			 * A failed flush loses only forming updates and closed candles
			 * the gap watchdog will repair; report it and go on streaming.
			 */
			(void) md_worker_recover(loop_ctx);
			new_buffer();
		}
		PG_END_TRY();
		if (now >= next_stats || frames_total - last_frames > 10000)
		{
			publish_stats();
			last_frames = frames_total;
			next_stats = now + 1000;
		}
	}
}
