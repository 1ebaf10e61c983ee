/*-------------------------------------------------------------------------
 *
 * binance.c
 *	  The Binance USD-M futures adapter: REST paths, page sizes and weights,
 *	  the parsing of REST answers, and the market-stream session operations.
 *
 * JSON is parsed with the helpers of json.c: every parser copies what it
 * keeps into palloc'd memory and releases the json-c tree before returning,
 * and none of them raises an error, so no error path can leak the tree.
 * Every value is checked for type and syntax; one bad field makes the whole
 * answer malformed.  Whatever a parser hands on must be storable as it is,
 * since a store that raises aborts a worker's transaction (json.c says how
 * UTF-8 and NUL bytes are checked).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "common.h"
#include "decimal.h"
#include "exchange.h"
#include "http.h"
#include "json.h"

/* klines pages: the largest page Binance serves */
#define BINANCE_MAX_LIMIT 1500


static const char *
binance_rest_base_url(void)
{
	return mdfeed_binance_rest_url;
}

/*
 * binance_klines_weight is the weight Binance charges for a klines request:
 * it depends only on the limit asked for.
 */
static int
binance_klines_weight(int limit)
{
	if (limit < 100)
		return 1;
	if (limit < 500)
		return 2;
	if (limit <= 1000)
		return 5;
	return 10;
}

/*
 * binance_klines_page_limit picks the page size giving the most candles per
 * unit of weight: 499 rows cost 2 (250 a unit), 1000 cost 5 (200), 1500 cost
 * 10 (150).  A shorter range asks for just what it needs, which is never
 * more than 2.
 */
static int
binance_klines_page_limit(int64 rows_wanted)
{
	if (rows_wanted < 1)
		return 1;
	if (rows_wanted < 499)
		return (int) rows_wanted;
	return 499;
}

static char *
binance_klines_path(const char *symbol, const char *interval_code,
					int64 start_ms, int64 end_ms, int limit)
{
	return psprintf("/fapi/v1/klines?symbol=%s&interval=%s&startTime=" INT64_FORMAT
					"&endTime=" INT64_FORMAT "&limit=%d",
					symbol, interval_code, start_ms, end_ms, limit);
}

/* positions of the decimals in a REST kline array */
static const int rest_decimal_pos[MD_NUM_DECIMALS] = {1, 2, 3, 4, 5, 7, 9, 10};

/*
 * binance_parse_klines parses a /fapi/v1/klines answer: an array of 12-element
 * arrays, ascending by open time.
 */
static bool
binance_parse_klines(const char *body, size_t len, const MdInterval *iv,
					 MdCandle **rows, int *nrows, char **err)
{
	struct json_object *root = md_json_parse(body, len, err);
	MdCandle   *out;
	size_t		n;

	*rows = NULL;
	*nrows = 0;
	if (root == NULL)
		return false;
	if (!json_object_is_type(root, json_type_array))
	{
		*err = pstrdup("klines answer is not an array");
		json_object_put(root);
		return false;
	}
	n = json_object_array_length(root);
	if (n > BINANCE_MAX_LIMIT)
	{
		*err = psprintf("klines answer has %zu rows, more than %d", n, BINANCE_MAX_LIMIT);
		json_object_put(root);
		return false;
	}
	out = palloc0(sizeof(MdCandle) * Max(n, 1));
	for (size_t i = 0; i < n; i++)
	{
		struct json_object *row = json_object_array_get_idx(root, i);
		MdCandle   *c = &out[i];
		bool		ok;

		ok = row != NULL && json_object_is_type(row, json_type_array) &&
			json_object_array_length(row) >= 11 &&
			md_json_get_ms(json_object_array_get_idx(row, 0), &c->open_ms) &&
			md_json_get_ms(json_object_array_get_idx(row, 6), &c->close_ms) &&
			md_json_get_count(json_object_array_get_idx(row, 8), &c->trades);
		for (int f = 0; ok && f < MD_NUM_DECIMALS; f++)
			ok = md_json_get_decimal(json_object_array_get_idx(row, rest_decimal_pos[f]), &c->dec[f]);
		if (!ok)
		{
			*err = psprintf("klines row %zu is malformed", i);
			json_object_put(root);
			return false;
		}
		if (c->close_ms <= c->open_ms)
		{
			*err = psprintf("klines row %zu closes before it opens", i);
			json_object_put(root);
			return false;
		}
		if (!md_candle_consistent(c))
		{
			*err = psprintf("klines row %zu is no candle: its prices or volumes disagree", i);
			json_object_put(root);
			return false;
		}
		if (i > 0 && c->open_ms <= out[i - 1].open_ms)
		{
			*err = psprintf("klines row %zu is out of order", i);
			json_object_put(root);
			return false;
		}
	}
	json_object_put(root);
	*rows = out;
	*nrows = (int) n;
	return true;
}

