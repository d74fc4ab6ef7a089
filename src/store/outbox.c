/*
 * store/outbox.c — the mail outbox table.
 */
#include "store/outbox.h"

#include <stdio.h>

#include "core/errors.h"
#include "store/db.h"

int store_outbox_insert(struct store_tx *tx, const struct outbox_mail *m) {
  /* A mail about an org is that org's row; one about a user alone (a
   * password reset, a verification) belongs to no org. */
  if (m->org_id && m->org_id[0]) {
    struct org_scope scope;
    snprintf(scope.org_id, sizeof(scope.org_id), "%s", m->org_id);
    if (db_scope(tx, &scope) != 0) return KEEL_ESTORE;
  } else if (db_as_system(tx) != 0) {
    return KEEL_ESTORE;
  }
  struct db_stmt *st = db_prepare(tx,
                                  "INSERT INTO outbox(id, org_id, to_email, template, subject,"
                                  " body, created_at) VALUES($1, $2, $3, $4, $5, $6, @ts($7))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, m->id);
  db_bind_text(st, 2, m->org_id);
  db_bind_text(st, 3, m->to_email);
  db_bind_text(st, 4, m->template_name);
  db_bind_text(st, 5, m->subject);
  db_bind_text(st, 6, m->body);
  db_bind_i64(st, 7, m->created_at);
  int rc = db_step(st);
  return rc == DB_DONE ? 0 : (rc < 0 ? rc : KEEL_ESTORE);
}
