/*
 * cli_bootstrap.c — `keel bootstrap [--email E]`: the first start of an
 * empty installation.
 *
 * When the store has no users, one write transaction creates a verified
 * platform administrator (a generated password that meets the policy), an
 * organisation "Default" (slug "default") owned by it, and their audit
 * entries (actor: system), then the credentials are printed once:
 *
 *   keel: first start — administrator admin@keel.local / password <pw> ;
 *   organisation default (<id>)
 *
 * (one line). Then it creates an API key for that organisation with the
 * scopes ingest, read and admin and prints it once, on stderr so that
 * stdout keeps its one-line form for scripts:
 *
 *   keel: API key for organisation default: kl_live_… (scopes ingest, read,
 *   admin; shown once)
 *
 * (a failure there is reported and leaves the rest in place: `keel key
 * create --org default` makes one later). When any user exists it prints
 * "keel: already initialised"
 * and exits 0 without changing anything, so it is safe to run on every
 * start. The "no users" check and the inserts share the transaction, and
 * the store has one writer, so two concurrent bootstraps cannot both
 * initialise.
 *
 * The password is hashed (argon2id) before the transaction, so the writer
 * is not held for it; it is wiped from memory after printing.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "core/xmalloc.h"
#include "domain/apikeys.h"
#include "domain/audit.h"
#include "domain/iam.h"
#include "domain/password.h"
#include "domain/rbac.h"
#include "domain/tenancy.h"
#include "store/admin.h"
#include "store/users.h"

#define BOOTSTRAP_EMAIL_DEFAULT "admin@keel.local"
#define BOOTSTRAP_ADMIN_NAME    "Administrator"
#define BOOTSTRAP_ORG_NAME      "Default"
#define BOOTSTRAP_ORG_SLUG      "default"
#define BOOTSTRAP_PASSWORD_SIZE 40

static const char bootstrap_flags_help[] =
    "  --email E           the administrator's email (default " BOOTSTRAP_EMAIL_DEFAULT ")\n";

static const struct command bootstrap_command = {
    "bootstrap",
    "First start: when the store has no users, create a platform administrator and an "
    "organisation, and print the credentials once. Does nothing when users exist.",
    "bootstrap [--email E] [--data-dir DIR] [--store URL] [--config FILE]",
    cmd_bootstrap,
};

/* 18 random bytes as base64url (24 characters, 144 bits), drawn again in
 * the rare case a character class the policy needs is missing. */
static void generate_password(char out[BOOTSTRAP_PASSWORD_SIZE]) {
  const char *code, *message;
  do {
    crypto_token(18, out, BOOTSTRAP_PASSWORD_SIZE);
  } while (password_policy(out, &code, &message) != 0);
}

struct bootstrap_job {
  struct iam_new_user nu; /* prepared (hashed) before the transaction */
  bool already;           /* users existed: nothing was done */
  struct org org;
  const char *why;
};

static int system_audit(struct store_tx *tx, const char *org_id, const char *action,
                        const char *rtype, const char *rid, json_t *details) {
  struct audit_entry e = {.org_id = org_id,
                          .actor_type = "system",
                          .action = action,
                          .resource_type = rtype,
                          .resource_id = rid,
                          .success = true,
                          .details = details};
  int rc = audit_append(tx, &e, NULL);
  json_decref(details);
  return rc;
}

static int bootstrap_tx(struct store_tx *tx, void *arg) {
  struct bootstrap_job *j = arg;
  int64_t users = 0;
  int rc = store_admin_user_count(tx, &users);
  if (rc) return rc;
  if (users > 0) {
    j->already = true;
    return 0;
  }
  const char *uid = j->nu.user.id;
  rc = iam_user_insert(tx, &j->nu, NULL);
  if (rc == 0) rc = store_user_set_platform_admin(tx, uid, true);
  if (rc == 0) {
    rc = system_audit(tx, NULL, "user.created", "user", uid,
                      json_pack("{s:s, s:b}", "via", "bootstrap", "verified", true));
  }
  if (rc == 0) {
    rc = system_audit(tx, NULL, "user.promoted", "user", uid,
                      json_pack("{s:s}", "via", "bootstrap"));
  }
  if (rc) return rc;
  rc = tenancy_org_create(tx, uid, BOOTSTRAP_ORG_NAME, BOOTSTRAP_ORG_SLUG, NULL, &j->org, &j->why);
  if (rc) return rc;
  return system_audit(
      tx, j->org.id, "org.created", "org", j->org.id,
      json_pack("{s:s, s:s, s:s, s:s, s:s}", "via", "bootstrap", "name", j->org.name, "slug",
                j->org.slug, "plan", j->org.plan, "owner_id", uid));
}

