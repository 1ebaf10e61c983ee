/*-------------------------------------------------------------------------
 *
 * coindcx.c
 *	  The CoinDCX adapters: USDT-margined perpetual futures (coindcx) and
 *	  spot markets (coindcx_spot), over REST and the socket.io stream.
 *
 * Both markets live behind the same hosts: candles on public.coindcx.com
 * (mdfeed.coindcx_public_url), instruments on api.coindcx.com
 * (mdfeed.coindcx_api_url), the stream on stream.coindcx.com.  They are two
 * adapters because their tables, intervals and shapes differ, and one
 * budget, because the limit is CoinDCX's per IP: coindcx_spot spends
 * coindcx's (MdExchange.budget_of).
 *
 * What differs from Binance, all of it here (../shared/exchange-notes.md,
 * section C, and test/fake_exchange/PROTOCOL.md give the sources):
 *	- pairs are CoinDCX's market_data names, B-BTC_USDT, I-BTC_INR;
 *	- futures candlesticks take from/to in seconds and answer times in
 *	  milliseconds, oldest first, with no cap on the rows; spot candles take
 *	  milliseconds and answer newest first, 1000 rows at most.  A page is
 *	  therefore always a window of at most limit bars (klines_windowed);
 *	- OHLCV arrive as JSON numbers, 3.1e-7 among them: each number's own
 *	  text is kept (md_json_get_number), never a double;
 *	- the answers carry no close time, no quote volume and no trade count:
 *	  the close time follows from the interval, the rest is NULL;
 *	- the stream is socket.io (socketio.c does the framing): joins are never
 *	  acknowledged and a wrong channel is silently accepted, so a channel
 *	  that stays silent is reported and joined again; event data is JSON
 *	  text inside JSON; futures bars have no close flag and times in
 *	  seconds; and the socket's last snapshot of a bar is not the final bar,
 *	  so the stream's bars are stored as forming and every closed bar is
 *	  made exact over REST (closes_final = false).
 *
 * Parsers never raise errors (see binance.c): garbage is false plus a
 * message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "common.h"
#include "decimal.h"
#include "exchange.h"
#include "http.h"
#include "json.h"
#include "socketio.h"

/* bars a futures page asks for: no cap was seen live (10,080 in one call) */
#define CDX_FUTURES_PAGE 2000
/* the spot endpoint's largest limit */
#define CDX_SPOT_PAGE 1000
/* more rows than this in one answer is garbage */
#define CDX_MAX_ROWS 20000
/* the longest channel name we make: pair, interval and suffix */
#define CDX_CHANNEL_LEN 80
/* CoinDCX's documented client keep-alive event, every 25 s */
#define CDX_APP_PING_MS 25000
/* a channel silent after this many rejoins waits at most this much longer */
#define CDX_MAX_SILENCE_FACTOR 16

/* the two limits: both hosts count a client's requests a minute apart */
enum
{
	CDX_MARKET_DATA,
	CDX_API
};


/* the settings naming the three hosts */
static const char *
cdx_public_url(void)
{
	return mdfeed_coindcx_public_url;
}

static const char *
cdx_api_url(void)
{
	return mdfeed_coindcx_api_url;
}

static int
cdx_futures_page_limit(int64 rows_wanted)
{
	return (int) Max(1, Min(rows_wanted, CDX_FUTURES_PAGE));
}

static int
cdx_spot_page_limit(int64 rows_wanted)
{
	return (int) Max(1, Min(rows_wanted, CDX_SPOT_PAGE));
}

/*
 * cdx_futures_klines_path asks for the bars opening in [start, end]: from
 * and to are whole seconds, both inclusive.  The candles runner gives a
 * window of at most limit bars (klines_windowed), so the answer has no more.
 */
static char *
cdx_futures_klines_path(const char *pair, const char *code, int64 start_ms, int64 end_ms, int limit)
{
	return psprintf("/market_data/candlesticks?pair=%s&from=" INT64_FORMAT "&to=" INT64_FORMAT
					"&resolution=%s&pcode=f",
					pair, (start_ms + 999) / 1000, end_ms / 1000, code);
}

/*
 * cdx_spot_klines_path asks for the bars opening in [start, end], both
 * inclusive and in ms: at most limit of them, the window being that long.
 */
static char *
cdx_spot_klines_path(const char *pair, const char *code, int64 start_ms, int64 end_ms, int limit)
{
	return psprintf("/market_data/candles?pair=%s&interval=%s&startTime=" INT64_FORMAT
					"&endTime=" INT64_FORMAT "&limit=%d",
					pair, code, start_ms, end_ms, limit);
}

/* the keys of a REST bar's decimals, in MdCandleField order (OHLCV only) */
static const char *const rest_keys[] = {"open", "high", "low", "close", "volume"};

