/*
 * store/invitations.h — invitations to join an org, and the invitation mail
 * row in the outbox.
 *
 * Every function takes the org's scope, except store_invitation_by_token:
 * the token is the capability (32 random bytes, held by the invitee only),
 * and that lookup is what establishes the scope for the public preview and
 * for acceptance. Only SHA-256 of a token is stored.
 *
 * Lifecycle columns: accepted_at / revoked_at close an invitation. An
 * invitation closed (revoked_at) at or after its expiry was replaced or
 * withdrawn once expired and is reported as expired (domain/tenancy.c,
 * tenancy_invitation_status).
 */
#ifndef KEEL_STORE_INVITATIONS_H
#define KEEL_STORE_INVITATIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/crypto.h"
#include "domain/rbac.h"
#include "store/store.h"

struct invitation {
  char id[ID_STR_SIZE];
  char org_id[ID_STR_SIZE];
  char email[256];
  char email_norm[256];
  enum role role;
  char invited_by[ID_STR_SIZE]; /* "" when unknown */
  int64_t created_at;
  int64_t expires_at;
  int64_t accepted_at; /* 0: not accepted */
  int64_t revoked_at;  /* 0: not revoked */
};

/* Status filters of store_invitation_list. */
enum invitation_filter {
  INVITATION_ANY = 0,
  INVITATION_PENDING,
  INVITATION_EXPIRED,
  INVITATION_ACCEPTED,
  INVITATION_REVOKED
};

/* Inserts inv (all fields set by the caller) with the token's hash.
 * KEEL_ECONFLICT when an open invitation for the address exists. */
int store_invitation_insert(struct store_tx *tx, const struct org_scope *scope,
                            const struct invitation *inv, const uint8_t token_hash[SHA256_LEN]);
/* By id; KEEL_ENOTFOUND when absent from scope. */
int store_invitation_get(struct store_tx *tx, const struct org_scope *scope, const char *id,
                         struct invitation *out);
/* The open (neither accepted nor revoked, maybe expired) invitation for an
 * address; KEEL_ENOTFOUND when none. */
int store_invitation_open_for(struct store_tx *tx, const struct org_scope *scope,
                              const char *email_norm, struct invitation *out);
/* Open invitations not expired at now. */
int store_invitation_count_pending(struct store_tx *tx, const struct org_scope *scope, int64_t now,
                                   int64_t *count);
/* Closes an open invitation (revoked_at = at). KEEL_ENOTFOUND when not open. */
int store_invitation_close(struct store_tx *tx, const struct org_scope *scope, const char *id,
                           int64_t at);
/* A new token and expiry for an open invitation. KEEL_ENOTFOUND when not
 * open. */
int store_invitation_retoken(struct store_tx *tx, const struct org_scope *scope, const char *id,
                             const uint8_t token_hash[SHA256_LEN], int64_t expires_at);
/* Marks an open invitation accepted by user_id at at. */
int store_invitation_accept(struct store_tx *tx, const struct org_scope *scope, const char *id,
                            const char *user_id, int64_t at);

/* Newest first; ids below before_id ("" for the first page); status as of
 * now; at most limit rows. fn returns non-zero to stop (returned). */
typedef int (*store_invitation_row_fn)(const struct invitation *inv, void *arg);
int store_invitation_list(struct store_tx *tx, const struct org_scope *scope,
                          enum invitation_filter filter, int64_t now, const char *before_id,
                          int64_t limit, store_invitation_row_fn fn, void *arg);

/*
 * The invitation whose token hashes to token_hash, in an org that is not
 * deleted, whatever its state (the caller judges it). Fills *out (its org_id
 * is the scope to use from here on). KEEL_ENOTFOUND otherwise.
 */
int store_invitation_by_token(struct store_tx *tx, const uint8_t token_hash[SHA256_LEN],
                              struct invitation *out);

/* Queues a mail in the outbox (delivered by the mail sender). */
int store_invitation_mail(struct store_tx *tx, const struct org_scope *scope, const char *to_email,
                          const char *template_name, const char *subject, const char *body);

#endif
