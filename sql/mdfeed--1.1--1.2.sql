/*
 * mdfeed--1.1--1.2.sql
 *
 * 1.2: exchanges as a real dimension (issue 8).  A fresh install of 1.2
 * runs mdfeed--1.0.sql, mdfeed--1.0--1.1.sql and then this script, so a
 * fresh install and an upgrade are the same schema by construction;
 * test/t/008_upgrade.pl checks it with pg_dump for every version in the
 * chain, and that every row survives ALTER EXTENSION UPDATE.
 *
 * Nothing here rewrites a table: Binance USD-M keeps its candles_<iv>
 * family with its shape and primary key.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION mdfeed UPDATE TO '1.2'" to load this file. \quit