/*
 * bar_times gives a bar its close time, from its interval: CoinDCX sends
 * none (or, on the futures socket, one in seconds).  A bar off the
 * interval's grid, one whose close the database cannot hold, or one whose
 * values cannot be a candle is garbage.
 */
static bool
bar_times(const MdInterval *iv, MdCandle *c, char **err)
{
	if (c->open_ms > MD_JSON_MAX_MS - INT64CONST(40) * 86400000 ||
		md_interval_floor(iv, c->open_ms) != c->open_ms)
	{
		*err = psprintf("a %s bar opening at " INT64_FORMAT " ms is off the interval's grid",
						iv->name, c->open_ms);
		return false;
	}
	c->close_ms = md_interval_next(iv, c->open_ms) - 1;
	if (!md_candle_consistent(c))
	{
		*err = pstrdup("its prices or volumes disagree (low above open or close, or high below)");
		return false;
	}
	return true;
}

/*
 * parse_bars reads an array of {open,high,low,volume,close,time} (by name:
 * the key order puts close after volume), in either order of time, into
 * rows ascending by open time.
 */
static bool
parse_bars(struct json_object *arr, const MdInterval *iv, MdCandle **rows, int *nrows, char **err)
{
	size_t		n = json_object_array_length(arr);
	MdCandle   *out;

	if (n > CDX_MAX_ROWS)
	{
		*err = psprintf("candles answer has %zu rows, more than %d", n, CDX_MAX_ROWS);
		return false;
	}
	out = palloc0(sizeof(MdCandle) * Max(n, 1));
	for (size_t i = 0; i < n; i++)
	{
		struct json_object *row = json_object_array_get_idx(arr, i);
		struct json_object *o;
		MdCandle   *c = &out[i];
		bool		ok;

		ok = row != NULL && json_object_is_type(row, json_type_object) &&
			json_object_object_get_ex(row, "time", &o) && md_json_get_ms(o, &c->open_ms);
		for (int f = 0; ok && f < lengthof(rest_keys); f++)
			ok = json_object_object_get_ex(row, rest_keys[f], &o) && md_json_get_number(o, &c->dec[f]);
		if (!ok)
		{
			*err = psprintf("candles row %zu is malformed", i);
			return false;
		}
		if (!bar_times(iv, c, err))
		{
			*err = psprintf("candles row %zu: %s", i, *err);
			return false;
		}
	}
	/* spot answers newest first: turn it round */
	if (n > 1 && out[0].open_ms > out[n - 1].open_ms)
	{
		for (size_t i = 0; i < n / 2; i++)
		{
			MdCandle	t = out[i];

			out[i] = out[n - 1 - i];
			out[n - 1 - i] = t;
		}
	}
	for (size_t i = 1; i < n; i++)
	{
		if (out[i].open_ms <= out[i - 1].open_ms)
		{
			*err = psprintf("candles row %zu is out of order", i);
			return false;
		}
	}
	*rows = out;
	*nrows = (int) n;
	return true;
}

/*
 * cdx_futures_parse_klines parses {"s":"ok","data":[bars]}.
 */
static bool
cdx_futures_parse_klines(const char *body, size_t len, const MdInterval *iv,
						 MdCandle **rows, int *nrows, char **err)
{
	struct json_object *root = md_json_parse(body, len, err);
	struct json_object *s,
			   *data;
	bool		ok;

	*rows = NULL;
	*nrows = 0;
	if (root == NULL)
		return false;
	if (!json_object_is_type(root, json_type_object) ||
		!json_object_object_get_ex(root, "s", &s) || md_json_get_cstring(s, 20) == NULL ||
		strcmp(json_object_get_string(s), "ok") != 0 ||
		!json_object_object_get_ex(root, "data", &data) ||
		!json_object_is_type(data, json_type_array))
	{
		*err = pstrdup("candlesticks answer is not {\"s\":\"ok\",\"data\":[...]}");
		json_object_put(root);
		return false;
	}
	ok = parse_bars(data, iv, rows, nrows, err);
	json_object_put(root);
	return ok;
}

/*
 * cdx_spot_parse_klines parses the bare array of spot candles.
 */
static bool
cdx_spot_parse_klines(const char *body, size_t len, const MdInterval *iv,
					  MdCandle **rows, int *nrows, char **err)
{
	struct json_object *root = md_json_parse(body, len, err);
	bool		ok;

	*rows = NULL;
	*nrows = 0;
	if (root == NULL)
		return false;
	if (!json_object_is_type(root, json_type_array))
	{
		*err = pstrdup("candles answer is not an array");
		json_object_put(root);
		return false;
	}
	ok = parse_bars(root, iv, rows, nrows, err);
	json_object_put(root);
	return ok;
}

/*
 * cdx_parse_error recognizes CoinDCX's error bodies,
 * {"code":422,"errorCode":"BFF-SO-004","message":"...","status":"error"}
 * and {"code":400,"message":"Invalid Request."}.
 */
