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



/* ---- first fill of a new pair, sync de-duplication (7.9); confirmed-empty ranges (7.7) ---- */



/* ---- operations: stopping and the schema version (7.8) ---- */



