/*
 * invitations.h — inviting people into an org (R-IAM-7): single invitations,
 * resend, revoke, the public preview, acceptance, and bulk invitations from
 * a CSV upload (all valid rows applied, or none).
 *
 * Tokens: 32 random bytes as base64url (43 characters), mailed in the link
 * <public_url>/invitations/<token>; only SHA-256(token) is stored. A token
 * is valid for INVITE_TTL_US and once.
 *
 * Status (invite_status): accepted (accepted_at), revoked (revoked_at before
 * the expiry), expired (past the expiry, or closed at/after it — an expired
 * invitation replaced by a new one for the same address is closed that way),
 * pending otherwise.
 *
 * Seats (R-IAM-10): members + pending invitations + new invitations must fit
 * the plan's members limit when inviting; when accepting, members + 1 must
 * (the invitation's seat was counted when it was sent).
 *
 * Operations run inside the caller's write transaction; refusals fill a
 * struct tenancy_err. Structures holding a token or a link are secrets:
 * wipe them (invite_sent_wipe).
 */
#ifndef KEEL_DOMAIN_INVITATIONS_H
#define KEEL_DOMAIN_INVITATIONS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/crypto.h"
#include "core/slice.h"
#include "core/time.h"
#include "domain/tenancy.h"
#include "store/invitations.h"
#include "store/orgs.h"
#include "store/users.h"

#define INVITE_TTL_US      (7 * US_PER_DAY)
#define INVITE_TOKEN_BYTES 32
#define INVITE_TOKEN_LEN   43
#define INVITE_TOKEN_SIZE  48
#define INVITE_LINK_MAX    512
#define INVITE_TEMPLATE    "invitation" /* the outbox template name */

enum invite_status { INVITE_PENDING = 0, INVITE_EXPIRED, INVITE_ACCEPTED, INVITE_REVOKED };

enum invite_status invite_status(const struct invitation *inv, int64_t now);
const char *invite_status_name(enum invite_status s); /* "pending" … */
/* Roles an invitation may grant: admin, member, viewer (ROLE_NONE else). */
enum role invite_role_parse(const char *s);
/* SHA-256 of a presented token; -1 when it cannot be one (length,
 * alphabet), so callers answer 404 without a lookup. */
int invite_token_hash(const char *token, uint8_t hash[SHA256_LEN]);

/* Who sends the mail, and where links point. */
struct invite_mail_ctx {
  const char *public_url;
  const char *org_name;
  const char *inviter_name;
};

/* An invitation just sent, with its secret token and link. */
struct invite_sent {
  struct invitation inv;
  char token[INVITE_TOKEN_SIZE];
  char link[INVITE_LINK_MAX];
};
void invite_sent_wipe(struct invite_sent *s);

/*
 * Invites email (role: admin | member | viewer) into org on behalf of
 * inviter_id: refuses members (already_member), addresses with a pending
 * invitation (conflict) and plan overflow (plan_limit_reached); replaces an
 * expired open invitation; stores it and queues the mail. Returns 0,
 * KEEL_EINVAL, KEEL_ECONFLICT or KEEL_EDENIED with err filled.
 */
int invite_create(struct store_tx *tx, const struct org *org, const char *inviter_id,
                  const char *email, enum role role, const struct invite_mail_ctx *mail,
                  struct invite_sent *out, struct tenancy_err *err);
/* A new token, expiry and mail for an open invitation (pending or expired;
 * an expired one needs a free seat). KEEL_ENOTFOUND, KEEL_ECONFLICT (closed),
 * KEEL_EDENIED (seats). */
int invite_resend(struct store_tx *tx, const struct org *org, const char *id,
                  const struct invite_mail_ctx *mail, struct invite_sent *out,
                  struct tenancy_err *err);
/* Revokes an open invitation; *out gets it. KEEL_ENOTFOUND, KEEL_ECONFLICT
 * (already accepted or closed). */
int invite_revoke(struct store_tx *tx, const struct org *org, const char *id,
                  struct invitation *out, struct tenancy_err *err);

/* The pending invitation of a token and its org; KEEL_ENOTFOUND for an
 * unknown, malformed, expired, accepted or revoked token. */
int invite_preview(struct store_tx *tx, const char *token, struct invitation *inv, struct org *org);
/*
 * Accepts token as user: the user's email must be the invited one
 * (invitation_email_mismatch, KEEL_EDENIED), not already a member
 * (already_member, KEEL_ECONFLICT), and a seat must be free
 * (plan_limit_reached, KEEL_EDENIED). Creates the membership and marks the
 * invitation accepted. KEEL_ENOTFOUND as for invite_preview. *inv and *org
 * are filled as soon as the token is found (also on refusal).
 */
int invite_accept(struct store_tx *tx, const char *token, const struct user *user,
                  struct invitation *inv, struct org *org, struct tenancy_err *err);

/* The invitation as the API shows it (new reference); never the token. */
json_t *invite_json(const struct invitation *inv, int64_t now);

/* --- bulk invitations from CSV ------------------------------------------ */

/* Outcomes of a CSV row (names: invite_outcome_name). */
enum invite_outcome {
  INVITE_OUT_NONE = 0,
  INVITE_OUT_INVITED,         /* "invited" */
  INVITE_OUT_INVALID_EMAIL,   /* "invalid_email" */
  INVITE_OUT_UNKNOWN_ROLE,    /* "unknown_role" */
  INVITE_OUT_ALREADY_MEMBER,  /* "already_member" */
  INVITE_OUT_ALREADY_INVITED, /* "already_invited" (a pending invitation exists) */
  INVITE_OUT_DUPLICATE,       /* "duplicate_in_file" */
  INVITE_OUT_NOT_APPLIED      /* "not_applied": valid, but the upload broke the plan limit */
};
const char *invite_outcome_name(enum invite_outcome o);

struct invite_csv_row {
  int line;    /* physical line where the record starts (the header is 1 or more) */
  char *email; /* as sent, trimmed (arena) */
  char *role;  /* as sent, trimmed (arena) */
  enum invite_outcome outcome;
  char email_norm[256];
  enum role role_parsed;
  struct invite_sent *sent; /* invited rows (arena), token inside: wipe */
};

/* Why a CSV document was refused: a field name ("body" or "line N", arena
 * memory), a rule code and a message (static). */
struct invite_csv_error {
  const char *field;
  const char *code;
  const char *message;
};

/*
 * Parses a CSV upload: UTF-8, an optional BOM, records separated by LF or
 * CRLF, fields separated by ',', optionally double-quoted ("" escapes a
 * quote; quoted fields may hold ',' and line breaks), spaces and tabs
 * around values ignored (inside quotes too), blank lines skipped. The first record must be the
 * header email,role (case-insensitive); every other record has exactly two fields; at most
 * LIMIT_INVITE_CSV_ROWS of them. Returns 0 with *rows (arena) and *nrows, or -1 with *e filled.
 */
int invite_csv_parse(struct arena *a, struct slice body, struct invite_csv_row **rows,
                     size_t *nrows, struct invite_csv_error *e);

/*
 * Judges every row (outcome set on each), then — when the valid rows fit the
 * plan's members limit — invites them all (rows[i].sent filled, arena a) and
 * sets *invited. When they do not fit nothing is written, the valid rows get
 * INVITE_OUT_NOT_APPLIED and KEEL_EDENIED is returned with err filled.
 */
int invite_import(struct store_tx *tx, struct arena *a, const struct org *org,
                  const char *inviter_id, struct invite_csv_row *rows, size_t nrows,
                  const struct invite_mail_ctx *mail, int64_t *invited, struct tenancy_err *err);

#endif
