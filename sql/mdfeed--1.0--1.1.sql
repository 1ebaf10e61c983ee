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

/*
 * Three workers queue candle jobs for the same pairs: the watch worker (first
 * fill and startup sync, gap repair), the stream worker (repairs on connect
 * and after SUBSCRIBE) and, for derivatives, the watch worker's hourly
 * collection.  A pair's first fill is the watch worker's; everyone else asks
 * only for what no queued or running job will fetch, so that one range never
 * gets two jobs, whichever worker looks first.
 */

/*
 * mdfeed.uncovered_ranges lists the parts of [p_from, p_to) that no queued
 * or running job of the same kind and pair will fetch: a queued job fetches
 * its whole range, a running one what lies past its cursor.
 */
CREATE FUNCTION mdfeed.uncovered_ranges(p_kind text, p_exchange text, p_symbol text, p_interval text,
										p_from timestamptz, p_to timestamptz)
RETURNS TABLE (uncovered_from timestamptz, uncovered_to timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	j record;
	v_at timestamptz := p_from;
BEGIN
	-- walk the jobs' coverage in order of its start; what lies between is
	-- uncovered
	FOR j IN
		SELECT c.cov_from, c.cov_to FROM (
			SELECT CASE WHEN k.state = 'running'
						THEN greatest(k.from_time, coalesce(k.cursor_time, k.from_time))
						ELSE k.from_time END AS cov_from,
				   k.to_time AS cov_to
			FROM mdfeed.jobs k
			WHERE k.kind = p_kind AND k.exchange = p_exchange AND k.symbol = p_symbol
			  AND k."interval" IS NOT DISTINCT FROM p_interval
			  AND k.state IN ('queued', 'running')) c
		WHERE c.cov_from < c.cov_to AND c.cov_to > p_from AND c.cov_from < p_to
		ORDER BY c.cov_from
	LOOP
		IF j.cov_from > v_at THEN
			uncovered_from := v_at;
			uncovered_to := j.cov_from;
			RETURN NEXT;
		END IF;
		v_at := greatest(v_at, j.cov_to);
		EXIT WHEN v_at >= p_to;
	END LOOP;
	IF v_at < p_to THEN
		uncovered_from := v_at;
		uncovered_to := p_to;
		RETURN NEXT;
	END IF;
END
$fn$;
REVOKE ALL ON FUNCTION mdfeed.uncovered_ranges(text, text, text, text, timestamptz, timestamptz) FROM PUBLIC;

/*
 * mdfeed.queue_job queues a job for the workers' own purposes (first fill,
 * startup sync, gap repair, stream repairs, hourly collection) for each
 * part of the range no queued or running job of the same kind and pair will
 * fetch, and returns the first; nothing, returning a covering job, when they
 * cover all of it or a job failed on all of it in the last ten minutes.  A
 * queued job is not extended instead: a backfill worker may have read its
 * range to claim it, and would not see the extension.
 *
 * Queuers take turns (one transaction-level advisory lock; job locks use
 * non-negative second keys), so that two workers asking for one range at
 * the same moment do not both insert it.
 */
CREATE OR REPLACE FUNCTION mdfeed.queue_job(p_kind text, p_exchange text, p_symbol text, p_interval text,
											p_from timestamptz, p_to timestamptz, p_origin text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_id bigint;
	v_new bigint;
	v_from timestamptz;
	v_to timestamptz;
BEGIN
	IF p_from >= p_to THEN
		RETURN NULL;
	END IF;
	-- the first key of mdfeed's advisory locks ('mdfd', src/jobs.c); job
	-- locks take the job id, never negative, as the second
	PERFORM pg_catalog.pg_advisory_xact_lock(1835296356, -1);
	-- do not retry a range that keeps failing more than every few minutes
	SELECT k.id INTO v_id FROM mdfeed.jobs k
	WHERE k.kind = p_kind AND k.exchange = p_exchange
	  AND k.symbol = p_symbol AND k."interval" IS NOT DISTINCT FROM p_interval
	  AND k.from_time <= p_from AND k.to_time >= p_to
	  AND k.state = 'failed' AND k.finished_at > pg_catalog.now() - interval '10 minutes'
	LIMIT 1;
	IF FOUND THEN
		RETURN v_id;
	END IF;
	v_id := NULL;
	FOR v_from, v_to IN
		SELECT u.uncovered_from, u.uncovered_to
		FROM mdfeed.uncovered_ranges(p_kind, p_exchange, p_symbol, p_interval, p_from, p_to) u
		ORDER BY 1
	LOOP
		INSERT INTO mdfeed.jobs (kind, exchange, symbol, "interval", from_time, to_time, origin, requested_by)
		VALUES (p_kind, p_exchange, p_symbol, p_interval, v_from, v_to, p_origin, current_user)
		RETURNING id INTO v_new;
		v_id := coalesce(v_id, v_new);
	END LOOP;
	IF v_id IS NULL THEN
		-- all of it is covered: by the oldest of the jobs that cover it
		SELECT k.id INTO v_id FROM mdfeed.jobs k
		WHERE k.kind = p_kind AND k.exchange = p_exchange
		  AND k.symbol = p_symbol AND k."interval" IS NOT DISTINCT FROM p_interval
		  AND k.state IN ('queued', 'running') AND k.from_time < p_to AND k.to_time > p_from
		ORDER BY k.id LIMIT 1;
	END IF;
	RETURN v_id;
END
$fn$;

/*
 * mdfeed.sync_pair brings one tracked pair up to date: from its newest closed
 * candle, or mdfeed.sync_lookback back when it has none, to the present;
 * with p_only_if_behind, only if the newest candle closed by p_closed_by
 * (default now) is missing.  A pair with no closed candle, or only ones
 * that closed after it was tracked (the stream's), is new: its first fill
 * is the watch worker's (origin 'sync'), which queues it as soon as it sees
 * the pair tracked, so the stream worker's repairs (origin 'stream') leave
 * it alone rather than race it to the same range.
 */
CREATE OR REPLACE FUNCTION mdfeed.sync_pair(p_exchange text, p_symbol text, p_interval text,
											p_lookback interval, p_origin text,
											p_only_if_behind boolean DEFAULT false,
											p_closed_by timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_last timestamptz;
	v_since timestamptz;
	v_new boolean;
	v_expect timestamptz;
	v_step interval := mdfeed.interval_step(p_interval);
	v_from timestamptz;
	v_to timestamptz := ((mdfeed.interval_floor(p_interval, pg_catalog.now()) AT TIME ZONE 'UTC') + v_step) AT TIME ZONE 'UTC';
BEGIN
	EXECUTE pg_catalog.format('SELECT max(open_time) FROM mdfeed.%I WHERE symbol = $1 AND closed',
							  mdfeed.interval_table(p_interval))
		INTO v_last USING p_symbol;
	-- candles that closed only after the pair was tracked are the stream's,
	-- not history: the pair is still new, and its first fill still due
	IF v_last IS NOT NULL THEN
		SELECT t.since INTO v_since FROM mdfeed.tracked t
		WHERE t.exchange = p_exchange AND t.symbol = p_symbol LIMIT 1;
		IF v_since IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT NOT EXISTS (SELECT 1 FROM mdfeed.%I '
									  'WHERE symbol = $1 AND closed AND close_time < $2)',
									  mdfeed.interval_table(p_interval))
				INTO v_new USING p_symbol, v_since;
			IF v_new THEN
				v_last := NULL;
			END IF;
		END IF;
	END IF;
	IF v_last IS NULL AND p_origin = 'stream' THEN
		RETURN NULL;
	END IF;
	-- unless asked to sync anyway: nothing to do when the newest candle
	-- closed by then is stored, or lies before the lookback (a pair whose
	-- interval is longer than the lookback has none to store)
	IF p_only_if_behind THEN
		v_expect := ((mdfeed.interval_floor(p_interval, coalesce(p_closed_by, pg_catalog.now())) AT TIME ZONE 'UTC')
					 - v_step) AT TIME ZONE 'UTC';
		IF coalesce(v_last >= v_expect, false)
		   OR v_expect < mdfeed.interval_floor(p_interval, pg_catalog.now() - p_lookback) THEN
			RETURN NULL;
		END IF;
	END IF;
	IF v_last IS NULL OR v_last < pg_catalog.now() - p_lookback THEN
		v_from := mdfeed.interval_floor(p_interval, pg_catalog.now() - p_lookback);
	ELSE
		v_from := v_last;
	END IF;
	RETURN mdfeed.queue_sync(p_exchange, p_symbol, p_interval, v_from, v_to, p_origin);
END
$fn$;

/*
 * mdfeed.derivs_from is where the collection of a symbol's open interest or
 * funding starts: after its newest stored row (p_after), or p_from when it
 * has none, and past what queued and running jobs will fetch.  It is NULL
 * when [start, now) holds nothing new: every open-interest row, and every
 * funding event (to a few milliseconds), lies on a whole hour (UTC), so a
 * range holding no whole hour has nothing the exchange could add.
 */
CREATE FUNCTION mdfeed.derivs_from(p_kind text, p_exchange text, p_symbol text,
								   p_after timestamptz, p_from timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_from timestamptz := coalesce(p_after, p_from);
BEGIN
	IF v_from >= pg_catalog.now() THEN
		RETURN NULL;
	END IF;
	-- the first part no job fetches that holds a whole hour (its first whole
	-- hour is before now)
	SELECT min(u.uncovered_from) INTO v_from
	FROM mdfeed.uncovered_ranges(p_kind, p_exchange, p_symbol, NULL, v_from, pg_catalog.now()) u
	WHERE mdfeed.interval_floor('1h', u.uncovered_from - interval '1 microsecond') + interval '1 hour'
		  < u.uncovered_to;
	RETURN v_from;
END
$fn$;
REVOKE ALL ON FUNCTION mdfeed.derivs_from(text, text, text, timestamptz, timestamptz) FROM PUBLIC;

/*
 * mdfeed.sync_derivs queues the collection of a tracked symbol's open
 * interest (from its newest stored hour, at most 30 days back) and funding
 * (from its newest stored event, or p_lookback back), for what no job
 * already fetches and only when there can be something new.
 */
CREATE OR REPLACE FUNCTION mdfeed.sync_derivs(p_exchange text, p_symbol text, p_lookback interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	v_last timestamptz;
	v_from timestamptz;
BEGIN
	-- as queue_job does, so that what derivs_from sees stays true until commit
	PERFORM pg_catalog.pg_advisory_xact_lock(1835296356, -1);
	SELECT max(o.ts) INTO v_last FROM mdfeed.open_interest_1h o WHERE o.symbol = p_symbol;
	v_from := mdfeed.derivs_from('open_interest', p_exchange, p_symbol,
								 greatest(v_last + interval '1 hour', pg_catalog.now() - interval '30 days'),
								 pg_catalog.now() - interval '30 days');
	IF v_from IS NOT NULL THEN
		PERFORM mdfeed.queue_job('open_interest', p_exchange, p_symbol, NULL, v_from, pg_catalog.now(), 'sync');
	END IF;
	SELECT max(f.exchange_time) INTO v_last FROM mdfeed.funding_rates f WHERE f.symbol = p_symbol;
	v_from := mdfeed.derivs_from('funding', p_exchange, p_symbol, v_last + interval '1 millisecond',
								 pg_catalog.now() - p_lookback);
	IF v_from IS NOT NULL THEN
		PERFORM mdfeed.queue_job('funding', p_exchange, p_symbol, NULL, v_from, pg_catalog.now(), 'sync');
	END IF;
END
$fn$;




/* ---- operations: stopping and the schema version (7.8) ---- */



