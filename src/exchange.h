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
	char	   *stream;			/* combined-stream name, or NULL */
	int64		event_ms;
	char	   *symbol;
	const MdInterval *iv;
	MdCandle	candle;
} MdStreamKline;

typedef enum MdFrameKind
{
	MD_FRAME_KLINE,				/* a kline event: out is filled in */
	MD_FRAME_REPLY,				/* an answer to a client request */
	MD_FRAME_OTHER,				/* some other event, ignored */
	MD_FRAME_MALFORMED			/* garbage: *err says why */
} MdFrameKind;

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

	/* market streams: base URL, the URL of a combined stream, a stream's name */
	const char *(*ws_base_url) (void);
	char	   *(*stream_url) (const char *base, const char *first_stream);
	char	   *(*stream_name) (const char *symbol, const MdInterval *iv);
	/* a subscribe (or unsubscribe) message for n streams */
	char	   *(*subscribe_message) (bool subscribe, char **streams, int n, int64 id);

	/* market streams */
	MdFrameKind (*parse_stream_frame) (const char *frame, size_t len,
									   MdStreamKline *out, char **err);
} MdExchange;

extern const MdExchange md_binance;

extern const MdExchange *md_exchange_lookup(const char *name);
extern const char *md_exchange_names(void);

#endif							/* MDFEED_EXCHANGE_H */
