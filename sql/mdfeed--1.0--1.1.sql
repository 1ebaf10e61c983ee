/*
 * mdfeed--1.0--1.1.sql
 *
 * 1.1: the security and robustness release (issue 7).  A fresh install of
 * 1.1 runs mdfeed--1.0.sql and then this script, so a fresh install and an
 * upgrade are the same schema by construction; test/t/008_upgrade.pl checks
 * it with pg_dump, and that every row survives ALTER EXTENSION UPDATE.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mdfeed UPDATE TO '1.1'" to load this file. \quit

/* ---- jobs: requester by OID, fair claiming, bounded ranges (7.1, 7.2, 7.4, 7.5, 7.6) ---- */



/* ---- the robustness test's parser entry points ---- */

/*
 * One entry point to every parser the workers use, on raw bytes (bytea, so
 * that NUL bytes and invalid UTF-8 reach the parser as they come from the
 * network).  It writes nothing: rows parsed, or an ERROR (SQLSTATE 22P02)
 * with the parser's message.
 */
CREATE FUNCTION mdfeed.parse_answer(exchange text, what text, body bytea)
RETURNS bigint
AS 'MODULE_PATHNAME', 'mdfeed_parse_answer'
LANGUAGE C IMMUTABLE;
COMMENT ON FUNCTION mdfeed.parse_answer(text, text, bytea)
IS 'parse an exchange answer (klines, stream, exchange_info, weight_limit, server_time, tickers, funding, open_interest, error, ban) with the workers'' parser; returns rows parsed';
REVOKE ALL ON FUNCTION mdfeed.parse_answer(text, text, bytea) FROM PUBLIC;


/* ---- first fill of a new pair, sync de-duplication (7.9); confirmed-empty ranges (7.7) ---- */



/* ---- operations: stopping and the schema version (7.8) ---- */



