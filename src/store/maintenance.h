/*
 * store/maintenance.h — upkeep of the storage itself: time partitions and the
 * tenant-isolation probe (PostgreSQL; on SQLite there is nothing to do).
 */
#ifndef KEEL_STORE_MAINTENANCE_H
#define KEEL_STORE_MAINTENANCE_H

#include <stdint.h>

#include "store/store.h"

/* The tables partitioned by month on PostgreSQL. */
enum store_partitioned { STORE_PART_EVENTS, STORE_PART_AUDIT, STORE_PART_USAGE };

/*
 * Creates the monthly partitions of every partitioned table from the
 * current month to months_ahead months after it (idempotent; rows already
 * in a table's default partition for those months move into their new
 * partition). A write job. SQLite: nothing to do, returns 0.
 */
int store_partitions_ensure(struct store_tx *tx, int months_ahead);

/* Drops the partitions of table that lie wholly before cutoff_us (whole
 * months of rows, for retention); *dropped gets how many. A write job.
 * SQLite: *dropped = 0. */
int store_partitions_drop_before(struct store_tx *tx, enum store_partitioned table,
                                 int64_t cutoff_us, int64_t *dropped);

/*
 * The isolation probe behind the leakage test (dev builds only): reads the
 * org_id of every row of every tenant table with NO org condition of its
 * own, under scope (NULL: no org set at all), and calls fn once per
 * (table, org) seen. Row-level security must confine it to scope's org
 * (nothing at all with NULL). PostgreSQL only: on SQLite, whose fence is
 * each statement's own org condition, returns KEEL_EINVAL.
 */
typedef int (*store_probe_fn)(void *arg, const char *table, const char *org_id);
int store_rls_probe(struct store_tx *tx, const struct org_scope *scope, store_probe_fn fn,
                    void *arg);

#endif
