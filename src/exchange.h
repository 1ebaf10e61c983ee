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

struct MdHttpResponse;

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

#define MD_ALL_CANDLE_FIELDS ((1u << MD_NUM_DECIMALS) - 1)

typedef struct MdCandle
{
	const char *symbol;			/* set by the caller before storing */
	int64		open_ms;
	int64		close_ms;
	char	   *dec[MD_NUM_DECIMALS];	/* exact decimal strings; NULL where
										 * the exchange sends none */
	int64		trades;
	bool		closed;
} MdCandle;

/* what an exchange says of one instrument */
typedef struct MdInstrument
{
	char	   *symbol;
	char	   *status;			/* the exchange's words */
	char	   *contract_type;
	bool		tradable;		/* normalised: a market mdfeed may track */
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
	MD_FRAME_KLINE,				/* kline events: out holds one or more */
	MD_FRAME_REPLY,				/* an answer to a client request (*err set
								 * if the exchange refused it) */
	MD_FRAME_OTHER,				/* some other event, ignored */
	MD_FRAME_MALFORMED			/* garbage: *err says why */
} MdFrameKind;

/* the kline events of one frame (one for Binance; CoinDCX sends arrays) */
typedef struct MdStreamKlines
{
	MdStreamKline *k;			/* palloc'd in the caller's context */
	int			n;
} MdStreamKlines;

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
 *	frame		for every complete message received: the kline events it
 *				carries (palloc'd), or what else it was;
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
	const char *notice;			/* set by md_stream_notice, for the worker's
								 * status; NULL once taken */
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
	bool		closes_final;	/* a closed kline of the stream carries the
								 * final values; if not, the stream's bars
								 * are stored as forming and each is made
								 * exact over REST once its close time has
								 * passed */

	/* the setting that holds the streams' base URL, for messages */
	const char *url_setting;

	/* the session */
	size_t		session_size;
	char	   *(*open) (MdStreamSession *sess, const MdStreamKey *keys, int nkeys,
						 int *keys_in_url);
	MdFrameKind (*frame) (MdStreamSession *sess, const char *data, size_t len,
						  MdStreamKlines *out, char **err);
	void		(*tick) (MdStreamSession *sess, int64 now_ms);	/* optional */
	bool		(*ready) (MdStreamSession *sess);	/* optional */
	void		(*subscribe) (MdStreamSession *sess, const MdStreamKey *keys, int nkeys);
	void		(*unsubscribe) (MdStreamSession *sess, const MdStreamKey *keys, int nkeys);
} MdStreamOps;


/*
 * What an answer means, as the adapter reads it (classify): the status, the
 * headers and the body are the exchange's own business.
 */
typedef enum MdAnswerKind
{
	MD_ANSWER_OK,				/* the body is the answer: parse it */
	MD_ANSWER_RETRY,			/* a passing failure (5xx and the like) */
	MD_ANSWER_THROTTLED,		/* over the exchange's limit: no call before
								 * until_ms */
	MD_ANSWER_BANNED,			/* this IP is banned until until_ms */
	MD_ANSWER_REJECTED			/* refused: retrying will not help */
} MdAnswerKind;

typedef struct MdAnswer
{
	MdAnswerKind kind;
	int64		until_ms;		/* THROTTLED, BANNED: when calls may resume,
								 * or 0 for the budget's default */
	int			used;			/* the exchange's own count of its first
								 * limit used in the window, or -1 */
	char	   *message;		/* REJECTED, RETRY: what the exchange said,
								 * or NULL */
} MdAnswer;

/* how a rate limit counts */
typedef enum MdLimitKind
{
	MD_LIMIT_WINDOW,			/* units per clock window (weight a minute) */
	MD_LIMIT_BUCKET				/* a token bucket refilled at limit a window */
} MdLimitKind;

/* one rate limit an exchange publishes; its state lives in shared memory */
typedef struct MdRateLimit
{
	const char *name;			/* "weight", "funding": for status and logs */
	MdLimitKind kind;
	int			limit;			/* units per window, as published */
	int64		window_ms;
} MdRateLimit;

#define MD_MAX_LIMITS 4

/*
 * One REST endpoint: its path (NULL when a path function builds it) and
 * what a request costs: cost units of limits[limit].
 */
typedef struct MdEndpoint
{
	const char *path;
	int			limit;
	int			cost;
	const char *(*base_url) (void); /* NULL: the exchange's rest_base_url */
	const char *url_setting;	/* the GUC naming base_url, for hints */
} MdEndpoint;

