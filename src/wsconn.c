/*-------------------------------------------------------------------------
 *
 * wsconn.c
 *	  The stream worker's WebSocket connections to one exchange: the pool
 *	  and the states of its connections, the libwebsockets glue, and the
 *	  pacing of what the client sends.
 *
 * One libwebsockets context holds every connection.  Each connection is an
 * adapter session (exchange.h) on one socket, and carries at most
 * md_ws_keys_per_connection() keys; the adapter speaks the protocol, this
 * file decides when.  A connection moves through MdWsState:
 *
 *	IDLE -> WAITING_RETRY -> CONNECTING -> OPEN -> RETIRING -> IDLE
 *
 * and from CONNECTING or OPEN back to WAITING_RETRY when it is lost, to be
 * connected again with capped, jittered backoff.  One silent for
 * mdfeed.stream_silence_timeout is taken for dead.  One near the
 * exchange's lifetime limit, or opened from another local address than
 * mdfeed.source_address names now, is replaced by a successor carrying the
 * same keys, and is retired only once the successor has data and the exchange
 * has answered its subscriptions, so that no candle falls between the two.
 *
 * Pacing: the exchange limits the messages a client sends a second; a
 * connection sends at most half of that (the ring sent_at), which leaves
 * room for what the adapter sends unasked (pongs, heartbeats: its outbox,
 * always written first).  An (un)subscribe message is built only when it
 * can go out, so a change of the tracked set never queues a backlog.
 *
 * Nothing inside a libwebsockets callback may raise an error: a longjmp out
 * of libwebsockets would leave it broken.  The callbacks allocate only in
 * the worker's own contexts, log at most, and leave everything that touches
 * the database to md_ws_manage, which the worker loop calls between
 * lws_service() calls; libwebsockets 4.1 as Debian builds it has no
 * external poll support, and lws_service() ignores its timeout, so a 50 ms
 * lws_sul timer bounds each call.
 *
 * After a connection was down (or this worker started), the repair
 * callback is asked to fill its keys' holes over REST; and once its
 * subscriptions are in place, to check the newest closed candle of each, in
 * case a close went out before a subscription took effect.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libwebsockets.h>

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "common.h"
#include "shard.h"
#include "shmem.h"
#include "wsconn.h"

#define MAX_CONNS 64
#define TICK_US (50 * LWS_US_PER_MS)
/* the longest ring of send times: a limit of 64 client messages a second */
#define MAX_MSGS_PER_SEC 32
#define RECONNECT_MIN_MS 500
#define RECONNECT_MAX_MS 30000
#define MAX_FRAME_BYTES (4 * 1024 * 1024)
/*
 * what one lws_service() call reads of a connection at most (lws's default
 * is 4 kB, a dozen frames): the batch the worker writes after the call
 */
#define READ_CHUNK (256 * 1024)
/* check the newest closed candles this long after a SUBSCRIBE was sent */
#define SECOND_REPAIR_MS 5000
/* and this long after the exchange has answered the last SUBSCRIBE */
#define ANSWERED_REPAIR_MS 2000
/* a reply this late is taken as lost */
#define REPLY_WAIT_MS 10000
/* a connection that lived this long was healthy: reset its backoff */
#define HEALTHY_MS 60000

typedef struct WsConn
{
	int			id;				/* 1.., for log lines */
	MdWsState	state;
	struct lws *wsi;
	MdStreamSession *sess;		/* while CONNECTING, OPEN or RETIRING */
	int			successor;		/* index of the replacement, or -1 */
	int64		connected_at;	/* when it was established, 0 if not yet */
	int64		last_rx_ms;
	int64		next_attempt_ms;
	int64		backoff_ms;
	bool		got_data;		/* a kline arrived on this connection */
	bool		close_logged;	/* the adapter's close request was acted on */
	char		source[64];		/* mdfeed.source_address it connected from */

	/* keys (interned) it should carry, and what to (un)subscribe */
	List	   *keys;
	List	   *url_keys;		/* those the URL carried */
	List	   *to_sub;
	List	   *to_unsub;

	/* pacing and replies */
	int64		sent_at[MAX_MSGS_PER_SEC];	/* ring of send times */
	int			sent_pos;
	int			awaiting_replies;	/* (un)subscribe messages not yet
									 * answered */
	int64		last_sent_ms;	/* when the last of them was sent */

	/* repairs */
	bool		repair_on_open; /* repair every key when established */
	int64		check_at;		/* check the newest closed candles at this
								 * time, or 0 */
	int64		check_as_of;	/* those closed by this time */

	StringInfoData rx;			/* a message arriving in fragments */
} WsConn;

