/*-------------------------------------------------------------------------
 *
 * sql_parse.c
 *	  The exchange's answers from SQL: the parsers the workers use, run on
 *	  text or bytes given by hand, an ingest that writes a klines answer as
 *	  a worker does, and the on-demand fetches of instruments and tickers.
 *
 * Every function here runs exactly the code a worker runs on the same
 * answer (the adapter's parser, md_store_candles, md_store_instruments),
 * so a test or a person looking at a captured answer sees what a worker
 * would make of it; none keeps a parser of its own.
 *
 * A worker that crashes takes the whole cluster down (the postmaster
 * resets shared memory when any backend dies), so the parsers must survive
 * anything the network can deliver.  mdfeed.parse_answer(exchange, what,
 * body) is the one entry point to every parser, for the robustness test:
 * it runs the parser the workers run on exactly the bytes given (the body
 * is bytea, so NUL bytes and invalid UTF-8 reach the parser as they would
 * from a socket), and writes nothing.
 *
 * A parser's verdict becomes a clean ERROR with SQLSTATE 22P02 and the
 * parser's own message.  What a parser accepts is then converted the way
 * the workers store it (numeric_in for decimals, the database encoding for
 * text); should that conversion fail, the parser let through something the
 * store rejects, which would abort a worker's transaction: that is reported
 * as an internal error, so that a test can tell it from a clean rejection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "common.h"
#include "exchange.h"
#include "instruments.h"
#include "shmem.h"
#include "sql_args.h"
#include "sql_parse.h"
#include "store.h"
#include "zipread.h"

PG_FUNCTION_INFO_V1(mdfeed_parse_klines);
PG_FUNCTION_INFO_V1(mdfeed_parse_stream);
PG_FUNCTION_INFO_V1(mdfeed_ingest_klines);
PG_FUNCTION_INFO_V1(mdfeed_refresh_instruments);
PG_FUNCTION_INFO_V1(mdfeed_fetch_tickers);
PG_FUNCTION_INFO_V1(mdfeed_parse_answer);

static const char *answer_hint(const MdExchange *ex, const char *kind);

/*
 * numeric_datum converts an exact decimal string as the workers store it:
 * numeric_in, which raises its own error on a bad value.
 */
static Datum
numeric_datum(const char *s)
{
	return DirectFunctionCall3(numeric_in, CStringGetDatum(s),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/*
 * report_malformed raises the error of an input the parser refused, showing
 * how the input begins.
 */
static void
report_malformed(const char *what, const char *err, text *input, const char *hint)
{
	char	   *s = text_to_cstring(input);

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("malformed %s: %s", what, err),
			 errdetail("The input begins with: %.80s", s),
			 errhint("%s", hint)));
}

/*
 * md_sql_parse_klines returns the rows of an exchange's klines answer, as
 * the workers parse it (the SRF of mdfeed.parse_klines).
 */
Datum
md_sql_parse_klines(FunctionCallInfo fcinfo, const MdExchange *ex, text *body,
					const char *interval)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MdCandle   *rows;
	int			nrows;
	char	   *err;

	const MdInterval *iv = md_check_exchange_interval(ex, interval);

	if (!ex->parse_klines(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), iv, &rows, &nrows, &err))
		report_malformed(psprintf("%s klines answer", ex->display_name), err, body,
						 answer_hint(ex, "klines text"));
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nrows; i++)
	{
		Datum		values[11];
		bool		nulls[11] = {0};

		values[0] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].open_ms));
		values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(rows[i].close_ms));
		for (int f = 0; f < MD_NUM_DECIMALS; f++)
		{
			nulls[2 + f] = rows[i].dec[f] == NULL;
			values[2 + f] = rows[i].dec[f] ? numeric_datum(rows[i].dec[f]) : (Datum) 0;
		}
		/* a family without a trades column: the exchange sends none */
		nulls[10] = !ex->candle_trades;
		values[10] = Int64GetDatum(rows[i].trades);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * md_sql_parse_stream parses one market-stream frame of an exchange as the
 * stream worker does: one row for a kline event, none for a reply or
 * another event, an error for anything malformed.
 */
