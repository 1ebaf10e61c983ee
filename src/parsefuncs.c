/*-------------------------------------------------------------------------
 *
 * parsefuncs.c
 *	  One SQL entry point to every exchange parser the workers use, for the
 *	  robustness test and for looking at a captured answer by hand.
 *
 * A worker that crashes takes the whole cluster down (the postmaster
 * resets shared memory when any backend dies), so the parsers must survive
 * anything the network can deliver.  mdfeed.parse_answer(exchange, what,
 * body) runs the parser the workers run on exactly the bytes given: the
 * body is bytea, so NUL bytes and invalid UTF-8 reach the parser as they
 * would from a socket.  It writes nothing.
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

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "lib/stringinfo.h"

#include "common.h"
#include "exchange.h"

PG_FUNCTION_INFO_V1(mdfeed_parse_answer);

/* what parse_answer can parse, with the hint given when a body is refused */
typedef struct AnswerKind
{
	const char *name;
	const char *hint;
} AnswerKind;

static const AnswerKind answer_kinds[] = {
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
};

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
			 errhint("%s", kind->hint)));
}

/*
 * The conversions the workers apply when they store what a parser
 * returned.  Each raises PostgreSQL's own error on a bad value.
 */
static void
store_decimal(const char *s)
{
	if (s != NULL)
		(void) DirectFunctionCall3(numeric_in, CStringGetDatum(s),
								   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

static void
store_text(const char *s)
{
	if (s != NULL)
		(void) pg_verifymbstr(s, strlen(s), false);
}

static void
store_time(int64 ms)
{
	if (ms < 0 || ms > INT64CONST(140737488355327))
		elog(ERROR, "time " INT64_FORMAT " ms is out of range", ms);
	(void) md_ms_to_timestamptz(ms);
}

static void
store_candle(const MdCandle *c)
{
	store_time(c->open_ms);
	store_time(c->close_ms);
	for (int f = 0; f < MD_NUM_DECIMALS; f++)
	{
		if (c->dec[f] == NULL)
			elog(ERROR, "candle without decimal field %d", f);
		store_decimal(c->dec[f]);
	}
	if (c->trades < 0)
		elog(ERROR, "negative trade count " INT64_FORMAT, c->trades);
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

	if (strcmp(what, "klines") == 0)
	{
		MdCandle   *rows;

		if (!ex->parse_klines(body, len, &rows, &n, &err))
			refuse(ex, kind, err, body, len);
		for (int i = 0; i < n; i++)
			store_candle(&rows[i]);
		return n;
	}
	if (strcmp(what, "stream") == 0)
	{
		MdStreamKline k;

		if (ex->stream == NULL)
			refuse(ex, kind, "the exchange has no market streams", body, len);
		switch (ex->stream->frame(md_stream_session_new(ex, CurrentMemoryContext),
								  body, len, &k, &err))
		{
			case MD_FRAME_KLINE:
				store_text(k.stream);
				store_text(k.symbol);
				if (k.symbol == NULL || k.iv == NULL)
					elog(ERROR, "kline event without a symbol or interval");
				store_time(k.event_ms);
				store_candle(&k.candle);
				return 1;
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

	ex = md_exchange_lookup(exchange);
	if (ex == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown exchange \"%s\"", exchange),
				 errhint("Valid exchanges are: %s.", md_exchange_names())));
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