/* the interned keys: the hash key is the symbol and the interval's index */
typedef struct KeyEntry
{
	char		symbol[48];
	int			iv;
	MdStreamKey key;
} KeyEntry;

static const MdExchange *ex = NULL;
static const MdStreamOps *ops = NULL;
static MdWsKlineFn kline_fn = NULL;
static struct lws_context *lws_ctx = NULL;
static lws_sorted_usec_list_t tick_sul;
static WsConn conns[MAX_CONNS];
static int	nconns = 0;
static MemoryContext conn_ctx = NULL;
static MemoryContext frame_ctx = NULL;
static HTAB *key_table = NULL;
static int64 frames_total = 0;
static int64 frames_malformed = 0;
static int64 reconnects = 0;

static void conn_kill(WsConn *c);

/*
 * msgs_per_sec is how many messages a connection sends a second at most:
 * half of what the exchange allows.
 */
static int
msgs_per_sec(void)
{
	return Min(Max(ops->client_msgs_per_sec / 2, 1), MAX_MSGS_PER_SEC);
}

/*
 * keys_per_connection is the most keys one connection carries: the
 * exchange's limit, or mdfeed.streams_per_connection if lower.
 */
static int
keys_per_connection(void)
{
	if (ops->max_keys_per_connection > 0)
		return Min(mdfeed_streams_per_connection, ops->max_keys_per_connection);
	return mdfeed_streams_per_connection;
}

/*
 * max_age_ms is the age at which a connection is replaced: at
 * mdfeed.stream_max_connection_age, and before the exchange's own limit
 * (23 hours of Binance's 24).
 */
static int64
max_age_ms(void)
{
	int64		age = mdfeed_stream_max_age_s * INT64CONST(1000);

	if (ops->max_connection_age_ms > 0)
		age = Min(age, ops->max_connection_age_ms - ops->max_connection_age_ms / 24);
	return age;
}

/*
 * md_ws_key returns the one key of a (symbol, interval) for the life of
 * the worker, or NULL if the symbol is too long to be one.
 */
const MdStreamKey *
md_ws_key(const char *symbol, const MdInterval *iv)
{
	KeyEntry	probe;
	KeyEntry   *e;
	bool		found;

	if (strlen(symbol) >= sizeof(probe.symbol))
		return NULL;
	memset(&probe, 0, sizeof(probe));
	strcpy(probe.symbol, symbol);
	probe.iv = iv - md_intervals;
	e = hash_search(key_table, &probe, HASH_ENTER, &found);
	if (!found)
	{
		e->key.symbol = e->symbol;
		e->key.iv = iv;
	}
	return &e->key;
}

/*
 * conn_of finds the connection of a wsi, by the index it was given.
 */
static WsConn *
conn_of(struct lws *wsi)
{
	intptr_t	idx = (intptr_t) lws_get_opaque_user_data(wsi);

	if (idx <= 0 || idx > nconns)
		return NULL;
	return &conns[idx - 1];
}

/*
 * rate_allows says whether the connection may send one more message now:
 * the oldest of its last msgs_per_sec() sends must be a second old.
 */
static bool
rate_allows(WsConn *c, int64 now)
{
	return now - c->sent_at[c->sent_pos] >= 1000;
}

/*
 * note_sent records a message sent, for the pacing.
 */
static void
note_sent(WsConn *c, int64 now)
{
	c->sent_at[c->sent_pos] = now;
	c->sent_pos = (c->sent_pos + 1) % msgs_per_sec();
}

/*
 * arm_check schedules, delay_ms from now, the check that every key of the
 * connection has stored the newest candle closed by as_of_ms: a close that
 * went out before a subscription took effect never reaches the stream.
 * Only the closes up to the moment the subscriptions were known to be in
 * place count, so that one the stream did hear but has not written yet is
 * not taken for a hole.
 */
