/*-------------------------------------------------------------------------
 *
 * model_run.c
 *	  One model run: a user's function called on a window of candles, as
 *	  the role that registered it, isolated and bounded in time.
 *
 * The model worker is a superuser process; a model is anybody's code.  So
 * a run is the way PostgreSQL runs a table owner's index expressions during
 * maintenance: the current user becomes the model's owner with
 * SECURITY_RESTRICTED_OPERATION (no SET ROLE out of it, no temporary
 * objects or cursors that outlive the run), in a GUC nest level undone
 * afterwards (a model's SET cannot reach the worker's own queries), with a
 * search_path of the owner's, "$user", public.  The function is called
 * through fmgr, not through SQL, so a run costs no parse or plan; the
 * owner's right to execute it, and to read the candles it is given, is
 * checked once a batch (md_model_owner_problem).
 *
 * Runs are isolated by subtransactions: an error rolls back whatever the
 * model did, and is handed back to the caller, which records it with the
 * candle and goes on.  Consecutive runs share one (a group), for speed;
 * when one of them fails, the group is rolled back and the caller runs
 * the earlier ones again, each in a subtransaction of its own, so that a
 * failure never undoes another run's work.  mdfeed.model_timeout bounds a run with a timer of our own
 * that cancels it the way statement_timeout would; a model that never
 * reaches a CHECK_FOR_INTERRUPTS (a loop in C or in some PL's own code)
 * cannot be interrupted, as with statement_timeout.
 *
 * The checks of a model function are here too, so that registration (as
 * errors) and every batch of runs (as the reason a model is paused) say the
 * same thing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/prepare.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rls.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "common.h"
#include "model_run.h"

/* true while a model runs: the model API refuses to be called then */
bool		md_in_model_run = false;

/* the owner's own search_path, not the worker's */
#define MODEL_SEARCH_PATH "\"$user\", public"

static TimeoutId model_timeout_id = MAX_TIMEOUTS;
static volatile sig_atomic_t model_timed_out = false;

/*
 * model_timeout_handler cancels the run, as StatementTimeoutHandler would
 * cancel a statement.  It runs in a signal handler: it only sets flags.
 */
static void
model_timeout_handler(void)
{
	model_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * md_candle_type returns the OID of mdfeed.candle.
 */
Oid
md_candle_type(void)
{
	Oid			nsp = get_namespace_oid("mdfeed", false);
	Oid			typ = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
									  CStringGetDatum("candle"), ObjectIdGetDatum(nsp));

	if (!OidIsValid(typ))
		elog(ERROR, "type mdfeed.candle does not exist");
	return typ;
}

/*
 * md_model_function_problem says what makes fn unfit to be a model, or
 * returns NULL; *hint says what would be.
 */
char *
md_model_function_problem(Oid fn, char **hint)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	Oid			candles = get_array_type(md_candle_type());
	char	   *problem = NULL;
	char	   *name;

	*hint = "A model is a function fn(symbol text, \"interval\" text, candles mdfeed.candle[]) RETURNS jsonb.";
	if (!HeapTupleIsValid(tup))
		return psprintf("function %u does not exist", fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	name = format_procedure(fn);
	if (proc->prokind != PROKIND_FUNCTION)
		problem = psprintf("%s is not a plain function", name);
	else if (proc->proretset)
		problem = psprintf("%s returns a set", name);
	else if (proc->prorettype != JSONBOID)
		problem = psprintf("%s returns %s, not jsonb", name, format_type_be(proc->prorettype));
	else if (proc->pronargs != 3 || proc->proargtypes.values[0] != TEXTOID ||
			 proc->proargtypes.values[1] != TEXTOID || proc->proargtypes.values[2] != candles)
		problem = psprintf("%s does not take (text, text, mdfeed.candle[])", name);
	else if (proc->prosecdef)
	{
		problem = psprintf("%s is SECURITY DEFINER", name);
		*hint = "A model runs as the role that registers it: register a SECURITY INVOKER function.";
	}
	else if (isAnyTempNamespace(proc->pronamespace))
	{
		problem = psprintf("%s is a temporary function", name);
		*hint = "A model outlives the session: register a function of an ordinary schema.";
	}
	ReleaseSysCache(tup);
	return problem;
}

/*
 * md_function_owner returns the owner of fn, or InvalidOid.
 */