/*
 * binance_parse_error recognizes Binance's error body {"code":-1121,"msg":"..."}.
 */
static bool
binance_parse_error(const char *body, size_t len, int *code, char **msg)
{
	return md_json_error_body(body, len, "msg", code, msg);
}

/*
 * binance_ban_until_ms reads the end of an IP ban from a 418 body, which
 * says "... banned until 1700000000000 ...".
 */
static int64
binance_ban_until_ms(const char *body, size_t len)
{
	const char *key = "banned until ";
	char	   *text = pnstrdup(body, Min(len, 2000));
	char	   *p = strstr(text, key);
	int64		ms = 0;

	if (p != NULL)
	{
		p += strlen(key);
		while (*p >= '0' && *p <= '9' && ms < MD_JSON_MAX_MS)
			ms = ms * 10 + (*p++ - '0');
		if (ms >= MD_JSON_MAX_MS)
			ms = 0;
	}
	pfree(text);
	return ms;
}

/*
 * binance_classify reads an answer as Binance means it: 429 is "over the
 * weight limit, back off for Retry-After", 418 an IP ban (until the time
 * its body names), 403 the web application firewall's limit, 5xx and 408
 * passing trouble; any other 4xx refuses the request, in {"code","msg"}.
 * Every answer carries X-MBX-USED-WEIGHT-1M, Binance's own count of the
 * weight this IP used this minute.
 */
static void
binance_classify(const MdHttpResponse *resp, MdAnswer *out)
{
	int			retry_after_s = md_http_header_int(resp, "Retry-After");
	int64		now = md_now_ms();

	out->used = md_http_header_int(resp, "X-MBX-USED-WEIGHT-1M");
	out->until_ms = 0;
	out->message = NULL;
	if (resp->status == 200)
		out->kind = MD_ANSWER_OK;
	else if (resp->status == 429)
	{
		out->kind = MD_ANSWER_THROTTLED;
		if (retry_after_s > 0)
			out->until_ms = now + retry_after_s * INT64CONST(1000);
	}
	else if (resp->status == 418)
	{
		out->kind = MD_ANSWER_BANNED;
		out->until_ms = binance_ban_until_ms(resp->body.data, resp->body.len);
		if (out->until_ms <= now && retry_after_s > 0)
			out->until_ms = now + retry_after_s * INT64CONST(1000);
	}
	else if (resp->status == 403)
	{
		/* the web application firewall's limit: it passes */
		out->kind = MD_ANSWER_RETRY;
		out->message = psprintf("HTTP %ld from Binance", resp->status);
	}
	else
		md_answer_by_status(&md_binance, resp, out);
}

static bool
binance_parse_server_time(const char *body, size_t len, int64 *ms)
{
	char	   *err;
	struct json_object *root = md_json_parse(body, len, &err);
	struct json_object *t;
	bool		ok = false;

	if (root == NULL)
		return false;
	if (json_object_is_type(root, json_type_object) &&
		json_object_object_get_ex(root, "serverTime", &t))
		ok = md_json_get_ms(t, ms);
	json_object_put(root);
	return ok;
}