static void
arm_check(WsConn *c, int64 as_of_ms, int64 delay_ms)
{
	c->check_as_of = as_of_ms;
	c->check_at = md_now_ms() + delay_ms;
}

/*
 * session_ready says whether the adapter takes subscriptions on the
 * connection now.
 */
static bool
session_ready(WsConn *c)
{
	return c->state == MD_WS_OPEN && c->sess != NULL &&
		(ops->ready == NULL || ops->ready(c->sess));
}

/*
 * has_output says whether the connection has something to send.
 */
static bool
has_output(WsConn *c)
{
	if (c->sess == NULL || c->wsi == NULL)
		return false;
	return c->sess->outbox != NIL ||
		((c->to_sub != NIL || c->to_unsub != NIL) && session_ready(c));
}

/*
 * after_adapter acts on what an adapter call left in the session: messages
 * to send, or a request to drop the connection.  Safe inside callbacks.
 */
static void
after_adapter(WsConn *c)
{
	if (c->sess == NULL || c->wsi == NULL)
		return;
	if (c->sess->notice != NULL)
	{
		/* logged, and shown in mdfeed.workers until something replaces it */
		elog(LOG, "mdfeed stream connection %d: %s", c->id, c->sess->notice);
		md_slot_set_error(c->sess->notice);
		pfree((char *) c->sess->notice);
		c->sess->notice = NULL;
	}
	if (c->sess->close_reason != NULL && !c->close_logged)
	{
		c->close_logged = true;
		elog(LOG, "mdfeed stream connection %d: %s", c->id, c->sess->close_reason);
		conn_kill(c);
		return;
	}
	/* messages to send, or the session just became ready for subscriptions */
	if (has_output(c))
		lws_callback_on_writable(c->wsi);
}

/*
 * write_text writes one text message; false if the socket took less.
 */
static bool
write_text(struct lws *wsi, const char *msg, size_t len)
{
	unsigned char *buf = MemoryContextAlloc(frame_ctx, LWS_PRE + len);
	int			written;

	memcpy(buf + LWS_PRE, msg, len);
	written = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
	pfree(buf);
	return written >= (int) len;
}

/*
 * send_next writes one message: the oldest of the adapter's outbox, or a
 * new UNSUBSCRIBE or SUBSCRIBE (unsubscriptions first) with as many keys
 * as a message may carry, if the pacing allows.  Called from the WRITEABLE
 * callback, which may write once; asks for another while more is to send.
 */
static int
send_next(WsConn *c, struct lws *wsi)
{
	int64		now = md_now_ms();
	MdStreamSession *sess = c->sess;
	StringInfo	msg;
	bool		ok;

	if (sess == NULL)
		return -1;
	if (sess->outbox == NIL && session_ready(c) &&
		(c->to_unsub != NIL || c->to_sub != NIL) && rate_allows(c, now))
	{
		bool		subscribe = c->to_unsub == NIL;
		List	  **which = subscribe ? &c->to_sub : &c->to_unsub;
		int			max = Max(ops->max_keys_per_message, 1);
		MdStreamKey *keys = MemoryContextAlloc(frame_ctx, sizeof(MdStreamKey) * max);
		int			n = 0;
		int			queued = list_length(sess->outbox);
		MemoryContext old = MemoryContextSwitchTo(conn_ctx);

		while (*which != NIL && n < max)
		{
			keys[n++] = *(const MdStreamKey *) linitial(*which);
			*which = list_delete_first(*which);
		}
		MemoryContextSwitchTo(old);
		old = MemoryContextSwitchTo(frame_ctx);
		if (subscribe)
			ops->subscribe(sess, keys, n);
		else
			ops->unsubscribe(sess, keys, n);
		MemoryContextSwitchTo(old);
		MemoryContextReset(frame_ctx);
		if (ops->replies_to_subscribe)
			c->awaiting_replies += list_length(sess->outbox) - queued;
		c->last_sent_ms = now;

		/*
		 * A key added to a connection already open (a symbol whitelisted, a
		 * new interval) may miss the close of its forming candle just as a
		 * new connection's keys may: check its newest closed candle once
		 * the subscription is in place (when the exchange answers, or after
		 * this long if the answer is lost).
		 */
		if (subscribe)
			arm_check(c, now, SECOND_REPAIR_MS);
	}
	if (sess->outbox == NIL)
		return 0;				/* nothing, or the pacing says later */

	msg = linitial(sess->outbox);
	sess->outbox = list_delete_first(sess->outbox);
	ok = write_text(wsi, msg->data, msg->len);
	pfree(msg->data);
	pfree(msg);
	note_sent(c, now);
	if (!ok)
		return -1;
	if (has_output(c))
		lws_callback_on_writable(wsi);
	return 0;
}

