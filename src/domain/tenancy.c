/*
 * tenancy.c — organisations and membership rules: names, slugs, org
 * creation with its plan limit, role changes, removals, ownership transfer.
 *
 * Invariants kept here (all inside one write transaction, and the SQLite
 * store has one writer, so a check and the change it guards cannot
 * interleave with another request's):
 *  - an org always has at least one owner (the last owner cannot be
 *    demoted, removed or leave);
 *  - admins never change or remove owners, and never grant owner;
 *  - a user owns at most plans_get("free")->orgs_per_user_max free orgs.
 */
#include "domain/tenancy.h"

#include <stdio.h>
#include <string.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/time.h"
#include "domain/plans.h"

/* Slugs that name keel's own pages, hosts and routes (sub-domain routing,
 * R-TEN-5, puts a slug in front of the base domain). */
static const char *const reserved_slugs[] = {
    "about",   "account",     "admin",  "api",     "app",       "assets", "auth",
    "billing", "blog",        "cdn",    "console", "dashboard", "dev",    "docs",
    "help",    "invitations", "keel",   "login",   "logout",    "mail",   "metrics",
    "new",     "oauth",       "org",    "orgs",    "pricing",   "root",   "settings",
    "signup",  "sso",         "static", "status",  "support",   "system", "www",
};

void tenancy_err_set(struct tenancy_err *err, const char *code, const char *detail) {
  if (!err) return;
  memset(err, 0, sizeof(*err));
  err->code = code;
  err->detail = detail;
}

void tenancy_err_limit(struct tenancy_err *err, const char *limit, const struct plan *plan) {
  tenancy_err_set(err, "plan_limit_reached", "a limit of the organisation's plan is reached");
  if (!err) return;
  err->limit = limit;
  err->limit_value = strcmp(limit, "members") == 0 ? plan->members_max : plan->orgs_per_user_max;
  err->plan = plan->id;
}

/* --- names and slugs ------------------------------------------------------ */

/* Length of the UTF-8 sequence starting at s, or 0 when it is not valid
 * (overlong forms, surrogates and values past U+10FFFF refused). */
