/*-------------------------------------------------------------------------
 *
 * config.c
 *	  mdfeed's settings (the mdfeed.* GUCs) and the protection of its secrets.
 *
 * The API key and secret are superuser-only settings, left out of SHOW ALL
 * and pg_settings for everybody (pg_settings would show members of
 * pg_read_all_settings their reset and boot values raw).  Beyond that, a
 * show hook masks the value in SHOW and current_setting() for anyone but a
 * superuser, and a log hook (redact.c) scrubs them from server log lines:
 * statements that set or name them, their logged parameters, and messages
 * such as the "parameter changed to" line the postmaster writes on reload.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/elog.h"
#include "utils/guc.h"

#include "common.h"
#include "interval.h"
#include "redact.h"
#include "shard.h"

bool		mdfeed_enabled = true;
char	   *mdfeed_database = NULL;
int			mdfeed_backfill_workers = 2;
char	   *mdfeed_binance_rest_url = NULL;
char	   *mdfeed_binance_ws_url = NULL;
char	   *mdfeed_binance_archive_url = NULL;
int			mdfeed_archive_max_file_kb = 65536;
char	   *mdfeed_coindcx_public_url = NULL;
char	   *mdfeed_coindcx_api_url = NULL;
char	   *mdfeed_coindcx_socket_url = NULL;
double		mdfeed_rest_weight_share = 0.8;
char	   *mdfeed_api_key = NULL;
char	   *mdfeed_api_secret = NULL;
int			mdfeed_http_timeout_ms = 30000;
int			mdfeed_rest_max_retries = 10;
int			mdfeed_rest_max_response_kb = 65536;
int			mdfeed_job_poll_ms = 5000;
int			mdfeed_max_queued_jobs_per_role = 1000;
int			mdfeed_job_slice_ms = 10000;
char	   *mdfeed_intervals = NULL;
int			mdfeed_sync_lookback_min = 7 * 24 * 60;
int			mdfeed_gap_check_interval_s = 60;
int			mdfeed_gap_lookback_min = 24 * 60;
bool		mdfeed_stream_enabled = true;
int			mdfeed_stream_flush_ms = 500;
int			mdfeed_streams_per_connection = 200;
int			mdfeed_stream_silence_s = 60;
int			mdfeed_stream_max_age_s = 23 * 60 * 60;
int			mdfeed_instruments_refresh_s = 600;
int			mdfeed_auto_track_top_n = 0;
double		mdfeed_auto_track_min_quote_volume = 0;
bool		mdfeed_derivatives_enabled = true;
int			mdfeed_model_workers = 1;
int			mdfeed_model_max_failures = 5;
int			mdfeed_model_timeout_ms = 10000;

static emit_log_hook_type prev_emit_log_hook = NULL;

/*
 * check_http_url accepts only http and https URLs: the workers hand the value to
 * libcurl and libwebsockets, and nothing else should be reachable through it.
 */
static bool
check_http_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL)
		return true;
	if (strncmp(*newval, "http://", 7) != 0 && strncmp(*newval, "https://", 8) != 0)
	{
		GUC_check_errdetail("The URL must start with http:// or https://.");
		return false;
	}
	return true;
}

static bool
check_ws_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL)
		return true;
	if (strncmp(*newval, "ws://", 5) != 0 && strncmp(*newval, "wss://", 6) != 0)
	{
		GUC_check_errdetail("The URL must start with ws:// or wss://.");
		return false;
	}
	return true;
}

/*
 * check_archive_url accepts an http or https URL, or nothing (no archives).
 */
static bool
check_archive_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	return check_http_url(newval, extra, source);
}

/*
 * parse_intervals splits a comma-separated list of interval names.  Returns
 * the number found, or -1 (with *bad set) at the first unknown name.
 */