static bool
cdx_parse_error(const char *body, size_t len, int *code, char **msg)
{
	return md_json_error_body(body, len, "message", code, msg);
}

/*
 * read_ratelimit reads "limit=5000, remaining=N, reset=S" from the
 * ratelimit header: how many requests were used this window, and when it
 * ends, or -1 for what the answer did not say.
 */
static void
read_ratelimit(const MdHttpResponse *resp, int *used, int *reset_s)
{
	char		v[200];
	const char *p;
	long		limit = -1,
				remaining = -1,
				reset = -1;

	*used = -1;
	*reset_s = -1;
	if (!md_http_header(resp, "ratelimit", v, sizeof(v)))
		return;
	if ((p = strstr(v, "limit=")) != NULL)
		limit = strtol(p + 6, NULL, 10);
	if ((p = strstr(v, "remaining=")) != NULL)
		remaining = strtol(p + 10, NULL, 10);
	if ((p = strstr(v, "reset=")) != NULL)
		reset = strtol(p + 6, NULL, 10);
	if (limit > 0 && limit < INT_MAX && remaining >= 0 && remaining <= limit)
		*used = (int) (limit - remaining);
	if (reset >= 0 && reset < 24 * 3600)
		*reset_s = (int) reset;
}

/*
 * cdx_classify reads an answer as CoinDCX means it: 429 is its rate
 * limiter (a text body, Retry-After and the ratelimit header say when the
 * window ends), 5xx and 408 passing trouble, other 4xx a refusal with
 * {"code","message"}.
 */
static void
cdx_classify(const MdHttpResponse *resp, MdAnswer *out)
{
	int			retry_after_s = md_http_header_int(resp, "Retry-After");
	int			reset_s;

	read_ratelimit(resp, &out->used, &reset_s);
	out->until_ms = 0;
	out->message = NULL;
	if (resp->status == 200)
		out->kind = MD_ANSWER_OK;
	else if (resp->status == 429)
	{
		/*
		 * Its window is not mdfeed's clock minute: remaining=0 says nothing
		 * of the next one.  The throttle holds CoinDCX back until the
		 * window's end, which Retry-After (or reset) gives.
		 */
		out->used = -1;
		out->kind = MD_ANSWER_THROTTLED;
		if (retry_after_s <= 0)
			retry_after_s = reset_s;
		if (retry_after_s > 0)
			out->until_ms = md_now_ms() + retry_after_s * INT64CONST(1000);
	}
	else
		md_answer_by_status(&md_coindcx, resp, out);
}

/*
 * split_pair finds the assets of a pair, B-BTC_USDT: BTC and USDT.
 */
static void
split_pair(MdInstrument *ins)
{
	const char *dash = strchr(ins->symbol, '-');
	const char *base = dash ? dash + 1 : ins->symbol;
	const char *us = strrchr(base, '_');

	if (us == NULL || us == base || us[1] == '\0')
		return;
	ins->base_asset = pnstrdup(base, us - base);
	ins->quote_asset = pstrdup(us + 1);
}

/*
 * cdx_futures_parse_instruments reads active_instruments: an array of pair
 * names, the perpetuals that trade now.  A malformed name is skipped, and
 * a pair listed for both margin currencies counts once.
 */
static bool
cdx_futures_parse_instruments(const char *body, size_t len, MdInstrument **out, int *n, char **err)
{
	struct json_object *root = md_json_parse(body, len, err);
	MdInstrument *res;
	size_t		count;
	int			k = 0;

	*out = NULL;
	*n = 0;
	if (root == NULL)
		return false;
	if (!json_object_is_type(root, json_type_array) || json_object_array_length(root) > 100000)
	{
		*err = pstrdup("active_instruments answer is not an array of pairs");
		json_object_put(root);
		return false;
	}
	count = json_object_array_length(root);
	res = palloc0(sizeof(MdInstrument) * Max(count, 1));
	for (size_t i = 0; i < count; i++)
	{
		const char *name = md_json_get_cstring(json_object_array_get_idx(root, i), 40);
		bool		dup = false;

		if (name == NULL || !md_valid_symbol(name))
			continue;
		for (int j = 0; j < k && !dup; j++)
			dup = strcmp(res[j].symbol, name) == 0;
		if (dup)
			continue;
		res[k].symbol = pstrdup(name);
		res[k].status = pstrdup("active");
		res[k].contract_type = pstrdup("perpetual");
		res[k].tradable = true;
		split_pair(&res[k]);
		k++;
	}
	json_object_put(root);
	*out = res;
	*n = k;
	return true;
}

/*
 * precision_step is 10^-p as a decimal string: a precision of 4 digits
 * is a tick of 0.0001.
 */
