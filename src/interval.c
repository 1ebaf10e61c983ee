/*-------------------------------------------------------------------------
 *
 * interval.c
 *	  The candle intervals mdfeed knows and their arithmetic.  Which of
 *	  them an exchange offers, and under what code, is the adapter's to say
 *	  (MdExchange.interval_codes).
 *
 * Intervals up to a day start at multiples of their length since the Unix
 * epoch; weeks start on Monday 00:00 UTC; months are calendar months in UTC.
 * Everything is in milliseconds since the epoch, as the exchanges speak.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "common.h"
#include "interval.h"

#define MIN_MS	INT64CONST(60000)
#define HOUR_MS	(60 * MIN_MS)
#define DAY_MS	(24 * HOUR_MS)

const MdInterval md_intervals[] = {
	{"1m", "1m", "1 minute", MIN_MS},
	{"3m", "3m", "3 minutes", 3 * MIN_MS},
	{"5m", "5m", "5 minutes", 5 * MIN_MS},
	{"15m", "15m", "15 minutes", 15 * MIN_MS},
	{"30m", "30m", "30 minutes", 30 * MIN_MS},
	{"1h", "1h", "1 hour", HOUR_MS},
	{"2h", "2h", "2 hours", 2 * HOUR_MS},
	{"4h", "4h", "4 hours", 4 * HOUR_MS},
	{"6h", "6h", "6 hours", 6 * HOUR_MS},
	{"8h", "8h", "8 hours", 8 * HOUR_MS},
	{"12h", "12h", "12 hours", 12 * HOUR_MS},
	{"1d", "1d", "1 day", DAY_MS},
	{"3d", "3d", "3 days", 3 * DAY_MS},
	{"1w", "1w", "7 days", 7 * DAY_MS},
	{"1M", "1mo", "1 month", 0},
};
const int	md_num_intervals = lengthof(md_intervals);

StaticAssertDecl(lengthof(md_intervals) == MD_NUM_INTERVALS, "MD_NUM_INTERVALS is the length");

/* Monday 1970-01-05 is four days after the epoch, a Thursday. */
#define WEEK_OFFSET_MS (4 * DAY_MS)

/*
 * md_interval_lookup finds an interval by its exchange name, which is case
 * sensitive: "1m" is a minute and "1M" a month.
 */
const MdInterval *
md_interval_lookup(const char *name)
{
	for (int i = 0; i < md_num_intervals; i++)
		if (strcmp(md_intervals[i].name, name) == 0)
			return &md_intervals[i];
	return NULL;
}

/* md_interval_names lists the valid names, for error hints. */
const char *
md_interval_names(void)
{
	return "1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w, 1M";
}

static int64
floor_div(int64 a, int64 b)
{
	int64		q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

/*
 * Civil calendar conversions (proleptic Gregorian, UTC), after Howard
 * Hinnant's public-domain algorithms.
 */
static void
civil_from_days(int64 z, int *y, int *m)
{
	int64		era,
				doe,
				yoe,
				doy,
				mp;

	z += 719468;
	era = floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*m = (int) (mp < 10 ? mp + 3 : mp - 9);
	*y = (int) (yoe + era * 400 + (*m <= 2 ? 1 : 0));
}

static int64
days_from_civil(int y, int m, int d)
{
	int64		era,
				yoe,
				doy,
				doe;

	y -= m <= 2;
	era = floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/*
 * md_utc_date gives the UTC calendar day of an instant.
 */
void
md_utc_date(int64 ms, int *y, int *m, int *d)
{
	int64		days = floor_div(ms, DAY_MS);

	civil_from_days(days, y, m);
	*d = (int) (days - days_from_civil(*y, *m, 1)) + 1;
}

/*
 * md_utc_midnight is the instant a UTC calendar day begins (d may run past
 * the month's end: day 32 of January is 1 February).
 */
int64
md_utc_midnight(int y, int m, int d)
{
	return days_from_civil(y, m, 1) * DAY_MS + (int64) (d - 1) * DAY_MS;
}

/*
 * md_interval_floor returns the open time of the candle containing ms.
 */
int64
md_interval_floor(const MdInterval *iv, int64 ms)
{
	if (iv->ms == 0)
	{
		int			y,
					m;

		civil_from_days(floor_div(ms, DAY_MS), &y, &m);
		return days_from_civil(y, m, 1) * DAY_MS;
	}
	if (iv->ms == 7 * DAY_MS)
		return floor_div(ms - WEEK_OFFSET_MS, iv->ms) * iv->ms + WEEK_OFFSET_MS;
	return floor_div(ms, iv->ms) * iv->ms;
}

/*
 * md_interval_next returns the open time of the candle after the one that
 * opens at open_ms.
 */
int64
md_interval_next(const MdInterval *iv, int64 open_ms)
{
	if (iv->ms == 0)
	{
		int			y,
					m;

		civil_from_days(floor_div(open_ms, DAY_MS), &y, &m);
		if (m == 12)
			return days_from_civil(y + 1, 1, 1) * DAY_MS;
		return days_from_civil(y, m + 1, 1) * DAY_MS;
	}
	return open_ms + iv->ms;
}

/*
 * md_interval_count returns how many candles open in [from_ms, to_ms).
 */
int64
md_interval_count(const MdInterval *iv, int64 from_ms, int64 to_ms)
{
	int64		first = md_interval_floor(iv, from_ms);
	int64		n = 0;

	if (from_ms >= to_ms)
		return 0;
	if (first < from_ms)
		first = md_interval_next(iv, first);
	if (iv->ms != 0)
		return first >= to_ms ? 0 : (to_ms - first + iv->ms - 1) / iv->ms;
	for (int64 t = first; t < to_ms; t = md_interval_next(iv, t))
		n++;
	return n;
}

/*
 * md_present_end_ms is where a job's range ends at the latest: the first
 * moment with nothing to fetch yet.  For candles (iv not NULL) that is the
 * close of the candle forming now; for events (funding, open interest) the
 * millisecond after now, since md_now_ms truncates and a time within the
 * current millisecond has already passed.
 */
int64
md_present_end_ms(const MdInterval *iv)
{
	int64		now = md_now_ms();

	return iv ? md_interval_next(iv, md_interval_floor(iv, now)) : now + 1;
}

/*
 * md_utc_string writes ms as ISO 8601 in UTC, "2026-12-01T10:00:00Z",
 * whatever the session's TimeZone: the form of mdfeed's notifications.
 */
void
md_utc_string(int64 ms, char *buf, size_t len)
{
	time_t		secs = (time_t) (ms / 1000);
	struct tm	tm;

	gmtime_r(&secs, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