Datum
md_sql_parse_stream(FunctionCallInfo fcinfo, const MdExchange *ex, text *frame)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MdStreamKlines ks = {NULL, 0};
	char	   *err = NULL;
	MdFrameKind kind;

	if (ex->stream == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("mdfeed has no market stream of %s", ex->name)));
	kind = ex->stream->frame(md_stream_session_new(ex, CurrentMemoryContext),
							 VARDATA_ANY(frame), VARSIZE_ANY_EXHDR(frame), &ks, &err);
	if (kind == MD_FRAME_MALFORMED)
		report_malformed(psprintf("%s stream frame", ex->display_name), err, frame,
						 answer_hint(ex, "stream text"));
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; kind == MD_FRAME_KLINE && i < ks.n; i++)
	{
		const MdStreamKline *k = &ks.k[i];
		Datum		values[16];
		bool		nulls[16] = {0};

		nulls[0] = k->stream == NULL;
		values[0] = k->stream ? CStringGetTextDatum(k->stream) : (Datum) 0;
		values[1] = TimestampTzGetDatum(md_ms_to_timestamptz(k->event_ms));
		values[2] = CStringGetTextDatum(k->symbol);
		values[3] = CStringGetTextDatum(k->iv->name);
		values[4] = TimestampTzGetDatum(md_ms_to_timestamptz(k->candle.open_ms));
		values[5] = TimestampTzGetDatum(md_ms_to_timestamptz(k->candle.close_ms));
		for (int f = 0; f < MD_NUM_DECIMALS; f++)
		{
			nulls[6 + f] = k->candle.dec[f] == NULL;
			values[6 + f] = k->candle.dec[f] ? numeric_datum(k->candle.dec[f]) : (Datum) 0;
		}
		/* a family without a trades column: the exchange sends none */
		nulls[14] = !ex->candle_trades;
		values[14] = Int64GetDatum(k->candle.trades);
		values[15] = BoolGetDatum(k->candle.closed);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * md_sql_ingest_klines upserts an exchange's klines answer as the workers
 * do; candles closing before server_ms are stored as closed.  Returns the
 * rows written.
 */
int64
md_sql_ingest_klines(const MdExchange *ex, const char *symbol, const char *interval,
					 text *body, int64 server_ms)
{
	const MdInterval *iv = md_check_exchange_interval(ex, interval);
	MdCandle   *rows;
	int			nrows;
	char	   *err;
	int64		written;

	md_check_symbol(symbol);
	if (!ex->parse_klines(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), iv, &rows, &nrows, &err))
		report_malformed(psprintf("%s klines answer", ex->display_name), err, body,
						 answer_hint(ex, "klines text"));
	for (int i = 0; i < nrows; i++)
	{
		rows[i].symbol = symbol;
		rows[i].closed = rows[i].close_ms < server_ms;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	written = md_store_candles(ex, iv, rows, nrows);
	SPI_finish();
	return written;
}

/*
 * mdfeed_parse_klines is mdfeed.parse_klines(exchange, body, interval).
 */
Datum
mdfeed_parse_klines(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	return md_sql_parse_klines(fcinfo, ex, PG_GETARG_TEXT_PP(1),
							   text_to_cstring(PG_GETARG_TEXT_PP(2)));
}

/*
 * mdfeed_parse_stream is mdfeed.parse_stream(exchange, frame).
 */
Datum
mdfeed_parse_stream(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	return md_sql_parse_stream(fcinfo, ex, PG_GETARG_TEXT_PP(1));
}

/*
 * mdfeed_ingest_klines is mdfeed.ingest_klines(exchange, symbol, interval,
 * body, server_time).
 */
Datum
mdfeed_ingest_klines(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	PG_RETURN_INT64(md_sql_ingest_klines(ex, text_to_cstring(PG_GETARG_TEXT_PP(1)),
										 text_to_cstring(PG_GETARG_TEXT_PP(2)),
										 PG_GETARG_TEXT_PP(3),
										 md_timestamptz_to_ms(PG_GETARG_TIMESTAMPTZ(4))));
}

/*
 * mdfeed_refresh_instruments fetches the exchange's info now and stores its
 * instruments; returns how many it lists.
 */
Datum
mdfeed_refresh_instruments(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char	   *err = NULL;
	char	   *body;
	int			n;

	md_require_workers();
	md_require_schema_version();
	body = md_fetch_exchange_info(ex, &err);
	if (body == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not fetch the instruments of %s: %s", ex->name, err),
				 errhint("Check %s and the server's network access.",
						 md_endpoint_url_setting(ex, &ex->info))));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	n = md_store_instruments(ex, body, &err);
	SPI_finish();
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("malformed exchange info from %s: %s", ex->name, err),
				 errhint("Try again; if it persists, the exchange changed its format.")));
	PG_RETURN_INT32(n);
}