static char *
precision_step(struct json_object *o)
{
	int64		p;
	StringInfoData buf;

	if (o == NULL || !json_object_is_type(o, json_type_int))
		return NULL;
	p = json_object_get_int64(o);
	if (p < 0 || p > 30)
		return NULL;
	if (p == 0)
		return pstrdup("1");
	initStringInfo(&buf);
	appendStringInfoString(&buf, "0.");
	for (int i = 1; i < p; i++)
		appendStringInfoChar(&buf, '0');
	appendStringInfoChar(&buf, '1');
	return buf.data;
}

/*
 * cdx_spot_parse_instruments reads markets_details: one object per
 * market, pair being its market_data name.  CoinDCX calls the quote
 * currency "base" (base_currency_short_name USDT in B-BTC_USDT) and the
 * asset traded "target"; the price tick is base_currency_precision digits.
 */
static bool
cdx_spot_parse_instruments(const char *body, size_t len, MdInstrument **out, int *n, char **err)
{
	struct json_object *root;
	MdInstrument *res;
	size_t		count;
	int			k = 0;

	*out = NULL;
	*n = 0;
	if (md_json_array_of_objects(body, len, "markets_details", 100000, &root, err) == NULL)
		return false;
	count = json_object_array_length(root);
	res = palloc0(sizeof(MdInstrument) * Max(count, 1));
	for (size_t i = 0; i < count; i++)
	{
		struct json_object *m = json_object_array_get_idx(root, i);
		struct json_object *o;
		MdInstrument *ins = &res[k];
		bool		dup = false;

		if (!json_object_is_type(m, json_type_object))
			continue;

		ins->symbol = md_json_dup_string(m, "pair", 40);
		ins->status = md_json_dup_string(m, "status", 40);
		if (ins->symbol == NULL || !md_valid_symbol(ins->symbol) || ins->status == NULL)
			continue;
		/* a market listed twice counts once (the upsert takes a row once) */
		for (int j = 0; j < k && !dup; j++)
			dup = strcmp(res[j].symbol, ins->symbol) == 0;
		if (dup)
			continue;
		ins->contract_type = pstrdup("spot");
		ins->tradable = strcmp(ins->status, "active") == 0;
		ins->base_asset = md_json_dup_string(m, "target_currency_short_name", 40);
		ins->quote_asset = md_json_dup_string(m, "base_currency_short_name", 40);
		if (ins->base_asset == NULL || ins->quote_asset == NULL)
			split_pair(ins);
		ins->tick_size = precision_step(json_object_object_get_ex(m, "base_currency_precision", &o) ? o : NULL);
		if (!json_object_object_get_ex(m, "step", &o) || !md_json_get_number(o, &ins->step_size))
			ins->step_size = precision_step(json_object_object_get_ex(m, "target_currency_precision", &o) ? o : NULL);
		k++;
	}
	json_object_put(root);
	*out = res;
	*n = k;
	return true;
}


/*
 * The stream: socket.io on stream.coindcx.com, one channel per key, joined
 * and left one message at a time.
 */
typedef struct CdxChannel
{
	char		name[CDX_CHANNEL_LEN];
	int64		joined_ms;		/* when last joined */
	int64		last_data_ms;	/* when data last came, 0 if never */
	int64		silence_ms;		/* how long a silence may last now */
} CdxChannel;

typedef struct CdxSession
{
	MdSioClient sio;
	List	   *channels;		/* of CdxChannel, in the session's context */
	int64		next_app_ping_ms;
	int64		next_rejoin_ms; /* rejoins are paced: one a second */
} CdxSession;

static bool
is_futures(const MdStreamSession *sess)
{
	return sess->ex == &md_coindcx;
}

/*
 * channel_name is the channel of a key: B-BTC_USDT_1m-futures, or
 * B-BTC_USDT_1m on spot.
 */
static void
channel_name(const MdStreamSession *sess, const MdStreamKey *key, char *out)
{
	snprintf(out, CDX_CHANNEL_LEN, "%s_%s%s", key->symbol, key->iv->name,
			 is_futures(sess) ? "-futures" : "");
}

static CdxChannel *
find_channel(CdxSession *cs, const char *name)
{
	ListCell   *lc;

	foreach(lc, cs->channels)
	{
		CdxChannel *ch = lfirst(lc);

		if (strcmp(ch->name, name) == 0)
			return ch;
	}
	return NULL;
}

static int64
base_silence_ms(void)
{
	return mdfeed_stream_silence_s * INT64CONST(1000);
}

/*
 * send_channel queues {"channelName":...} as a join or a leave.
 */
static void
send_channel(MdStreamSession *sess, const char *event, const char *name)
{
	char	   *arg = psprintf("{\"channelName\":\"%s\"}", name);

	md_sio_send_event(sess, event, arg);
	pfree(arg);
}

