/*
 * store/maintenance.c — time partitions and the isolation probe (see
 * maintenance.h, docs/internals/postgres.md).
 */
#include "store/maintenance.h"

#include <string.h>

#include "core/errors.h"
#include "store/db.h"

static bool on_postgres(struct store_tx *tx) {
  return strcmp(db_backend(tx), "postgres") == 0;
}

int store_partitions_ensure(struct store_tx *tx, int months_ahead) {
  if (!on_postgres(tx)) return 0;
  /* keel_ensure_partitions is SECURITY DEFINER: it runs as the owner, the
   * only role that may create tables. */
  struct db_stmt *st = db_prepare(tx, "SELECT keel_ensure_partitions(CAST($1 AS integer))");
  if (!st) return KEEL_ESTORE;
  db_bind_i64(st, 1, months_ahead);
  int rc = db_step(st);
  return rc == DB_ROW || rc == DB_DONE ? 0 : (rc < 0 ? rc : KEEL_ESTORE);
}

int store_partitions_drop_before(struct store_tx *tx, enum store_partitioned table,
                                 int64_t cutoff_us, int64_t *dropped) {
  *dropped = 0;
  if (!on_postgres(tx)) return 0;
  static const char *const names[] = {
      [STORE_PART_EVENTS] = "events",
      [STORE_PART_AUDIT] = "audit_log",
      [STORE_PART_USAGE] = "usage_hourly",
  };
  struct db_stmt *st =
      db_prepare(tx, "SELECT keel_drop_partitions_before(CAST($1 AS text)::regclass, @ts($2))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, names[table]);
  db_bind_i64(st, 2, cutoff_us);
  int rc = db_step(st);
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *dropped = db_col_i64(st, 0);
  return 0;
}

/* Each statement reads one tenant table with no org condition: the only
 * fence left is row-level security. */
static const struct {
  const char *table;
  const char *sql;
} probes[] = {
    {"memberships", "SELECT DISTINCT org_id FROM memberships"},
    {"invitations", "SELECT DISTINCT org_id FROM invitations"},
    {"outbox", "SELECT DISTINCT org_id FROM outbox WHERE org_id IS NOT NULL"},
    {"audit_log", "SELECT DISTINCT org_id FROM audit_log"},
    {"api_keys", "SELECT DISTINCT org_id FROM api_keys"},
    {"events", "SELECT DISTINCT org_id FROM events"},
    {"sessions", "SELECT DISTINCT org_id FROM sessions"},
    {"dead_letters", "SELECT DISTINCT org_id FROM dead_letters"},
    {"usage_hourly", "SELECT DISTINCT org_id FROM usage_hourly"},
    {"usage_notifications", "SELECT DISTINCT org_id FROM usage_notifications"},
    {"rollup_hourly", "SELECT DISTINCT org_id FROM rollup_hourly"},
    {"rollup_tools", "SELECT DISTINCT org_id FROM rollup_tools"},
    {"analytics_agents", "SELECT DISTINCT org_id FROM analytics_agents"},
    {"analytics_users", "SELECT DISTINCT org_id FROM analytics_users"},
    {"analytics_user_weeks", "SELECT DISTINCT org_id FROM analytics_user_weeks"},
    {"funnel_marks", "SELECT DISTINCT org_id FROM funnel_marks"},
    {"funnel_marks_dirty", "SELECT DISTINCT org_id FROM funnel_marks_dirty"},
    {"orgs", "SELECT id FROM orgs"},
};

int store_rls_probe(struct store_tx *tx, const struct org_scope *scope, store_probe_fn fn,
                    void *arg) {
  if (!on_postgres(tx)) return KEEL_EINVAL;
  if (scope && db_scope(tx, scope) != 0) return KEEL_ESTORE;
  for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
    struct db_stmt *st = db_prepare(tx, probes[i].sql);
    if (!st) return KEEL_ESTORE;
    int rc;
    while ((rc = db_step(st)) == DB_ROW) {
      char org[ID_STR_SIZE];
      db_col_copy(st, 0, org, sizeof(org));
      if ((rc = fn(arg, probes[i].table, org)) != 0) return rc;
    }
    if (rc != DB_DONE) return rc < 0 ? rc : KEEL_ESTORE;
  }
  return 0;
}
