/*
 * store/users.c — users and their credentials state.
 */
#include "store/users.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"
#include "core/time.h"
#include "store/db.h"

#define USER_COLS                                                                      \
  "id, email, name, coalesce(password_hash, ''), verified, platform_admin, suspended," \
  " session_version, @us(created_at), @us(updated_at)"

static void copy_col(struct db_stmt *st, int col, char *dst, size_t n) {
  const char *s = db_col_text(st, col);
  snprintf(dst, n, "%s", s ? s : "");
}

static void user_from(struct db_stmt *st, struct user *u) {
  memset(u, 0, sizeof(*u));
  copy_col(st, 0, u->id, sizeof(u->id));
  copy_col(st, 1, u->email, sizeof(u->email));
  copy_col(st, 2, u->name, sizeof(u->name));
  copy_col(st, 3, u->password_hash, sizeof(u->password_hash));
  u->verified = db_col_i64(st, 4) != 0;
  u->platform_admin = db_col_i64(st, 5) != 0;
  u->suspended = db_col_i64(st, 6) != 0;
  u->session_version = db_col_i64(st, 7);
  u->created_at = db_col_i64(st, 8);
  u->updated_at = db_col_i64(st, 9);
}

static int one_user(struct db_stmt *st, struct user *out) {
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  user_from(st, out);
  return 0;
}

int store_user_get(struct store_tx *tx, const char *user_id, struct user *out) {
  struct db_stmt *st = db_prepare(tx, "SELECT " USER_COLS " FROM users WHERE id = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  return one_user(st, out);
}

int store_user_by_email(struct store_tx *tx, const char *email_norm, struct user *out) {
  struct db_stmt *st = db_prepare(tx, "SELECT " USER_COLS " FROM users WHERE email_norm = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  return one_user(st, out);
}

int store_user_insert(struct store_tx *tx, const struct user *u, const char *email_norm) {
  struct db_stmt *st = db_prepare(
      tx,
      "INSERT INTO users(id, email, email_norm, name, password_hash, verified, platform_admin,"
      " suspended, session_version, created_at, updated_at)"
      " VALUES($1, $2, $3, $4, $5, $6, $7, 0, 1, @ts($8), @ts($8))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, u->id);
  db_bind_text(st, 2, u->email);
  db_bind_text(st, 3, email_norm);
  db_bind_text(st, 4, u->name);
  db_bind_text(st, 5, u->password_hash[0] ? u->password_hash : NULL);
  db_bind_i64(st, 6, u->verified);
  db_bind_i64(st, 7, u->platform_admin);
  db_bind_i64(st, 8, time_now_us());
  int rc = db_step(st);
  return rc == DB_DONE ? 0 : (rc < 0 ? rc : KEEL_ESTORE);
}