/*
 * binance_parse_weight_limit finds the REQUEST_WEIGHT limit in exchangeInfo's
 * rateLimits, converted to weight per minute.
 */
static bool
binance_parse_weight_limit(const char *body, size_t len, int *limit)
{
	char	   *err;
	struct json_object *root = md_json_parse(body, len, &err);
	struct json_object *limits;
	bool		ok = false;

	if (root == NULL)
		return false;
	if (json_object_is_type(root, json_type_object) &&
		json_object_object_get_ex(root, "rateLimits", &limits) &&
		json_object_is_type(limits, json_type_array))
	{
		size_t		n = json_object_array_length(limits);

		for (size_t i = 0; i < n; i++)
		{
			struct json_object *rl = json_object_array_get_idx(limits, i);
			struct json_object *type,
					   *unit,
					   *num,
					   *lim;
			int64		per_minute;

			if (!json_object_is_type(rl, json_type_object) ||
				!json_object_object_get_ex(rl, "rateLimitType", &type) ||
				!json_object_object_get_ex(rl, "interval", &unit) ||
				!json_object_object_get_ex(rl, "intervalNum", &num) ||
				!json_object_object_get_ex(rl, "limit", &lim) ||
				!json_object_is_type(type, json_type_string) ||
				!json_object_is_type(unit, json_type_string) ||
				!json_object_is_type(num, json_type_int) ||
				!json_object_is_type(lim, json_type_int) ||
				strcmp(json_object_get_string(type), "REQUEST_WEIGHT") != 0)
				continue;
			/* bounded, so that the arithmetic below cannot overflow */
			if (json_object_get_int64(num) <= 0 || json_object_get_int64(num) > INT_MAX ||
				json_object_get_int64(lim) <= 0 || json_object_get_int64(lim) > INT_MAX)
				continue;
			/* express the limit per minute, rounding down */
			if (strcmp(json_object_get_string(unit), "MINUTE") == 0)
				per_minute = json_object_get_int64(lim) / json_object_get_int64(num);
			else if (strcmp(json_object_get_string(unit), "SECOND") == 0)
				per_minute = json_object_get_int64(lim) * 60 / json_object_get_int64(num);
			else
				continue;
			if (per_minute > 0 && per_minute < INT_MAX)
			{
				*limit = ok ? Min(*limit, (int) per_minute) : (int) per_minute;
				ok = true;
			}
		}
	}
	json_object_put(root);
	return ok;
}

/* the decimal fields of a stream kline, in MdCandleField order */
static const char *const ws_decimal_keys[MD_NUM_DECIMALS] = {"o", "h", "l", "c", "v", "q", "V", "Q"};

/*
 * binance_stream_frame parses one market-stream frame: a combined stream's
 * {"stream":..,"data":{..}}, a raw event, or a reply to SUBSCRIBE and
 * friends ({"result":..,"id":..}, or {"error":..,"id":..} when refused).
 * Binance's streams need nothing sent back: libwebsockets answers the
 * pings.
 */