static size_t utf8_seq(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned cp;
  if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  static const unsigned min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_for_len[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

const char *tenancy_name_check(const char *name) {
  if (!name || !name[0]) return "must not be empty";
  size_t chars = 0;
  bool blank = true;
  for (const unsigned char *p = (const unsigned char *)name; *p;) {
    size_t n = utf8_seq(p);
    if (n == 0) return "must be valid UTF-8";
    if (n == 1 && (*p < 0x20 || *p == 0x7F)) return "must not contain control characters";
    if (!(n == 1 && *p == ' ')) blank = false;
    p += n;
    if (++chars > LIMIT_ORG_NAME_CHARS) return "must be at most 100 characters";
  }
  if (blank) return "must not be blank";
  return NULL;
}

bool tenancy_slug_reserved(const char *slug) {
  for (size_t i = 0; i < sizeof(reserved_slugs) / sizeof(reserved_slugs[0]); i++) {
    if (strcmp(reserved_slugs[i], slug) == 0) return true;
  }
  return false;
}

static bool slug_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

const char *tenancy_slug_check(const char *slug) {
  if (!slug) return "is required";
  size_t n = strlen(slug);
  if (n < LIMIT_SLUG_MIN || n > LIMIT_SLUG_MAX) return "must be 3 to 48 characters";
  for (size_t i = 0; i < n; i++) {
    if (!slug_alnum(slug[i]) && slug[i] != '-') {
      return "may contain only lower-case letters, digits and '-'";
    }
  }
  if (!slug_alnum(slug[0]) || !slug_alnum(slug[n - 1])) {
    return "must start and end with a letter or digit";
  }
  if (tenancy_slug_reserved(slug)) return "is a reserved word";
  return NULL;
}

bool tenancy_slug_valid(const char *slug) {
  return tenancy_slug_check(slug) == NULL;
}

void tenancy_slug_from_name(const char *name, char *out, size_t outsize) {
  size_t max = outsize - 1 < LIMIT_SLUG_MAX ? outsize - 1 : LIMIT_SLUG_MAX;
  size_t n = 0;
  bool dash = false;
  for (const char *p = name ? name : ""; *p && n < max; p++) {
    char c = *p;
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (!slug_alnum(c)) {
      dash = true;
      continue;
    }
    if (dash && n > 0) {
      if (n + 2 > max) break; /* no room for "-x": stop at a word boundary */
      out[n++] = '-';
    }
    dash = false;
    out[n++] = c;
  }
  while (n > 0 && out[n - 1] == '-') n--;
  out[n] = '\0';
  if (n == 0) snprintf(out, outsize, "org");
}

/* base (cut so the suffix fits, trailing '-' dropped) + "-" + 4 random
 * [a-z0-9]. */
static void slug_with_suffix(const char *base, char out[TENANCY_SLUG_SIZE]) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  size_t keep = strlen(base);
  if (keep > LIMIT_SLUG_MAX - 5) keep = LIMIT_SLUG_MAX - 5;
  while (keep > 0 && base[keep - 1] == '-') keep--;
  char suffix[5];
  for (int i = 0; i < 4; i++) suffix[i] = alphabet[crypto_random_uniform(sizeof(alphabet) - 1)];
  suffix[4] = '\0';
  snprintf(out, TENANCY_SLUG_SIZE, "%.*s%s%s", (int)keep, base, keep ? "-" : "org-", suffix);
}

/* A free slug for name: the plain form when valid and free, else with a
 * random suffix (a few tries). */
static int slug_generate(struct store_tx *tx, const char *name, char out[TENANCY_SLUG_SIZE]) {
  char base[TENANCY_SLUG_SIZE];
  tenancy_slug_from_name(name, base, sizeof(base));
  snprintf(out, TENANCY_SLUG_SIZE, "%s", base);
  for (int attempt = 0; attempt < 8; attempt++) {
    if (attempt > 0 || !tenancy_slug_valid(out)) slug_with_suffix(base, out);
    if (!tenancy_slug_valid(out)) continue;
    bool taken = true;
    int rc = store_org_slug_taken(tx, out, &taken);
    if (rc) return rc;
    if (!taken) return 0;
  }
  return KEEL_ECONFLICT; /* 8 random suffixes all taken: astronomically unlikely */
}

bool tenancy_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end) {
    size_t left = (size_t)(end - p);
    unsigned char tail[5] = {0}; /* the last bytes, NUL-padded: utf8_seq reads ahead */
    const unsigned char *q = p;
    if (left < 4) {
      memcpy(tail, p, left);
      q = tail;
    }
    size_t k = *q ? utf8_seq(q) : 0;
    if (k == 0 || k > left) return false;
    p += k;
  }
  return true;
}

/* --- organisations -------------------------------------------------------- */

int tenancy_owner_capacity(struct store_tx *tx, const char *user_id, const char *plan,
                           struct tenancy_err *err) {
  const struct plan *free_plan = plans_get(PLAN_DEFAULT);
  if (!free_plan || strcmp(plan, PLAN_DEFAULT) != 0 ||
      free_plan->orgs_per_user_max == PLAN_UNLIMITED) {
    return 0;
  }
  int64_t owned = 0;
  int rc = store_org_count_owned(tx, user_id, PLAN_DEFAULT, &owned);
  if (rc) return rc;
  if (plans_within(free_plan->orgs_per_user_max, owned + 1)) return 0;
  tenancy_err_limit(err, "orgs_per_user", free_plan);
  return KEEL_EDENIED;
}