static int
parse_intervals(const char *list, const MdInterval **out, int max, char **bad)
{
	char	   *copy = pstrdup(list);
	char	   *tok;
	char	   *save = NULL;
	int			n = 0;

	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
	{
		const MdInterval *iv = md_interval_lookup(tok);
		bool		dup = false;

		if (iv == NULL)
		{
			*bad = pstrdup(tok);
			pfree(copy);
			return -1;
		}
		for (int i = 0; i < n; i++)
			dup |= out[i] == iv;
		if (!dup && n < max)
			out[n++] = iv;
	}
	pfree(copy);
	return n;
}

static bool
check_intervals(char **newval, void **extra, GucSource source)
{
	const MdInterval *ivs[32];
	char	   *bad = NULL;

	if (*newval == NULL)
		return true;
	if (parse_intervals(*newval, ivs, lengthof(ivs), &bad) < 0)
	{
		GUC_check_errdetail("\"%s\" is not an interval; valid ones are %s.", bad, md_interval_names());
		return false;
	}
	return true;
}

/*
 * md_tracked_intervals returns the intervals of mdfeed.intervals.
 */
int
md_tracked_intervals(const MdInterval **out, int max)
{
	char	   *bad;
	int			n = parse_intervals(mdfeed_intervals ? mdfeed_intervals : "", out, max, &bad);

	return n < 0 ? 0 : n;
}

/*
 * show_secret masks a secret for everyone but superusers.  GUC_SUPERUSER_ONLY
 * alone would still show it to members of pg_read_all_settings.
 */
static const char *
show_secret(const char *value)
{
	if (value == NULL || value[0] == '\0')
		return "";
	if (superuser())
		return value;
	return "********";
}

static const char *
show_api_key(void)
{
	return show_secret(mdfeed_api_key);
}

static const char *
show_api_secret(void)
{
	return show_secret(mdfeed_api_secret);
}

/*
 * redacting_log_hook scrubs secrets from every report before it reaches
 * the server log (and a client, which gets the same fields); the policy is
 * in redact.c.  It runs before any earlier hook, so that one sees the
 * scrubbed report too.
 */