/*
 * mdfeed_fetch_tickers returns every symbol's 24 h quote volume, from one
 * request.
 */
Datum
mdfeed_fetch_tickers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	MdTicker   *t;
	int			n;
	char	   *err = NULL;

	md_require_workers();
	if (!md_fetch_tickers(ex, &t, &n, &err))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not fetch the tickers of %s: %s", ex->name, err),
				 errhint("Check %s and the server's network access.",
						 md_endpoint_url_setting(ex, &ex->tickers))));
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {0};

		values[0] = CStringGetTextDatum(t[i].symbol);
		values[1] = numeric_datum(t[i].quote_volume);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* what parse_answer can parse; the hint for a refused body is the adapter's */
typedef struct AnswerKind
{
	const char *name;
} AnswerKind;

static const AnswerKind answer_kinds[] = {
	{"klines"}, {"stream"}, {"exchange_info"}, {"weight_limit"}, {"server_time"},
	{"tickers"}, {"funding"}, {"open_interest"}, {"error"}, {"ban"},
	{"archive_klines"}, {"archive_metrics"}, {"archive_zip"},
};

/*
 * answer_offered says whether the adapter has the parser of a kind: the
 * optional ones are NULL when the exchange does not offer the answer.
 */
static bool
answer_offered(const MdExchange *ex, const char *what)
{
	if (strcmp(what, "stream") == 0)
		return ex->stream != NULL;
	if (strcmp(what, "weight_limit") == 0)
		return ex->parse_weight_limit != NULL;
	if (strcmp(what, "server_time") == 0)
		return ex->parse_server_time != NULL;
	if (strcmp(what, "tickers") == 0)
		return ex->parse_tickers != NULL;
	if (strcmp(what, "funding") == 0)
		return ex->parse_funding != NULL;
	if (strcmp(what, "open_interest") == 0)
		return ex->parse_open_interest != NULL;
	if (strcmp(what, "error") == 0)
		return ex->parse_error != NULL;
	if (strcmp(what, "ban") == 0)
		return ex->ban_until_ms != NULL;
	if (strcmp(what, "archive_metrics") == 0)
		return ex->archive != NULL && ex->archive->parse_metrics_line != NULL;
	if (strncmp(what, "archive_", 8) == 0)
		return ex->archive != NULL;
	return true;				/* klines and exchange_info are required */
}

/*
 * answer_hint is what to tell a user whose body a parser refused: the
 * adapter's description of that answer, or a generic one.
 */
static const char *
answer_hint(const MdExchange *ex, const char *kind)
{
	for (const MdAnswerHint *h = ex->answer_hints; h && h->kind; h++)
		if (strcmp(h->kind, kind) == 0)
			return h->hint;
	return psprintf("The body must be %s's %s answer.", ex->name, kind);
}

/*
 * answer_kind_names lists the valid values of "what", for a hint.
 */
static char *
answer_kind_names(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(answer_kinds); i++)
		appendStringInfo(&buf, "%s%s", i ? ", " : "", answer_kinds[i].name);
	return buf.data;
}

/*
 * printable_prefix shows the first bytes of a body in the error detail,
 * with anything that is not printable ASCII as \xNN, so that a NUL byte or
 * invalid UTF-8 cannot corrupt the message.
 */
static char *
printable_prefix(const char *body, size_t len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (size_t i = 0; i < len && i < 80; i++)
	{
		unsigned char c = (unsigned char) body[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			appendStringInfoChar(&buf, (char) c);
		else
			appendStringInfo(&buf, "\\x%02x", c);
	}
	return buf.data;
}

/* set while refuse() raises, so that the error passes through unchanged */
static bool refusing = false;

/*
 * refuse raises the clean error of a body the parser refused.
 */
static void
refuse(const MdExchange *ex, const AnswerKind *kind, const char *err,
	   const char *body, size_t len)
{
	refusing = true;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("malformed %s %s answer: %s", ex->name, kind->name,
					err ? err : "refused by the parser"),
			 errdetail("The body (%zu bytes) begins with: %s", len,
					   printable_prefix(body, len)),
			 errhint("%s", answer_hint(ex, kind->name))));
}