/* what an answer of some kind must look like, for a user whose body failed */
typedef struct MdAnswerHint
{
	const char *kind;			/* mdfeed.parse_answer's kinds: "klines", ... */
	const char *hint;
} MdAnswerHint;

/*
 * Bulk archives: files of past periods (a month, a day) that an exchange
 * publishes beside its REST API, at no cost to the REST budget.  Each file
 * is a zip holding one CSV, with a checksum file beside it.  The adapter
 * names the files and reads their lines; what is fetched, verified and
 * imported, and what is left to REST, is archive.c's.
 *
 * A line parser says what the line is: a row (out filled, its strings
 * palloc'd, every decimal checked as REST's parsers check them), the
 * header, or garbage (*err says why).  It never raises.
 */
typedef enum MdArchiveLine
{
	MD_LINE_ROW,
	MD_LINE_HEADER,
	MD_LINE_MALFORMED
} MdArchiveLine;

typedef struct MdArchiveOps
{
	/* the base URL, or "" when the user turned the archives off */
	const char *(*base_url) (void);
	const char *url_setting;	/* the GUC naming it, for messages */

	/*
	 * The archive's spelling of each of md_intervals, in that order, for
	 * monthly and for daily files; NULL where it has none.
	 */
	const char *const *monthly_codes;
	const char *const *daily_codes;

	/*
	 * When files appear: a day's this long after the day ends, a month's
	 * after the month ends.  Earlier asks cost a not-found answer, no
	 * more: these only spare the requests.
	 */
	int64		daily_delay_ms;
	int64		monthly_delay_ms;

	/* the paths (under base_url) of a period's files; month is 1..12 */
	char	   *(*klines_path) (const char *symbol, const char *code, int year, int month,
								int day);	/* day 0: the monthly file */
	char	   *(*metrics_path) (const char *symbol, int year, int month, int day); /* optional */
	/* the checksum file of a file is at its path with this appended */
	const char *checksum_suffix;

	/*
	 * The SHA-256 a checksum file gives for the file named name, as 64 hex
	 * digits in lower case (false, with *err, if it gives none).
	 */
	bool		(*parse_checksum) (const char *body, size_t len, const char *name,
								   char *hex, char **err);
	MdArchiveLine (*parse_kline_line) (const char *line, size_t len, MdCandle *out, char **err);
	MdArchiveLine (*parse_metrics_line) (const char *line, size_t len, MdOpenInterest *out,
										 char **err);	/* optional */

	/* the table of the 5-minute open interest the metrics files hold */
	const char *open_interest_5m_table;
} MdArchiveOps;

/*
 * MdExchange is an exchange adapter, in the manner of PostgreSQL's
 * IndexAmRoutine: one const struct per exchange market, filled in with
 * designated initialisers.  Callbacks marked optional may be NULL, and
 * their NULL says the exchange does not offer the thing (no funding, no
 * tickers, no stream); the workers look before they call.
 */