/*
 * handle_frame gives one complete message to the adapter.  Called inside
 * an lws callback: it must not raise an error.
 */
static void
handle_frame(WsConn *c, const char *data, size_t len)
{
	MemoryContext old = MemoryContextSwitchTo(frame_ctx);
	MdStreamKlines k = {NULL, 0};
	char	   *err = NULL;

	frames_total++;
	switch (ops->frame(c->sess, data, len, &k, &err))
	{
		case MD_FRAME_KLINE:
			for (int i = 0; i < k.n; i++)
				if (!kline_fn(&k.k[i]))
					frames_malformed++;
			c->got_data = true;
			break;
		case MD_FRAME_REPLY:
			/* answered in order: the subscriptions are now in effect */
			if (c->awaiting_replies > 0 && --c->awaiting_replies == 0)
				arm_check(c, md_now_ms(), ANSWERED_REPAIR_MS);
			if (err != NULL)
				elog(LOG, "mdfeed stream connection %d: %s refused a request: %s",
					 c->id, ex->name, err);
			break;
		case MD_FRAME_OTHER:
			break;
		case MD_FRAME_MALFORMED:
			frames_malformed++;
			elog(DEBUG1, "mdfeed stream connection %d: malformed frame skipped: %s",
				 c->id, err ? err : "?");
			break;
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(frame_ctx);
	after_adapter(c);
}

/*
 * end_session frees what the connection's session held.
 */
static void
end_session(WsConn *c)
{
	if (c->sess != NULL)
		MemoryContextDelete(c->sess->cxt);
	c->sess = NULL;
	c->url_keys = NIL;			/* was in the session's context */
}

/*
 * conn_lost takes a connection that closed or failed to WAITING_RETRY, to
 * be connected again after a backoff, or to IDLE if it is not wanted any
 * more.  Called inside lws callbacks.
 */
static void
conn_lost(WsConn *c, const char *why)
{
	int64		now = md_now_ms();
	int64		lived = c->connected_at != 0 ? now - c->connected_at : 0;
	bool		retiring = c->state == MD_WS_RETIRING;

	elog(retiring ? DEBUG1 : LOG, "mdfeed stream connection %d %s: %s",
		 c->id, c->connected_at != 0 ? "closed" : "failed", why);
	c->wsi = NULL;
	c->connected_at = 0;
	end_session(c);
	list_free(c->to_sub);
	list_free(c->to_unsub);
	c->to_sub = c->to_unsub = NIL;
	c->awaiting_replies = 0;
	resetStringInfo(&c->rx);
	if (retiring || c->keys == NIL)
	{
		/* replaced by its successor, or no longer needed */
		list_free(c->keys);
		c->keys = NIL;
		c->state = MD_WS_IDLE;
		return;
	}
	reconnects++;
	c->state = MD_WS_WAITING_RETRY;
	c->repair_on_open = true;
	if (lived > HEALTHY_MS)
		c->backoff_ms = RECONNECT_MIN_MS;
	else
		c->backoff_ms = Min(Max(c->backoff_ms * 2, RECONNECT_MIN_MS), RECONNECT_MAX_MS);
	c->next_attempt_ms = now + c->backoff_ms / 2 +
		(int64) (pg_prng_double(&pg_global_prng_state) * (c->backoff_ms / 2));
	md_slot_set_error(why);
}

/*
 * conn_kill closes a connection from our side; libwebsockets calls back
 * with its end.
 */
static void
conn_kill(WsConn *c)
{
	if (c->wsi != NULL)
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/*
 * established starts an open connection's subscriptions: the keys its URL
 * did not carry, less those it should no longer carry.
 */
static void
established(WsConn *c, struct lws *wsi)
{
	MemoryContext old = MemoryContextSwitchTo(conn_ctx);
	ListCell   *lc;

	c->state = MD_WS_OPEN;
	c->wsi = wsi;
	c->connected_at = c->last_rx_ms = md_now_ms();
	resetStringInfo(&c->rx);
	list_free(c->to_sub);
	list_free(c->to_unsub);
	c->to_sub = c->to_unsub = NIL;
	c->awaiting_replies = 0;
	foreach(lc, c->keys)
	{
		if (!list_member_ptr(c->url_keys, lfirst(lc)))
			c->to_sub = lappend(c->to_sub, lfirst(lc));
	}
	foreach(lc, c->url_keys)
	{
		if (!list_member_ptr(c->keys, lfirst(lc)))
			c->to_unsub = lappend(c->to_unsub, lfirst(lc));
	}
	MemoryContextSwitchTo(old);
	if (has_output(c))
		lws_callback_on_writable(wsi);
}

/*
 * ws_callback is libwebsockets' view of our connections.  No errors may be
 * raised in here.
 */
static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	WsConn	   *c = conn_of(wsi);

	/* a callback of a wsi the connection has already left behind */
	if (c != NULL && c->wsi != NULL && c->wsi != wsi)
		c = NULL;

	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			if (c == NULL || c->state != MD_WS_CONNECTING)
				return -1;
			established(c, wsi);
			break;

		case LWS_CALLBACK_CLIENT_RECEIVE:
			if (c == NULL || c->sess == NULL)
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
			return send_next(c, wsi);

		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			if (c != NULL && c->state == MD_WS_CONNECTING)
				conn_lost(c, in ? (const char *) in : "connection error");
			else if (c != NULL && c->state == MD_WS_RETIRING && c->connected_at == 0)
				conn_lost(c, in ? (const char *) in : "connection error");
			break;

		case LWS_CALLBACK_CLIENT_CLOSED:
		case LWS_CALLBACK_WSI_DESTROY:
			if (c != NULL && (c->state == MD_WS_CONNECTING || c->state == MD_WS_OPEN ||
							  c->state == MD_WS_RETIRING))
				conn_lost(c, reason == LWS_CALLBACK_CLIENT_CLOSED ? "closed" :
						  "connection destroyed");
			break;

		default:
			break;
	}
	return 0;
}

