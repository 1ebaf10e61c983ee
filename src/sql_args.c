/*-------------------------------------------------------------------------
 *
 * sql_args.c
 *	  The checks of the SQL functions' arguments (symbol, interval,
 *	  exchange), and the small SQL functions built on them that the
 *	  extension's SQL scripts call.
 *
 * A bad value is refused before anything is queued, fetched or written,
 * and the same value gets the same error wherever it is given: to a job
 * function (sql_jobs.c), to a parser (sql_parse.c), or to a PL/pgSQL
 * function of the SQL scripts, which checks through mdfeed.check_symbol,
 * mdfeed.check_exchange and the interval lookups below.  So the checks
 * live once, here, and every error names the value and says in its hint
 * what a valid one looks like.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/timestamp.h"

#include "common.h"
#include "decimal.h"
#include "sql_args.h"

PG_FUNCTION_INFO_V1(mdfeed_check_symbol);
PG_FUNCTION_INFO_V1(mdfeed_check_exchange);
PG_FUNCTION_INFO_V1(mdfeed_candle_table);
PG_FUNCTION_INFO_V1(mdfeed_derivs_table);
PG_FUNCTION_INFO_V1(mdfeed_open_interest_retention);
PG_FUNCTION_INFO_V1(mdfeed_interval_step);
PG_FUNCTION_INFO_V1(mdfeed_interval_floor);

/*
 * md_check_symbol rejects a malformed symbol, suggesting the upper-case
 * spelling when that would be valid.
 */
void
md_check_symbol(const char *symbol)
{
	char	   *upper;

	if (md_valid_symbol(symbol))
		return;
	upper = asc_toupper(symbol, strlen(symbol));
	if (md_valid_symbol(upper))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid symbol \"%s\"", symbol),
				 errhint("Symbols are written in upper case, as the exchange lists them: \"%s\".",
						 upper)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid symbol \"%s\"", symbol),
			 errhint("A symbol is 1 to 40 upper-case letters, digits, '_' or '-', such as BTCUSDT.")));
}

/*
 * md_check_interval returns the interval of a name, or rejects the name,
 * listing the valid ones.
 */
const MdInterval *
md_check_interval(const char *name)
{
	const MdInterval *iv = md_interval_lookup(name);

	if (iv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid interval \"%s\"", name),
				 errhint("Valid intervals are %s (1m is a minute, 1M a month).",
						 md_interval_names())));
	return iv;
}

/*
 * md_check_exchange returns the adapter of an exchange's name, or rejects
 * the name, listing the exchanges mdfeed knows.
 */
const MdExchange *
md_check_exchange(const char *name)
{
	const MdExchange *ex = md_exchange_lookup(name);

	if (ex == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown exchange \"%s\"", name),
				 errhint("Valid exchanges are: %s.", md_exchange_names())));
	return ex;
}

/*
 * md_check_exchange_interval returns an interval the exchange offers, or
 * rejects the name with an error naming the exchange and listing what it
 * offers.
 */
const MdInterval *
md_check_exchange_interval(const MdExchange *ex, const char *name)
{
	const MdInterval *iv = md_exchange_interval(ex, name);

	if (iv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 md_interval_lookup(name) == NULL ?
				 errmsg("invalid interval \"%s\"", name) :
				 errmsg("%s does not offer interval \"%s\"", ex->name, name),
				 md_exchange_interval(ex, "1M") != NULL ?
				 errhint("%s offers %s (1m is a minute, 1M a month).",
						 ex->name, md_exchange_interval_names(ex)) :
				 errhint("%s offers %s.", ex->name, md_exchange_interval_names(ex))));
	return iv;
}

/*
 * mdfeed_candle_table names the table (in schema mdfeed) holding an
 * exchange's candles of an interval: mdfeed.candle_table(exchange, interval).
 */
Datum
mdfeed_candle_table(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	const MdInterval *iv = md_check_exchange_interval(ex, text_to_cstring(PG_GETARG_TEXT_PP(1)));

	PG_RETURN_TEXT_P(cstring_to_text(md_candle_table(ex, iv)));
}

/*
 * mdfeed_interval_step returns an interval's length as an SQL interval.
 */
