/*-------------------------------------------------------------------------
 *
 * binance_archive.c
 *	  The Binance adapter's bulk archives (data.binance.vision): where the
 *	  USD-M files are, and how their CSV lines and checksum files read.
 *
 * The layout is futures/um/{monthly,daily}/klines/SYM/IV/SYM-IV-PERIOD.zip
 * and futures/um/daily/metrics/SYM/SYM-metrics-DAY.zip, each with a
 * .CHECKSUM file in sha256sum's format.  A kline CSV has REST's twelve
 * columns, with a header row in files from about 2022-05 on and none
 * before; times are in milliseconds, but spot went to microseconds in
 * 2025, so a time too large for milliseconds is taken as microseconds
 * (freqtrade does the same).  Metrics rows are five minutes apart, their
 * time written "YYYY-MM-DD HH:MM:SS" in UTC.
 *
 * The line parsers never raise: a line that is not a row or the header is
 * garbage, and the caller counts it.  Every decimal passes the check REST's
 * decimals pass (md_valid_decimal, md_candle_consistent).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common.h"
#include "decimal.h"
#include "exchange.h"
#include "interval.h"

/* a time above this many milliseconds (year 5138) is in microseconds */
#define MS_MAX_PLAUSIBLE INT64CONST(100000000000000)

#define MAX_FIELDS 16

static const char *
binance_archive_base_url(void)
{
	return mdfeed_binance_archive_url != NULL ? mdfeed_binance_archive_url : "";
}

/* every interval has monthly files; 1M is spelled 1mo */
static const char *const monthly_codes[] = {
	"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
	"1d", "3d", "1w", "1mo",
};

/* daily files stop at 1d */
static const char *const daily_codes[] = {
	"1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
	"1d", NULL, NULL, NULL,
};

StaticAssertDecl(lengthof(monthly_codes) == MD_NUM_INTERVALS, "one code per interval");
StaticAssertDecl(lengthof(daily_codes) == MD_NUM_INTERVALS, "one code per interval");

static char *
binance_archive_klines_path(const char *symbol, const char *code, int year, int month, int day)
{
	if (day == 0)
		return psprintf("/data/futures/um/monthly/klines/%s/%s/%s-%s-%04d-%02d.zip",
						symbol, code, symbol, code, year, month);
	return psprintf("/data/futures/um/daily/klines/%s/%s/%s-%s-%04d-%02d-%02d.zip",
					symbol, code, symbol, code, year, month, day);
}

static char *
binance_archive_metrics_path(const char *symbol, int year, int month, int day)
{
	return psprintf("/data/futures/um/daily/metrics/%s/%s-metrics-%04d-%02d-%02d.zip",
					symbol, symbol, year, month, day);
}

/*
 * binance_parse_checksum reads sha256sum's line: 64 hex digits, two spaces
 * (or a space and '*'), and the file's name.
 */
static bool
binance_parse_checksum(const char *body, size_t len, const char *name, char *hex, char **err)
{
	size_t		nlen = strlen(name);
	size_t		i;

	if (len < 64)
	{
		*err = pstrdup("the checksum file is too short");
		return false;
	}
	for (i = 0; i < 64; i++)
	{
		char		c = body[i];

		if (c >= 'A' && c <= 'F')
			c = c - 'A' + 'a';
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
		{
			*err = pstrdup("the checksum file does not start with a SHA-256 in hex");
			return false;
		}
		hex[i] = c;
	}
	hex[64] = '\0';
	/* the name, when given, must be the file's */
	while (len > 64 && (body[len - 1] == '\n' || body[len - 1] == '\r'))
		len--;
	if (len > 64 && !(len == 66 + nlen && body[64] == ' ' &&
					  (body[65] == ' ' || body[65] == '*') &&
					  memcmp(body + 66, name, nlen) == 0))
	{
		*err = psprintf("the checksum file is not for %s", name);
		return false;
	}
	return true;
}

/*
 * split_csv cuts a line at its commas (no quoting: these files have none),
 * dropping a trailing carriage return.  Returns the number of fields, or -1
 * if there are more than max.
 */
static int
split_csv(const char *line, size_t len, const char **start, size_t *flen, int max)
{
	int			n = 0;
	size_t		from = 0;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	for (size_t i = 0; i <= len; i++)
	{
		if (i == len || line[i] == ',')
		{
			if (n == max)
				return -1;
			start[n] = line + from;
			flen[n] = i - from;
			n++;
			from = i + 1;
		}
	}
	return n;
}

/*
 * parse_count reads a non-negative integer of at most 18 digits.
 */
