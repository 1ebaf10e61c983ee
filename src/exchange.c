/*-------------------------------------------------------------------------
 *
 * exchange.c
 *	  The list of exchange adapters mdfeed knows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "exchange.h"

static const MdExchange *const md_exchanges[] = {
	&md_binance,
};

/*
 * md_exchange_lookup finds an adapter by the name users give ("binance").
 */
const MdExchange *
md_exchange_lookup(const char *name)
{
	for (int i = 0; i < lengthof(md_exchanges); i++)
		if (strcmp(md_exchanges[i]->name, name) == 0)
			return md_exchanges[i];
	return NULL;
}

const char *
md_exchange_names(void)
{
	return "binance";
}
