/*-------------------------------------------------------------------------
 *
 * common.h
 *	  Declarations shared by mdfeed's files: settings, times, the wait event.
 *
 * Each concern has its own header; this one holds the few things nearly
 * every file needs, and depends on no other file of mdfeed, so that the
 * module entry point (mdfeed.c) is the top of the tree and nothing imports
 * from it.
 *
 * Names follow one convention.  mdfeed_ is what PostgreSQL or a user sees
 * by name: the C functions behind SQL functions (mdfeed_backfill), the
 * background workers' entry points (mdfeed_stream_main) and the variables
 * of settings (mdfeed_enabled for mdfeed.enabled).  md_ is every other
 * extern function or variable, Md every type, MD_ every macro and enum
 * value; static functions take their file's subject (binance_classify,
 * budget_try) or none.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_COMMON_H
#define MDFEED_COMMON_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

/* settings (config.c) */
extern bool mdfeed_enabled;
extern char *mdfeed_database;
extern int	mdfeed_backfill_workers;
extern char *mdfeed_binance_rest_url;
extern char *mdfeed_binance_archive_url;
extern int	mdfeed_archive_max_file_kb;
extern char *mdfeed_binance_ws_url;
extern char *mdfeed_coindcx_public_url;
extern char *mdfeed_coindcx_api_url;
extern char *mdfeed_coindcx_socket_url;
extern double mdfeed_rest_weight_share;
extern char *mdfeed_api_key;
extern char *mdfeed_api_secret;
extern int	mdfeed_http_timeout_ms;
extern int	mdfeed_rest_max_retries;
extern int	mdfeed_rest_max_response_kb;
extern int	mdfeed_job_poll_ms;
extern int	mdfeed_max_queued_jobs_per_role;
extern int	mdfeed_job_slice_ms;
extern char *mdfeed_intervals;
extern int	mdfeed_sync_lookback_min;
extern int	mdfeed_gap_check_interval_s;
extern int	mdfeed_gap_lookback_min;
extern bool mdfeed_stream_enabled;
extern int	mdfeed_stream_flush_ms;
extern int	mdfeed_streams_per_connection;
extern int	mdfeed_stream_silence_s;
extern int	mdfeed_stream_max_age_s;
extern int	mdfeed_instruments_refresh_s;
extern int	mdfeed_auto_track_top_n;
extern double mdfeed_auto_track_min_quote_volume;
extern bool mdfeed_derivatives_enabled;
extern int	mdfeed_model_workers;
extern int	mdfeed_model_max_failures;
extern int	mdfeed_model_timeout_ms;

extern void md_define_gucs(void);
struct MdInterval;
extern int	md_tracked_intervals(const struct MdInterval **out, int max);
extern void md_install_log_redaction(void);

/* true when the library was loaded by shared_preload_libraries */
extern bool md_preloaded;

/*
 * Times: exchanges speak milliseconds since the Unix epoch.  Both directions
 * convert in milliseconds first, so that no intermediate value leaves the
 * range of a timestamptz: adding the epoch offset to a time near the end of
 * PostgreSQL's range (year 294276) in microseconds would overflow int64.
 */
#define MD_UNIX_EPOCH_OFFSET_MS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000)

static inline TimestampTz
md_ms_to_timestamptz(int64 ms)
{
	return (TimestampTz) ((ms - MD_UNIX_EPOCH_OFFSET_MS) * 1000);
}

static inline int64
md_timestamptz_to_ms(TimestampTz ts)
{
	/* floor division, so that times before 1970 round down too */
	int64		ms = ts >= 0 ? ts / 1000 : -((-ts + 999) / 1000);

	return ms + MD_UNIX_EPOCH_OFFSET_MS;
}

/*
 * Job ranges end at the present; their start must lie between 1970 and
 * this bound, far enough for any market data and small enough that no
 * interval arithmetic on it can overflow.
 */
#define MD_MAX_TIME_MS INT64CONST(253402300800000)	/* 10000-01-01 UTC */

/* the schema this library needs: the workers wait for this extversion */
#define MD_SCHEMA_VERSION "1.6"

/* md_now_ms is the time now, in the exchanges' milliseconds */
static inline int64
md_now_ms(void)
{
	return md_timestamptz_to_ms(GetCurrentTimestamp());
}

/* the wait event every mdfeed wait reports */
#define MD_WAIT_EVENT PG_WAIT_EXTENSION

#endif							/* MDFEED_COMMON_H */
