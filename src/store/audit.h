/*
 * store/audit.h — the append-only audit log table (per-org hash chain).
 * The chain logic lives in domain/audit.c; this is storage only.
 */
#ifndef KEEL_STORE_AUDIT_H
#define KEEL_STORE_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

#define AUDIT_HASH_LEN 32

struct audit_row {
  int64_t seq;
  char id[ID_STR_SIZE];
  int64_t at; /* µs */
  const char *actor_type;
  const char *actor_id; /* may be NULL */
  const char *action;
  const char *resource_type; /* may be NULL */
  const char *resource_id;   /* may be NULL */
  const char *ip;            /* may be NULL */
  const char *user_agent;    /* may be NULL */
  const char *result;        /* "success" | "failure" */
  const char *details;       /* canonical JSON text */
  uint8_t prev_hash[AUDIT_HASH_LEN];
  uint8_t hash[AUDIT_HASH_LEN];
};

/* The chain head: last seq (0 when empty) and its hash (zeros when empty). */
int store_audit_head(struct store_tx *tx, const struct org_scope *scope, int64_t *seq,
                     uint8_t hash[AUDIT_HASH_LEN]);
int store_audit_insert(struct store_tx *tx, const struct org_scope *scope,
                       const struct audit_row *row);

struct audit_filter {
  const char *action; /* exact match, or a prefix ending in '.' ("member.") */
  const char *actor;  /* actor id (user id or key prefix) */
  int64_t from_us;    /* inclusive; 0: none */
  int64_t to_us;      /* exclusive; 0: none */
  int64_t after_seq;  /* cursor: entries with seq < after_seq (newest first); 0: none */
  int64_t limit;      /* rows to return */
  bool ascending;     /* oldest first (export, verification) */
};

/* Calls fn for each matching row (strings valid during the call only).
 * Returns 0, or fn's non-zero result, or a store error. */
typedef int (*audit_row_fn)(const struct audit_row *row, void *arg);
int store_audit_list(struct store_tx *tx, const struct org_scope *scope,
                     const struct audit_filter *f, audit_row_fn fn, void *arg);

#endif
