/*-------------------------------------------------------------------------
 *
 * shard.c
 *	  Beyond one server: which symbols this server ingests (mdfeed.shard =
 *	  'k/n'), whether it ingests at all (mdfeed.mode), and the local address
 *	  its REST calls and streams go out from (mdfeed.source_address).
 *
 * A shard owns the (exchange, symbol) pairs whose hash falls in it.  The
 * hash must be the same on every server of a fleet, whatever its build,
 * version or byte order, and for as long as the fleet runs: it is FNV-1a
 * (64 bits) of the exchange's name, a zero byte and the symbol (as
 * exchanges write them: ASCII), taken to a shard by Lamping and Veach's
 * jump consistent hash, computed in integers only.  PostgreSQL's own
 * hash_any is not used: its value depends on the byte order of the
 * machine.  The jump hash is why changing n is cheap: going from n to n + 1
 * shards moves a symbol only to the new shard, about 1/(n + 1) of them,
 * and none between the shards that stay.
 *
 * What a shard does with it: the stream worker streams, and the watch
 * worker syncs, repairs and collects derivatives for, the tracked pairs it
 * owns (mdfeed.tracked.here); the liquidity ranking ranks the whole board
 * and keeps the ranked symbols it owns, so the shards' auto-tracked sets are
 * disjoint and their union is the board's top.  Everything else (a user's
 * mdfeed_backfill of any symbol, the SQL functions) works unchanged.
 *
 * mdfeed.mode = 'replica' is the analytics server's: no backfill or stream
 * worker runs, nothing calls an exchange (md_require_ingest), the watch
 * worker only probes the schema and the models, and the model workers run
 * on what replication brings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "common.h"
#include "shard.h"

PG_FUNCTION_INFO_V1(mdfeed_shard_of);
PG_FUNCTION_INFO_V1(mdfeed_shard_here);

char	   *mdfeed_shard = NULL;
int			mdfeed_mode = MD_MODE_INGEST;
char	   *mdfeed_source_address = NULL;

const struct config_enum_entry md_mode_options[] = {
	{"ingest", MD_MODE_INGEST, false},
	{"replica", MD_MODE_REPLICA, false},
	{NULL, 0, false}
};

/* mdfeed.shard, as its assign hook left it */
static int	shard_k = 0;
static int	shard_n = 1;

/*
 * read_number reads a decimal number between blanks, or returns false.
 */
static bool
read_number(const char **s, long *out)
{
	char	   *end;

	while (isspace((unsigned char) **s))
		(*s)++;
	if (!isdigit((unsigned char) **s))
		return false;
	*out = strtol(*s, &end, 10);
	while (isspace((unsigned char) *end))
		end++;
	*s = end;
	return true;
}

/*
 * parse_shard reads 'k/n' (0 <= k < n <= MD_MAX_SHARDS, blanks allowed
 * around the numbers).  Returns false on anything else.
 */
static bool
parse_shard(const char *s, int *k, int *n)
{
	long		a,
				b;

	if (!read_number(&s, &a) || *s++ != '/' || !read_number(&s, &b) || *s != '\0')
		return false;
	if (b < 1 || b > MD_MAX_SHARDS || a < 0 || a >= b)
		return false;
	*k = (int) a;
	*n = (int) b;
	return true;
}

/*
 * md_check_shard is mdfeed.shard's check hook; the parsed pair travels to
 * the assign hook in extra.
 */
bool
md_check_shard(char **newval, void **extra, GucSource source)
{
	int			k,
				n;
	int		   *pair;

	if (*newval == NULL || !parse_shard(*newval, &k, &n))
	{
		GUC_check_errdetail("mdfeed.shard is 'k/n': this server's shard k of n shards, with 0 <= k < n <= %d.",
							MD_MAX_SHARDS);
		return false;
	}
	/* the GUC machinery frees extra with free() */
	pair = malloc(sizeof(int) * 2);
	if (pair == NULL)
		return false;
	pair[0] = k;
	pair[1] = n;
	*extra = pair;
	return true;
}

void
md_assign_shard(const char *newval, void *extra)
{
	if (extra == NULL)
		return;
	shard_k = ((int *) extra)[0];
	shard_n = ((int *) extra)[1];
}

