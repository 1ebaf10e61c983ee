/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  mdfeed's shared memory: worker status slots, each exchange's REST
 *	  budget, and the condition variable job waiters sleep on.
 *
 * Everything here is small, fixed-size and plain data; process-local
 * handles (curl, lws, sockets) never go into it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_SHMEM_H
#define MDFEED_SHMEM_H

#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "exchange.h"

#define MD_MAX_WORKERS 64

typedef enum MdWorkerRole
{
	MD_ROLE_NONE = 0,
	MD_ROLE_LAUNCHER,
	MD_ROLE_BACKFILL,
	MD_ROLE_STREAM,
	MD_ROLE_WATCH,
	MD_ROLE_MODEL
} MdWorkerRole;

typedef struct MdWorkerSlot
{
	/* set by the launcher when it starts the worker */
	MdWorkerRole role;
	int			index;			/* index within its role */
	/* set by the worker itself */
	pid_t		pid;
	Latch	   *latch;
	TimestampTz started_at;
	TimestampTz last_message_at;
	int64		messages;
	int64		reconnects;
	int			streams;
	int			connections;
	int64		malformed;
	int64		latency_p50_ms;	/* event to commit, -1 if unknown */
	int64		latency_p99_ms;
	int64		close_latency_p50_ms;	/* the same for closed candles */
	int64		close_latency_p99_ms;
	char		exchange[32];	/* the exchange a stream worker serves, or
								 * empty: all */
	int64		job;			/* job claimed and worked on, 0 if none */
	int64		cancel_job;		/* set by mdfeed_cancel: abort this job */
	char		state[32];
	char		last_error[256];
} MdWorkerSlot;

/* the state of one of an exchange's rate limits (MdRateLimit) */
typedef struct MdLimitState
{
	int			limit;			/* units per window: published, or as
								 * exchange info announced */
	int64		window;			/* MD_LIMIT_WINDOW: floor(ms / window_ms) */
	int			used;			/* units used in the window, ours or the
								 * exchange's count, whichever is higher */
	double		tokens;			/* MD_LIMIT_BUCKET */
	int64		tokens_at_ms;
} MdLimitState;

/*
 * One exchange's REST budget, shared by every worker: exchanges limit by
 * IP, so every process of this server draws from the same one.  A 429 or a
 * ban blocks only this exchange.
 */
typedef struct MdBudget
{
	MdLimitState limits[MD_MAX_LIMITS];
	int64		blocked_until_ms;	/* no REST call before this */
	bool		banned;			/* blocked_until_ms comes from a ban */
	int			failures;		/* calls that failed in a row */
	int64		failing_until_ms;	/* after OUTAGE_AFTER of them, no call
									 * is expected to succeed before this;
									 * 0 once one does */
	int64		requests;
	int64		throttled;		/* times a caller had to wait for budget */
	int64		rate_limited;	/* answers saying we were over the limit */
	int64		bans;
} MdBudget;

/*
 * What the probe (the watch worker) last found in pg_extension of
 * mdfeed.database; the launcher starts the other workers only on
 * MD_SCHEMA_READY.
 */
typedef enum MdSchemaState
{
	MD_SCHEMA_UNKNOWN = 0,		/* no probe has looked yet */
	MD_SCHEMA_ABSENT,			/* no CREATE EXTENSION mdfeed */
	MD_SCHEMA_OLDER,			/* extversion older than MD_SCHEMA_VERSION */
	MD_SCHEMA_NEWER,			/* newer, or not a version this build knows */
	MD_SCHEMA_READY				/* extversion = MD_SCHEMA_VERSION */
} MdSchemaState;

typedef struct MdShared
{
	slock_t		mutex;			/* protects everything below */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	MdBudget	budgets[MD_MAX_EXCHANGES];	/* by adapter id */
	MdWorkerSlot slots[MD_MAX_WORKERS];
	ConditionVariable job_cv;	/* broadcast when any job ends */
	int64		lists_version;	/* bumped when the symbol lists change */
	MdSchemaState schema_state; /* set by the probe, reset by the launcher */
	/* the last state the probe logged, so that each is logged once */
	MdSchemaState schema_logged;
	char		schema_logged_version[64];
	/* models: whether any is active (the launcher starts model workers) */
	bool		models_active;
	int64		models_version; /* bumped when models change */
} MdShared;

extern MdShared *md_shared;

extern void md_shmem_request(void);
extern void md_shmem_startup(void);
extern void md_require_workers(void);

/* worker status helpers (for the worker's own slot) */
extern MdWorkerSlot *md_my_slot;
extern void md_slot_attach(int slotno);
extern void md_slot_set_state(const char *state);
extern void md_slot_set_exchange(const char *exchange);
extern void md_slot_set_error(const char *msg);
extern void md_slot_set_job(int64 job);
extern bool md_slot_cancel_requested(void);
extern bool md_slot_try_claim(int64 job);
extern int	md_claimed_jobs(int64 *out, int max, int *idle_backfill);

extern void md_wake_role(MdWorkerRole role);

/* wakeups at the commit of the current transaction (md_at_commit) */
#define MD_WAKE_BACKFILL		0x01	/* a job was queued */
#define MD_WAKE_LISTS			0x02	/* the lists changed: stream, watch */
#define MD_BROADCAST_JOBS		0x04	/* a job ended */
#define MD_WAKE_MODELS			0x08	/* closed candles were stored */
#define MD_WAKE_MODELS_CHANGED	0x10	/* a model was registered or changed */
extern void md_at_commit(int flags);
extern void md_broadcast_job_end(void);

#endif							/* MDFEED_SHMEM_H */