/*
 * The conversions the workers apply when they store what a parser
 * returned.  Each raises PostgreSQL's own error on a bad value.
 *
 * store_decimal converts an exact decimal string to numeric.
 */
static void
store_decimal(const char *s)
{
	if (s != NULL)
		(void) numeric_datum(s);
}

/*
 * store_text checks a string against the database encoding.
 */
static void
store_text(const char *s)
{
	if (s != NULL)
		(void) pg_verifymbstr(s, strlen(s), false);
}

/*
 * store_time converts milliseconds to a timestamptz, within its range.
 */
static void
store_time(int64 ms)
{
	if (ms < 0 || ms > INT64CONST(140737488355327))
		elog(ERROR, "time " INT64_FORMAT " ms is out of range", ms);
	(void) md_ms_to_timestamptz(ms);
}

/*
 * store_candle converts every field of a candle.
 */
static void
store_candle(const MdExchange *ex, const MdCandle *c)
{
	store_time(c->open_ms);
	store_time(c->close_ms);
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
	{
		/* NULL only where the adapter says the exchange may send none */
		if (c->dec[f] == NULL && !(ex->candle_optional & (1u << f)) &&
			(ex->candle_fields & (1u << f)))
			elog(ERROR, "candle without decimal field %d", f);
		store_decimal(c->dec[f]);
	}
	if (c->trades < 0)
		elog(ERROR, "negative trade count " INT64_FORMAT, c->trades);
}

/*
 * first_interval is the exchange's shortest interval: parse_answer has no
 * interval to give a klines parser, which needs one for answers without
 * close times.
 */
static const MdInterval *
first_interval(const MdExchange *ex)
{
	for (int i = 0; i < md_num_intervals; i++)
		if (ex->interval_codes[i] != NULL)
			return &md_intervals[i];
	return &md_intervals[0];
}

/*
 * archive_line parses line number lineno of an archive CSV (klines, or
 * metrics) and stores its values; the header is allowed as the first line
 * only.  Returns whether it was a row.
 */
static bool
archive_line(const MdExchange *ex, const AnswerKind *kind, bool metrics, const char *line,
			 size_t len, int64 lineno, const char *body, size_t blen)
{
	char	   *err = NULL;
	MdArchiveLine what;

	if (len == 0 || (len == 1 && line[0] == '\r'))
		return false;
	if (metrics)
	{
		MdOpenInterest o;

		what = ex->archive->parse_metrics_line(line, len, &o, &err);
		if (what == MD_LINE_ROW)
		{
			store_time(o.ts_ms);
			store_decimal(o.sum_open_interest);
			store_decimal(o.sum_open_interest_value);
		}
	}
	else
	{
		MdCandle	c;

		what = ex->archive->parse_kline_line(line, len, &c, &err);
		if (what == MD_LINE_ROW)
			store_candle(ex, &c);
	}
	if (what == MD_LINE_HEADER && lineno == 1)
		return false;
	if (what != MD_LINE_ROW)
		refuse(ex, kind, psprintf("line " INT64_FORMAT ": %s", lineno,
								  what == MD_LINE_HEADER ? "a header after the first line" : err),
			   body, blen);
	return true;
}

/*
 * archive_text parses the lines of an archive CSV given as text.
 */
static int64
archive_text(const MdExchange *ex, const AnswerKind *kind, bool metrics, const char *body,
			 size_t len)
{
	int64		rows = 0;
	int64		lineno = 0;
	size_t		pos = 0;

	while (pos < len)
	{
		const char *nl = memchr(body + pos, '\n', len - pos);
		size_t		end = nl ? (size_t) (nl - body) : len;

		if (end - pos > MD_ZIP_MAX_LINE)
			refuse(ex, kind, psprintf("line " INT64_FORMAT " is longer than %d bytes",
									  lineno + 1, MD_ZIP_MAX_LINE), body, len);
		rows += archive_line(ex, kind, metrics, body + pos, end - pos, ++lineno, body, len);
		pos = end + 1;
	}
	return rows;
}

/*
 * archive_zip parses a zip archive holding one klines CSV, as the backfill
 * worker reads a downloaded file.
 */
