/*-------------------------------------------------------------------------
 *
 * socketio.c
 *	  The client side of Engine.IO and Socket.IO over a WebSocket, for
 *	  adapters whose exchange streams through socket.io (CoinDCX).
 *
 * No socket.io client library for C is packaged in Debian, so the framing
 * is ours; it is small.  Over a WebSocket every message is one Engine.IO
 * packet: a digit for its type and a payload (no length prefix: that is
 * long polling's).  A MESSAGE packet carries one Socket.IO packet: a digit
 * for its type, an optional namespace ("/admin,"), an optional ack id, and
 * JSON: 42["event",{...}] is an event on the default namespace.
 *
 * The two protocol versions differ in who sends the heartbeat.  Under
 * Engine.IO 4 the server pings every pingInterval and closes a client that
 * has not answered within pingTimeout; under 3 the client pings and the
 * server answers.  So under 4 we answer and take the server for gone when
 * no packet comes within interval + timeout; under 3 we ping and take it
 * for gone when no pong comes within timeout.  Under 4 the client connects
 * the default namespace (40); a version 4 server taking a version 3 client
 * connects it by itself, so under 3 we wait for its 40.
 *
 * Nothing here raises an error: it runs inside libwebsockets callbacks.
 * What needs sending goes to the session's outbox, and a dead session is
 * closed with md_stream_close.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "lib/stringinfo.h"

#include "common.h"
#include "json.h"
#include "socketio.h"

/* the open packet and the namespace connect must come this soon */
#define HANDSHAKE_TIMEOUT_MS 20000
/* heartbeat settings from the server beyond this are not believed */
#define MAX_HEARTBEAT_MS (10 * 60 * 1000)

/*
 * md_sio_parse takes a WebSocket message apart.  It returns false, with
 * *err set, for what is no Engine.IO packet.
 */
bool
md_sio_parse(const char *msg, size_t len, MdSioPacket *out, char **err)
{
	size_t		i;

	memset(out, 0, sizeof(*out));
	out->ack_id = -1;
	if (len == 0 || msg[0] < '0' || msg[0] > '6')
	{
		*err = pstrdup("not an Engine.IO packet");
		return false;
	}
	out->eio = (MdEioType) (msg[0] - '0');
	out->payload = msg + 1;
	out->payload_len = len - 1;
	if (out->eio != MD_EIO_MESSAGE)
		return true;

	if (len < 2 || msg[1] < '0' || msg[1] > '6')
	{
		*err = pstrdup("Engine.IO message without a Socket.IO packet type");
		return false;
	}
	out->sio = (MdSioType) (msg[1] - '0');
	i = 2;
	/* binary packets count their attachments: 51-["event",...] */
	if (out->sio == MD_SIO_BINARY_EVENT || out->sio == MD_SIO_BINARY_ACK)
	{
		while (i < len && msg[i] >= '0' && msg[i] <= '9')
			i++;
		if (i >= len || msg[i] != '-')
		{
			*err = pstrdup("binary Socket.IO packet without its attachment count");
			return false;
		}
		i++;
	}
	out->nsp = "/";
	out->nsp_len = 1;
	if (i < len && msg[i] == '/')
	{
		size_t		start = i;

		while (i < len && msg[i] != ',')
			i++;
		out->nsp = msg + start;
		out->nsp_len = i - start;
		if (i < len)
			i++;				/* the comma */
	}
	if (i < len && msg[i] >= '0' && msg[i] <= '9')
	{
		int64		id = 0;
		int			digits = 0;

		while (i < len && msg[i] >= '0' && msg[i] <= '9')
		{
			if (++digits > 15)
			{
				*err = pstrdup("Socket.IO ack id too long");
				return false;
			}
			id = id * 10 + (msg[i++] - '0');
		}
		out->ack_id = id;
	}
	out->data = msg + i;
	out->data_len = len - i;
	return true;
}