static int org_fill(struct org *o, const char *name, const char *plan, const char **why) {
  const char *bad = tenancy_name_check(name);
  if (bad) {
    *why = "name: 1 to 100 characters, not blank, no control characters";
    return KEEL_EINVAL;
  }
  const struct plan *p = plans_get(plan ? plan : PLAN_DEFAULT);
  if (!p) {
    *why = "plan: no such plan";
    return KEEL_EINVAL;
  }
  memset(o, 0, sizeof(*o));
  id_new_str(o->id);
  snprintf(o->name, sizeof(o->name), "%s", name);
  snprintf(o->plan, sizeof(o->plan), "%s", p->id);
  snprintf(o->billing_status, sizeof(o->billing_status), "active");
  snprintf(o->settings, sizeof(o->settings), "{}");
  return 0;
}

int tenancy_org_create(struct store_tx *tx, const char *owner_id, const char *name,
                       const char *slug, const char *plan, struct org *out, const char **why) {
  static const char *no_why = "";
  if (!why) why = &no_why;
  int rc = org_fill(out, name, plan, why);
  if (rc) return rc;
  if (slug && tenancy_slug_check(slug)) {
    *why =
        "slug: 3 to 48 of a-z, 0-9 and '-', starting and ending with a letter or digit, "
        "not a reserved word";
    return KEEL_EINVAL;
  }
  struct tenancy_err err;
  rc = tenancy_owner_capacity(tx, owner_id, out->plan, &err);
  if (rc == KEEL_EDENIED) {
    *why = "orgs_per_user: the free plan's limit of organisations per user is reached";
  }
  if (rc) return rc;
  if (slug) {
    snprintf(out->slug, sizeof(out->slug), "%s", slug);
  } else {
    rc = slug_generate(tx, name, out->slug);
    if (rc) return rc;
  }
  rc = store_org_insert(tx, out, owner_id);
  if (rc == KEEL_ECONFLICT) *why = "slug: taken";
  if (rc) return rc;
  struct org_scope scope;
  memcpy(scope.org_id, out->id, sizeof(scope.org_id));
  return store_org_get(tx, &scope, out); /* the stored times */
}

json_t *tenancy_time_json(int64_t us) {
  if (us == 0) return json_null();
  char t[RFC3339_MAX];
  time_format_rfc3339(us, t);
  return json_string(t);
}

json_t *tenancy_org_json(const struct org *org, enum role role) {
  json_t *settings = json_loads(org->settings[0] ? org->settings : "{}", 0, NULL);
  if (!json_is_object(settings)) {
    json_decref(settings);
    settings = json_object();
  }
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:s}", "id", org->id, "name",
                   org->name, "slug", org->slug, "plan", org->plan, "billing_status",
                   org->billing_status, "settings", settings, "created_at",
                   tenancy_time_json(org->created_at), "updated_at",
                   tenancy_time_json(org->updated_at), "role", rbac_role_name(role));
}

/* --- membership rules ------------------------------------------------------ */

int tenancy_role_change_rule(enum role actor_role, enum role from, enum role to, int64_t owners,
                             struct tenancy_err *err) {
  if (actor_role != ROLE_OWNER && from == ROLE_OWNER) {
    tenancy_err_set(err, "forbidden", "only an owner can change an owner's role");
    return KEEL_EDENIED;
  }
  if (actor_role != ROLE_OWNER && to == ROLE_OWNER) {
    tenancy_err_set(err, "forbidden", "only an owner can make someone an owner");
    return KEEL_EDENIED;
  }
  if (from == ROLE_OWNER && to != ROLE_OWNER && owners <= 1) {
    tenancy_err_set(err, "last_owner",
                    "the last owner cannot be demoted; make another member an owner first");
    return KEEL_ECONFLICT;
  }
  return 0;
}

int tenancy_removal_rule(enum role actor_role, enum role target, bool self, int64_t owners,
                         struct tenancy_err *err) {
  if (!self && actor_role != ROLE_OWNER && target == ROLE_OWNER) {
    tenancy_err_set(err, "forbidden", "only an owner can remove an owner");
    return KEEL_EDENIED;
  }
  if (target == ROLE_OWNER && owners <= 1) {
    tenancy_err_set(
        err, "last_owner",
        self ? "the last owner cannot leave; transfer ownership or delete the organisation"
             : "the last owner cannot be removed");
    return KEEL_ECONFLICT;
  }
  return 0;
}

