/*-------------------------------------------------------------------------
 *
 * sql_models.c
 *	  The model API: register, unregister, pause, resume and rerun models.
 *
 * A model runs as the role that registers it, so registration is where
 * that role is known for sure: these are C functions, which read the
 * calling role (GetUserId(), what SET ROLE set) and check everything as
 * it, then write mdfeed.models as the extension's owner (sql_args.c), as
 * the job functions do.  A SECURITY DEFINER function could not tell who
 * called it.  None of them is executable by PUBLIC: registering a model
 * lets a role have the server fetch history for it, so it is granted.
 *
 * What is checked here, the model worker checks again at every batch of
 * runs (model_run.c), since a role can lose a right or become a
 * superuser after registering.  Only the model's owner (or a member of
 * it, or a superuser) may change or drop a model.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

#include "common.h"
#include "decimal.h"
#include "model_batch.h"
#include "model_run.h"
#include "shmem.h"
#include "sql_args.h"

PG_FUNCTION_INFO_V1(mdfeed_register_model);
PG_FUNCTION_INFO_V1(mdfeed_unregister_model);
PG_FUNCTION_INFO_V1(mdfeed_pause_model);
PG_FUNCTION_INFO_V1(mdfeed_resume_model);
PG_FUNCTION_INFO_V1(mdfeed_rerun_model);

/* the most symbols one model may list */
#define MAX_MODEL_SYMBOLS 1000

/*
 * check_model_name rejects a name mdfeed.models would refuse, saying why;
 * and any use of the model API from inside a model run, whose batch holds
 * the model's rows and would write over what the call did.
 */
static void
check_model_name(const char *name)
{
	size_t		len = strlen(name);
	bool		ok = len >= 1 && len <= 63 && name[0] != '.' && name[0] != '-';

	if (md_in_model_run)
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("models cannot be changed from inside a model run")));

	for (size_t i = 0; ok && i < len; i++)
		ok = isalnum((unsigned char) name[i]) || name[i] == '_' || name[i] == '.' || name[i] == '-';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid model name \"%s\"", name),
				 errhint("A model name is 1 to 63 letters, digits, '_', '.' or '-', not starting with '.' or '-', such as ema_btc.")));
}

/*
 * check_symbols validates a model's symbol list and returns it sorted and
 * without repeats, as a text[] datum.
 */
