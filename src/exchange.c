/*-------------------------------------------------------------------------
 *
 * exchange.c
 *	  The registry of exchange adapters, and what every caller asks of an
 *	  adapter's declarations: its intervals and its tables.
 *
 * An adapter's place in md_exchanges is its id: the index of its budget in
 * shared memory and of its stream worker.  Adding an exchange is one more
 * line here and its adapter file; nothing else names it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "exchange.h"

static const MdExchange *const md_exchanges[] = {
	&md_binance,
};

StaticAssertDecl(lengthof(md_exchanges) <= MD_MAX_EXCHANGES,
				 "more adapters than MD_MAX_EXCHANGES");

/*
 * md_exchange_lookup finds an adapter by the name users give, or NULL.
 */
const MdExchange *
md_exchange_lookup(const char *name)
{
	for (int i = 0; i < lengthof(md_exchanges); i++)
		if (strcmp(md_exchanges[i]->name, name) == 0)
			return md_exchanges[i];
	return NULL;
}

/*
 * md_exchange_by_id returns the adapter with that registry index, or NULL.
 */
const MdExchange *
md_exchange_by_id(int id)
{
	if (id < 0 || id >= lengthof(md_exchanges))
		return NULL;
	return md_exchanges[id];
}

/*
 * md_exchange_id is the adapter's registry index.
 */
int
md_exchange_id(const MdExchange *ex)
{
	for (int i = 0; i < lengthof(md_exchanges); i++)
		if (md_exchanges[i] == ex)
			return i;
	elog(ERROR, "exchange adapter \"%s\" is not registered", ex->name);
	return -1;					/* keep the compiler quiet */
}

int
md_num_exchanges(void)
{
	return lengthof(md_exchanges);
}

/*
 * md_exchange_names lists the registered exchanges, for error hints.
 */
const char *
md_exchange_names(void)
{
	static char *names = NULL;

	if (names == NULL)
	{
		StringInfoData buf;
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&buf);
		for (int i = 0; i < lengthof(md_exchanges); i++)
			appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", md_exchanges[i]->name);
		names = buf.data;
		MemoryContextSwitchTo(old);
	}
	return names;
}

/*
 * md_exchange_interval_code is the exchange's code for an interval, or NULL
 * if it does not offer the interval.
 */
const char *
md_exchange_interval_code(const MdExchange *ex, const MdInterval *iv)
{
	if (iv == NULL)
		return NULL;
	return ex->interval_codes[iv - md_intervals];
}

/*
 * md_exchange_interval finds an interval by the name users write ("1m"),
 * if the exchange offers it.
 */
const MdInterval *
md_exchange_interval(const MdExchange *ex, const char *name)
{
	const MdInterval *iv = md_interval_lookup(name);

	return md_exchange_interval_code(ex, iv) != NULL ? iv : NULL;
}

/*
 * md_exchange_interval_names lists the intervals the exchange offers, for
 * error hints ("1m, 3m, ..., 1M").  The answer is palloc'd.
 */
const char *
md_exchange_interval_names(const MdExchange *ex)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < md_num_intervals; i++)
		if (ex->interval_codes[i] != NULL)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", md_intervals[i].name);
	return buf.data;
}

/*
 * md_candle_table names the exchange's table of an interval (without the
 * schema), palloc'd.
 */
char *
md_candle_table(const MdExchange *ex, const MdInterval *iv)
{
	return psprintf("%s%s", ex->candle_prefix, iv->suffix);
}
