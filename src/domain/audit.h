/*
 * audit.h — the tamper-evident audit log (R-AUD-1..3).
 *
 * audit_append writes one entry inside the caller's write transaction — the
 * same transaction as the change it records (DESIGN invariant 6). Entries of
 * one org form a hash chain:
 *     hash = SHA-256(prev_hash || canonical(entry))
 * with prev_hash of the first entry 32 zero bytes. canonical() is defined
 * byte for byte in docs/internals/audit.md. Entries that belong to no org
 * (sign-ups, logins, platform actions) chain under AUDIT_PLATFORM_ORG.
 *
 * Writers are serialised (one store writer), so the head read and the insert
 * cannot interleave with another append.
 */
#ifndef KEEL_DOMAIN_AUDIT_H
#define KEEL_DOMAIN_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/audit.h"
#include "store/store.h"

#define AUDIT_PLATFORM_ORG "00000000-0000-0000-0000-000000000000"

struct audit_entry {
  const char *org_id;     /* NULL → AUDIT_PLATFORM_ORG */
  const char *actor_type; /* "user" | "api_key" | "system" */
  const char *actor_id;   /* user id, key prefix, or NULL for system */
  const char *action;     /* dotted, e.g. "member.role_changed" */
  const char *resource_type;
  const char *resource_id;
  const char *ip;
  const char *user_agent;
  bool success;
  json_t *details; /* borrowed; NULL → {} — never a secret */
};

/* Appends e; fills id_out (may be NULL) with the entry id. */
int audit_append(struct store_tx *tx, const struct audit_entry *e, char id_out[ID_STR_SIZE]);

/* The canonical bytes of a row (appended to out). */
int audit_canonical(const char *org_id, const struct audit_row *r, struct buf *out);
/* SHA-256(prev || canonical). */
void audit_hash(const uint8_t prev[AUDIT_HASH_LEN], const struct buf *canonical,
                uint8_t out[AUDIT_HASH_LEN]);

struct audit_verify_result {
  bool valid;
  int64_t entries;    /* entries checked */
  int64_t failed_seq; /* first broken entry (0 when valid) */
  const char *reason; /* static text, NULL when valid */
};

/* Walks org_id's chain in order and reports the first broken link. */
int audit_verify(struct store *s, const char *org_id, struct audit_verify_result *out);

#endif
