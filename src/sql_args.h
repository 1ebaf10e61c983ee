/*-------------------------------------------------------------------------
 *
 * sql_args.h
 *	  The argument checks every SQL function of mdfeed shares (sql_args.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_SQL_ARGS_H
#define MDFEED_SQL_ARGS_H

#include "fmgr.h"

#include "exchange.h"
#include "interval.h"

/* REQUIRE_ARG raises an error when argument n, called name, is NULL */
#define REQUIRE_ARG(n, name) \
	do { \
		if (PG_ARGISNULL(n)) \
			ereport(ERROR, \
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), \
					 errmsg("%s must not be null", (name)))); \
	} while (0)

extern void md_check_symbol(const char *symbol);
extern const MdInterval *md_check_interval(const char *name);
extern const MdExchange *md_check_exchange(const char *name);
extern const MdInterval *md_check_exchange_interval(const MdExchange *ex, const char *name);
extern void md_check_schema_version(const char *version);
extern void md_require_schema_version(void);
extern void md_check_database(void);

/*
 * Acting as the extension's owner (md_begin_as_owner, md_end_as_owner):
 * the caller's identity, kept to be given back and to be recorded.
 */
typedef struct MdOwnerContext
{
	Oid			save_userid;
	int			save_sec;
	int			guc_level;
} MdOwnerContext;

extern void md_begin_as_owner(MdOwnerContext *ctx);
extern void md_end_as_owner(MdOwnerContext *ctx);

#endif							/* MDFEED_SQL_ARGS_H */
