/*-------------------------------------------------------------------------
 *
 * exchange.c
 *	  The registry of exchange adapters, what every caller asks of an
 *	  adapter's declarations (its intervals and its tables), and the
 *	  helpers every adapter's stream sessions share.
 *
 * An adapter's place in md_exchanges is its id: the index of its budget in
 * shared memory, and what a worker is given in bgw_extra (a pointer need
 * not mean the same in another process).  Adding an exchange is one more
 * line here and its adapter file; nothing else names it.  A session's
 * outbox and close request are plain data the adapter fills and the
 * worker empties, so that no adapter needs to know libwebsockets.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "common.h"
#include "decimal.h"
#include "exchange.h"
#include "http.h"
#include "json.h"

static const MdExchange *const md_exchanges[] = {
	&md_binance,
	&md_coindcx,
	&md_coindcx_spot,
};

StaticAssertDecl(lengthof(md_exchanges) <= MD_MAX_EXCHANGES,
				 "more adapters than MD_MAX_EXCHANGES");

/*
 * md_exchange_lookup finds an adapter by the name users give, or NULL.
 */
const MdExchange *
md_exchange_lookup(const char *name)
{
	for (int i = 0; i < lengthof(md_exchanges); i++)
		if (strcmp(md_exchanges[i]->name, name) == 0)
			return md_exchanges[i];
	return NULL;
}

/*
 * md_exchange_at returns the adapter with that registry index, or NULL.
 */
const MdExchange *
md_exchange_at(int id)
{
	if (id < 0 || id >= lengthof(md_exchanges))
		return NULL;
	return md_exchanges[id];
}

/*
 * md_exchange_id is the adapter's registry index.
 */
int
md_exchange_id(const MdExchange *ex)
{
	for (int i = 0; i < lengthof(md_exchanges); i++)
		if (md_exchanges[i] == ex)
			return i;
	elog(ERROR, "exchange adapter \"%s\" is not registered", ex->name);
	return -1;					/* keep the compiler quiet */
}

int
md_num_exchanges(void)
{
	return lengthof(md_exchanges);
}

/*
 * md_exchange_names lists the registered exchanges, for error hints.
 */
const char *
md_exchange_names(void)
{
	static char *names = NULL;

	if (names == NULL)
	{
		StringInfoData buf;
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&buf);
		for (int i = 0; i < lengthof(md_exchanges); i++)
			appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", md_exchanges[i]->name);
		names = buf.data;
		MemoryContextSwitchTo(old);
	}
	return names;
}

/*
 * md_exchange_interval_code is the exchange's code for an interval, or NULL
 * if it does not offer the interval.
 */
const char *
md_exchange_interval_code(const MdExchange *ex, const MdInterval *iv)
{
	if (iv == NULL)
		return NULL;
	return ex->interval_codes[iv - md_intervals];
}

/*
 * md_exchange_interval finds an interval by the name users write ("1m"),
 * if the exchange offers it.
 */
const MdInterval *
md_exchange_interval(const MdExchange *ex, const char *name)
{
	const MdInterval *iv = md_interval_lookup(name);

	return md_exchange_interval_code(ex, iv) != NULL ? iv : NULL;
}

/*
 * md_exchange_interval_names lists the intervals the exchange offers, for
 * error hints ("1m, 3m, ..., 1M").  The answer is palloc'd.
 */
const char *
md_exchange_interval_names(const MdExchange *ex)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < md_num_intervals; i++)
		if (ex->interval_codes[i] != NULL)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", md_intervals[i].name);
	return buf.data;
}

/*
 * md_exchange_tracked_intervals is the part of mdfeed.intervals the
 * exchange offers: an interval it does not serve is never streamed, synced
 * or repaired.  Returns how many it put in ivs.
 */
int
md_exchange_tracked_intervals(const MdExchange *ex, const MdInterval **ivs, int max)
{
	const MdInterval *all[MD_NUM_INTERVALS];
	int			n = md_tracked_intervals(all, lengthof(all));
	int			k = 0;

	for (int i = 0; i < n && k < max; i++)
		if (md_exchange_interval_code(ex, all[i]) != NULL)
			ivs[k++] = all[i];
	return k;
}

/*
 * md_candle_table names the exchange's table of an interval (without the
 * schema), palloc'd.
 */
char *
md_candle_table(const MdExchange *ex, const MdInterval *iv)
{
	return psprintf("%s%s", ex->candle_prefix, iv->suffix);
}

/*
 * md_candle_consistent says whether a candle's values can be a candle: low
 * at most open and close, high at least both, volumes not negative, and a
 * close time the database can hold.  An answer with one that is not is
 * garbage (a corrupted body), not data.
 */
