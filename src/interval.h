/*-------------------------------------------------------------------------
 *
 * interval.h
 *	  The candle intervals mdfeed knows, and the calendar arithmetic on them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_INTERVAL_H
#define MDFEED_INTERVAL_H

typedef struct MdInterval
{
	const char *name;			/* as users write it: "1m", "1M" */
	const char *suffix;			/* of its tables: candles_1m, candles_1mo */
	const char *pg_interval;	/* the same length as a PostgreSQL interval */
	int64		ms;				/* fixed length, or 0 for calendar months */
} MdInterval;

#define MD_NUM_INTERVALS 15

extern const MdInterval md_intervals[];
extern const int md_num_intervals;

extern const MdInterval *md_interval_lookup(const char *name);
extern const char *md_interval_names(void);
extern int64 md_interval_floor(const MdInterval *iv, int64 ms);
extern int64 md_interval_next(const MdInterval *iv, int64 open_ms);
extern int64 md_present_end_ms(const MdInterval *iv);
extern int64 md_interval_count(const MdInterval *iv, int64 from_ms, int64 to_ms);
extern void md_utc_string(int64 ms, char *buf, size_t len);
extern void md_utc_date(int64 ms, int *y, int *m, int *d);
extern int64 md_utc_midnight(int y, int m, int d);

#endif							/* MDFEED_INTERVAL_H */