typedef struct MdExchange
{
	const char *name;			/* what users pass as exchange => */
	const char *display_name;	/* in sentences: "Binance" */
	const char *market;			/* "USD-M perpetual futures", for messages */

	/*
	 * Storage: the candle table family, mdfeed.<candle_prefix><suffix> with
	 * the suffix of md_intervals ("1m", "1mo"), and the derivatives tables
	 * (NULL when the exchange has none).
	 */
	const char *candle_prefix;
	uint32		candle_fields;	/* bit (1 << MdCandleField) per decimal
								 * column the family has */
	uint32		candle_optional;	/* of those, the ones the exchange may
									 * leave out (NULL in the table) */
	bool		candle_trades;	/* the family has a trades column */
	const char *funding_table;
	const char *open_interest_table;

	/*
	 * The exchange's code of each of md_intervals, in that order; NULL
	 * means the exchange does not offer the interval.
	 */
	const char *const *interval_codes;

	/* rate limits; limits[0] is the one exchange info may announce */
	MdRateLimit limits[MD_MAX_LIMITS];
	int			nlimits;

	/*
	 * Another adapter of the same exchange whose budget this one spends
	 * (one host, one limit per IP for both markets), or NULL; its limits
	 * are then the ones that count.
	 */
	const struct MdExchange *budget_of;

	/* REST */
	const char *(*rest_base_url) (void);
	const char *rest_url_setting;	/* the GUC naming it, for hints */
	/* how to take an answer that arrived (any status) */
	void		(*classify) (const struct MdHttpResponse *resp, MdAnswer *out);
	/* the exchange's error body: code and message, if it is one (optional) */
	bool		(*parse_error) (const char *body, size_t len, int *code, char **msg);
	/* the end of an IP ban, from a ban answer's body, or 0 (optional) */
	int64		(*ban_until_ms) (const char *body, size_t len);
	/* what each answer looks like, ended by {NULL} (optional) */
	const MdAnswerHint *answer_hints;

	/*
	 * klines (required): a page is a window of at most limit candles from
	 * start_ms, ending before end_ms; the rows carry the interval's
	 * candles (iv: those whose answer has no close time need it)
	 */
	MdEndpoint	klines;
	bool		klines_windowed;	/* true: the runner asks for a window of
									 * at most limit candles (end_ms is its
									 * end); false: from start to the range's
									 * end, the exchange sends the oldest
									 * limit rows */
	int			(*klines_page_limit) (int64 rows_wanted);
	/* the cost of a page of limit rows, when it depends on limit (optional) */
	int			(*klines_cost) (int limit);
	char	   *(*klines_path) (const char *symbol, const char *interval_code,
								int64 start_ms, int64 end_ms, int limit);
	bool		(*parse_klines) (const char *body, size_t len, const MdInterval *iv,
								 MdCandle **rows, int *nrows, char **err);

	/* the exchange's clock (optional: without it the local clock is used) */
	MdEndpoint	server_time;
	bool		(*parse_server_time) (const char *body, size_t len, int64 *ms);

	/* exchange info: the instruments (required), the weight limit (optional) */
	MdEndpoint	info;
	bool		(*parse_weight_limit) (const char *body, size_t len, int *limit);
	bool		(*parse_instruments) (const char *body, size_t len,
									  struct MdInstrument **out, int *n, char **err);

	/* 24 h tickers of every symbol in one request (optional: no ranking) */
	MdEndpoint	tickers;
	bool		(*parse_tickers) (const char *body, size_t len, MdTicker **out, int *n, char **err);

	/* funding history (optional) */
	MdEndpoint	funding;
	int			funding_max_limit;
	char	   *(*funding_path) (const char *symbol, int64 start_ms, int64 end_ms, int limit);
	bool		(*parse_funding) (const char *body, size_t len, MdFunding **out, int *n, char **err);

	/* hourly open interest, kept by the exchange for a limited time (optional) */
	MdEndpoint	open_interest;
	int			oi_max_limit;
	int64		oi_retention_ms;
	char	   *(*oi_path) (const char *symbol, int64 start_ms, int64 end_ms, int limit);
	bool		(*parse_open_interest) (const char *body, size_t len, MdOpenInterest **out, int *n,
										char **err);

	/* market streams, or NULL if the exchange offers none */
	const MdStreamOps *stream;

	/* bulk archives of past periods, or NULL if the exchange has none */
	const MdArchiveOps *archive;
} MdExchange;

#define MD_MAX_EXCHANGES 8

extern const MdExchange md_binance;
extern const MdExchange md_coindcx;
extern const MdExchange md_coindcx_spot;
extern const MdArchiveOps md_binance_archive;

extern const MdExchange *md_exchange_lookup(const char *name);
extern int	md_exchange_id(const MdExchange *ex);
extern int	md_num_exchanges(void);
extern const char *md_exchange_names(void);
extern const MdInterval *md_exchange_interval(const MdExchange *ex, const char *name);
extern const char *md_exchange_interval_code(const MdExchange *ex, const MdInterval *iv);
extern const char *md_exchange_interval_names(const MdExchange *ex);
extern char *md_candle_table(const MdExchange *ex, const MdInterval *iv);
extern int	md_exchange_tracked_intervals(const MdExchange *ex, const MdInterval **ivs, int max);
extern const MdExchange *md_exchange_at(int index);

/* what every exchange's answers mean alike (exchange.c) */
extern bool md_candle_consistent(const MdCandle *c);
extern const char *md_endpoint_url_setting(const MdExchange *ex, const MdEndpoint *ep);
extern void md_answer_by_status(const MdExchange *ex, const struct MdHttpResponse *resp,
								MdAnswer *out);

/* stream sessions (exchange.c) */
extern MdStreamSession *md_stream_session_new(const MdExchange *ex, MemoryContext cxt);
extern void md_stream_send(MdStreamSession *sess, const char *msg, size_t len);
extern void md_stream_close(MdStreamSession *sess, const char *reason);
extern void md_stream_notice(MdStreamSession *sess, const char *msg);
extern MdStreamKline *md_stream_klines(MdStreamKlines *out, int n);

#endif							/* MDFEED_EXCHANGE_H */
