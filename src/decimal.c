/*-------------------------------------------------------------------------
 *
 * decimal.c
 *	  Strict checks of exchange-supplied decimal strings and symbols.
 *
 * Values are stored as numeric straight from the exchange's strings.  numeric
 * would accept "NaN", "Infinity" and surrounding blanks, and raise an error
 * on rubbish; both must be caught before a batch is written, so the parsers
 * check every string here first and treat a bad one as a malformed answer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "decimal.h"

#define MAX_DIGITS 60

/*
 * md_valid_decimal accepts -?digits[.digits][e[+-]digits], with at least one
 * digit and at most MAX_DIGITS on each side of the point, and an exponent
 * of one or two digits.
 */
bool
md_valid_decimal(const char *s, size_t len)
{
	size_t		i = 0;
	size_t		n;

	if (len == 0 || len > 2 * MAX_DIGITS + 8)
		return false;
	if (s[i] == '-')
		i++;
	for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		n++;
	if (n == 0 || n > MAX_DIGITS)
		return false;
	if (i < len && s[i] == '.')
	{
		i++;
		for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			n++;
		if (n == 0 || n > MAX_DIGITS)
			return false;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E'))
	{
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		for (n = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			n++;
		/* 1e400 is no price: an exponent has two digits at most */
		if (n == 0 || n > 2)
			return false;
	}
	return i == len;
}

/*
 * md_valid_symbol accepts what exchanges use as instrument names: upper case
 * letters, digits, and the separators '_' and '-' (BTCUSDT_261225,
 * B-BTC_USDT), 1 to 40 characters, starting with a letter or digit.
 */
bool
md_valid_symbol(const char *s)
{
	size_t		len = strlen(s);

	if (len == 0 || len > 40)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
			continue;
		if ((c == '_' || c == '-') && i > 0)
			continue;
		return false;
	}
	return true;
}
