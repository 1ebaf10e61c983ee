/*-------------------------------------------------------------------------
 *
 * latency.h
 *	  A ring of the last latency samples of one kind, and its p50 and p99:
 *	  what the stream and model workers publish in mdfeed.workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_LATENCY_H
#define MDFEED_LATENCY_H

#define MD_LATENCY_SAMPLES 16384

/* the last MD_LATENCY_SAMPLES latencies of one kind, in ms */
typedef struct MdLatencyRing
{
	int64		ms[MD_LATENCY_SAMPLES];
	int			n;
	int			pos;
} MdLatencyRing;

extern void md_latency_record(MdLatencyRing *r, int64 ms);
extern void md_latency_percentiles(const MdLatencyRing *r, int64 *p50, int64 *p99);

#endif							/* MDFEED_LATENCY_H */
