/*-------------------------------------------------------------------------
 *
 * latency.c
 *	  Latency samples and their percentiles (latency.h).
 *
 * A ring keeps the last samples, so the figures follow what happens now
 * and cost a fixed amount of memory; percentiles sort a copy, which is
 * cheap at the rate workers publish them (once a pass).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "latency.h"

/*
 * md_latency_record keeps one sample.
 */
void
md_latency_record(MdLatencyRing *r, int64 ms)
{
	r->ms[r->pos] = ms;
	r->pos = (r->pos + 1) % MD_LATENCY_SAMPLES;
	if (r->n < MD_LATENCY_SAMPLES)
		r->n++;
}

/*
 * cmp_int64 orders int64s for qsort.
 */
static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * md_latency_percentiles gives the p50 and p99 of a ring's samples, -1 if
 * it has none.
 */
void
md_latency_percentiles(const MdLatencyRing *r, int64 *p50, int64 *p99)
{
	int64	   *copy;

	*p50 = *p99 = -1;
	if (r->n == 0)
		return;
	copy = palloc(sizeof(int64) * r->n);
	memcpy(copy, r->ms, sizeof(int64) * r->n);
	qsort(copy, r->n, sizeof(int64), cmp_int64);
	*p50 = copy[r->n / 2];
	*p99 = copy[Min(r->n - 1, (int) (r->n * 0.99))];
	pfree(copy);
}
