/*-------------------------------------------------------------------------
 *
 * exchange.h
 *	  The exchange adapter interface: everything that differs between
 *	  exchanges (URLs, page sizes and weights, JSON shapes) sits behind it.
 *
 * Workers speak to an MdExchange; a second exchange is a new file filling
 * in the same struct, not a branch in every worker.  Parsers never raise
 * errors: the exchange's garbage is reported as false plus a message, and
 * the caller decides (retry the request, count and skip the frame).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_EXCHANGE_H
#define MDFEED_EXCHANGE_H

#include "nodes/pg_list.h"

#include "interval.h"

/* the decimal fields of a candle, in this order */
typedef enum MdCandleField
{
	MD_OPEN,
	MD_HIGH,
	MD_LOW,
	MD_CLOSE,
	MD_VOLUME,
	MD_QUOTE_VOLUME,
	MD_TAKER_BUY_BASE,
	MD_TAKER_BUY_QUOTE,
	MD_NUM_DECIMALS
} MdCandleField;

typedef struct MdCandle
{
	const char *symbol;			/* set by the caller before storing */
	int64		open_ms;
	int64		close_ms;
	char	   *dec[MD_NUM_DECIMALS];	/* exact decimal strings */
	int64		trades;
	bool		closed;
} MdCandle;

/* what an exchange says of one instrument */
typedef struct MdInstrument
{
	char	   *symbol;
	char	   *status;
	char	   *contract_type;
	char	   *base_asset;
	char	   *quote_asset;
	int64		onboard_ms;		/* 0 if unknown */
	char	   *tick_size;		/* decimal strings, or NULL */
	char	   *step_size;
} MdInstrument;

/* one funding event */
typedef struct MdFunding
{
	int64		funding_ms;		/* as the exchange sent it */
	char	   *rate;
	char	   *mark_price;		/* NULL when the exchange omits it */
} MdFunding;

/* one open-interest statistic */
typedef struct MdOpenInterest
{
	int64		ts_ms;
	char	   *sum_open_interest;
	char	   *sum_open_interest_value;
} MdOpenInterest;

/* 24 h statistics of one symbol */
typedef struct MdTicker
{
	char	   *symbol;
	char	   *quote_volume;
} MdTicker;

/* one kline event from a market stream */
typedef struct MdStreamKline
{
	char	   *stream;			/* the exchange's name of the stream, or NULL */
	int64		event_ms;
	char	   *symbol;
	const MdInterval *iv;
	MdCandle	candle;
} MdStreamKline;

typedef enum MdFrameKind
{
	MD_FRAME_KLINE,				/* a kline event: out is filled in */
	MD_FRAME_REPLY,				/* an answer to a client request (*err set
								 * if the exchange refused it) */
	MD_FRAME_OTHER,				/* some other event, ignored */
	MD_FRAME_MALFORMED			/* garbage: *err says why */
} MdFrameKind;

/*
 * Market streams as session operations.
 *
 * A stream carries keys: (symbol, interval) pairs, one candle series each.
 * The worker decides which keys go on which connection; the adapter turns
 * that into its protocol.  Every connection has a session: the adapter's
 * state for it (ops->session_size bytes, zeroed, in sess->state), a memory
 * context that lives as long as the connection (sess->cxt: allocate there
 * what must outlive a call), and an outbox of messages the adapter wants
 * sent (md_stream_send), which the worker writes in order, ahead of any
 * subscription.  The worker calls
 *
 *	open		once, before connecting: the URL to connect to, for a
 *				connection that will carry keys[0..nkeys), and how many of
 *				those keys (the first *keys_in_url) the URL already carries;
 *	frame		for every complete message received;
 *	tick		(optional) on every pass of its loop (50 ms apart at most)
 *				while the connection is open, for heartbeats and timeouts;
 *	ready		(optional; NULL = as soon as the connection is open) whether
 *				the session takes subscriptions now (a socket.io stream only
 *				after its connect packet is answered);
 *	subscribe, unsubscribe
 *				for at most max_keys_per_message keys, which queue the
 *				message(s) that do it.
 *
 * None of them may raise an error: frame, and what the others queue, run
 * inside libwebsockets callbacks, where a longjmp would leave the library
 * broken.  An adapter that finds its session dead (a heartbeat unanswered,
 * the server's disconnect packet) calls md_stream_close, and the worker
 * reconnects.  sess->ex->name and sess->conn_id name the connection in
 * log lines.
 */
typedef struct MdStreamKey
{
	const char *symbol;			/* as the exchange lists it (BTCUSDT) */
	const MdInterval *iv;
} MdStreamKey;