static MdFrameKind
binance_stream_frame(MdStreamSession *sess, const char *frame, size_t len,
					 MdStreamKlines *outs, char **err)
{
	struct json_object *root = md_json_parse(frame, len, err);
	struct json_object *data,
			   *o,
			   *k;
	MdStreamKline *out = md_stream_klines(outs, 1);
	MdCandle   *c = &out->candle;
	bool		ok;
	const char *iv_name;
	int			f;

	if (root == NULL)
		return MD_FRAME_MALFORMED;
	if (!json_object_is_type(root, json_type_object))
	{
		*err = pstrdup("frame is not a JSON object");
		json_object_put(root);
		return MD_FRAME_MALFORMED;
	}
	if (json_object_object_get_ex(root, "id", NULL) &&
		(json_object_object_get_ex(root, "result", NULL) ||
		 json_object_object_get_ex(root, "error", NULL)))
	{
		if (json_object_object_get_ex(root, "error", NULL))
			*err = md_clip_utf8(frame, (int) len, 300);
		json_object_put(root);
		return MD_FRAME_REPLY;
	}

	data = root;
	if (json_object_object_get_ex(root, "stream", &o))
	{
		if (!json_object_is_type(o, json_type_string) ||
			!json_object_object_get_ex(root, "data", &data) ||
			!json_object_is_type(data, json_type_object))
		{
			*err = pstrdup("combined-stream frame without a data object");
			json_object_put(root);
			return MD_FRAME_MALFORMED;
		}
		if (md_json_get_cstring(o, INT_MAX) == NULL)
		{
			*err = pstrdup("combined-stream frame with a malformed stream name");
			json_object_put(root);
			return MD_FRAME_MALFORMED;
		}
		out->stream = md_clip_utf8(json_object_get_string(o), json_object_get_string_len(o), 200);
	}

	if (!json_object_object_get_ex(data, "e", &o) || md_json_get_cstring(o, INT_MAX) == NULL)
	{
		*err = pstrdup("event without an event type");
		json_object_put(root);
		return MD_FRAME_MALFORMED;
	}
	if (strcmp(json_object_get_string(o), "kline") != 0)
	{
		json_object_put(root);
		return MD_FRAME_OTHER;
	}

	ok = json_object_object_get_ex(data, "E", &o) && md_json_get_ms(o, &out->event_ms) &&
		json_object_object_get_ex(data, "k", &k) && json_object_is_type(k, json_type_object) &&
		json_object_object_get_ex(k, "t", &o) && md_json_get_ms(o, &c->open_ms) &&
		json_object_object_get_ex(k, "T", &o) && md_json_get_ms(o, &c->close_ms) &&
		json_object_object_get_ex(k, "n", &o) && md_json_get_count(o, &c->trades) &&
		json_object_object_get_ex(k, "x", &o) && json_object_is_type(o, json_type_boolean);
	if (ok)
		c->closed = json_object_get_boolean(o);
	for (f = 0; ok && f < MD_NUM_DECIMALS; f++)
		ok = json_object_object_get_ex(k, ws_decimal_keys[f], &o) && md_json_get_decimal(o, &c->dec[f]);
	if (ok)
		ok = json_object_object_get_ex(k, "s", &o) && md_json_get_cstring(o, 40) != NULL;
	if (ok)
	{
		out->symbol = pstrdup(json_object_get_string(o));
		ok = md_valid_symbol(out->symbol);
	}
	if (ok)
		ok = json_object_object_get_ex(k, "i", &o) && (iv_name = md_json_get_cstring(o, 8)) != NULL;
	if (ok)
	{
		out->iv = md_interval_lookup(iv_name);
		ok = out->iv != NULL;
	}
	if (ok && (c->close_ms <= c->open_ms || !md_candle_consistent(c)))
		ok = false;
	json_object_put(root);
	if (!ok)
	{
		*err = pstrdup("kline event with a missing or malformed field");
		return MD_FRAME_MALFORMED;
	}
	return MD_FRAME_KLINE;
}

/*
 * filter_value finds filters[filterType == type][key], a decimal string.
 */
static char *
filter_value(struct json_object *sym, const char *type, const char *key)
{
	struct json_object *filters;
	size_t		n;

	if (!json_object_object_get_ex(sym, "filters", &filters) ||
		!json_object_is_type(filters, json_type_array))
		return NULL;
	n = json_object_array_length(filters);
	for (size_t i = 0; i < n; i++)
	{
		struct json_object *f = json_object_array_get_idx(filters, i);
		char	   *ft = json_object_is_type(f, json_type_object) ? md_json_dup_string(f, "filterType", 64) : NULL;
		char	   *v;

		if (ft == NULL || strcmp(ft, type) != 0)
			continue;
		v = md_json_dup_string(f, key, 64);
		if (v != NULL && md_valid_decimal(v, strlen(v)))
			return v;
		return NULL;
	}
	return NULL;
}

/*
 * binance_parse_instruments reads the symbols of exchangeInfo.  A symbol
 * with a malformed name or status is skipped; a body without a symbols
 * array is malformed.
 */