/*
 * md_sio_event_args parses an event's JSON, ["name", arg, ...]: *name is
 * the event's name, *arg its first argument (NULL if none).  Both belong to
 * *root, which the caller releases with json_object_put.
 */
bool
md_sio_event_args(const MdSioPacket *p, struct json_object **root,
				  const char **name, struct json_object **arg, char **err)
{
	*root = NULL;
	*name = NULL;
	*arg = NULL;
	if (p->eio != MD_EIO_MESSAGE || p->sio != MD_SIO_EVENT)
	{
		*err = pstrdup("not a Socket.IO event");
		return false;
	}
	*root = md_json_parse(p->data, p->data_len, err);
	if (*root == NULL)
		return false;
	if (!json_object_is_type(*root, json_type_array) || json_object_array_length(*root) < 1 ||
		(*name = md_json_get_cstring(json_object_array_get_idx(*root, 0), 200)) == NULL)
	{
		*err = pstrdup("Socket.IO event that is not an array starting with its name");
		json_object_put(*root);
		*root = NULL;
		return false;
	}
	if (json_object_array_length(*root) > 1)
		*arg = json_object_array_get_idx(*root, 1);
	return true;
}

/*
 * md_sio_send_event queues 42["name",arg] on the session: an event on the
 * default namespace.  json_arg is JSON text; name needs no escaping.
 */
void
md_sio_send_event(MdStreamSession *sess, const char *name, const char *json_arg)
{
	char	   *msg = psprintf("42[\"%s\",%s]", name, json_arg);

	md_stream_send(sess, msg, strlen(msg));
	pfree(msg);
}

/*
 * md_sio_url is the URL to connect to: base as given when it already names
 * the socket.io path (its EIO parameter says the protocol, 3 when absent,
 * as engine.io servers take it), else base with /socket.io/ and protocol
 * 4, the server's own.  *eio is set to the protocol.  palloc'd.
 */
char *
md_sio_url(const char *base, int *eio)
{
	size_t		len = strlen(base);
	const char *p;

	if (strstr(base, "/socket.io/") != NULL)
	{
		*eio = 3;
		p = strstr(base, "EIO=");
		if (p != NULL && p[4] == '4')
			*eio = 4;
		return pstrdup(base);
	}
	while (len > 0 && base[len - 1] == '/')
		len--;
	*eio = 4;
	return psprintf("%.*s/socket.io/?EIO=4&transport=websocket", (int) len, base);
}

/*
 * md_sio_begin starts a client's state for a new connection.
 */
void
md_sio_begin(MdSioClient *cl, int eio, int64 now_ms)
{
	memset(cl, 0, sizeof(*cl));
	cl->eio = eio;
	cl->started_ms = now_ms;
}

/*
 * read_heartbeat reads a bounded positive integer member of the open
 * packet.
 */
static bool
read_heartbeat(struct json_object *open, const char *key, int64 *ms)
{
	struct json_object *o;
	int64		v;

	if (!json_object_object_get_ex(open, key, &o) || !json_object_is_type(o, json_type_int))
		return false;
	v = json_object_get_int64(o);
	if (v <= 0 || v > MAX_HEARTBEAT_MS)
		return false;
	*ms = v;
	return true;
}

/*
 * handle_open takes the open packet: {"sid":..,"pingInterval":..,
 * "pingTimeout":..}; maxPayload and upgrades are not needed.
 */
static void
handle_open(MdSioClient *cl, MdStreamSession *sess, const MdSioPacket *p, int64 now_ms)
{
	char	   *err = NULL;
	struct json_object *root = md_json_parse(p->payload, p->payload_len, &err);
	bool		ok;

	ok = root != NULL && json_object_is_type(root, json_type_object) &&
		read_heartbeat(root, "pingInterval", &cl->ping_interval_ms) &&
		read_heartbeat(root, "pingTimeout", &cl->ping_timeout_ms);
	if (root != NULL)
		json_object_put(root);
	if (!ok)
	{
		md_stream_close(sess, "malformed Engine.IO open packet");
		return;
	}
	cl->opened = true;
	if (cl->eio == 4)
	{
		md_stream_send(sess, "40", 2);
		cl->deadline_ms = now_ms + cl->ping_interval_ms + cl->ping_timeout_ms;
	}
	else
		cl->next_ping_ms = now_ms + cl->ping_interval_ms;
}