Datum
mdfeed_interval_step(PG_FUNCTION_ARGS)
{
	const MdInterval *iv = md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	return DirectFunctionCall3(interval_in, CStringGetDatum(iv->pg_interval),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/*
 * mdfeed_interval_floor returns the open time of the candle containing ts.
 */
Datum
mdfeed_interval_floor(PG_FUNCTION_ARGS)
{
	const MdInterval *iv = md_check_interval(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(1);

	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_TIMESTAMPTZ(ts);
	PG_RETURN_TIMESTAMPTZ(md_ms_to_timestamptz(md_interval_floor(iv, md_timestamptz_to_ms(ts))));
}

/*
 * mdfeed_check_symbol raises the error of a malformed symbol, or returns it.
 */
Datum
mdfeed_check_symbol(PG_FUNCTION_ARGS)
{
	text	   *t;

	REQUIRE_ARG(0, "symbol");
	t = PG_GETARG_TEXT_PP(0);
	md_check_symbol(text_to_cstring(t));
	PG_RETURN_TEXT_P(t);
}

/*
 * mdfeed_check_exchange raises the error of an unknown exchange, or returns
 * its name.
 */
Datum
mdfeed_check_exchange(PG_FUNCTION_ARGS)
{
	text	   *t;

	REQUIRE_ARG(0, "exchange");
	t = PG_GETARG_TEXT_PP(0);
	md_check_exchange(text_to_cstring(t));
	PG_RETURN_TEXT_P(t);
}

/*
 * mdfeed_derivs_table names the table of an exchange's funding events or
 * open interest, or returns NULL when the exchange has none.
 */
Datum
mdfeed_derivs_table(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *table;

	if (strcmp(kind, "funding") == 0)
		table = ex->funding_path ? ex->funding_table : NULL;
	else if (strcmp(kind, "open_interest") == 0)
		table = ex->oi_path ? ex->open_interest_table : NULL;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown kind of derivatives data \"%s\"", kind),
				 errhint("Valid kinds are funding and open_interest.")));
	if (table == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(table));
}

/*
 * mdfeed_open_interest_retention is how far back the exchange keeps open
 * interest (NULL: it has none).
 */
Datum
mdfeed_open_interest_retention(PG_FUNCTION_ARGS)
{
	const MdExchange *ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	Interval   *keep;

	if (ex->oi_path == NULL)
		PG_RETURN_NULL();
	keep = palloc0(sizeof(Interval));
	keep->time = ex->oi_retention_ms * INT64CONST(1000);
	PG_RETURN_INTERVAL_P(keep);
}

/*
 * md_check_schema_version raises the error of an extension whose SQL
 * objects are not the version this library was built for (the user
 * installed a new build and has not run ALTER EXTENSION UPDATE yet).
 */
void
md_check_schema_version(const char *version)
{
	if (version == NULL || strcmp(version, MD_SCHEMA_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"mdfeed\" is at version %s, but its library needs version %s",
						version ? version : "?", MD_SCHEMA_VERSION),
				 errhint("Run ALTER EXTENSION mdfeed UPDATE.")));
}

/*
 * md_require_schema_version reads the extension's version and checks it,
 * for the SQL functions that write through the workers' code without
 * begin_as_owner (refresh_instruments and friends).
 */
void
md_require_schema_version(void)
{
	char	   *version = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension "
					"WHERE extname OPERATOR(pg_catalog.=) 'mdfeed'", true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
		version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (version != NULL)
		version = pstrdup(version);
	SPI_finish();
	md_check_schema_version(version);
}

/*
 * md_check_database makes sure jobs and models are put where the workers look.
 */
void
md_check_database(void)
{
	char	   *here = get_database_name(MyDatabaseId);

	if (here == NULL || strcmp(here, mdfeed_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mdfeed's workers run in database \"%s\", not in \"%s\"",
						mdfeed_database, here ? here : "?"),
				 errhint("Connect to database \"%s\", or set mdfeed.database = '%s' in postgresql.conf and restart the server.",
						 mdfeed_database, here ? here : "?")));
}

/*
 * Run SPI as the extension's owner, so that callers need no rights on the
 * tables themselves; the caller's identity is recorded explicitly.
 *
 * Code running with the owner's rights must not resolve a single name
 * through the caller's search_path: a caller who can create objects in any
 * schema could otherwise put an operator or function of its own in front
 * of pg_catalog's and have the owner run it.  So the search_path is
 * pg_catalog, pg_temp for exactly as long as the owner's rights last (a
 * GUC nest level, undone at the end or by the error's abort), and every
 * query below schema-qualifies its operators and functions as well.
 */
#define SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/*
 * md_begin_as_owner connects SPI, checks that the extension's SQL objects are
 * the version this library was built for, and switches to the extension's
 * owner with a safe search_path.
 */
void
md_begin_as_owner(MdOwnerContext *ctx)
{
	bool		isnull;
	Oid			owner;
	char	   *version;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ctx->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", SAFE_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	ret = SPI_execute("SELECT extowner, extversion FROM pg_catalog.pg_extension "
					  "WHERE extname OPERATOR(pg_catalog.=) 'mdfeed'",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"mdfeed\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION mdfeed.")));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	md_check_schema_version(version);
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec);
	SetUserIdAndSecContext(owner, ctx->save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
}

/*
 * md_end_as_owner gives the caller back its identity and search_path.
 */
void
md_end_as_owner(MdOwnerContext *ctx)
{
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec);
	AtEOXact_GUC(true, ctx->guc_level);
	SPI_finish();
}