static bool
binance_parse_instruments(const char *body, size_t len, MdInstrument **out, int *n, char **err)
{
	struct json_object *root = md_json_parse(body, len, err);
	struct json_object *symbols;
	MdInstrument *res;
	size_t		count;
	int			k = 0;

	*out = NULL;
	*n = 0;
	if (root == NULL)
		return false;
	if (!json_object_is_type(root, json_type_object) ||
		!json_object_object_get_ex(root, "symbols", &symbols) ||
		!json_object_is_type(symbols, json_type_array))
	{
		*err = pstrdup("exchange info without a symbols array");
		json_object_put(root);
		return false;
	}
	count = json_object_array_length(symbols);
	if (count > 100000)
	{
		*err = pstrdup("exchange info lists too many symbols");
		json_object_put(root);
		return false;
	}
	res = palloc0(sizeof(MdInstrument) * Max(count, 1));
	for (size_t i = 0; i < count; i++)
	{
		struct json_object *sym = json_object_array_get_idx(symbols, i);
		struct json_object *o;
		MdInstrument *ins = &res[k];

		if (!json_object_is_type(sym, json_type_object))
			continue;
		ins->symbol = md_json_dup_string(sym, "symbol", 40);
		ins->status = md_json_dup_string(sym, "status", 40);
		if (ins->symbol == NULL || !md_valid_symbol(ins->symbol) || ins->status == NULL)
			continue;
		ins->contract_type = md_json_dup_string(sym, "contractType", 40);
		/* what mdfeed tracks: perpetuals that trade now */
		ins->tradable = strcmp(ins->status, "TRADING") == 0 &&
			ins->contract_type != NULL && strcmp(ins->contract_type, "PERPETUAL") == 0;
		ins->base_asset = md_json_dup_string(sym, "baseAsset", 40);
		ins->quote_asset = md_json_dup_string(sym, "quoteAsset", 40);
		if (!json_object_object_get_ex(sym, "onboardDate", &o) || !md_json_get_ms(o, &ins->onboard_ms))
			ins->onboard_ms = 0;
		ins->tick_size = filter_value(sym, "PRICE_FILTER", "tickSize");
		ins->step_size = filter_value(sym, "LOT_SIZE", "stepSize");
		k++;
	}
	json_object_put(root);
	*out = res;
	*n = k;
	return true;
}

static bool
binance_parse_tickers(const char *body, size_t len, MdTicker **out, int *n, char **err)
{
	struct json_object *root;
	size_t		count;
	MdTicker   *res;
	int			k = 0;

	*out = NULL;
	*n = 0;
	if (md_json_array_of_objects(body, len, "ticker", 100000, &root, err) == NULL)
		return false;
	count = json_object_array_length(root);
	res = palloc0(sizeof(MdTicker) * Max(count, 1));
	for (size_t i = 0; i < count; i++)
	{
		struct json_object *t = json_object_array_get_idx(root, i);
		struct json_object *o;

		if (!json_object_is_type(t, json_type_object))
			goto bad;
		res[k].symbol = md_json_dup_string(t, "symbol", 40);
		if (res[k].symbol == NULL || !md_valid_symbol(res[k].symbol) ||
			!json_object_object_get_ex(t, "quoteVolume", &o) ||
			!md_json_get_decimal(o, &res[k].quote_volume))
			goto bad;
		k++;
	}
	json_object_put(root);
	*out = res;
	*n = k;
	return true;
bad:
	*err = psprintf("ticker row %d is malformed", k);
	json_object_put(root);
	return false;
}

static char *
binance_funding_path(const char *symbol, int64 start_ms, int64 end_ms, int limit)
{
	return psprintf("/fapi/v1/fundingRate?symbol=%s&startTime=" INT64_FORMAT
					"&endTime=" INT64_FORMAT "&limit=%d", symbol, start_ms, end_ms, limit);
}