bool
md_candle_consistent(const MdCandle *c)
{
	const char *const *d = (const char *const *) c->dec;

	if (c->close_ms > MD_JSON_MAX_MS || c->close_ms <= c->open_ms)
		return false;
	if (d[MD_OPEN] == NULL || d[MD_HIGH] == NULL || d[MD_LOW] == NULL || d[MD_CLOSE] == NULL)
		return true;			/* nothing to compare */
	if (md_decimal_cmp(d[MD_LOW], d[MD_HIGH]) > 0 ||
		md_decimal_cmp(d[MD_OPEN], d[MD_LOW]) < 0 || md_decimal_cmp(d[MD_OPEN], d[MD_HIGH]) > 0 ||
		md_decimal_cmp(d[MD_CLOSE], d[MD_LOW]) < 0 || md_decimal_cmp(d[MD_CLOSE], d[MD_HIGH]) > 0)
		return false;
	for (int f = MD_VOLUME; f < MD_NUM_DECIMALS; f++)
		if (d[f] != NULL && d[f][0] == '-' && md_decimal_cmp(d[f], "0") < 0)
			return false;
	return true;
}

/*
 * md_endpoint_url_setting names the setting that holds an endpoint's base
 * URL, for hints.
 */
const char *
md_endpoint_url_setting(const MdExchange *ex, const MdEndpoint *ep)
{
	return ep->base_url != NULL && ep->url_setting != NULL ? ep->url_setting : ex->rest_url_setting;
}

/*
 * md_answer_by_status classifies what every exchange means alike, after
 * the adapter has taken what is its own (success, throttles, bans): a
 * passing failure (5xx, 408) is retried, another 4xx refuses the request,
 * with the exchange's message when its error body has one, and anything
 * else is unexpected and retried.
 */
void
md_answer_by_status(const MdExchange *ex, const MdHttpResponse *resp, MdAnswer *out)
{
	int			code;
	char	   *msg;

	if (resp->status >= 500 || resp->status == 408)
	{
		out->kind = MD_ANSWER_RETRY;
		out->message = psprintf("HTTP %ld from %s", resp->status, ex->display_name);
	}
	else if (resp->status >= 400)
	{
		out->kind = MD_ANSWER_REJECTED;
		if (ex->parse_error != NULL &&
			ex->parse_error(resp->body.data, resp->body.len, &code, &msg))
			out->message = psprintf("rejected the request: %s (code %d)", msg, code);
		else
			out->message = psprintf("answered HTTP %ld", resp->status);
	}
	else
	{
		out->kind = MD_ANSWER_RETRY;
		out->message = psprintf("unexpected HTTP status %ld", resp->status);
	}
}

/*
 * md_stream_session_new makes a stream session of an adapter with its
 * state zeroed, in cxt; the SQL parser functions use one that never
 * connects.
 */
MdStreamSession *
md_stream_session_new(const MdExchange *ex, MemoryContext cxt)
{
	MdStreamSession *sess = MemoryContextAllocZero(cxt, sizeof(MdStreamSession));

	sess->ex = ex;
	sess->cxt = cxt;
	if (ex->stream != NULL && ex->stream->session_size > 0)
		sess->state = MemoryContextAllocZero(cxt, ex->stream->session_size);
	return sess;
}

/*
 * md_stream_send queues a message for the worker to send on the session's
 * connection, after those queued before it.
 */
void
md_stream_send(MdStreamSession *sess, const char *msg, size_t len)
{
	MemoryContext old = MemoryContextSwitchTo(sess->cxt);
	StringInfo	buf = makeStringInfo();

	appendBinaryStringInfo(buf, msg, len);
	sess->outbox = lappend(sess->outbox, buf);
	MemoryContextSwitchTo(old);
}

/*
 * md_stream_close asks the worker to drop the session's connection and
 * connect again; the first reason given is the one logged.
 */
void
md_stream_close(MdStreamSession *sess, const char *reason)
{
	if (sess->close_reason == NULL)
		sess->close_reason = MemoryContextStrdup(sess->cxt, reason);
}

/*
 * md_stream_notice has the worker report something about the session
 * that is not fatal to it (a channel that stays silent): logged, and shown
 * in the worker's status.  Safe inside callbacks.
 */
void
md_stream_notice(MdStreamSession *sess, const char *msg)
{
	if (sess->notice != NULL)
		pfree((char *) sess->notice);
	sess->notice = MemoryContextStrdup(sess->cxt, msg);
}

/*
 * md_stream_klines makes room for n kline events in out, zeroed, and
 * returns the first.
 */
MdStreamKline *
md_stream_klines(MdStreamKlines *out, int n)
{
	out->k = palloc0(sizeof(MdStreamKline) * Max(n, 1));
	out->n = n;
	return out->k;
}
