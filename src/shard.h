/*-------------------------------------------------------------------------
 *
 * shard.h
 *	  Which symbols this server ingests (mdfeed.shard), whether it ingests
 *	  at all (mdfeed.mode), and the local address its workers call from.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MDFEED_SHARD_H
#define MDFEED_SHARD_H

#include "utils/guc.h"

/* mdfeed.mode */
typedef enum MdMode
{
	MD_MODE_INGEST,				/* the exchange workers run */
	MD_MODE_REPLICA				/* data arrives by logical replication */
} MdMode;

#define MD_MAX_SHARDS 1024

/*
 * The tracked pairs models on all symbols run on, in SQL over mdfeed.tracked
 * as t: a shard's own pairs; on an analytics server, every pair.
 */
#define MD_SQL_MODEL_PAIR(t) \
	"(" t ".here OR pg_catalog.current_setting('mdfeed.mode') OPERATOR(pg_catalog.=) 'replica')"

extern char *mdfeed_shard;
extern int	mdfeed_mode;
extern char *mdfeed_source_address;
extern const struct config_enum_entry md_mode_options[];

extern bool md_check_shard(char **newval, void **extra, GucSource source);
extern void md_assign_shard(const char *newval, void *extra);
extern bool md_check_source_address(char **newval, void **extra, GucSource source);

extern int	md_shard_of(const char *exchange, const char *symbol, int shards);
extern bool md_shard_owns(const char *exchange, const char *symbol);
extern void md_shard_get(int *k, int *n);
extern bool md_replica_mode(void);
extern void md_require_ingest(void);
extern const char *md_source_address(void);

#endif							/* MDFEED_SHARD_H */