static bool
binance_parse_funding(const char *body, size_t len, MdFunding **out, int *n, char **err)
{
	struct json_object *root;
	size_t		count;
	MdFunding  *res;

	*out = NULL;
	*n = 0;
	if (md_json_array_of_objects(body, len, "fundingRate", 1000, &root, err) == NULL)
		return false;
	count = json_object_array_length(root);
	res = palloc0(sizeof(MdFunding) * Max(count, 1));
	for (size_t i = 0; i < count; i++)
	{
		struct json_object *f = json_object_array_get_idx(root, i);
		struct json_object *o;

		if (!json_object_is_type(f, json_type_object) ||
			!json_object_object_get_ex(f, "fundingTime", &o) || !md_json_get_ms(o, &res[i].funding_ms) ||
			!json_object_object_get_ex(f, "fundingRate", &o) || !md_json_get_decimal(o, &res[i].rate))
		{
			*err = psprintf("fundingRate row %zu is malformed", i);
			json_object_put(root);
			return false;
		}
		/* older records have no markPrice; an empty one is as good as none */
		if (json_object_object_get_ex(f, "markPrice", &o) &&
			!(json_object_is_type(o, json_type_string) && json_object_get_string_len(o) == 0) &&
			!json_object_is_type(o, json_type_null))
		{
			if (!md_json_get_decimal(o, &res[i].mark_price))
			{
				*err = psprintf("fundingRate row %zu has a malformed markPrice", i);
				json_object_put(root);
				return false;
			}
		}
		if (i > 0 && res[i].funding_ms <= res[i - 1].funding_ms)
		{
			*err = psprintf("fundingRate row %zu is out of order", i);
			json_object_put(root);
			return false;
		}
	}
	json_object_put(root);
	*out = res;
	*n = (int) count;
	return true;
}

static char *
binance_oi_path(const char *symbol, int64 start_ms, int64 end_ms, int limit)
{
	return psprintf("/futures/data/openInterestHist?symbol=%s&period=1h&startTime=" INT64_FORMAT
					"&endTime=" INT64_FORMAT "&limit=%d", symbol, start_ms, end_ms, limit);
}

static bool
binance_parse_open_interest(const char *body, size_t len, MdOpenInterest **out, int *n, char **err)
{
	struct json_object *root;
	size_t		count;
	MdOpenInterest *res;

	*out = NULL;
	*n = 0;
	if (md_json_array_of_objects(body, len, "openInterestHist", 500, &root, err) == NULL)
		return false;
	count = json_object_array_length(root);
	res = palloc0(sizeof(MdOpenInterest) * Max(count, 1));
	for (size_t i = 0; i < count; i++)
	{
		struct json_object *r = json_object_array_get_idx(root, i);
		struct json_object *o;

		if (!json_object_is_type(r, json_type_object) ||
			!json_object_object_get_ex(r, "timestamp", &o) || !md_json_get_ms_any(o, &res[i].ts_ms) ||
			!json_object_object_get_ex(r, "sumOpenInterest", &o) ||
			!md_json_get_decimal(o, &res[i].sum_open_interest) ||
			!json_object_object_get_ex(r, "sumOpenInterestValue", &o) ||
			!md_json_get_decimal(o, &res[i].sum_open_interest_value))
		{
			*err = psprintf("openInterestHist row %zu is malformed", i);
			json_object_put(root);
			return false;
		}
		if (i > 0 && res[i].ts_ms <= res[i - 1].ts_ms)
		{
			*err = psprintf("openInterestHist row %zu is out of order", i);
			json_object_put(root);
			return false;
		}
	}
	json_object_put(root);
	*out = res;
	*n = (int) count;
	return true;
}

/*
 * The market streams: combined streams under the /market route.  A
 * connection's URL names its first stream, SUBSCRIBE adds the others (each
 * message answered in order), and a connection lives 24 hours at most.
 */
typedef struct BinanceSession
{
	int64		next_id;		/* of the next SUBSCRIBE or UNSUBSCRIBE */
} BinanceSession;