/* The first API key, for org (keys area: cli_key.c), printed once on stderr. */
static void bootstrap_api_key(const struct config *cfg, struct store *store,
                              const struct org *org) {
  char key[APIKEY_MAX], prefix[16], id[ID_STR_SIZE];
  const char *why = NULL;
  int rc = cli_key_issue(cfg, store, org->id, "bootstrap", SCOPE_INGEST | SCOPE_READ | SCOPE_ADMIN,
                         true, key, prefix, id, &why);
  if (rc == 0) {
    fprintf(stderr,
            "keel: API key for organisation %s: %s (scopes ingest, read, admin; shown once)\n",
            org->slug, key);
  } else {
    fprintf(stderr,
            "keel bootstrap: no API key was created (%s); make one with: keel key create --org "
            "%s\n",
            why ? why : keel_strerror(rc), org->slug);
  }
  crypto_wipe(key, sizeof(key));
}

static int count_users_tx(struct store_tx *tx, void *arg) {
  return store_admin_user_count(tx, arg);
}

/* Parses the flags. Returns 0, -1 after --help, or EXIT_USAGE. */
static int parse_args(int argc, char **argv, struct app_flags *flags, const char **email) {
  *email = NULL;
  const struct cli_flag own[] = {{"email", email, NULL}};
  int rc = cli_parse(&bootstrap_command, bootstrap_flags_help, argc, argv, own, 1, NULL, 0, flags);
  if (!*email) *email = BOOTSTRAP_EMAIL_DEFAULT;
  return rc;
}

int cmd_bootstrap(int argc, char **argv, char **envp) {
  struct app_flags flags;
  const char *email;
  int rc = parse_args(argc, argv, &flags, &email);
  if (rc) return rc < 0 ? 0 : rc;
  char norm[256];
  if (iam_email_normalise(email, norm, sizeof(norm)) != 0) {
    fprintf(stderr, "keel bootstrap: --email is not a valid email address\n");
    return EXIT_USAGE;
  }
  struct config cfg;
  struct store *store;
  if ((rc = cli_open_store(&flags, envp, &cfg, &store))) return rc;

  /* The common case on a restart: nothing to do, no password to hash. The
   * write transaction checks again. */
  int64_t users = 0;
  rc = store_read(store, count_users_tx, &users);
  if (rc || users > 0) {
    if (rc)
      fprintf(stderr, "keel bootstrap: the store failed (%s)\n", keel_strerror(rc));
    else
      printf("keel: already initialised\n");
    cli_close_store(&cfg, store);
    return rc ? 1 : 0;
  }
  char password[BOOTSTRAP_PASSWORD_SIZE];
  generate_password(password);
  struct bootstrap_job *j = xcalloc(1, sizeof(*j));
  const char *why = NULL;
  rc = iam_user_prepare(email, password, BOOTSTRAP_ADMIN_NAME, true, &j->nu, &why);
  if (rc) {
    fprintf(stderr, "keel bootstrap: %s\n", why ? why : "cannot hash the password");
  } else {
    rc = store_write(store, bootstrap_tx, j);
    if (rc == 0 && j->already) {
      printf("keel: already initialised\n");
    } else if (rc == 0) {
      printf("keel: first start — administrator %s / password %s ; organisation %s (%s)\n",
             j->nu.user.email, password, j->org.slug, j->org.id);
      fflush(stdout);
      bootstrap_api_key(&cfg, store, &j->org);
    } else {
      fprintf(stderr, "keel bootstrap: %s (%s)\n",
              j->why && j->why[0] ? j->why : "the store refused the first administrator",
              keel_strerror(rc));
    }
  }
  fflush(stdout);
  crypto_wipe(password, sizeof(password));
  xfree_secret(j, sizeof(*j));
  cli_close_store(&cfg, store);
  return rc ? 1 : 0;
}