Oid
md_function_owner(Oid fn)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * md_model_session_reset drops what a model may have left in the worker's
 * session that the next model, another role's, could use: session
 * advisory locks and prepared statements.  (State kept by extensions, such
 * as dblink's named connections, is not reached.)
 */
void
md_model_session_reset(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
}

/*
 * md_model_owner_problem says why owner may not run fn as a model on the
 * exchange's candles of an interval, or returns NULL: the role must exist,
 * not be a superuser (mdfeed runs no user code as one), and be allowed to
 * execute fn and to read the candle table the window comes from, all of
 * it (the worker reads it for the model, with no row security applied).
 */
char *
md_model_owner_problem(Oid owner, Oid fn, const MdExchange *ex, const MdInterval *iv,
					   char **hint)
{
	char	   *table = md_candle_table(ex, iv);
	Oid			relid = get_relname_relid(table, get_namespace_oid("mdfeed", false));

	*hint = NULL;
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		return psprintf("role %u that registered the model no longer exists", owner);
	if (superuser_arg(owner))
	{
		*hint = "Register models as an ordinary role (SET ROLE to one): a model runs with the privileges of the role that registers it.";
		return psprintf("role \"%s\" is a superuser, and mdfeed runs no model as a superuser",
						GetUserNameFromId(owner, false));
	}
	if (pg_proc_aclcheck(fn, owner, ACL_EXECUTE) != ACLCHECK_OK)
	{
		*hint = "GRANT EXECUTE on the function to the role.";
		return psprintf("role \"%s\" may not execute %s", GetUserNameFromId(owner, false),
						format_procedure(fn));
	}
	if (pg_namespace_aclcheck(get_namespace_oid("mdfeed", false), owner, ACL_USAGE) != ACLCHECK_OK ||
		!OidIsValid(relid) || pg_class_aclcheck(relid, owner, ACL_SELECT) != ACLCHECK_OK)
	{
		*hint = psprintf("A model is given the candles of mdfeed.%s: GRANT USAGE ON SCHEMA mdfeed and SELECT on that table to the role.",
						 table);
		return psprintf("role \"%s\" may not read mdfeed.%s", GetUserNameFromId(owner, false), table);
	}
	/* the worker reads the window, with no policy of the owner's applied */
	if (check_enable_rls(relid, owner, true) == RLS_ENABLED)
	{
		*hint = "mdfeed does not filter a model's window by row security: models run on tables whose rows the role may all read.";
		return psprintf("row security of mdfeed.%s applies to role \"%s\"", table,
						GetUserNameFromId(owner, false));
	}
	return NULL;
}

/*
 * md_model_call_init prepares the calls of fn for one symbol, in cxt.
 */
void
md_model_call_init(MdModelCall *call, Oid fn, Oid owner, const char *symbol,
				   const char *interval, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);

	if (model_timeout_id == MAX_TIMEOUTS)
		model_timeout_id = RegisterTimeout(USER_TIMEOUT, model_timeout_handler);
	fmgr_info_cxt(fn, &call->flinfo, cxt);
	call->in_group = false;
	call->owner = owner;
	call->symbol = CStringGetTextDatum(symbol);
	call->interval = CStringGetTextDatum(interval);
	call->candle_type = md_candle_type();
	get_typlenbyvalalign(call->candle_type, &call->candle_len, &call->candle_byval,
						 &call->candle_align);
	MemoryContextSwitchTo(old);
}

/*
 * md_model_group_begin opens the subtransaction the next runs share (see
 * md_model_group_run).
 */
void
md_model_group_begin(MdModelCall *call)
{
	Assert(!call->in_group);
	call->group_cxt = CurrentMemoryContext;
	call->group_owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(call->group_cxt);
	call->in_group = true;
}

/*
 * md_model_group_end keeps what the group's runs did (they are committed
 * with the batch).
 */
void
md_model_group_end(MdModelCall *call)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (!call->in_group)
		return;
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = call->group_owner;
	call->in_group = false;
}

/*
 * md_model_group_run runs the model on a window of n candles (mdfeed.candle
 * datums, oldest first), as its owner, inside the group's subtransaction.
 * On success it returns true with the result copied into result_cxt.  On
 * an error it rolls the whole group back (what its earlier runs did too),
 * ends it, and returns false with the error, copied into result_cxt: the
 * caller runs the group's earlier runs again, each alone, to keep theirs.
 *
 * Runs share a subtransaction because starting and ending one for each run
 * is most of the cost of a small model: a SQL function's plan, for one,
 * does not outlive the subtransaction that made it.
 */
bool
md_model_group_run(MdModelCall *call, Datum *window, int n, MemoryContext result_cxt,
				   Datum *result, bool *isnull, ErrorData **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Oid			save_userid;
	int			save_sec;
	volatile bool ok = false;
	Datum		candles;

	Assert(call->in_group);
	candles = PointerGetDatum(construct_array(window, n, call->candle_type, call->candle_len,
											  call->candle_byval, call->candle_align));
	GetUserIdAndSecContext(&save_userid, &save_sec);
	*error = NULL;
	*isnull = true;
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 3);
		int			guc_level;
		Datum		r;

		SetUserIdAndSecContext(call->owner,
							   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
		guc_level = NewGUCNestLevel();
		(void) set_config_option("search_path", MODEL_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		model_timed_out = false;
		if (mdfeed_model_timeout_ms > 0)
			enable_timeout_after(model_timeout_id, mdfeed_model_timeout_ms);

		md_in_model_run = true;
		InitFunctionCallInfoData(*fcinfo, &call->flinfo, 3, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = call->symbol;
		fcinfo->args[0].isnull = false;
		fcinfo->args[1].value = call->interval;
		fcinfo->args[1].isnull = false;
		fcinfo->args[2].value = candles;
		fcinfo->args[2].isnull = false;
		r = FunctionCallInvoke(fcinfo);
		md_in_model_run = false;

		disable_timeout(model_timeout_id, false);
		/* the timer fired as the model returned: that run is not cancelled */
		if (model_timed_out)
			QueryCancelPending = false;
		if (!fcinfo->isnull)
		{
			MemoryContextSwitchTo(result_cxt);
			*result = PointerGetDatum(PG_DETOAST_DATUM_COPY(r));
			*isnull = false;
		}
		AtEOXact_GUC(false, guc_level);
		SetUserIdAndSecContext(save_userid, save_sec);
		MemoryContextSwitchTo(oldcxt);
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		md_in_model_run = false;
		disable_timeout(model_timeout_id, false);
		MemoryContextSwitchTo(result_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* gives back the identity and the GUCs, and ends the runs' SPI */
		RollbackAndReleaseCurrentSubTransaction();
		SetUserIdAndSecContext(save_userid, save_sec);
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = call->group_owner;
		call->in_group = false;
		if (model_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			MemoryContext old = MemoryContextSwitchTo(result_cxt);

			edata->message = psprintf("the run took longer than mdfeed.model_timeout (%d ms)",
									  mdfeed_model_timeout_ms);
			MemoryContextSwitchTo(old);
		}
		model_timed_out = false;
		*error = edata;
		*isnull = true;
	}
	PG_END_TRY();
	return ok;
}