/*
 * binance_ws_base_url is mdfeed.binance_ws_url, the /market route.
 */
static const char *
binance_ws_base_url(void)
{
	return mdfeed_binance_ws_url;
}

/*
 * append_stream_name appends a key's stream name, btcusdt@kline_1m: the
 * symbol in lower case, the interval as it is (1M is a month).
 */
static void
append_stream_name(StringInfo buf, const MdStreamKey *key)
{
	for (const char *p = key->symbol; *p; p++)
		appendStringInfoChar(buf, (*p >= 'A' && *p <= 'Z') ? *p + ('a' - 'A') : *p);
	appendStringInfo(buf, "@kline_%s", md_exchange_interval_code(&md_binance, key->iv));
}

/*
 * binance_stream_open returns the combined-stream URL carrying the first
 * key, e.g. wss://fstream.binance.com/market/stream?streams=btcusdt@kline_1m.
 */
static char *
binance_stream_open(MdStreamSession *sess, const MdStreamKey *keys, int nkeys, int *keys_in_url)
{
	const char *base = binance_ws_base_url();
	size_t		len = strlen(base);
	StringInfoData buf;

	while (len > 0 && base[len - 1] == '/')
		len--;
	initStringInfo(&buf);
	appendStringInfo(&buf, "%.*s/stream?streams=", (int) len, base);
	*keys_in_url = 0;
	if (nkeys > 0)
	{
		append_stream_name(&buf, &keys[0]);
		*keys_in_url = 1;
	}
	return buf.data;
}

/*
 * binance_send_method queues {"method":..,"params":[streams],"id":n}.
 */
static void
binance_send_method(MdStreamSession *sess, const char *method, const MdStreamKey *keys, int nkeys)
{
	BinanceSession *bs = (BinanceSession *) sess->state;
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"method\":\"%s\",\"params\":[", method);
	for (int i = 0; i < nkeys; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoChar(&buf, '"');
		append_stream_name(&buf, &keys[i]);
		appendStringInfoChar(&buf, '"');
	}
	appendStringInfo(&buf, "],\"id\":" INT64_FORMAT "}", ++bs->next_id);
	md_stream_send(sess, buf.data, buf.len);
	pfree(buf.data);
}

/*
 * binance_stream_subscribe queues one SUBSCRIBE for the keys.
 */
static void
binance_stream_subscribe(MdStreamSession *sess, const MdStreamKey *keys, int nkeys)
{
	binance_send_method(sess, "SUBSCRIBE", keys, nkeys);
}

/*
 * binance_stream_unsubscribe queues one UNSUBSCRIBE for the keys.
 */
static void
binance_stream_unsubscribe(MdStreamSession *sess, const MdStreamKey *keys, int nkeys)
{
	binance_send_method(sess, "UNSUBSCRIBE", keys, nkeys);
}

static const MdStreamOps binance_stream_ops = {
	.max_keys_per_connection = 200,	/* the /market route's limit */
	.max_keys_per_message = 1024,
	.client_msgs_per_sec = 10,
	.max_connection_age_ms = INT64CONST(24) * 60 * 60 * 1000,
	.replies_to_subscribe = true,
	.closes_final = true,
	.url_setting = "mdfeed.binance_ws_url",
	.session_size = sizeof(BinanceSession),
	.open = binance_stream_open,
	.frame = binance_stream_frame,
	.tick = NULL,
	.ready = NULL,
	.subscribe = binance_stream_subscribe,
	.unsubscribe = binance_stream_unsubscribe,
};

