/*
 * store/outbox.h — the mail outbox: rows written in the same transaction as
 * the change that sends them, delivered later by a sender that marks
 * sent_at. Not tenant data (org_id is informational and may be NULL).
 */
#ifndef KEEL_STORE_OUTBOX_H
#define KEEL_STORE_OUTBOX_H

#include <stdint.h>

#include "store/store.h"

struct outbox_mail {
  char id[ID_STR_SIZE];
  const char *org_id; /* may be NULL */
  const char *to_email;
  const char *template_name; /* "verify", "reset", … */
  const char *subject;
  const char *body;
  int64_t created_at; /* µs */
};

/* Inserts m (all strings borrowed). Returns 0 or a KEEL_E* status. */
int store_outbox_insert(struct store_tx *tx, const struct outbox_mail *m);

#endif