static Datum
check_symbols(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			kept = 0;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("symbols must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("symbols must not be empty"),
				 errhint("Pass NULL to run the model on every tracked symbol of the exchange.")));
	if (n > MAX_MODEL_SYMBOLS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a model may list at most %d symbols, not %d", MAX_MODEL_SYMBOLS, n),
				 errhint("Pass NULL to run the model on every tracked symbol of the exchange.")));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("symbols must not contain NULL")));
		md_check_symbol(TextDatumGetCString(elems[i]));
	}
	/* sort, and drop repeats */
	for (int i = 0; i < n; i++)
	{
		char	   *s = TextDatumGetCString(elems[i]);
		bool		seen = false;
		int			at = kept;

		for (int k = 0; k < kept && !seen; k++)
			seen = strcmp(TextDatumGetCString(elems[k]), s) == 0;
		if (seen)
			continue;
		while (at > 0 && strcmp(TextDatumGetCString(elems[at - 1]), s) > 0)
		{
			elems[at] = elems[at - 1];
			at--;
		}
		elems[at] = CStringGetTextDatum(s);
		kept++;
	}
	return PointerGetDatum(construct_array(elems, kept, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * check_listed refuses symbols the exchange does not list (as far as
 * mdfeed.instruments knows).  Runs as the owner, with SPI connected.
 */
static void
check_listed(const MdExchange *ex, Datum symbols)
{
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2] = {CStringGetTextDatum(ex->name), symbols};
	char	   *unknown;

	if (SPI_execute_with_args("SELECT pg_catalog.string_agg(s, ', ' ORDER BY s) "
							  "FROM pg_catalog.unnest($2) s WHERE NOT EXISTS ("
							  "SELECT 1 FROM mdfeed.instruments i WHERE i.exchange OPERATOR(pg_catalog.=) $1 "
							  "AND i.symbol OPERATOR(pg_catalog.=) s)",
							  2, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.instruments");
	unknown = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (unknown != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s does not list %s", ex->name, unknown),
				 errhint("SELECT symbol FROM mdfeed.instruments WHERE exchange = '%s' shows what %s lists; symbols are written as it writes them.",
						 ex->name, ex->name)));
}

/*
 * mdfeed_register_model registers fn as a model of the calling role, run
 * on every closed candle of the exchange's interval for the symbols
 * (NULL: every tracked symbol), with windows of window_size candles, from
 * from_time on (NULL: from the next close).
 */
Datum
mdfeed_register_model(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			fn;
	const MdExchange *ex;
	const MdInterval *iv;
	Datum		symbols = (Datum) 0;
	int32		window;
	TimestampTz from = 0;
	bool		has_from = !PG_ARGISNULL(5);
	Oid			caller = GetUserId();
	char	   *problem;
	char	   *hint;
	MdOwnerContext ctx;
	Oid			types[9] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, INT4OID,
	TIMESTAMPTZOID, OIDOID, OIDOID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	REQUIRE_ARG(0, "name");
	REQUIRE_ARG(1, "fn");
	REQUIRE_ARG(2, "interval");
	REQUIRE_ARG(4, "window_size");
	REQUIRE_ARG(6, "exchange");
	md_require_workers();
	md_check_database();

	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_model_name(name);
	fn = PG_GETARG_OID(1);
	ex = md_check_exchange(text_to_cstring(PG_GETARG_TEXT_PP(6)));
	iv = md_check_exchange_interval(ex, text_to_cstring(PG_GETARG_TEXT_PP(2)));
	window = PG_GETARG_INT32(4);
	if (window < 1 || window > MD_MODEL_MAX_WINDOW)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window_size %d is out of range", window),
				 errhint("A model's window is 1 to %d candles: the candle that closed and those before it.",
						 MD_MODEL_MAX_WINDOW)));
	if (!PG_ARGISNULL(3))
		symbols = check_symbols(PG_GETARG_ARRAYTYPE_P(3));
	if (has_from)
	{
		from = PG_GETARG_TIMESTAMPTZ(5);
		if (TIMESTAMP_NOT_FINITE(from) || md_timestamptz_to_ms(from) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("from_time %s is not a time candles can have", timestamptz_to_str(from)),
					 errhint("Give a finite time after 1970, or NULL to start with the next close.")));
		if (md_timestamptz_to_ms(from) > md_now_ms())
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("from_time %s is in the future", timestamptz_to_str(from)),
					 errhint("Pass NULL to start with the next close.")));
	}

	/* as the caller: who it is, and what it may do */
	if (superuser_arg(caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("models are not run as a superuser"),
				 errdetail("A model runs with the privileges of the role that registers it."),
				 errhint("Register it as an ordinary role: SET ROLE to one that may execute the function.")));
	problem = md_model_function_problem(fn, &hint);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s cannot be a model", format_procedure(fn)),
				 errdetail("%s.", problem),
				 errhint("%s", hint)));
	problem = md_model_owner_problem(caller, fn, ex, iv, &hint);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s", problem),
				 hint ? errhint("%s", hint) : 0));

	md_begin_as_owner(&ctx);
	if (symbols != (Datum) 0)
		check_listed(ex, symbols);
	values[0] = CStringGetTextDatum(name);
	/* qualified where pg_catalog's search_path would not find it */
	values[1] = CStringGetTextDatum(format_procedure(fn));
	values[2] = CStringGetTextDatum(ex->name);
	values[3] = CStringGetTextDatum(iv->name);
	if (symbols != (Datum) 0)
		values[4] = symbols;
	else
		nulls[4] = 'n';
	values[5] = Int32GetDatum(window);
	if (has_from)
		values[6] = TimestampTzGetDatum(from);
	else
		nulls[6] = 'n';
	values[7] = ObjectIdGetDatum(caller);
	values[8] = ObjectIdGetDatum(md_function_owner(fn));
	if (SPI_execute_with_args("INSERT INTO mdfeed.models (name, function, exchange, \"interval\", symbols, "
							  "window_size, from_time, owner, function_owner) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
							  "ON CONFLICT (name) DO NOTHING",
							  9, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not register the model");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("model \"%s\" already exists", name),
				 errhint("Choose another name, or drop it first with SELECT mdfeed_unregister_model('%s').",
						 name)));
	(void) md_model_add_progress(name);
	md_end_as_owner(&ctx);

	if (mdfeed_model_workers == 0)
		ereport(NOTICE,
				(errmsg("mdfeed.model_workers is 0: the model runs once model workers are enabled")));
	md_at_commit(MD_WAKE_MODELS_CHANGED);
	PG_RETURN_VOID();
}

/*
 * own_model finds a model, as the owner, and refuses a caller that is not
 * a member of the role that registered it (nor a superuser).  Call it
 * between md_begin_as_owner and md_end_as_owner; caller is the caller.
 */
static void
own_model(const char *name, Oid caller)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		isnull;
	Oid			owner;

	if (SPI_execute_with_args("SELECT owner::pg_catalog.oid FROM mdfeed.models "
							  "WHERE name OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							  1, types, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mdfeed.models");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("model \"%s\" does not exist", name),
				 errhint("SELECT name FROM mdfeed.models lists the models.")));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!superuser_arg(caller) && !has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("model \"%s\" belongs to another role", name),
				 errhint("Only a member of the role that registered a model, or a superuser, may change it.")));
}

/*
 * change_model runs one statement on the model's rows ($1 is its name) for
 * its owner, and wakes the model workers when the transaction commits.
 */