/*
 * md_check_source_address accepts what libcurl's CURLOPT_INTERFACE and
 * libwebsockets' iface both take: an interface name or an IP address
 * (empty: the system's choice).  Only the characters of those; libcurl's
 * "if!" and "host!" prefixes mean nothing to libwebsockets.
 */
bool
md_check_source_address(char **newval, void **extra, GucSource source)
{
	const char *s = *newval;

	if (s == NULL || s[0] == '\0')
		return true;
	if (strlen(s) > 63)
	{
		GUC_check_errdetail("The address is too long.");
		return false;
	}
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && strchr(".:-_%", *s) == NULL)
		{
			GUC_check_errdetail("mdfeed.source_address is an IP address of this host or an interface name, such as 10.0.0.2 or eth1.");
			return false;
		}
	return true;
}

/*
 * pair_hash is FNV-1a (64 bits) of exchange, a zero byte and symbol.
 */
static uint64
pair_hash(const char *exchange, const char *symbol)
{
	uint64		h = UINT64CONST(14695981039346656037);
	const unsigned char *p;

	for (p = (const unsigned char *) exchange; *p; p++)
		h = (h ^ *p) * UINT64CONST(1099511628211);
	h = (h ^ 0) * UINT64CONST(1099511628211);
	for (p = (const unsigned char *) symbol; *p; p++)
		h = (h ^ *p) * UINT64CONST(1099511628211);
	return h;
}

/*
 * md_shard_of returns the shard (0 .. shards - 1) that owns a pair: the
 * jump consistent hash of its FNV-1a hash.
 */
int
md_shard_of(const char *exchange, const char *symbol, int shards)
{
	uint64		key = pair_hash(exchange, symbol);
	int64		b = -1;
	int64		j = 0;

	while (j < shards)
	{
		b = j;
		key = key * UINT64CONST(2862933555777941757) + 1;
		/* the step in integers: no floating point, the same on every build */
		j = (int64) (((uint64) (b + 1) << 31) / ((key >> 33) + 1));
	}
	return (int) b;
}

/*
 * md_shard_get returns mdfeed.shard as it is now.
 */
void
md_shard_get(int *k, int *n)
{
	*k = shard_k;
	*n = shard_n;
}

/*
 * md_replica_mode says whether this server ingests nothing.
 */
bool
md_replica_mode(void)
{
	return mdfeed_mode == MD_MODE_REPLICA;
}

/*
 * md_shard_owns says whether this server ingests a pair: it is in ingest
 * mode, and the pair's shard is its own.
 */
bool
md_shard_owns(const char *exchange, const char *symbol)
{
	if (md_replica_mode())
		return false;
	return shard_n == 1 || md_shard_of(exchange, symbol, shard_n) == shard_k;
}

/*
 * md_require_ingest raises an error in replica mode, where nothing calls
 * an exchange: every REST call and every job goes through it.
 */
void
md_require_ingest(void)
{
	if (md_replica_mode())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mdfeed.mode is \"replica\": this server calls no exchange"),
				 errdetail("Its data arrives by logical replication from the ingest servers."),
				 errhint("Run it on the ingest server that owns the symbol (see mdfeed.shard_of()).")));
}

/*
 * md_source_address is the local address for REST and streams, or NULL.
 */
const char *
md_source_address(void)
{
	return (mdfeed_source_address && mdfeed_source_address[0]) ? mdfeed_source_address : NULL;
}

/*
 * mdfeed_shard_of is mdfeed.shard_of(exchange, symbol, shards): the shard
 * of shards that owns a pair, as every server computes it.
 */
Datum
mdfeed_shard_of(PG_FUNCTION_ARGS)
{
	char	   *exchange = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *symbol = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		shards = PG_GETARG_INT32(2);

	if (shards < 1 || shards > MD_MAX_SHARDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid number of shards: %d", shards),
				 errhint("A fleet has 1 to %d shards.", MD_MAX_SHARDS)));
	PG_RETURN_INT32(md_shard_of(exchange, symbol, shards));
}

/*
 * mdfeed_shard_here is mdfeed.shard_here(exchange, symbol): whether this
 * server ingests the pair (mdfeed.mode and mdfeed.shard).
 */
Datum
mdfeed_shard_here(PG_FUNCTION_ARGS)
{
	char	   *exchange = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *symbol = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_BOOL(md_shard_owns(exchange, symbol));
}
