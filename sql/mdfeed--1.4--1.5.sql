/*
 * mdfeed--1.4--1.5.sql
 *
 * 1.5: history from Binance's bulk archives (issue 11).  mdfeed_backfill
 * reads the published months and days of its range from the archives
 * (mdfeed.binance_archive_url, data.binance.vision) before it asks REST,
 * which then gets only what the archives lacked; open interest older than
 * REST's 30 days comes from the archives' daily metrics files.  What this
 * script adds:
 *
 *   mdfeed.jobs.archive_rows, rest_rows   where a job's rows came from
 *                                         (rows_written is their sum)
 *   mdfeed.jobs.archive_files             archive files it read
 *   mdfeed.jobs.archive_cursor            how far its archive part got, so
 *                                         that a resumed job plans only the
 *                                         rest
 *   mdfeed.open_interest_5m               the archives' five-minute open
 *                                         interest
 *
 * Nothing here rewrites a table: the new columns have constant defaults.
 * Jobs of earlier versions got all their rows from REST.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mdfeed UPDATE TO '1.5'" to load this file. \quit

/* ---- jobs: rows by source ---- */

ALTER TABLE mdfeed.jobs
	ADD COLUMN archive_rows bigint NOT NULL DEFAULT 0,
	ADD COLUMN rest_rows bigint NOT NULL DEFAULT 0,
	ADD COLUMN archive_files integer NOT NULL DEFAULT 0,
	ADD COLUMN archive_cursor timestamptz;
UPDATE mdfeed.jobs SET rest_rows = rows_written WHERE rows_written <> 0;
COMMENT ON COLUMN mdfeed.jobs.archive_rows IS
	'rows the job wrote from the exchange''s bulk archives';
COMMENT ON COLUMN mdfeed.jobs.rest_rows IS
	'rows the job wrote from REST answers (rows_written = archive_rows + rest_rows)';
COMMENT ON COLUMN mdfeed.jobs.archive_files IS
	'bulk archive files the job read';
COMMENT ON COLUMN mdfeed.jobs.archive_cursor IS
	'the job''s archive part has handled its range before this time (NULL: not started)';

/* ---- open interest every five minutes, from the daily metrics files ---- */

CREATE TABLE mdfeed.open_interest_5m (
	symbol text NOT NULL,
	ts timestamptz NOT NULL,
	sum_open_interest numeric NOT NULL,
	sum_open_interest_value numeric NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (symbol, ts)
);
COMMENT ON TABLE mdfeed.open_interest_5m IS
	'open interest every five minutes, from Binance''s daily metrics archives (years, where REST keeps 30 days)';
SELECT pg_catalog.pg_extension_config_dump('mdfeed.open_interest_5m', '');

/* ---- the archives' parsers, for tests and for users' own files ---- */

COMMENT ON FUNCTION mdfeed.parse_answer(text, text, bytea)
IS 'parse an exchange answer (klines, stream, exchange_info, weight_limit, server_time, tickers, funding, open_interest, error, ban, archive_klines, archive_metrics, archive_zip) with the workers'' parser; returns rows parsed';