static char *
cdx_stream_open(MdStreamSession *sess, const MdStreamKey *keys, int nkeys, int *keys_in_url)
{
	CdxSession *cs = (CdxSession *) sess->state;
	int			eio;
	char	   *url = md_sio_url(mdfeed_coindcx_socket_url, &eio);

	md_sio_begin(&cs->sio, eio, md_now_ms());
	*keys_in_url = 0;
	return url;
}

static bool
cdx_stream_ready(MdStreamSession *sess)
{
	return ((CdxSession *) sess->state)->sio.connected;
}

static void
cdx_stream_subscribe(MdStreamSession *sess, const MdStreamKey *keys, int nkeys)
{
	CdxSession *cs = (CdxSession *) sess->state;
	int64		now = md_now_ms();

	for (int i = 0; i < nkeys; i++)
	{
		char		name[CDX_CHANNEL_LEN];
		CdxChannel *ch;

		channel_name(sess, &keys[i], name);
		send_channel(sess, "join", name);
		ch = find_channel(cs, name);
		if (ch == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(sess->cxt);

			ch = palloc0(sizeof(CdxChannel));
			strlcpy(ch->name, name, sizeof(ch->name));
			cs->channels = lappend(cs->channels, ch);
			MemoryContextSwitchTo(old);
		}
		ch->joined_ms = now;
		ch->last_data_ms = 0;
		ch->silence_ms = base_silence_ms();
	}
}

static void
cdx_stream_unsubscribe(MdStreamSession *sess, const MdStreamKey *keys, int nkeys)
{
	CdxSession *cs = (CdxSession *) sess->state;

	for (int i = 0; i < nkeys; i++)
	{
		char		name[CDX_CHANNEL_LEN];
		CdxChannel *ch;

		channel_name(sess, &keys[i], name);
		send_channel(sess, "leave", name);
		ch = find_channel(cs, name);
		if (ch != NULL)
		{
			cs->channels = list_delete_ptr(cs->channels, ch);
			pfree(ch);
		}
	}
}

/*
 * cdx_stream_tick keeps the socket alive and looks for silent channels.
 * A joined channel that has delivered nothing for the silence timeout is
 * reported and joined again (leave, then join), once a second at most; each
 * time it stays silent the wait doubles, up to CDX_MAX_SILENCE_FACTOR
 * times the timeout, so that a pair that trades rarely costs little.
 */
static void
cdx_stream_tick(MdStreamSession *sess, int64 now_ms)
{
	CdxSession *cs = (CdxSession *) sess->state;
	ListCell   *lc;

	md_sio_tick(&cs->sio, sess, now_ms);
	if (sess->close_reason != NULL || !cs->sio.connected)
		return;
	if (now_ms >= cs->next_app_ping_ms)
	{
		if (cs->next_app_ping_ms != 0)
			md_sio_send_event(sess, "ping", "{\"data\":\"Ping message\"}");
		cs->next_app_ping_ms = now_ms + CDX_APP_PING_MS;
	}
	if (now_ms < cs->next_rejoin_ms)
		return;
	foreach(lc, cs->channels)
	{
		CdxChannel *ch = lfirst(lc);
		int64		since = Max(ch->joined_ms, ch->last_data_ms);

		if (now_ms - since <= ch->silence_ms)
			continue;
		md_stream_notice(sess, psprintf("%s channel %s is silent: nothing for %d s, joining it again",
										sess->ex->name, ch->name, (int) ((now_ms - since) / 1000)));
		send_channel(sess, "leave", ch->name);
		send_channel(sess, "join", ch->name);
		ch->joined_ms = now_ms;
		ch->silence_ms = Min(ch->silence_ms * 2, base_silence_ms() * CDX_MAX_SILENCE_FACTOR);
		cs->next_rejoin_ms = now_ms + 1000;
		break;
	}
}

/*
 * saw_channel notes that a channel delivered data.
 */
static void
saw_channel(MdStreamSession *sess, const char *name)
{
	CdxChannel *ch = find_channel((CdxSession *) sess->state, name);

	if (ch != NULL)
	{
		ch->last_data_ms = md_now_ms();
		ch->silence_ms = base_silence_ms();
	}
}

/* the keys of a socket bar's decimals, in MdCandleField order */
static const char *const futures_ws_keys[] = {"open", "high", "low", "close", "volume", "quote_volume"};
static const char *const spot_ws_keys[] = {"o", "h", "l", "c", "v", "q"};

/*
 * get_interval reads an interval name the exchange offers.
 */
static const MdInterval *
get_interval(const MdExchange *ex, struct json_object *parent, const char *key)
{
	struct json_object *o;
	const char *name;

	if (!json_object_object_get_ex(parent, key, &o) || (name = md_json_get_cstring(o, 8)) == NULL)
		return NULL;
	return md_exchange_interval(ex, name);
}

