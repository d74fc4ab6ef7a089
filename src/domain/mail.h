/*
 * mail.h — the mails keel sends to users, from a table of templates, queued
 * in the outbox inside the caller's write transaction (so a mail exists
 * exactly when the change that sends it was committed).
 *
 * Links carry single-use tokens: struct mail holds one and must be wiped
 * (mail_wipe) when done. In development mode (`keel serve --dev`) the link
 * is logged once the transaction committed (event mail.outbox), so a person
 * — and the tests — can follow it without a mail server; it is never logged
 * otherwise.
 *
 * Thread-safety: the functions keep no state.
 */
#ifndef KEEL_DOMAIN_MAIL_H
#define KEEL_DOMAIN_MAIL_H

#include <stdbool.h>

#include "store/store.h"

#define MAIL_LINK_MAX 512

/* Template names (the outbox's template column). */
#define MAIL_VERIFY         "verify"         /* link: /verify?token=… (24 h) */
#define MAIL_ACCOUNT_EXISTS "account_exists" /* sign-up with a taken address */
#define MAIL_RESET          "reset"          /* link: /reset-password?token=… (1 h) */

struct mail {
  char to[256];
  const char *template_name; /* static */
  char link[MAIL_LINK_MAX];
};

/*
 * Renders template_name for to (token: for templates whose link carries one,
 * else NULL) with links under public_url, and inserts the outbox row in tx.
 * Fills *out for mail_announce. Returns 0, KEEL_EINVAL (unknown template,
 * link too long) or a store status.
 */
int mail_queue(struct store_tx *tx, const char *public_url, const char *template_name,
               const char *to, const char *token, struct mail *out);
/* After the commit: logs mail.outbox (to, template, link) when dev. */
void mail_announce(const struct mail *m, bool dev);
/* Wipes the link (it holds a token). */
void mail_wipe(struct mail *m);

#endif