/* what each answer looks like, for the errors of mdfeed.parse_answer */
static const MdAnswerHint binance_answer_hints[] = {
	{"klines", "The body must be the JSON array GET /fapi/v1/klines returns."},
	{"stream", "The body must be one frame of a market stream."},
	{"exchange_info", "The body must be the JSON object GET /fapi/v1/exchangeInfo returns."},
	{"weight_limit", "The body must be exchange info with a REQUEST_WEIGHT rate limit."},
	{"server_time", "The body must be the JSON object GET /fapi/v1/time returns."},
	{"tickers", "The body must be the JSON array GET /fapi/v1/ticker/24hr returns."},
	{"funding", "The body must be the JSON array GET /fapi/v1/fundingRate returns."},
	{"open_interest", "The body must be the JSON array GET /futures/data/openInterestHist returns."},
	{"error", "The body must be an error answer, such as {\"code\":-1121,\"msg\":\"Invalid symbol.\"}."},
	{"ban", "The body must be the answer of an IP ban (HTTP 418)."},
	{"archive_klines", "The body must be the CSV of a klines file of data.binance.vision (12 columns, a header line or none)."},
	{"archive_metrics", "The body must be the CSV of a daily metrics file of data.binance.vision."},
	{"archive_zip", "The body must be a klines zip of data.binance.vision, holding one CSV."},
	/* for the functions that take text */
	{"klines text", "The text must be the JSON array GET /fapi/v1/klines returns."},
	{"stream text", "The text must be one frame of a Binance USD-M market stream."},
	{NULL, NULL}
};

/* Binance's interval codes are mdfeed's names: it offers them all */
static const char *const binance_interval_codes[] = {
	"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
	"1d", "3d", "1w", "1M",
};

StaticAssertDecl(lengthof(binance_interval_codes) == MD_NUM_INTERVALS,
				 "one code per interval");

/* the budgets: weight per minute, and two endpoints counted by request */
enum
{
	BINANCE_WEIGHT,
	BINANCE_FUNDING,
	BINANCE_OPEN_INTEREST
};

const MdExchange md_binance = {
	.name = "binance",
	.display_name = "Binance",
	.market = "USD-M perpetual futures",
	.candle_prefix = "candles_",
	.candle_fields = MD_ALL_CANDLE_FIELDS,
	.candle_trades = true,
	.funding_table = "funding_rates",
	.open_interest_table = "open_interest_1h",
	.interval_codes = binance_interval_codes,
	.limits = {
		[BINANCE_WEIGHT] = {"weight", MD_LIMIT_WINDOW, 2400, 60000},
		[BINANCE_FUNDING] = {"funding requests", MD_LIMIT_BUCKET, 500, 300000},
		[BINANCE_OPEN_INTEREST] = {"open interest requests", MD_LIMIT_BUCKET, 1000, 300000},
	},
	.nlimits = 3,
	.rest_base_url = binance_rest_base_url,
	.rest_url_setting = "mdfeed.binance_rest_url",
	.classify = binance_classify,
	.parse_error = binance_parse_error,
	.ban_until_ms = binance_ban_until_ms,
	.answer_hints = binance_answer_hints,
	.klines = {NULL, BINANCE_WEIGHT, 0},
	.klines_page_limit = binance_klines_page_limit,
	.klines_cost = binance_klines_weight,
	.klines_path = binance_klines_path,
	.parse_klines = binance_parse_klines,
	.server_time = {"/fapi/v1/time", BINANCE_WEIGHT, 1},
	.parse_server_time = binance_parse_server_time,
	.info = {"/fapi/v1/exchangeInfo", BINANCE_WEIGHT, 1},
	.parse_weight_limit = binance_parse_weight_limit,
	.parse_instruments = binance_parse_instruments,
	.tickers = {"/fapi/v1/ticker/24hr", BINANCE_WEIGHT, 40},
	.parse_tickers = binance_parse_tickers,
	.funding = {NULL, BINANCE_FUNDING, 1},
	.funding_max_limit = 1000,
	.funding_path = binance_funding_path,
	.parse_funding = binance_parse_funding,
	.open_interest = {NULL, BINANCE_OPEN_INTEREST, 1},
	.oi_max_limit = 500,
	.oi_retention_ms = INT64CONST(30) * 24 * 60 * 60 * 1000,
	.oi_path = binance_oi_path,
	.parse_open_interest = binance_parse_open_interest,
	.stream = &binance_stream_ops,
	.archive = &md_binance_archive,
};