/*
 * read_ws_decimals reads a socket bar's decimals, strings; quote volume
 * may be missing or empty, and is then NULL.
 */
static bool
read_ws_decimals(struct json_object *bar, const char *const *keys, MdCandle *c)
{
	struct json_object *o;

	for (int f = 0; f < MD_QUOTE_VOLUME; f++)
		if (!json_object_object_get_ex(bar, keys[f], &o) || !md_json_get_decimal(o, &c->dec[f]))
			return false;
	if (json_object_object_get_ex(bar, keys[MD_QUOTE_VOLUME], &o) &&
		!(json_object_is_type(o, json_type_string) && json_object_get_string_len(o) == 0) &&
		!md_json_get_decimal(o, &c->dec[MD_QUOTE_VOLUME]))
		return false;
	return true;
}

/*
 * futures_klines reads a futures event: {"data":[{open, close, high, low,
 * volume, open_time (s), close_time (s, float), pair, duration,
 * quote_volume}], "Ets": ms, "i", "channel"}.
 */
static bool
futures_klines(MdStreamSession *sess, struct json_object *ev, MdStreamKlines *outs, char **err)
{
	struct json_object *bars,
			   *o;
	int64		event_ms = 0;
	const char *channel = NULL;
	size_t		n;
	MdStreamKline *k;

	if (!json_object_object_get_ex(ev, "data", &bars) || !json_object_is_type(bars, json_type_array) ||
		(n = json_object_array_length(bars)) == 0 || n > 1000)
	{
		*err = pstrdup("futures candlestick event without its bars");
		return false;
	}
	if (json_object_object_get_ex(ev, "Ets", &o) && !md_json_get_ms(o, &event_ms))
	{
		*err = pstrdup("futures candlestick event with a malformed Ets");
		return false;
	}
	if (json_object_object_get_ex(ev, "channel", &o))
		channel = md_json_get_cstring(o, CDX_CHANNEL_LEN - 1);
	k = md_stream_klines(outs, (int) n);
	for (size_t i = 0; i < n; i++)
	{
		struct json_object *bar = json_object_array_get_idx(bars, i);
		int64		open_s;
		bool		ok;

		ok = json_object_is_type(bar, json_type_object) &&
			json_object_object_get_ex(bar, "open_time", &o) && md_json_get_ms(o, &open_s) &&
			open_s <= MD_JSON_MAX_MS / 1000 &&
			read_ws_decimals(bar, futures_ws_keys, &k[i].candle) &&
			(k[i].symbol = md_json_dup_string(bar, "pair", 40)) != NULL &&
			md_valid_symbol(k[i].symbol) &&
			(k[i].iv = get_interval(sess->ex, bar, "duration")) != NULL;
		if (!ok)
		{
			*err = psprintf("futures bar %zu is malformed", i);
			return false;
		}
		k[i].candle.open_ms = open_s * 1000;
		if (!bar_times(k[i].iv, &k[i].candle, err))
		{
			*err = psprintf("futures bar %zu: %s", i, *err);
			return false;
		}
		k[i].event_ms = event_ms > 0 ? event_ms : md_now_ms();
		k[i].stream = channel ? pstrdup(channel) : NULL;
		/* a bar is its channel's: one labelled otherwise is garbage */
		if (channel != NULL)
		{
			char		name[CDX_CHANNEL_LEN];
			MdStreamKey key = {k[i].symbol, k[i].iv};

			channel_name(sess, &key, name);
			if (strcmp(name, channel) != 0)
			{
				*err = psprintf("futures bar %zu of %s on channel %s", i, name, channel);
				return false;
			}
		}
	}
	if (channel != NULL)
		saw_channel(sess, channel);
	return true;
}

/*
 * spot_klines reads a spot event: one flat object, Binance's short keys,
 * times in ms, x the close flag (not needed: the bar is made exact over
 * REST), the pair only in the channel's name: B-BTC_USDT_1m.
 */
