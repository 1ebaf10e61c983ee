/*-------------------------------------------------------------------------
 *
 * exchange.c
 *	  The registry of the exchange adapters mdfeed knows, and the helpers
 *	  every adapter's stream sessions share.
 *
 * A worker is given its adapter as an index into the registry (in
 * bgw_extra), not as a pointer, which need not mean the same in another
 * process.  A session's outbox and close request are plain data the
 * adapter fills and the worker empties, so that no adapter needs to know
 * libwebsockets.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "exchange.h"

static const MdExchange *const md_exchanges[] = {
	&md_binance,
};

/*
 * md_exchange_lookup finds an adapter by the name users give ("binance").
 */
const MdExchange *
md_exchange_lookup(const char *name)
{
	for (int i = 0; i < lengthof(md_exchanges); i++)
		if (strcmp(md_exchanges[i]->name, name) == 0)
			return md_exchanges[i];
	return NULL;
}

const char *
md_exchange_names(void)
{
	return "binance";
}

/*
 * md_num_exchanges is the number of adapters in the registry; workers are
 * given an adapter by its index there.
 */
int
md_num_exchanges(void)
{
	return lengthof(md_exchanges);
}

/*
 * md_exchange_at returns the adapter at an index of the registry, or NULL.
 */
const MdExchange *
md_exchange_at(int index)
{
	if (index < 0 || index >= lengthof(md_exchanges))
		return NULL;
	return md_exchanges[index];
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