bool tenancy_seats_within(const char *plan, int64_t members, int64_t pending, int64_t adding) {
  const struct plan *p = plans_get(plan);
  if (!p) p = plans_get(PLAN_DEFAULT);
  if (!p) return false;
  return plans_within(p->members_max, members + pending + adding);
}

/* --- membership operations ------------------------------------------------- */

static void scope_of(const struct org *org, struct org_scope *scope) {
  memcpy(scope->org_id, org->id, sizeof(scope->org_id));
}

static int not_member(struct tenancy_err *err) {
  tenancy_err_set(err, "not_found", "no such member of this organisation");
  return KEEL_ENOTFOUND;
}

int tenancy_member_set_role(struct store_tx *tx, const struct org *org, enum role actor_role,
                            const char *target_id, enum role to, enum role *from,
                            struct tenancy_err *err) {
  struct org_scope scope;
  scope_of(org, &scope);
  int rc = store_member_role(tx, &scope, target_id, from);
  if (rc == KEEL_ENOTFOUND) return not_member(err);
  if (rc) return rc;
  if (*from == to) return 0;
  int64_t owners = 0;
  rc = store_member_count_role(tx, &scope, ROLE_OWNER, &owners);
  if (rc) return rc;
  rc = tenancy_role_change_rule(actor_role, *from, to, owners, err);
  if (rc) return rc;
  if (to == ROLE_OWNER) {
    rc = tenancy_owner_capacity(tx, target_id, org->plan, err);
    if (rc) return rc;
  }
  return store_member_set_role(tx, &scope, target_id, to);
}

int tenancy_member_remove(struct store_tx *tx, const struct org *org, const char *actor_id,
                          enum role actor_role, const char *target_id, enum role *was,
                          struct tenancy_err *err) {
  struct org_scope scope;
  scope_of(org, &scope);
  int rc = store_member_role(tx, &scope, target_id, was);
  if (rc == KEEL_ENOTFOUND) return not_member(err);
  if (rc) return rc;
  int64_t owners = 0;
  rc = store_member_count_role(tx, &scope, ROLE_OWNER, &owners);
  if (rc) return rc;
  bool self = strcmp(actor_id, target_id) == 0;
  rc = tenancy_removal_rule(actor_role, *was, self, owners, err);
  if (rc) return rc;
  return store_member_delete(tx, &scope, target_id);
}

int tenancy_ownership_transfer(struct store_tx *tx, const struct org *org, const char *from_id,
                               const char *to_id, struct tenancy_err *err) {
  struct org_scope scope;
  scope_of(org, &scope);
  if (strcmp(from_id, to_id) == 0) {
    tenancy_err_set(err, "validation_failed", "transfer ownership to another member");
    if (err) err->field = "user_id";
    return KEEL_EINVAL;
  }
  enum role from_role = ROLE_NONE, to_role = ROLE_NONE;
  int rc = store_member_role(tx, &scope, from_id, &from_role);
  if (rc && rc != KEEL_ENOTFOUND) return rc;
  if (from_role != ROLE_OWNER) {
    tenancy_err_set(err, "forbidden", "only an owner can transfer ownership");
    return KEEL_EDENIED;
  }
  rc = store_member_role(tx, &scope, to_id, &to_role);
  if (rc == KEEL_ENOTFOUND) return not_member(err);
  if (rc) return rc;
  if (to_role != ROLE_OWNER) {
    rc = tenancy_owner_capacity(tx, to_id, org->plan, err);
    if (rc) return rc;
    rc = store_member_set_role(tx, &scope, to_id, ROLE_OWNER);
    if (rc) return rc;
  }
  return store_member_set_role(tx, &scope, from_id, ROLE_ADMIN);
}