/*
 * md_sio_handle does what the protocol asks of a packet: the handshake,
 * the heartbeat, the namespace's connect and disconnect.  It returns false
 * for what is the application's: an event or ack on the default namespace.
 */
bool
md_sio_handle(MdSioClient *cl, MdStreamSession *sess, const MdSioPacket *p, int64 now_ms)
{
	/* under protocol 4, anything from the server shows it is alive */
	if (cl->eio == 4 && cl->opened)
		cl->deadline_ms = now_ms + cl->ping_interval_ms + cl->ping_timeout_ms;

	switch (p->eio)
	{
		case MD_EIO_OPEN:
			if (!cl->opened)
				handle_open(cl, sess, p, now_ms);
			return true;
		case MD_EIO_CLOSE:
			md_stream_close(sess, "the server closed the Engine.IO session");
			return true;
		case MD_EIO_PING:
			/* the server's heartbeat (protocol 4): answer it, probe and all */
			if (cl->eio == 4)
			{
				char	   *pong = psprintf("3%.*s", (int) Min(p->payload_len, 64), p->payload);

				md_stream_send(sess, pong, strlen(pong));
				pfree(pong);
			}
			return true;
		case MD_EIO_PONG:
			cl->ping_sent_ms = 0;
			return true;
		case MD_EIO_UPGRADE:
		case MD_EIO_NOOP:
			return true;
		case MD_EIO_MESSAGE:
			break;
	}

	/* another namespace is none of ours */
	if (p->nsp_len != 1 || p->nsp[0] != '/')
		return true;
	switch (p->sio)
	{
		case MD_SIO_CONNECT:
			/* before the open packet it is no handshake of ours */
			if (cl->opened)
				cl->connected = true;
			return true;
		case MD_SIO_DISCONNECT:
			md_stream_close(sess, "the server disconnected the socket");
			return true;
		case MD_SIO_CONNECT_ERROR:
			{
				char	   *why = md_clip_utf8(p->data, (int) Min(p->data_len, INT_MAX), 200);

				md_stream_close(sess, psprintf("the server refused the socket: %s", why));
				return true;
			}
		case MD_SIO_EVENT:
		case MD_SIO_ACK:
			return false;
		case MD_SIO_BINARY_EVENT:
		case MD_SIO_BINARY_ACK:
			return true;		/* their attachments would follow: unused */
	}
	return true;
}

/*
 * md_sio_tick keeps the heartbeat going and drops a session whose server
 * has gone quiet or never finished the handshake.
 */
void
md_sio_tick(MdSioClient *cl, MdStreamSession *sess, int64 now_ms)
{
	if (!cl->connected && now_ms - cl->started_ms > HANDSHAKE_TIMEOUT_MS)
	{
		md_stream_close(sess, cl->opened ? "the server did not connect the socket" :
						"no Engine.IO open packet");
		return;
	}
	if (!cl->opened)
		return;
	if (cl->eio == 4)
	{
		if (now_ms > cl->deadline_ms)
			md_stream_close(sess, psprintf("no ping from the server for %d ms",
										   (int) (cl->ping_interval_ms + cl->ping_timeout_ms)));
		return;
	}
	if (cl->ping_sent_ms != 0 && now_ms - cl->ping_sent_ms > cl->ping_timeout_ms)
	{
		md_stream_close(sess, psprintf("ping unanswered for %d ms", (int) cl->ping_timeout_ms));
		return;
	}
	if (now_ms >= cl->next_ping_ms)
	{
		md_stream_send(sess, "2", 1);
		if (cl->ping_sent_ms == 0)
			cl->ping_sent_ms = now_ms;
		cl->next_ping_ms = now_ms + cl->ping_interval_ms;
	}
}