static bool
spot_klines(MdStreamSession *sess, struct json_object *ev, MdStreamKlines *outs, char **err)
{
	MdStreamKline *k = md_stream_klines(outs, 1);
	struct json_object *o;
	const char *channel;
	size_t		plen;
	bool		ok;

	ok = json_object_object_get_ex(ev, "t", &o) && md_json_get_ms(o, &k->candle.open_ms) &&
		read_ws_decimals(ev, spot_ws_keys, &k->candle) &&
		(k->iv = get_interval(sess->ex, ev, "i")) != NULL &&
		json_object_object_get_ex(ev, "channel", &o) &&
		(channel = md_json_get_cstring(o, CDX_CHANNEL_LEN - 1)) != NULL;
	if (!ok)
	{
		*err = pstrdup("spot candlestick event with a missing or malformed field");
		return false;
	}
	/* the pair is the channel's name without "_<interval>" */
	plen = strlen(channel);
	if (plen <= strlen(k->iv->name) + 1 ||
		strcmp(channel + plen - strlen(k->iv->name), k->iv->name) != 0 ||
		channel[plen - strlen(k->iv->name) - 1] != '_')
	{
		*err = pstrdup("spot candlestick event whose channel does not name its pair");
		return false;
	}
	k->symbol = pnstrdup(channel, plen - strlen(k->iv->name) - 1);
	if (!md_valid_symbol(k->symbol))
	{
		*err = pstrdup("spot candlestick event with a malformed pair");
		return false;
	}
	if (!bar_times(k->iv, &k->candle, err))
	{
		*err = psprintf("spot candlestick event: %s", *err);
		return false;
	}
	k->stream = pstrdup(channel);
	if (!json_object_object_get_ex(ev, "eT", &o) || !md_json_get_ms(o, &k->event_ms))
		k->event_ms = md_now_ms();
	if (json_object_object_get_ex(ev, "n", &o))
		(void) md_json_get_count(o, &k->candle.trades);
	saw_channel(sess, channel);
	return true;
}

/*
 * cdx_stream_frame takes one message: the protocol's own packets go to
 * socketio.c, and a candlestick event, 42["candlestick",{"event":..,
 * "data":"<JSON text>"}], is parsed twice: the envelope, then its data.
 */
static MdFrameKind
cdx_stream_frame(MdStreamSession *sess, const char *data, size_t len,
				 MdStreamKlines *outs, char **err)
{
	CdxSession *cs = (CdxSession *) sess->state;
	MdSioPacket p;
	struct json_object *root,
			   *arg,
			   *inner = NULL,
			   *ev,
			   *o;
	const char *name;
	bool		ok;

	outs->n = 0;
	if (!md_sio_parse(data, len, &p, err))
		return MD_FRAME_MALFORMED;
	if (md_sio_handle(&cs->sio, sess, &p, md_now_ms()))
		return MD_FRAME_OTHER;
	if (p.sio != MD_SIO_EVENT)
		return MD_FRAME_OTHER;
	if (!md_sio_event_args(&p, &root, &name, &arg, err))
		return MD_FRAME_MALFORMED;
	if (strcmp(name, "candlestick") != 0)
	{
		json_object_put(root);
		return MD_FRAME_OTHER;
	}
	if (arg == NULL || !json_object_is_type(arg, json_type_object) ||
		!json_object_object_get_ex(arg, "data", &o))
	{
		*err = pstrdup("candlestick event without data");
		json_object_put(root);
		return MD_FRAME_MALFORMED;
	}
	/* the wire sends data as JSON text; the documentation shows an object */
	if (json_object_is_type(o, json_type_string))
	{
		if (md_json_get_cstring(o, INT_MAX) == NULL ||
			(inner = md_json_parse(json_object_get_string(o), json_object_get_string_len(o), err)) == NULL)
		{
			if (*err == NULL)
				*err = pstrdup("candlestick data is not valid text");
			json_object_put(root);
			return MD_FRAME_MALFORMED;
		}
		ev = inner;
	}
	else
		ev = o;
	if (!json_object_is_type(ev, json_type_object))
	{
		*err = pstrdup("candlestick data is not a JSON object");
		ok = false;
	}
	else if (is_futures(sess))
		ok = futures_klines(sess, ev, outs, err);
	else
		ok = spot_klines(sess, ev, outs, err);
	if (inner != NULL)
		json_object_put(inner);
	json_object_put(root);
	if (!ok)
	{
		outs->n = 0;
		return MD_FRAME_MALFORMED;
	}
	return MD_FRAME_KLINE;
}

static const MdStreamOps cdx_stream_ops = {
	/* neither is published: our choices (PROTOCOL.md) */
	.max_keys_per_connection = 100,
	.max_keys_per_message = 1,	/* a join names one channel */
	.client_msgs_per_sec = 10,
	.max_connection_age_ms = 0,
	.replies_to_subscribe = false,	/* joins are never acknowledged */
	.closes_final = false,		/* the last snapshot is not the final bar */
	.url_setting = "mdfeed.coindcx_socket_url",
	.session_size = sizeof(CdxSession),
	.open = cdx_stream_open,
	.frame = cdx_stream_frame,
	.tick = cdx_stream_tick,
	.ready = cdx_stream_ready,
	.subscribe = cdx_stream_subscribe,
	.unsubscribe = cdx_stream_unsubscribe,
};

static const MdAnswerHint cdx_futures_answer_hints[] = {
	{"klines", "The body must be the JSON object GET /market_data/candlesticks returns."},
	{"stream", "The body must be one socket.io message of the CoinDCX stream."},
	{"exchange_info", "The body must be the JSON array GET .../futures/data/active_instruments returns."},
	{"error", "The body must be an error answer, such as {\"code\":400,\"message\":\"Invalid Request.\"}."},
	{"klines text", "The text must be the JSON object GET /market_data/candlesticks returns."},
	{"stream text", "The text must be one socket.io message of the CoinDCX stream, such as 42[\"candlestick\",{...}]."},
	{NULL, NULL}
};