static int64
change_model(const char *name, const char *const *stmts, int nstmts)
{
	MdOwnerContext ctx;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	int64		n = 0;

	check_model_name(name);
	md_begin_as_owner(&ctx);
	own_model(name, ctx.save_userid);
	for (int i = 0; i < nstmts; i++)
	{
		int			ret = SPI_execute_with_args(stmts[i], 1, types, values, NULL, false, 0);

		if (ret < 0)
			elog(ERROR, "could not change model \"%s\": %s", name, SPI_result_code_string(ret));
		n = SPI_processed;
	}
	md_end_as_owner(&ctx);
	md_at_commit(MD_WAKE_MODELS_CHANGED);
	return n;
}

/*
 * mdfeed_unregister_model drops a model, its progress and its outputs.
 * The model goes first: its key lock waits for a batch in progress, so
 * the outputs that batch commits are deleted with the others.
 */
Datum
mdfeed_unregister_model(PG_FUNCTION_ARGS)
{
	static const char *const stmts[] = {
		"DELETE FROM mdfeed.models WHERE name OPERATOR(pg_catalog.=) $1",
		"DELETE FROM mdfeed.model_outputs WHERE model OPERATOR(pg_catalog.=) $1",
	};

	(void) change_model(text_to_cstring(PG_GETARG_TEXT_PP(0)), stmts, lengthof(stmts));
	PG_RETURN_VOID();
}

/*
 * mdfeed_pause_model stops running a model; its progress stays.
 */
Datum
mdfeed_pause_model(PG_FUNCTION_ARGS)
{
	static const char *const stmts[] = {
		"UPDATE mdfeed.models SET state = 'paused', paused_at = pg_catalog.now() "
		"WHERE name OPERATOR(pg_catalog.=) $1 AND state OPERATOR(pg_catalog.=) 'active'",
	};

	(void) change_model(text_to_cstring(PG_GETARG_TEXT_PP(0)), stmts, lengthof(stmts));
	PG_RETURN_VOID();
}

/*
 * mdfeed_resume_model runs a paused model again from where it stopped,
 * failed candles first, with their failure counts reset.
 */
Datum
mdfeed_resume_model(PG_FUNCTION_ARGS)
{
	static const char *const stmts[] = {
		"UPDATE mdfeed.models SET state = 'active', paused_at = NULL "
		"WHERE name OPERATOR(pg_catalog.=) $1",
		"UPDATE mdfeed.model_progress SET attempts = 0, retry_at = NULL "
		"WHERE model OPERATOR(pg_catalog.=) $1",
	};

	(void) change_model(text_to_cstring(PG_GETARG_TEXT_PP(0)), stmts, lengthof(stmts));
	PG_RETURN_VOID();
}

/*
 * mdfeed_rerun_model has a model compute its outputs again (or for the
 * first time) for the closed candles opening in [from_time, to_time), of
 * the symbols given (NULL: all it runs on).  It returns how many symbols
 * it scheduled; the model worker does the runs, before going on.
 */
Datum
mdfeed_rerun_model(PG_FUNCTION_ARGS)
{
	char	   *name;
	TimestampTz from;
	TimestampTz to;
	MdOwnerContext ctx;
	Oid			types[4] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTARRAYOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		n;

	REQUIRE_ARG(0, "name");
	REQUIRE_ARG(1, "from_time");
	REQUIRE_ARG(2, "to_time");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_model_name(name);
	from = PG_GETARG_TIMESTAMPTZ(1);
	to = PG_GETARG_TIMESTAMPTZ(2);
	if (TIMESTAMP_NOT_FINITE(from) || TIMESTAMP_NOT_FINITE(to) || md_timestamptz_to_ms(from) < 0 ||
		md_timestamptz_to_ms(to) >= MD_MAX_TIME_MS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_time and to_time must be finite times between 1970 and 9999")));
	if (from >= to)
	{
		char	   *from_str = pstrdup(timestamptz_to_str(from));

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_time %s is not before to_time %s", from_str, timestamptz_to_str(to)),
				 errhint("The range is [from_time, to_time): from_time must be the earlier.")));
	}
	values[0] = CStringGetTextDatum(name);
	values[1] = TimestampTzGetDatum(from);
	values[2] = TimestampTzGetDatum(to);
	if (PG_ARGISNULL(3))
		nulls[3] = 'n';
	else
		values[3] = check_symbols(PG_GETARG_ARRAYTYPE_P(3));

	md_begin_as_owner(&ctx);
	own_model(name, ctx.save_userid);
	if (SPI_execute_with_args("UPDATE mdfeed.model_progress SET "
							  "rerun_from = LEAST(coalesce(rerun_from, $2), $2), "
							  "rerun_to = GREATEST(coalesce(rerun_to, $3), $3), "
							  "updated_at = pg_catalog.now() "
							  "WHERE model OPERATOR(pg_catalog.=) $1 "
							  "AND ($4 IS NULL OR symbol OPERATOR(pg_catalog.=) ANY ($4))",
							  4, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not schedule the rerun");
	n = SPI_processed;
	md_end_as_owner(&ctx);
	md_at_commit(MD_WAKE_MODELS_CHANGED);
	PG_RETURN_INT32((int32) n);
}
