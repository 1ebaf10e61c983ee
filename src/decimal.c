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

/*
 * A decimal taken apart: its sign, its significant digits (no leading or
 * trailing zeros) and the power of ten of the first of them.
 */
typedef struct Dec
{
	bool		neg;
	char		digits[2 * MAX_DIGITS + 2];
	int			ndigits;
	int			exp10;			/* value = 0.d1d2... * 10^exp10 */
} Dec;

static void
dec_split(const char *s, Dec *d)
{
	int			point = -1;
	int			n = 0;
	int			lead = 0;
	int			e = 0;
	bool		eneg = false;
	const char *p = s;

	memset(d, 0, sizeof(*d));
	if (*p == '-')
	{
		d->neg = true;
		p++;
	}
	for (; (*p >= '0' && *p <= '9') || *p == '.'; p++)
	{
		if (*p == '.')
		{
			point = n + lead;
			continue;
		}
		if (n == 0 && *p == '0')
		{
			lead++;
			continue;
		}
		if (n < (int) sizeof(d->digits) - 1)
			d->digits[n++] = *p;
	}
	if (point < 0)
		point = n + lead;
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			eneg = *p++ == '-';
		for (; *p >= '0' && *p <= '9'; p++)
			e = e * 10 + (*p - '0');
	}
	while (n > 0 && d->digits[n - 1] == '0')
		n--;
	d->digits[n] = '\0';
	d->ndigits = n;
	d->exp10 = point - lead + (eneg ? -e : e);
	if (n == 0)
		d->neg = false;			/* -0 is 0 */
}

/*
 * md_decimal_cmp compares two decimals md_valid_decimal accepts, by value:
 * -1, 0 or 1.
 */
int
md_decimal_cmp(const char *a, const char *b)
{
	Dec			x,
				y;
	int			mag;

	dec_split(a, &x);
	dec_split(b, &y);
	if (x.neg != y.neg)
		return x.neg ? -1 : 1;
	/* magnitudes: zero is smallest, then the higher power, then the digits */
	if (x.ndigits == 0 || y.ndigits == 0)
		mag = (x.ndigits > 0) - (y.ndigits > 0);
	else if (x.exp10 != y.exp10)
		mag = x.exp10 > y.exp10 ? 1 : -1;
	else
	{
		int			c = strcmp(x.digits, y.digits);

		mag = c > 0 ? 1 : c < 0 ? -1 : 0;
	}
	return x.neg ? -mag : mag;
}