static const MdAnswerHint cdx_spot_answer_hints[] = {
	{"klines", "The body must be the JSON array GET /market_data/candles returns."},
	{"stream", "The body must be one socket.io message of the CoinDCX stream."},
	{"exchange_info", "The body must be the JSON array GET /exchange/v1/markets_details returns."},
	{"error", "The body must be an error answer, such as {\"code\":422,\"message\":\"Invalid pair NOPE\"}."},
	{"klines text", "The text must be the JSON array GET /market_data/candles returns."},
	{"stream text", "The text must be one socket.io message of the CoinDCX stream, such as 42[\"candlestick\",{...}]."},
	{NULL, NULL}
};

/* futures resolutions the candlesticks endpoint serves, in md_intervals order */
static const char *const cdx_futures_codes[] = {
	"1", NULL, "5", "15", "30", "60", NULL, "240", NULL, "480", NULL,
	"1D", NULL, NULL, NULL,
};

StaticAssertDecl(lengthof(cdx_futures_codes) == MD_NUM_INTERVALS, "one code per interval");

/* spot: the only intervals the candles endpoint accepts live */
static const char *const cdx_spot_codes[] = {
	"1m", NULL, NULL, "15m", NULL, "1h", NULL, NULL, NULL, NULL, NULL,
	"1d", NULL, NULL, NULL,
};

StaticAssertDecl(lengthof(cdx_spot_codes) == MD_NUM_INTERVALS, "one code per interval");

/* what the two adapters share */
#define CDX_COMMON \
	.candle_fields = (1u << MD_OPEN) | (1u << MD_HIGH) | (1u << MD_LOW) | (1u << MD_CLOSE) | \
		(1u << MD_VOLUME) | (1u << MD_QUOTE_VOLUME), \
	.candle_optional = (1u << MD_QUOTE_VOLUME), \
	.candle_trades = false, \
	.rest_base_url = cdx_public_url, \
	.rest_url_setting = "mdfeed.coindcx_public_url", \
	.classify = cdx_classify, \
	.parse_error = cdx_parse_error, \
	.klines = {NULL, CDX_MARKET_DATA, 1, NULL, NULL}, \
	.klines_windowed = true, \
	.stream = &cdx_stream_ops

const MdExchange md_coindcx = {
	.name = "coindcx",
	.display_name = "CoinDCX",
	.market = "USDT-margined perpetual futures",
	.candle_prefix = "cdx_candles_",
	.interval_codes = cdx_futures_codes,
	.limits = {
		/* seen live: ratelimit-policy: 5000;w=60 on the public routes */
		[CDX_MARKET_DATA] = {"market data requests", MD_LIMIT_WINDOW, 5000, 60000},
		/* the FAQ's 16 a second, 960 a minute */
		[CDX_API] = {"api requests", MD_LIMIT_BUCKET, 960, 60000},
	},
	.nlimits = 2,
	.answer_hints = cdx_futures_answer_hints,
	.klines_page_limit = cdx_futures_page_limit,
	.klines_path = cdx_futures_klines_path,
	.parse_klines = cdx_futures_parse_klines,
	/* USDT-margined, and the INR-margined books of the same pairs */
	.info = {"/exchange/v1/derivatives/futures/data/active_instruments"
		"?margin_currency_short_name%5B%5D=USDT&margin_currency_short_name%5B%5D=INR",
	CDX_API, 1, cdx_api_url, "mdfeed.coindcx_api_url"},
	.parse_instruments = cdx_futures_parse_instruments,
	CDX_COMMON,
};

const MdExchange md_coindcx_spot = {
	.name = "coindcx_spot",
	.display_name = "CoinDCX spot",
	.market = "spot markets",
	.candle_prefix = "cdx_spot_candles_",
	.interval_codes = cdx_spot_codes,
	.limits = {
		[CDX_MARKET_DATA] = {"market data requests", MD_LIMIT_WINDOW, 5000, 60000},
		[CDX_API] = {"api requests", MD_LIMIT_BUCKET, 960, 60000},
	},
	.nlimits = 2,
	.budget_of = &md_coindcx,
	.answer_hints = cdx_spot_answer_hints,
	.klines_page_limit = cdx_spot_page_limit,
	.klines_path = cdx_spot_klines_path,
	.parse_klines = cdx_spot_parse_klines,
	.info = {"/exchange/v1/markets_details", CDX_API, 1, cdx_api_url, "mdfeed.coindcx_api_url"},
	.parse_instruments = cdx_spot_parse_instruments,
	CDX_COMMON,
};