typedef struct MdStreamSession
{
	const struct MdExchange *ex;
	int			conn_id;		/* for log lines, 0 if none */
	MemoryContext cxt;			/* lives as long as the connection */
	void	   *state;			/* the adapter's: ops->session_size bytes */
	List	   *outbox;			/* of StringInfo, oldest first */
	const char *close_reason;	/* set by md_stream_close */
} MdStreamSession;

typedef struct MdStreamOps
{
	/* limits of the exchange's streams */
	int			max_keys_per_connection;	/* mdfeed.streams_per_connection
											 * may set fewer */
	int			max_keys_per_message;	/* in one (un)subscribe message */
	int			client_msgs_per_sec;	/* the exchange's limit of messages a
										 * client sends on one connection;
										 * mdfeed sends at most half */
	int64		max_connection_age_ms;	/* the exchange closes connections
										 * this old; 0 if it does not */
	/* capabilities */
	bool		replies_to_subscribe;	/* every (un)subscribe message gets
										 * one MD_FRAME_REPLY, in order */

	/* the setting that holds the streams' base URL, and its value */
	const char *url_setting;
	const char *(*base_url) (void);

	/* the session */
	size_t		session_size;
	char	   *(*open) (MdStreamSession *sess, const MdStreamKey *keys, int nkeys,
						 int *keys_in_url);
	MdFrameKind (*frame) (MdStreamSession *sess, const char *data, size_t len,
						  MdStreamKline *out, char **err);
	void		(*tick) (MdStreamSession *sess, int64 now_ms);	/* optional */
	bool		(*ready) (MdStreamSession *sess);	/* optional */
	void		(*subscribe) (MdStreamSession *sess, const MdStreamKey *keys, int nkeys);
	void		(*unsubscribe) (MdStreamSession *sess, const MdStreamKey *keys, int nkeys);
} MdStreamOps;

typedef struct MdExchange
{
	const char *name;

	/* REST */
	const char *(*rest_base_url) (void);
	int			(*klines_page_limit) (int64 rows_wanted);
	int			(*klines_weight) (int limit);
	char	   *(*klines_path) (const char *symbol, const MdInterval *iv,
								int64 start_ms, int64 end_ms, int limit);
	bool		(*parse_klines) (const char *body, size_t len,
								 MdCandle **rows, int *nrows, char **err);
	/* the exchange's error body: code and message, if it is one */
	bool		(*parse_error) (const char *body, size_t len, int *code, char **msg);
	/* the end of an IP ban, from a 418 answer's body, or 0 */
	int64		(*ban_until_ms) (const char *body, size_t len);
	const char *time_path;
	int			time_weight;
	bool		(*parse_server_time) (const char *body, size_t len, int64 *ms);
	const char *info_path;
	int			info_weight;
	/* the REST weight limit per minute announced by exchange info */
	bool		(*parse_weight_limit) (const char *body, size_t len, int *limit);
	/* the instruments exchange info lists */
	bool		(*parse_instruments) (const char *body, size_t len,
									  struct MdInstrument **out, int *n, char **err);

	/* 24 h tickers of every symbol, in one request */
	const char *tickers_path;
	int			tickers_weight;
	bool		(*parse_tickers) (const char *body, size_t len, MdTicker **out, int *n, char **err);

	/* funding history, with its own request limit (per 5 minutes) */
	int			funding_max_limit;
	int			funding_requests_per_5min;
	char	   *(*funding_path) (const char *symbol, int64 start_ms, int64 end_ms, int limit);
	bool		(*parse_funding) (const char *body, size_t len, MdFunding **out, int *n, char **err);

	/* hourly open interest, kept by the exchange for a limited time */
	int			oi_max_limit;
	int			oi_requests_per_5min;
	int64		oi_retention_ms;
	char	   *(*oi_path) (const char *symbol, int64 start_ms, int64 end_ms, int limit);
	bool		(*parse_open_interest) (const char *body, size_t len, MdOpenInterest **out, int *n,
										char **err);

	/* market streams, or NULL if the exchange offers none */
	const MdStreamOps *stream;
} MdExchange;

extern const MdExchange md_binance;

extern const MdExchange *md_exchange_lookup(const char *name);
extern const char *md_exchange_names(void);
extern int	md_num_exchanges(void);
extern const MdExchange *md_exchange_at(int index);

/* stream sessions (exchange.c) */
extern MdStreamSession *md_stream_session_new(const MdExchange *ex, MemoryContext cxt);
extern void md_stream_send(MdStreamSession *sess, const char *msg, size_t len);
extern void md_stream_close(MdStreamSession *sess, const char *reason);

#endif							/* MDFEED_EXCHANGE_H */