static int64
archive_zip(const MdExchange *ex, const AnswerKind *kind, const char *body, size_t len)
{
	char	   *err = NULL;
	MdZipReader *z = md_zip_open(body, len, &err);
	int64		rows = 0;
	int64		lineno = 0;
	const char *line;
	size_t		llen;
	MdZipResult r;

	if (z == NULL)
		refuse(ex, kind, err, body, len);
	while ((r = md_zip_next_line(z, &line, &llen, &err)) == MD_ZIP_LINE)
		rows += archive_line(ex, kind, false, line, llen, ++lineno, body, len);
	md_zip_close(z);
	if (r == MD_ZIP_ERROR)
		refuse(ex, kind, err, body, len);
	return rows;
}

/*
 * run_parser runs one parser on the body: the number of rows it parsed,
 * or a clean error.  The values it returns go through store_*.
 */
static int64
run_parser(const MdExchange *ex, const AnswerKind *kind, const char *body, size_t len)
{
	const char *what = kind->name;
	char	   *err = NULL;
	int			n = 0;

	if (!answer_offered(ex, what))
	{
		refusing = true;
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s has no %s answer to parse", ex->name, what),
				 errhint("The exchange does not offer it, so mdfeed never asks for it.")));
	}
	if (strcmp(what, "klines") == 0)
	{
		MdCandle   *rows;

		if (!ex->parse_klines(body, len, first_interval(ex), &rows, &n, &err))
			refuse(ex, kind, err, body, len);
		for (int i = 0; i < n; i++)
			store_candle(ex, &rows[i]);
		return n;
	}
	if (strcmp(what, "stream") == 0)
	{
		MdStreamKlines ks = {NULL, 0};

		switch (ex->stream->frame(md_stream_session_new(ex, CurrentMemoryContext),
								  body, len, &ks, &err))
		{
			case MD_FRAME_KLINE:
				for (int i = 0; i < ks.n; i++)
				{
					const MdStreamKline *k = &ks.k[i];

					store_text(k->stream);
					store_text(k->symbol);
					if (k->symbol == NULL || k->iv == NULL)
						elog(ERROR, "kline event without a symbol or interval");
					store_time(k->event_ms);
					store_candle(ex, &k->candle);
				}
				return ks.n;
			case MD_FRAME_REPLY:
			case MD_FRAME_OTHER:
				return 0;
			case MD_FRAME_MALFORMED:
				refuse(ex, kind, err, body, len);
		}
		return 0;
	}
	if (strcmp(what, "exchange_info") == 0)
	{
		MdInstrument *ins;

		if (!ex->parse_instruments(body, len, &ins, &n, &err))
			refuse(ex, kind, err, body, len);
		for (int i = 0; i < n; i++)
		{
			if (ins[i].symbol == NULL || ins[i].status == NULL)
				elog(ERROR, "instrument without a symbol or status");
			store_text(ins[i].symbol);
			store_text(ins[i].status);
			store_text(ins[i].contract_type);
			store_text(ins[i].base_asset);
			store_text(ins[i].quote_asset);
			if (ins[i].onboard_ms != 0)
				store_time(ins[i].onboard_ms);
			store_decimal(ins[i].tick_size);
			store_decimal(ins[i].step_size);
		}
		return n;
	}
	if (strcmp(what, "weight_limit") == 0)
	{
		int			limit;

		if (!ex->parse_weight_limit(body, len, &limit))
			refuse(ex, kind, "no REQUEST_WEIGHT limit", body, len);
		if (limit <= 0)
			elog(ERROR, "weight limit %d is not positive", limit);
		return 1;
	}
	if (strcmp(what, "server_time") == 0)
	{
		int64		ms;

		if (!ex->parse_server_time(body, len, &ms))
			refuse(ex, kind, "no valid serverTime", body, len);
		store_time(ms);
		return 1;
	}
	if (strcmp(what, "tickers") == 0)
	{
		MdTicker   *t;

		if (!ex->parse_tickers(body, len, &t, &n, &err))
			refuse(ex, kind, err, body, len);
		for (int i = 0; i < n; i++)
		{
			if (t[i].symbol == NULL || t[i].quote_volume == NULL)
				elog(ERROR, "ticker without a symbol or quote volume");
			store_text(t[i].symbol);
			store_decimal(t[i].quote_volume);
		}
		return n;
	}
	if (strcmp(what, "funding") == 0)
	{
		MdFunding  *f;

		if (!ex->parse_funding(body, len, &f, &n, &err))
			refuse(ex, kind, err, body, len);
		for (int i = 0; i < n; i++)
		{
			if (f[i].rate == NULL)
				elog(ERROR, "funding row without a rate");
			store_time(f[i].funding_ms);
			store_decimal(f[i].rate);
			store_decimal(f[i].mark_price);
		}
		return n;
	}
	if (strcmp(what, "open_interest") == 0)
	{
		MdOpenInterest *o;

		if (!ex->parse_open_interest(body, len, &o, &n, &err))
			refuse(ex, kind, err, body, len);
		for (int i = 0; i < n; i++)
		{
			if (o[i].sum_open_interest == NULL || o[i].sum_open_interest_value == NULL)
				elog(ERROR, "open-interest row without its sums");
			store_time(o[i].ts_ms);
			store_decimal(o[i].sum_open_interest);
			store_decimal(o[i].sum_open_interest_value);
		}
		return n;
	}
	if (strcmp(what, "archive_klines") == 0 || strcmp(what, "archive_metrics") == 0)
		return archive_text(ex, kind, strcmp(what, "archive_metrics") == 0, body, len);
	if (strcmp(what, "archive_zip") == 0)
		return archive_zip(ex, kind, body, len);
	if (strcmp(what, "error") == 0)
	{
		int			code;
		char	   *msg = NULL;

		/* a classifier: a body that is no error answer is simply not one */
		if (!ex->parse_error(body, len, &code, &msg))
			return 0;
		if (msg == NULL)
			elog(ERROR, "error answer without a message");
		store_text(msg);
		return 1;
	}
	if (strcmp(what, "ban") == 0)
	{
		int64		until = ex->ban_until_ms(body, len);

		if (until != 0)
			store_time(until);
		return until != 0 ? 1 : 0;
	}
	elog(ERROR, "unhandled answer kind \"%s\"", what);
	return 0;					/* keep the compiler quiet */
}