static const struct lws_protocols protocols[] = {
	{"mdfeed-stream", ws_callback, 0, READ_CHUNK, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

/*
 * lws_log_emit sends libwebsockets' log lines to the server log.
 */
static void
lws_log_emit(int level, const char *line)
{
	int			len = strlen(line);

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	elog(level == LLL_ERR ? LOG : DEBUG1, "libwebsockets: %.*s", len, line);
}

/*
 * tick does nothing but fire: that makes lws_service() return.
 */
static void
tick(lws_sorted_usec_list_t *sul)
{
	lws_sul_schedule(lws_ctx, 0, &tick_sul, tick, TICK_US);
}

/*
 * new_conn takes an IDLE slot, WAITING_RETRY to connect at once, or
 * returns NULL if there is none.
 */
static WsConn *
new_conn(void)
{
	for (int i = 0; i < nconns; i++)
		if (conns[i].state == MD_WS_IDLE)
		{
			WsConn	   *c = &conns[i];
			StringInfoData rx = c->rx;
			int			id = c->id;

			memset(c, 0, sizeof(*c));
			c->id = id;
			c->rx = rx;
			resetStringInfo(&c->rx);
			c->state = MD_WS_WAITING_RETRY;
			c->successor = -1;
			c->backoff_ms = RECONNECT_MIN_MS;
			c->next_attempt_ms = 0;

			/*
			 * Whatever closed before this connection first delivers data
			 * (this worker just started: server start, crash restart) is
			 * repaired over REST; the pairs' sync jobs are deduplicated.
			 */
			c->repair_on_open = true;
			return c;
		}
	return NULL;
}

/*
 * conn_connect opens a session and connects to the URL the adapter gives
 * for the connection's keys.
 */
static void
conn_connect(WsConn *c)
{
	struct lws_client_connect_info cci;
	MemoryContext scxt;
	MdStreamKey *keys;
	int			nkeys = list_length(c->keys);
	int			in_url = 0;
	char	   *url;
	const char *prot;
	const char *ads;
	const char *path;
	int			port;
	struct lws *wsi;
	MemoryContext old;
	int			i = 0;
	ListCell   *lc;

	if (c->keys == NIL)
		return;
	scxt = AllocSetContextCreate(conn_ctx, "mdfeed stream session", ALLOCSET_SMALL_SIZES);
	c->sess = md_stream_session_new(ex, scxt);
	c->sess->conn_id = c->id;
	keys = palloc(sizeof(MdStreamKey) * nkeys);
	foreach(lc, c->keys)
		keys[i++] = *(const MdStreamKey *) lfirst(lc);
	url = ops->open(c->sess, keys, nkeys, &in_url);
	if (url == NULL || lws_parse_uri(pstrdup(url), &prot, &ads, &port, &path) != 0)
	{
		md_slot_set_error(psprintf("cannot parse %s", ops->url_setting));
		end_session(c);
		c->next_attempt_ms = md_now_ms() + RECONNECT_MAX_MS;
		return;
	}
	old = MemoryContextSwitchTo(scxt);
	for (i = 0; i < in_url && i < nkeys; i++)
		c->url_keys = lappend(c->url_keys, list_nth(c->keys, i));
	MemoryContextSwitchTo(old);

	memset(&cci, 0, sizeof(cci));
	cci.context = lws_ctx;
	cci.address = ads;
	cci.port = port;
	cci.path = psprintf("/%s", path);
	cci.host = ads;
	cci.origin = ads;
	cci.ssl_connection = strcmp(prot, "wss") == 0 ? LCCSCF_USE_SSL : 0;
	cci.protocol = NULL;
	cci.local_protocol_name = "mdfeed-stream";
	cci.opaque_user_data = (void *) (intptr_t) (c - conns + 1);
	/* the local address this server's streams come from (mdfeed.source_address) */
	if (md_source_address() != NULL)
		cci.iface = MemoryContextStrdup(scxt, md_source_address());
	strlcpy(c->source, md_source_address() ? md_source_address() : "", sizeof(c->source));
	c->state = MD_WS_CONNECTING;
	c->wsi = NULL;
	c->connected_at = 0;
	c->got_data = false;
	c->close_logged = false;
	wsi = lws_client_connect_via_info(&cci);
	if (wsi == NULL)
	{
		/* failed at once (the callback may have said so already) */
		if (c->state == MD_WS_CONNECTING)
		{
			end_session(c);
			c->state = MD_WS_WAITING_RETRY;
		}
		c->wsi = NULL;
		c->backoff_ms = Min(Max(c->backoff_ms * 2, RECONNECT_MIN_MS), RECONNECT_MAX_MS);
		c->next_attempt_ms = md_now_ms() + c->backoff_ms;
	}
	else if (c->state == MD_WS_CONNECTING || c->state == MD_WS_OPEN)
		c->wsi = wsi;
}

/*
 * md_ws_init sets up the pool of connections to an exchange; on_kline
 * takes every kline event.
 */
void
md_ws_init(const MdExchange *exchange, MdWsKlineFn on_kline)
{
	struct lws_context_creation_info info;
	HASHCTL		hctl;

	ex = exchange;
	ops = exchange->stream;
	kline_fn = on_kline;
	conn_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream connections", ALLOCSET_DEFAULT_SIZES);
	frame_ctx = AllocSetContextCreate(TopMemoryContext, "mdfeed stream frame", ALLOCSET_DEFAULT_SIZES);

	memset(&hctl, 0, sizeof(hctl));
	hctl.keysize = offsetof(KeyEntry, key);
	hctl.entrysize = sizeof(KeyEntry);
	hctl.hcxt = conn_ctx;
	key_table = hash_create("mdfeed stream keys", 1024, &hctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	memset(conns, 0, sizeof(conns));
	for (int i = 0; i < MAX_CONNS; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(conn_ctx);

		conns[i].id = i + 1;
		conns[i].successor = -1;
		initStringInfo(&conns[i].rx);
		MemoryContextSwitchTo(old);
	}
	nconns = MAX_CONNS;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.fd_limit_per_thread = 2 * MAX_CONNS + 8;
	/* a read takes up to this much of a connection's frames at once */
	info.pt_serv_buf_size = READ_CHUNK;
	info.connect_timeout_secs = 10;
	info.timeout_secs = 20;
	lws_ctx = lws_create_context(&info);
	if (lws_ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not create a libwebsockets context")));
	lws_sul_schedule(lws_ctx, 0, &tick_sul, tick, TICK_US);
}

/*
 * md_ws_shutdown destroys the libwebsockets context, and with it every
 * connection; the callbacks it makes on the way find no connection.
 */
void
md_ws_shutdown(void)
{
	if (lws_ctx != NULL)
	{
		struct lws_context *ctx = lws_ctx;

		lws_ctx = NULL;
		nconns = 0;
		lws_context_destroy(ctx);
	}
}

/*
 * md_ws_service lets libwebsockets do what is due: read, write, connect,
 * time out.  It returns within 50 ms.
 */
void
md_ws_service(void)
{
	lws_service(lws_ctx, 0);
}

/*
 * md_ws_set_keys turns the keys wanted (interned, md_ws_key) into
 * subscriptions: keys no longer wanted are unsubscribed, new ones go to a
 * connection with room (a new connection if none has), and a connection
 * left with nothing is closed.  It returns how many of the keys wanted the
 * connections carry (a key on a connection and its successor counts once).
 */
int
md_ws_set_keys(List *want)
{
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(conn_ctx);
	int			per_conn = keys_per_connection();
	int			total = 0;

	for (int i = 0; i < nconns; i++)
	{
		WsConn	   *c = &conns[i];
		List	   *keep = NIL;

		if (c->state == MD_WS_IDLE || c->state == MD_WS_RETIRING)
			continue;
		foreach(lc, c->keys)
		{
			void	   *k = lfirst(lc);

			if (list_member_ptr(want, k))
				keep = lappend(keep, k);
			else
			{
				c->to_sub = list_delete_ptr(c->to_sub, k);
				if (c->state == MD_WS_OPEN)
					c->to_unsub = lappend(c->to_unsub, k);
			}
		}
		list_free(c->keys);
		c->keys = keep;
		if (keep == NIL && c->wsi != NULL)
		{
			c->state = MD_WS_RETIRING;
			conn_kill(c);
		}
		else if (keep == NIL)
		{
			end_session(c);
			c->state = MD_WS_IDLE;
		}
	}

	foreach(lc, want)
	{
		void	   *k = lfirst(lc);
		bool		have = false;
		WsConn	   *target = NULL;

		for (int i = 0; i < nconns && !have; i++)
			if (conns[i].state != MD_WS_IDLE && conns[i].state != MD_WS_RETIRING &&
				list_member_ptr(conns[i].keys, k))
				have = true;
		if (have)
		{
			total++;
			continue;
		}
		for (int i = 0; i < nconns && target == NULL; i++)
			if (conns[i].state != MD_WS_IDLE && conns[i].state != MD_WS_RETIRING &&
				list_length(conns[i].keys) < per_conn)
				target = &conns[i];
		if (target == NULL)
		{
			target = new_conn();
			if (target == NULL)
			{
				md_slot_set_error("too many connections: raise mdfeed.streams_per_connection");
				break;
			}
		}
		target->keys = lappend(target->keys, k);
		if (target->state == MD_WS_OPEN)
			target->to_sub = lappend(target->to_sub, k);
		total++;
	}
	MemoryContextSwitchTo(old);

	for (int i = 0; i < nconns; i++)
		if (has_output(&conns[i]))
			lws_callback_on_writable(conns[i].wsi);
	return total;
}

/*
 * start_successor opens a connection to replace one that is getting old,
 * carrying the same keys.
 */
static void
start_successor(WsConn *c, int64 now)
{
	WsConn	   *s = new_conn();
	MemoryContext old;

	if (s == NULL)
		return;
	old = MemoryContextSwitchTo(conn_ctx);
	s->keys = list_copy(c->keys);	/* the keys are interned: share them */
	MemoryContextSwitchTo(old);
	/* its predecessor streams until it does: there is no hole */
	s->repair_on_open = false;
	c->successor = s - conns;
	elog(LOG, "mdfeed stream connection %d is %d s old: opening connection %d to replace it",
		 c->id, (int) ((now - c->connected_at) / 1000), s->id);
}

/*
 * md_ws_manage connects what needs connecting, has the holes of new and
 * newly subscribed connections repaired, runs the adapter's timer, replaces
 * old and silent connections, and retires replaced ones once their
 * successor has data.  Called between lws_service() calls, where errors may
 * be raised.
 */
void
md_ws_manage(MdWsRepairFn repair)
{
	int64		now = md_now_ms();

	for (int i = 0; i < nconns; i++)
	{
		WsConn	   *c = &conns[i];

		switch (c->state)
		{
			case MD_WS_IDLE:
			case MD_WS_CONNECTING:
				continue;
			case MD_WS_WAITING_RETRY:
				if (c->keys != NIL && now >= c->next_attempt_ms)
					conn_connect(c);
				continue;
			case MD_WS_OPEN:
			case MD_WS_RETIRING:
				break;
		}

		if (c->state == MD_WS_OPEN && c->repair_on_open)
		{
			c->repair_on_open = false;
			repair(c->keys, false, 0);

			/*
			 * Once more when the subscriptions are surely in place and a
			 * candle that closed while they were being made is final: its
			 * closing event may have been sent before we subscribed.
			 */
			arm_check(c, now, SECOND_REPAIR_MS);
		}
		if (c->state == MD_WS_OPEN && c->check_at != 0 && now >= c->check_at)
		{
			c->check_at = 0;
			repair(c->keys, true, c->check_as_of);
		}
		if (c->sess != NULL && ops->tick != NULL && c->state == MD_WS_OPEN)
		{
			MemoryContext old = MemoryContextSwitchTo(frame_ctx);

			ops->tick(c->sess, now);
			MemoryContextSwitchTo(old);
			MemoryContextReset(frame_ctx);
			after_adapter(c);
		}
		if (now - c->last_rx_ms > mdfeed_stream_silence_s * INT64CONST(1000))
		{
			elog(LOG, "mdfeed stream connection %d silent for %d s: reconnecting", c->id,
				 mdfeed_stream_silence_s);
			conn_kill(c);
			c->last_rx_ms = now;
			continue;
		}
		/* old, or from an address mdfeed.source_address no longer names */
		if (c->state == MD_WS_OPEN && c->successor < 0 &&
			(now - c->connected_at > max_age_ms() ||
			 strcmp(c->source, md_source_address() ? md_source_address() : "") != 0))
			start_successor(c, now);
		if (c->state == MD_WS_OPEN && c->successor >= 0)
		{
			WsConn	   *s = &conns[c->successor];

			/*
			 * Only once the successor streams, and the exchange has answered
			 * all its subscriptions (it carries every key), is the old one
			 * stopped, so that no close falls between the two.  A reply
			 * that never comes holds the old one for REPLY_WAIT_MS at most.
			 */
			if (s->state == MD_WS_OPEN && s->got_data && s->to_sub == NIL &&
				(s->awaiting_replies == 0 || now - s->last_sent_ms > REPLY_WAIT_MS))
			{
				c->state = MD_WS_RETIRING;
				c->successor = -1;
				conn_kill(c);
			}
			else if (s->state == MD_WS_IDLE)
				c->successor = -1;	/* it was not needed after all */
		}
		if (c->state == MD_WS_OPEN && has_output(c) && rate_allows(c, now))
			lws_callback_on_writable(c->wsi);
	}
}

/*
 * md_ws_stats reports the frames received, the malformed ones, the
 * reconnects, and the connections open now.
 */
void
md_ws_stats(int64 *frames, int64 *malformed, int64 *reconnects_out, int *connections)
{
	*frames = frames_total;
	*malformed = frames_malformed;
	*reconnects_out = reconnects;
	*connections = 0;
	for (int i = 0; i < nconns; i++)
		if (conns[i].connected_at != 0 &&
			(conns[i].state == MD_WS_OPEN || conns[i].state == MD_WS_RETIRING))
			(*connections)++;
}