static void
redacting_log_hook(ErrorData *edata)
{
	md_redact_error(edata, mdfeed_api_key, mdfeed_api_secret);

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
md_install_log_redaction(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redacting_log_hook;
}

/*
 * md_define_gucs defines every mdfeed.* setting and reserves the prefix,
 * so that a misspelt mdfeed.something is reported instead of ignored.
 */
void
md_define_gucs(void)
{
	DefineCustomBoolVariable("mdfeed.enabled",
							 "Whether mdfeed's workers run.",
							 "Off stops every worker but the launcher, which then "
							 "holds no database connection; on starts them again.",
							 &mdfeed_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("mdfeed.database",
							   "Database in which mdfeed's workers run.",
							   "The extension must be created in this database.",
							   &mdfeed_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.backfill_workers",
							"Number of backfill workers.",
							"They download history over REST; zero disables backfills.",
							&mdfeed_backfill_workers,
							2, 0, 32,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.model_workers",
							"Number of model workers.",
							"They run the registered models, each (model, symbol) on one of them; they start when a model is active.",
							&mdfeed_model_workers,
							1, 0, 8,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.model_max_failures",
							"Failed runs in a row on one candle after which a model is paused.",
							"mdfeed_resume_model() runs it again.",
							&mdfeed_model_max_failures,
							5, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.model_timeout",
							"Longest time one model run may take; a longer one fails.",
							"Zero means no limit.",
							&mdfeed_model_timeout_ms,
							10000, 0, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("mdfeed.binance_rest_url",
							   "Base URL of the Binance USD-M futures REST API.",
							   NULL,
							   &mdfeed_binance_rest_url,
							   "https://fapi.binance.com",
							   PGC_SIGHUP,
							   0,
							   check_http_url, NULL, NULL);

	DefineCustomStringVariable("mdfeed.binance_ws_url",
							   "Base URL of the Binance USD-M futures market streams (the /market route).",
							   NULL,
							   &mdfeed_binance_ws_url,
							   "wss://fstream.binance.com/market",
							   PGC_SIGHUP,
							   0,
							   check_ws_url, NULL, NULL);

	DefineCustomStringVariable("mdfeed.binance_archive_url",
							   "Base URL of Binance's public bulk archives (data.binance.vision).",
							   "Backfills read whole published months and days from them; empty means REST only.",
							   &mdfeed_binance_archive_url,
							   "https://data.binance.vision",
							   PGC_SIGHUP,
							   0,
							   check_archive_url, NULL, NULL);

	DefineCustomIntVariable("mdfeed.archive_max_file_size",
							"Largest archive file mdfeed downloads.",
							"A larger monthly file is read as daily files; a larger daily file over REST.",
							&mdfeed_archive_max_file_kb,
							65536, 64, INT_MAX / 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("mdfeed.coindcx_public_url",
							   "Base URL of CoinDCX's public market data (candles, both markets).",
							   NULL,
							   &mdfeed_coindcx_public_url,
							   "https://public.coindcx.com",
							   PGC_SIGHUP,
							   0,
							   check_http_url, NULL, NULL);

	DefineCustomStringVariable("mdfeed.coindcx_api_url",
							   "Base URL of CoinDCX's API (instruments and markets).",
							   NULL,
							   &mdfeed_coindcx_api_url,
							   "https://api.coindcx.com",
							   PGC_SIGHUP,
							   0,
							   check_http_url, NULL, NULL);

	DefineCustomStringVariable("mdfeed.coindcx_socket_url",
							   "URL of CoinDCX's socket.io stream.",
							   "A bare base URL connects with Engine.IO protocol 4; a URL naming /socket.io/ is used as given, its EIO parameter choosing the protocol.",
							   &mdfeed_coindcx_socket_url,
							   "wss://stream.coindcx.com",
							   PGC_SIGHUP,
							   0,
							   check_ws_url, NULL, NULL);

	DefineCustomRealVariable("mdfeed.rest_weight_share",
							 "Fraction of the exchange's REST weight limit mdfeed may use.",
							 "The limit is per IP address and shared by every mdfeed worker.",
							 &mdfeed_rest_weight_share,
							 0.8, 0.05, 1.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("mdfeed.api_key",
							   "Exchange API key (not needed for market data).",
							   NULL,
							   &mdfeed_api_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, show_api_key);

	DefineCustomStringVariable("mdfeed.api_secret",
							   "Exchange API secret (not needed for market data).",
							   NULL,
							   &mdfeed_api_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, show_api_secret);

	DefineCustomIntVariable("mdfeed.http_timeout",
							"Timeout of one REST request.",
							NULL,
							&mdfeed_http_timeout_ms,
							30000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.rest_max_retries",
							"Consecutive failed attempts at one REST request before its job fails.",
							"Server errors, timeouts, resets and malformed answers are retried "
							"with capped exponential backoff.",
							&mdfeed_rest_max_retries,
							10, 0, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.rest_max_response_size",
							"Largest REST answer mdfeed accepts.",
							NULL,
							&mdfeed_rest_max_response_kb,
							65536, 64, INT_MAX / 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.job_poll_interval",
							"How often an idle backfill worker looks for jobs.",
							"Workers are also woken at once when a job is queued.",
							&mdfeed_job_poll_ms,
							5000, 100, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.max_queued_jobs_per_role",
							"Most unfinished jobs one role may have queued.",
							"Beyond it, queueing a job is an error; 0 means no limit.",
							&mdfeed_max_queued_jobs_per_role,
							1000, 0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.job_time_slice",
							"How long a user's job runs before it yields to another role's waiting job.",
							"Jobs of roles with fewer running jobs go first; mdfeed's own upkeep never waits behind users' jobs.",
							&mdfeed_job_slice_ms,
							10000, 100, 3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("mdfeed.intervals",
							   "Candle intervals streamed and kept complete for tracked symbols.",
							   "A comma-separated list such as 1m,15m,1h.",
							   &mdfeed_intervals,
							   "1m,15m,1h",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   check_intervals, NULL, NULL);

	DefineCustomIntVariable("mdfeed.sync_lookback",
							"How far back a newly tracked pair without data is filled.",
							NULL,
							&mdfeed_sync_lookback_min,
							7 * 24 * 60, 1, INT_MAX / 60,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.gap_check_interval",
							"How often the watchdog looks for missing candles.",
							NULL,
							&mdfeed_gap_check_interval_s,
							60, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.gap_lookback",
							"How far back the watchdog looks for missing candles.",
							NULL,
							&mdfeed_gap_lookback_min,
							24 * 60, 1, INT_MAX / 60,
							PGC_SIGHUP,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("mdfeed.stream_enabled",
							 "Whether tracked symbols are streamed live.",
							 NULL,
							 &mdfeed_stream_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.stream_flush_interval",
							"How long stream updates are coalesced before they are written.",
							NULL,
							&mdfeed_stream_flush_ms,
							500, 10, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.streams_per_connection",
							"Most streams on one WebSocket connection.",
							"Each exchange's own limit caps it (200 on Binance USD-M).",
							&mdfeed_streams_per_connection,
							200, 1, 1024,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.stream_silence_timeout",
							"A connection silent this long is taken for dead and replaced.",
							NULL,
							&mdfeed_stream_silence_s,
							60, 1, 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.stream_max_connection_age",
							"A connection is replaced, without a gap, when it gets this old.",
							"An exchange's own connection lifetime also bounds it (24 hours on Binance USD-M).",
							&mdfeed_stream_max_age_s,
							23 * 60 * 60, 10, 24 * 60 * 60,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.instruments_refresh_interval",
							"How often the exchange's list of instruments is fetched again.",
							NULL,
							&mdfeed_instruments_refresh_s,
							600, 10, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("mdfeed.auto_track_top_n",
							"Track the N most traded perpetuals automatically (0 = off).",
							"Ranked by 24 h quote volume at once and then hourly; the blacklist wins.",
							&mdfeed_auto_track_top_n,
							0, 0, 2000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("mdfeed.auto_track_min_quote_volume",
							 "Least 24 h quote volume of an automatically tracked symbol.",
							 NULL,
							 &mdfeed_auto_track_min_quote_volume,
							 0, 0, 1e18,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("mdfeed.derivatives_enabled",
							 "Collect open interest and funding rates of tracked symbols every hour.",
							 NULL,
							 &mdfeed_derivatives_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("mdfeed.shard",
							   "This server's shard of the symbols, as 'k/n': shard k of n.",
							   "It streams, syncs, repairs and collects derivatives for the tracked "
							   "symbols whose hash (mdfeed.shard_of) is k; 0/1 is all of them.",
							   &mdfeed_shard,
							   "0/1",
							   PGC_SIGHUP,
							   0,
							   md_check_shard, md_assign_shard, NULL);

	DefineCustomEnumVariable("mdfeed.mode",
							 "Whether this server ingests market data (ingest) or receives it by logical replication (replica).",
							 "In replica mode no backfill or stream worker runs and nothing calls an exchange; models run.",
							 &mdfeed_mode,
							 MD_MODE_INGEST,
							 md_mode_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("mdfeed.source_address",
							   "Local IP address or interface that REST calls and streams go out from (empty: the system's choice).",
							   "Exchanges limit REST by IP: servers on one host with several addresses each get their own budget.",
							   &mdfeed_source_address,
							   "",
							   PGC_SIGHUP,
							   0,
							   md_check_source_address, NULL, NULL);

	MarkGUCPrefixReserved("mdfeed");
}
