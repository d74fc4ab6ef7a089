/*
 * store/users.c — users, their single-use tokens, login throttling, their
 * memberships (read from the user's side) and the invitation read sign-up
 * needs.
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

static void user_from(struct db_stmt *st, struct user *u) {
  memset(u, 0, sizeof(*u));
  db_col_copy(st, 0, u->id, sizeof(u->id));
  db_col_copy(st, 1, u->email, sizeof(u->email));
  db_col_copy(st, 2, u->name, sizeof(u->name));
  db_col_copy(st, 3, u->password_hash, sizeof(u->password_hash));
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
      " VALUES($1, $2, $3, $4, $5, $6, $7, FALSE, 1, @ts($8), @ts($8))");
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

/* DB_DONE → 0, anything else → a status. */
static int step_done(struct db_stmt *st) {
  int rc = db_step(st);
  return rc == DB_DONE ? 0 : (rc < 0 ? rc : KEEL_ESTORE);
}

/* Runs an UPDATE of one user by id; KEEL_ENOTFOUND when no row changed. */
static int update_one(struct store_tx *tx, struct db_stmt *st) {
  int rc = step_done(st);
  if (rc) return rc;
  return db_changes(tx) == 1 ? 0 : KEEL_ENOTFOUND;
}

int store_user_set_verified(struct store_tx *tx, const char *user_id) {
  struct db_stmt *st =
      db_prepare(tx, "UPDATE users SET verified = TRUE, updated_at = @ts($1) WHERE id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_i64(st, 1, time_now_us());
  db_bind_text(st, 2, user_id);
  return update_one(tx, st);
}

int store_user_set_platform_admin(struct store_tx *tx, const char *user_id, bool admin) {
  struct db_stmt *st =
      db_prepare(tx, "UPDATE users SET platform_admin = $2, updated_at = @ts($3) WHERE id = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  db_bind_i64(st, 2, admin);
  db_bind_i64(st, 3, time_now_us());
  return update_one(tx, st);
}

int store_user_set_password(struct store_tx *tx, const char *user_id, const char *hash) {
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE users SET password_hash = $2,"
                                  " session_version = session_version + 1, updated_at = @ts($3)"
                                  " WHERE id = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  db_bind_text(st, 2, hash);
  db_bind_i64(st, 3, time_now_us());
  return update_one(tx, st);
}

int store_user_bump_session_version(struct store_tx *tx, const char *user_id) {
  struct db_stmt *st = db_prepare(
      tx,
      "UPDATE users SET session_version = session_version + 1, updated_at = @ts($1) WHERE id = $2");
  if (!st) return KEEL_ESTORE;
  db_bind_i64(st, 1, time_now_us());
  db_bind_text(st, 2, user_id);
  return update_one(tx, st);
}

/* --- single-use tokens -------------------------------------------------- */

int store_user_token_insert(struct store_tx *tx, const uint8_t hash[SHA256_LEN],
                            const char *user_id, const char *purpose, int64_t now_us,
                            int64_t expires_us) {
  struct db_stmt *st = db_prepare(tx,
                                  "INSERT INTO user_tokens(token_hash, user_id, purpose,"
                                  " created_at, expires_at) VALUES($1, $2, $3, @ts($4), @ts($5))");
  if (!st) return KEEL_ESTORE;
  db_bind_blob(st, 1, hash, SHA256_LEN);
  db_bind_text(st, 2, user_id);
  db_bind_text(st, 3, purpose);
  db_bind_i64(st, 4, now_us);
  db_bind_i64(st, 5, expires_us);
  return step_done(st);
}

static int token_mark_used(struct store_tx *tx, const uint8_t hash[SHA256_LEN], int64_t now_us) {
  struct db_stmt *st = db_prepare(
      tx, "UPDATE user_tokens SET used_at = @ts($1) WHERE token_hash = $2 AND used_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_i64(st, 1, now_us);
  db_bind_blob(st, 2, hash, SHA256_LEN);
  return update_one(tx, st);
}

int store_user_token_find(struct store_tx *tx, const uint8_t hash[SHA256_LEN], const char *purpose,
                          int64_t now_us, bool consume, char user_id[ID_STR_SIZE]) {
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT user_id FROM user_tokens WHERE token_hash = $1"
                                  " AND purpose = $2 AND used_at IS NULL AND expires_at > @ts($3)");
  if (!st) return KEEL_ESTORE;
  db_bind_blob(st, 1, hash, SHA256_LEN);
  db_bind_text(st, 2, purpose);
  db_bind_i64(st, 3, now_us);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  db_col_copy(st, 0, user_id, ID_STR_SIZE);
  db_reset(st);
  return consume ? token_mark_used(tx, hash, now_us) : 0;
}

int store_user_tokens_retire(struct store_tx *tx, const char *user_id, const char *purpose,
                             int64_t now_us) {
  struct db_stmt *st = db_prepare(tx,
                                  "UPDATE user_tokens SET used_at = @ts($1)"
                                  " WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL");
  if (!st) return KEEL_ESTORE;
  db_bind_i64(st, 1, now_us);
  db_bind_text(st, 2, user_id);
  db_bind_text(st, 3, purpose);
  return step_done(st);
}

/* --- login throttling --------------------------------------------------- */

int store_login_lock_get(struct store_tx *tx, const char *email_norm, int64_t *locked_until_us) {
  struct db_stmt *st =
      db_prepare(tx, "SELECT @us(locked_until) FROM login_locks WHERE email_norm = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  int rc = db_step(st);
  *locked_until_us = 0;
  if (rc == DB_DONE) return 0;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *locked_until_us = db_col_i64(st, 0);
  return 0;
}

static int failures_forget(struct store_tx *tx, const char *email_norm, int64_t before_us) {
  struct db_stmt *st =
      db_prepare(tx, "DELETE FROM login_failures WHERE email_norm = $1 AND at < @ts($2)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  db_bind_i64(st, 2, before_us);
  return step_done(st);
}

static int failures_forget_all(struct store_tx *tx, const char *email_norm) {
  struct db_stmt *st = db_prepare(tx, "DELETE FROM login_failures WHERE email_norm = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  return step_done(st);
}

int store_login_failure_add(struct store_tx *tx, const char *email_norm, int64_t now_us,
                            int64_t since_us, int64_t *count) {
  int rc = failures_forget(tx, email_norm, since_us);
  if (rc) return rc;
  struct db_stmt *st =
      db_prepare(tx, "INSERT INTO login_failures(email_norm, at) VALUES($1, @ts($2))");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  db_bind_i64(st, 2, now_us);
  rc = step_done(st);
  if (rc) return rc;
  st =
      db_prepare(tx, "SELECT count(*) FROM login_failures WHERE email_norm = $1 AND at >= @ts($2)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  db_bind_i64(st, 2, since_us);
  rc = db_step(st);
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  *count = db_col_i64(st, 0);
  return 0;
}

int store_login_lock_set(struct store_tx *tx, const char *email_norm, int64_t until_us) {
  struct db_stmt *st = db_prepare(tx,
                                  "INSERT INTO login_locks(email_norm, locked_until)"
                                  " VALUES($1, @ts($2)) ON CONFLICT(email_norm)"
                                  " DO UPDATE SET locked_until = excluded.locked_until");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  db_bind_i64(st, 2, until_us);
  int rc = step_done(st);
  if (rc) return rc;
  return failures_forget_all(tx, email_norm);
}

int store_login_clear(struct store_tx *tx, const char *email_norm) {
  struct db_stmt *st = db_prepare(tx, "DELETE FROM login_locks WHERE email_norm = $1");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, email_norm);
  int rc = step_done(st);
  if (rc) return rc;
  return failures_forget_all(tx, email_norm);
}

/* --- the user's organisations ------------------------------------------- */

int store_user_orgs(struct store_tx *tx, const char *user_id, int64_t limit, store_user_org_fn fn,
                    void *arg) {
  if (db_as_user(tx, user_id) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT o.id, o.name, o.slug, m.role FROM memberships m"
                                  " JOIN orgs o ON o.id = m.org_id"
                                  " WHERE m.user_id = $1 AND o.deleted_at IS NULL"
                                  " ORDER BY m.created_at, o.id LIMIT $2");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, user_id);
  db_bind_i64(st, 2, limit > 0 ? limit : INT64_MAX);
  for (;;) {
    int rc = db_step(st);
    if (rc == DB_DONE) return 0;
    if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
    struct user_org o;
    db_col_copy(st, 0, o.id, sizeof(o.id));
    db_col_copy(st, 1, o.name, sizeof(o.name));
    db_col_copy(st, 2, o.slug, sizeof(o.slug));
    db_col_copy(st, 3, o.role, sizeof(o.role));
    rc = fn(arg, &o);
    if (rc) return rc;
  }
}

/* --- invitations -------------------------------------------------------- */

int store_user_invitation_email(struct store_tx *tx, const uint8_t hash[SHA256_LEN], int64_t now_us,
                                char email_norm[256]) {
  if (db_as_system(tx) != 0) return KEEL_ESTORE;
  struct db_stmt *st = db_prepare(tx,
                                  "SELECT i.email_norm FROM invitations i"
                                  " JOIN orgs o ON o.id = i.org_id AND o.deleted_at IS NULL"
                                  " WHERE i.token_hash = $1 AND i.accepted_at IS NULL"
                                  " AND i.revoked_at IS NULL AND i.expires_at > @ts($2)");
  if (!st) return KEEL_ESTORE;
  db_bind_blob(st, 1, hash, SHA256_LEN);
  db_bind_i64(st, 2, now_us);
  int rc = db_step(st);
  if (rc == DB_DONE) return KEEL_ENOTFOUND;
  if (rc != DB_ROW) return rc < 0 ? rc : KEEL_ESTORE;
  db_col_copy(st, 0, email_norm, 256);
  return 0;
}