/*
 * mdfeed_parse_answer parses a body with the parser the workers use for
 * answers of kind "what" from "exchange": the number of rows parsed (1 or
 * 0 for a single value or a classifier), or an ERROR saying what is wrong.
 */
Datum
mdfeed_parse_answer(PG_FUNCTION_ARGS)
{
	const MdExchange *ex;
	const AnswerKind *volatile kind = NULL;
	char	   *exchange;
	char	   *what;
	bytea	   *body;
	const char *data;
	size_t		len;
	int64		n = 0;
	MemoryContext oldcxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("exchange, what and body must not be null"),
				 errhint("Give an exchange, a kind of answer and the answer's bytes.")));
	exchange = text_to_cstring(PG_GETARG_TEXT_PP(0));
	what = text_to_cstring(PG_GETARG_TEXT_PP(1));
	body = PG_GETARG_BYTEA_PP(2);

	ex = md_check_exchange(exchange);
	for (int i = 0; i < lengthof(answer_kinds); i++)
		if (strcmp(answer_kinds[i].name, what) == 0)
			kind = &answer_kinds[i];
	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown kind of answer \"%s\"", what),
				 errhint("Valid kinds are: %s.", answer_kind_names())));

	/*
	 * The parser sees exactly the body's bytes, as a worker sees a network
	 * buffer: copy them so that they are NUL-terminated like one, and so
	 * that a parser reading past the end is caught by tools like valgrind.
	 */
	len = VARSIZE_ANY_EXHDR(body);
	if (len > 0)
		data = memcpy(palloc(len + 1), VARDATA_ANY(body), len);
	else
		data = palloc0(1);
	((char *) data)[len] = '\0';

	refusing = false;
	PG_TRY();
	{
		n = run_parser(ex, kind, data, len);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* a parser's clean refusal (or a cancel) passes through as it is */
		if (refusing)
		{
			refusing = false;
			PG_RE_THROW();
		}
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the %s %s parser accepted a value that cannot be stored: %s",
						ex->name, kind->name, edata->message),
				 errdetail("The body (%zu bytes) begins with: %s", len,
						   printable_prefix(data, len)),
				 errhint("This is a bug in mdfeed's parser: it must refuse such a body.")));
	}
	PG_END_TRY();
	PG_RETURN_INT64(n);
}
