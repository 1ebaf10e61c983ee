/*-------------------------------------------------------------------------
 *
 * instruments.c
 *	  Keeping mdfeed.instruments equal to what the exchange lists.
 *
 * Fetching and storing are separate steps so that a worker can fetch with
 * no transaction open and then store in a short one.  Exchange info also
 * carries the REST weight limit, which goes to the shared budget.  A symbol
 * the exchange stops listing keeps its row, with status 'UNLISTED', so its
 * history stays explained.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "common.h"
#include "budget.h"
#include "instruments.h"
#include "rest.h"
#include "store.h"

/*
 * md_fetch_exchange_info returns the body of the exchange's info answer, or
 * NULL with *err set.
 */
char *
md_fetch_exchange_info(const MdExchange *ex, char **err)
{
	MdHttpResponse resp;
	MdAnswer	ans;
	int			limit;

	if (!md_rest_call(ex, &ex->info, NULL, -1, &resp, &ans, NULL))
	{
		*err = pstrdup("request abandoned");
		return NULL;
	}
	if (resp.outcome != MD_HTTP_OK)
	{
		*err = psprintf("%s exchange info request failed: %s", ex->name, resp.error);
		return NULL;
	}
	if (ans.kind != MD_ANSWER_OK)
	{
		*err = psprintf("%s exchange info answered HTTP %ld", ex->name, resp.status);
		return NULL;
	}
	if (ex->parse_weight_limit != NULL &&
		ex->parse_weight_limit(resp.body.data, resp.body.len, &limit))
		md_budget_set_limit(ex, 0, limit);
	return resp.body.data;
}

/*
 * md_store_instruments parses exchange info and upserts mdfeed.instruments,
 * in the caller's transaction with SPI connected.  Returns the number of
 * instruments, or -1 with *err set if the body is malformed.
 */
int
md_store_instruments(const MdExchange *ex, const char *body, char **err)
{
	MdInstrument *ins;
	int			n;
	char	  **cols[9];
	Oid			types[10];
	Datum		values[10];
	int			ret;

	if (!ex->parse_instruments(body, strlen(body), &ins, &n, err))
		return -1;
	/* an answer listing nothing would unlist, and untrack, everything */
	if (n == 0)
	{
		*err = pstrdup("the answer lists no instruments");
		return -1;
	}
	for (int c = 0; c < 9; c++)
		cols[c] = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		cols[0][i] = ins[i].symbol;
		cols[1][i] = ins[i].status;
		cols[2][i] = ins[i].contract_type;
		cols[3][i] = ins[i].base_asset;
		cols[4][i] = ins[i].quote_asset;
		cols[5][i] = ins[i].onboard_ms > 0 ? psprintf(INT64_FORMAT, ins[i].onboard_ms) : NULL;
		cols[6][i] = ins[i].tick_size;
		cols[7][i] = ins[i].step_size;
		cols[8][i] = ins[i].tradable ? "t" : "f";
	}
	types[0] = TEXTOID;
	values[0] = CStringGetTextDatum(ex->name);
	for (int c = 0; c < 9; c++)
	{
		types[c + 1] = TEXTARRAYOID;
		values[c + 1] = md_cstring_array(cols[c], n, false);
	}
	ret = SPI_execute_with_args(
		"INSERT INTO mdfeed.instruments AS i (exchange, symbol, status, contract_type, base_asset, "
		"quote_asset, onboard_date, tick_size, step_size, tradable) "
		"SELECT $1, s, st, ct, ba, qa, pg_catalog.to_timestamp(ob::float8 / 1000), ts::numeric, ss::numeric, "
		"tr::boolean "
		"FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4), "
		"pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8), "
		"pg_catalog.unnest($9), pg_catalog.unnest($10)) AS u(s, st, ct, ba, qa, ob, ts, ss, tr) "
		"ON CONFLICT (exchange, symbol) DO UPDATE SET status = excluded.status, "
		"contract_type = excluded.contract_type, base_asset = excluded.base_asset, "
		"quote_asset = excluded.quote_asset, onboard_date = excluded.onboard_date, "
		"tick_size = excluded.tick_size, step_size = excluded.step_size, tradable = excluded.tradable, "
		"updated_at = pg_catalog.now() "
		"WHERE (i.status, i.contract_type, i.base_asset, i.quote_asset, i.onboard_date, i.tick_size, "
		"i.step_size, i.tradable) "
		"IS DISTINCT FROM (excluded.status, excluded.contract_type, excluded.base_asset, "
		"excluded.quote_asset, excluded.onboard_date, excluded.tick_size, excluded.step_size, "
		"excluded.tradable)",
		10, types, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not store instruments: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args(
		"UPDATE mdfeed.instruments SET status = 'UNLISTED', tradable = false, updated_at = pg_catalog.now() "
		"WHERE exchange = $1 AND status <> 'UNLISTED' AND symbol <> ALL ($2)",
		2, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not mark unlisted instruments: %s", SPI_result_code_string(ret));
	return n;
}

/*
 * md_fetch_tickers gets every symbol's 24 h statistics in one request
 * (on Binance weight 40, not 1 per symbol).
 */
bool
md_fetch_tickers(const MdExchange *ex, MdTicker **out, int *n, char **err)
{
	MdHttpResponse resp;
	MdAnswer	ans;

	if (ex->parse_tickers == NULL)
	{
		*err = psprintf("%s publishes no 24 h tickers", ex->name);
		return false;
	}
	if (!md_rest_call(ex, &ex->tickers, NULL, -1, &resp, &ans, NULL))
	{
		*err = pstrdup("request abandoned");
		return false;
	}
	if (resp.outcome != MD_HTTP_OK)
	{
		*err = psprintf("request failed: %s", resp.error);
		return false;
	}
	if (ans.kind != MD_ANSWER_OK)
	{
		*err = ans.message ? ans.message : psprintf("HTTP %ld", resp.status);
		return false;
	}
	return ex->parse_tickers(resp.body.data, resp.body.len, out, n, err);
}
