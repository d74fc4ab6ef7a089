/*
 * store/users.h — users (platform-wide, not tenant data), their single-use
 * tokens, login throttling, and the mail outbox.
 */
#ifndef KEEL_STORE_USERS_H
#define KEEL_STORE_USERS_H

#include <stdbool.h>
#include <stdint.h>

#include "domain/password.h"
#include "store/store.h"

struct user {
  char id[ID_STR_SIZE];
  char email[256];
  char name[128];
  char password_hash[PASSWORD_HASH_SIZE];
  bool verified;
  bool platform_admin;
  bool suspended;
  int64_t session_version;
  int64_t created_at;
  int64_t updated_at;
};

/* By id / by normalised (lower-case) email. KEEL_ENOTFOUND when absent. */
int store_user_get(struct store_tx *tx, const char *user_id, struct user *out);
int store_user_by_email(struct store_tx *tx, const char *email_norm, struct user *out);
/* Inserts u (id, email, name, password_hash, verified, platform_admin set by
 * the caller; times stamped here). KEEL_ECONFLICT when the email exists. */
int store_user_insert(struct store_tx *tx, const struct user *u, const char *email_norm);

#endif