static bool
parse_count(const char *s, size_t len, int64 *out)
{
	int64		v = 0;

	if (len == 0 || len > 18)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/*
 * parse_time reads a time in milliseconds, or in microseconds when it is
 * too large for milliseconds (rounded down to the millisecond).
 */
static bool
parse_time(const char *s, size_t len, int64 *ms)
{
	int64		v;

	if (!parse_count(s, len, &v))
		return false;
	*ms = v >= MS_MAX_PLAUSIBLE ? v / 1000 : v;
	return true;
}

/* the columns of the decimals, as REST has them */
static const int csv_decimal_pos[MD_NUM_DECIMALS] = {1, 2, 3, 4, 5, 7, 9, 10};

/*
 * binance_parse_kline_line reads one line of a klines CSV: open_time, open,
 * high, low, close, volume, close_time, quote_volume, count,
 * taker_buy_volume, taker_buy_quote_volume, ignore.
 */
static MdArchiveLine
binance_parse_kline_line(const char *line, size_t len, MdCandle *out, char **err)
{
	const char *f[MAX_FIELDS];
	size_t		fl[MAX_FIELDS];
	int			n = split_csv(line, len, f, fl, MAX_FIELDS);

	if (n >= 1 && fl[0] > 0 && (f[0][0] < '0' || f[0][0] > '9'))
	{
		if (fl[0] == 9 && memcmp(f[0], "open_time", 9) == 0)
			return MD_LINE_HEADER;
		*err = pstrdup("the line is neither a kline nor the header");
		return MD_LINE_MALFORMED;
	}
	if (n < 11)
	{
		*err = psprintf("the line has %d fields, not 12", n);
		return MD_LINE_MALFORMED;
	}
	memset(out, 0, sizeof(*out));
	if (!parse_time(f[0], fl[0], &out->open_ms) || !parse_time(f[6], fl[6], &out->close_ms))
	{
		*err = pstrdup("the line's open or close time is not a time");
		return MD_LINE_MALFORMED;
	}
	if (!parse_count(f[8], fl[8], &out->trades))
	{
		*err = pstrdup("the line's trade count is not a count");
		return MD_LINE_MALFORMED;
	}
	for (int i = 0; i < MD_NUM_DECIMALS; i++)
	{
		int			p = csv_decimal_pos[i];

		if (!md_valid_decimal(f[p], fl[p]))
		{
			*err = psprintf("field %d of the line is not a decimal", p + 1);
			return MD_LINE_MALFORMED;
		}
		out->dec[i] = pnstrdup(f[p], fl[p]);
	}
	if (!md_candle_consistent(out))
	{
		*err = pstrdup("the line is no candle: its times, prices or volumes disagree");
		return MD_LINE_MALFORMED;
	}
	out->closed = true;
	return MD_LINE_ROW;
}

/*
 * parse_two reads exactly two digits.
 */
static bool
parse_two(const char *s, int *v)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return false;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return true;
}

/*
 * parse_utc_datetime reads "YYYY-MM-DD HH:MM:SS" (UTC).
 */
static bool
parse_utc_datetime(const char *s, size_t len, int64 *ms)
{
	int			y1,
				y2,
				mo,
				d,
				h,
				mi,
				se;

	if (len != 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':')
		return false;
	if (!parse_two(s, &y1) || !parse_two(s + 2, &y2) || !parse_two(s + 5, &mo) ||
		!parse_two(s + 8, &d) || !parse_two(s + 11, &h) || !parse_two(s + 14, &mi) ||
		!parse_two(s + 17, &se))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
		return false;
	*ms = md_utc_midnight(y1 * 100 + y2, mo, d) +
		((int64) h * 3600 + mi * 60 + se) * 1000;
	/* 31 February is no day */
	{
		int			cy,
					cm,
					cd;

		md_utc_date(*ms, &cy, &cm, &cd);
		if (cm != mo || cd != d)
			return false;
	}
	return true;
}

/*
 * binance_parse_metrics_line reads one line of a metrics CSV: create_time,
 * symbol, sum_open_interest, sum_open_interest_value, and four ratios
 * mdfeed does not keep.
 */
static MdArchiveLine
binance_parse_metrics_line(const char *line, size_t len, MdOpenInterest *out, char **err)
{
	const char *f[MAX_FIELDS];
	size_t		fl[MAX_FIELDS];
	int			n = split_csv(line, len, f, fl, MAX_FIELDS);

	if (n >= 1 && fl[0] == 11 && memcmp(f[0], "create_time", 11) == 0)
		return MD_LINE_HEADER;
	if (n < 4)
	{
		*err = psprintf("the line has %d fields, not 8", n);
		return MD_LINE_MALFORMED;
	}
	memset(out, 0, sizeof(*out));
	if (!parse_utc_datetime(f[0], fl[0], &out->ts_ms))
	{
		*err = pstrdup("the line's create_time is not a UTC time");
		return MD_LINE_MALFORMED;
	}
	if (!md_valid_decimal(f[2], fl[2]) || !md_valid_decimal(f[3], fl[3]) ||
		f[2][0] == '-' || f[3][0] == '-')
	{
		*err = pstrdup("the line's open interest is not a decimal of at least zero");
		return MD_LINE_MALFORMED;
	}
	out->sum_open_interest = pnstrdup(f[2], fl[2]);
	out->sum_open_interest_value = pnstrdup(f[3], fl[3]);
	return MD_LINE_ROW;
}

const MdArchiveOps md_binance_archive = {
	.base_url = binance_archive_base_url,
	.url_setting = "mdfeed.binance_archive_url",
	.monthly_codes = monthly_codes,
	.daily_codes = daily_codes,
	/* daily files appear around 08:30 UTC the next day (#440) */
	.daily_delay_ms = INT64CONST(8) * 3600000 + 30 * 60000,
	/* monthly ones on the first Monday of the next month: ask, then days */
	.monthly_delay_ms = 0,
	.klines_path = binance_archive_klines_path,
	.metrics_path = binance_archive_metrics_path,
	.checksum_suffix = ".CHECKSUM",
	.parse_checksum = binance_parse_checksum,
	.parse_kline_line = binance_parse_kline_line,
	.parse_metrics_line = binance_parse_metrics_line,
	.open_interest_5m_table = "open_interest_5m",
};
