/*-------------------------------------------------------------------------
 *
 * socketio.h
 *	  The client side of Engine.IO (protocols 3 and 4) and Socket.IO over
 *	  a WebSocket: packet framing, the handshake and the heartbeat.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_SOCKETIO_H
#define MDFEED_SOCKETIO_H

#include "exchange.h"

/* Engine.IO packet types, the first character of every message */
typedef enum MdEioType
{
	MD_EIO_OPEN = 0,
	MD_EIO_CLOSE = 1,
	MD_EIO_PING = 2,
	MD_EIO_PONG = 3,
	MD_EIO_MESSAGE = 4,
	MD_EIO_UPGRADE = 5,
	MD_EIO_NOOP = 6
} MdEioType;

/* Socket.IO packet types, the first character of an Engine.IO message */
typedef enum MdSioType
{
	MD_SIO_CONNECT = 0,
	MD_SIO_DISCONNECT = 1,
	MD_SIO_EVENT = 2,
	MD_SIO_ACK = 3,
	MD_SIO_CONNECT_ERROR = 4,
	MD_SIO_BINARY_EVENT = 5,
	MD_SIO_BINARY_ACK = 6
} MdSioType;

/* one WebSocket message, taken apart; pointers into the message */
typedef struct MdSioPacket
{
	MdEioType	eio;
	const char *payload;		/* what follows the Engine.IO type */
	size_t		payload_len;
	/* MD_EIO_MESSAGE only: */
	MdSioType	sio;
	const char *nsp;			/* the namespace, "/" if none was given */
	size_t		nsp_len;
	int64		ack_id;			/* -1 if none */
	const char *data;			/* the JSON that follows, possibly empty */
	size_t		data_len;
} MdSioPacket;

/* the client's state on one connection */
typedef struct MdSioClient
{
	int			eio;			/* protocol: 3 or 4 */
	bool		opened;			/* the open packet has come */
	bool		connected;		/* the default namespace is connected */
	int64		started_ms;		/* when the session began */
	int64		ping_interval_ms;
	int64		ping_timeout_ms;
	int64		next_ping_ms;	/* EIO 3: when the client pings next */
	int64		ping_sent_ms;	/* EIO 3: a ping waits for its pong, or 0 */
	int64		deadline_ms;	/* EIO 4: the server's next ping is due */
} MdSioClient;

extern bool md_sio_parse(const char *msg, size_t len, MdSioPacket *out, char **err);
extern bool md_sio_event_args(const MdSioPacket *p, struct json_object **root,
							  const char **name, struct json_object **arg, char **err);
extern void md_sio_send_event(MdStreamSession *sess, const char *name, const char *json_arg);
extern char *md_sio_url(const char *base, int *eio);
extern void md_sio_begin(MdSioClient *cl, int eio, int64 now_ms);
extern bool md_sio_handle(MdSioClient *cl, MdStreamSession *sess, const MdSioPacket *p,
						  int64 now_ms);
extern void md_sio_tick(MdSioClient *cl, MdStreamSession *sess, int64 now_ms);

#endif							/* MDFEED_SOCKETIO_H */
