/*
 * mail.c — mail templates and queuing in the outbox.
 *
 * A template is a row: name, subject, the path of its link (to which the
 * token is appended when the path ends in '='), and the text around the
 * link. Bodies are plain text.
 */
#include "domain/mail.h"

#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/time.h"
#include "store/outbox.h"

struct mail_template {
  const char *name;
  const char *subject;
  const char *path;
  const char *before_link;
  const char *after_link;
};

static const struct mail_template templates[] = {
    {MAIL_VERIFY, "Confirm your email address for keel", "/verify?token=",
     "Welcome to keel. Open this link within 24 hours to confirm your email address:",
     "If you did not sign up for keel, ignore this message; no account will be activated."},
    {MAIL_ACCOUNT_EXISTS, "Sign-up attempt with your email address", "/login",
     "Someone (perhaps you) tried to create a keel account with this email address, but it "
     "already has one. Sign in here:",
     "Forgot your password? Ask for a reset link on the sign-in page. If this was not you, "
     "ignore this message: nothing has changed."},
    {MAIL_RESET, "Reset your keel password",
     "/reset-password?token=", "Open this link within 1 hour to choose a new keel password:",
     "If you did not ask for this, ignore this message: your password stays as it is."},
};

static const struct mail_template *template_find(const char *name) {
  for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
    if (strcmp(templates[i].name, name) == 0) return &templates[i];
  }
  return NULL;
}

/* public_url without trailing slashes + path + token into out. */
static int build_link(const char *public_url, const struct mail_template *t, const char *token,
                      char out[MAIL_LINK_MAX]) {
  size_t base = strlen(public_url);
  while (base > 0 && public_url[base - 1] == '/') base--;
  bool wants_token = t->path[strlen(t->path) - 1] == '=';
  if (wants_token != (token != NULL)) return KEEL_EINVAL;
  int n =
      snprintf(out, MAIL_LINK_MAX, "%.*s%s%s", (int)base, public_url, t->path, token ? token : "");
  return n < 0 || n >= MAIL_LINK_MAX ? KEEL_EINVAL : 0;
}

int mail_queue(struct store_tx *tx, const char *public_url, const char *template_name,
               const char *to, const char *token, struct mail *out) {
  const struct mail_template *t = template_find(template_name);
  if (!t || strlen(to) >= sizeof(out->to)) return KEEL_EINVAL;
  memset(out, 0, sizeof(*out));
  int rc = build_link(public_url, t, token, out->link);
  if (rc) return rc;
  snprintf(out->to, sizeof(out->to), "%s", to);
  out->template_name = t->name;

  struct buf body;
  buf_init(&body, 4096);
  if (buf_printf(&body, "%s\n\n%s\n\n%s\n", t->before_link, out->link, t->after_link)) {
    rc = KEEL_ENOMEM;
    goto fail;
  }
  struct outbox_mail m = {.to_email = to,
                          .template_name = t->name,
                          .subject = t->subject,
                          .body = body.data,
                          .created_at = time_now_us()};
  id_new_str(m.id);
  rc = store_outbox_insert(tx, &m);
fail:
  if (body.data) crypto_wipe(body.data, body.len);
  buf_free(&body);
  return rc;
}

void mail_announce(const struct mail *m, bool dev) {
  if (!dev) return;
  log_info("mail.outbox", LS("to", m->to), LS("template", m->template_name), LS("link", m->link));
}

void mail_wipe(struct mail *m) {
  crypto_wipe(m->link, sizeof(m->link));
}
