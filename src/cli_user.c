/*
 * cli_user.c — `keel user create` and `keel user promote`: user
 * administration on the store directly (works while a server runs on the
 * same data directory: the embedded store takes turns through SQLite's
 * locks).
 *
 * Output is for scripts: `user create` prints the new user's id on the first
 * line of stdout, and — only when it generated the password — a second line
 * "password: <password>", shown this once. Problems go to stderr.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "core/xmalloc.h"
#include "domain/audit.h"
#include "domain/iam.h"
#include "domain/password.h"

static const struct command user_commands[] = {
    {"user create", "Create a user (the password is generated and printed once when omitted).",
     "user create --email E [--password P] [--name N] [--verified]", NULL},
    {"user promote", "Make a user a platform administrator.", "user promote --email E", NULL},
};

static const char create_flags_help[] =
    "  --email E           the user's email address (required)\n"
    "  --password P        the password (8+ chars, upper, lower, digit); omitted: generated\n"
    "  --name N            display name (default: the email's local part)\n"
    "  --verified          mark the email verified (no verification mail)\n";
static const char promote_flags_help[] =
    "  --email E           the user's email address (required)\n";

struct user_args {
  struct app_flags flags;
  const char *email, *password, *name;
  bool verified;
};

/* Parses flags. Returns 0, -1 after printing --help, or EXIT_USAGE. */
static int parse_args(const struct command *c, const char *help, bool create, int argc, char **argv,
                      struct user_args *a) {
  memset(a, 0, sizeof(*a));
  const struct cli_flag flags[] = {
      {"email", &a->email, NULL},
      {"password", &a->password, NULL},
      {"name", &a->name, NULL},
      {"verified", NULL, &a->verified},
  };
  int rc = cli_parse(c, help, argc, argv, flags, create ? 4 : 1, NULL, 0, &a->flags);
  if (rc) return rc;
  if (!a->email) {
    fprintf(stderr, "keel %s: --email is required\n", c->name);
    return EXIT_USAGE;
  }
  return 0;
}

/* A random password that meets the policy (24 base64url chars; retried in
 * the rare case one class is missing). */
static void generate_password(char out[40]) {
  const char *code, *message;
  do {
    crypto_token(18, out, 40);
  } while (password_policy(out, &code, &message) != 0);
}

static void system_audit(struct audit_entry *e, const char *action, const char *user_id) {
  *e = (struct audit_entry){.actor_type = "system",
                            .action = action,
                            .resource_type = "user",
                            .resource_id = user_id,
                            .success = true};
}

struct create_job {
  struct iam_new_user nu;
};

static int create_tx(struct store_tx *tx, void *arg) {
  struct create_job *j = arg;
  int rc = iam_user_insert(tx, &j->nu, NULL);
  if (rc) return rc;
  struct audit_entry e;
  system_audit(&e, "user.created", j->nu.user.id);
  json_t *d = json_pack("{s:s, s:b}", "via", "cli", "verified", j->nu.user.verified);
  e.details = d;
  rc = audit_append(tx, &e, NULL);
  json_decref(d);
  return rc;
}

static int user_create(int argc, char **argv, char **envp) {
  const struct command *c = &user_commands[0];
  struct user_args a;
  int rc = parse_args(c, create_flags_help, true, argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  struct config cfg;
  struct store *store;
  if ((rc = cli_open_store(&a.flags, envp, &cfg, &store))) return rc;
  char generated[40] = "";
  if (!a.password) generate_password(generated);
  struct create_job *j = xcalloc(1, sizeof(*j));
  const char *why = NULL;
  rc = iam_user_prepare(a.email, a.password ? a.password : generated, a.name, a.verified, &j->nu,
                        &why);
  if (rc) {
    fprintf(stderr, "keel user create: %s\n", why ? why : "cannot hash the password");
    xfree_secret(j, sizeof(*j));
    cli_close_store(&cfg, store);
    return rc == KEEL_EINVAL ? EXIT_USAGE : 1;
  }
  rc = store_write(store, create_tx, j);
  if (rc == 0) {
    printf("%s\n", j->nu.user.id);
    if (generated[0]) printf("password: %s\n", generated);
  } else if (rc == KEEL_ECONFLICT) {
    fprintf(stderr, "keel user create: a user with this email exists\n");
  } else {
    fprintf(stderr, "keel user create: the store failed (%s)\n", keel_strerror(rc));
  }
  crypto_wipe(generated, sizeof(generated));
  xfree_secret(j, sizeof(*j));
  cli_close_store(&cfg, store);
  return rc ? 1 : 0;
}

struct promote_job {
  char email_norm[256];
  struct user user;
};

static int promote_tx(struct store_tx *tx, void *arg) {
  struct promote_job *j = arg;
  int rc = store_user_by_email(tx, j->email_norm, &j->user);
  if (rc) return rc;
  rc = store_user_set_platform_admin(tx, j->user.id, true);
  if (rc) return rc;
  struct audit_entry e;
  system_audit(&e, "user.promoted", j->user.id);
  json_t *d = json_pack("{s:s}", "via", "cli");
  e.details = d;
  rc = audit_append(tx, &e, NULL);
  json_decref(d);
  return rc;
}

static int user_promote(int argc, char **argv, char **envp) {
  const struct command *c = &user_commands[1];
  struct user_args a;
  int rc = parse_args(c, promote_flags_help, false, argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  struct promote_job j;
  if (iam_email_normalise(a.email, j.email_norm, sizeof(j.email_norm)) != 0) {
    fprintf(stderr, "keel user promote: not a valid email address\n");
    return EXIT_USAGE;
  }
  struct config cfg;
  struct store *store;
  if ((rc = cli_open_store(&a.flags, envp, &cfg, &store))) return rc;
  rc = store_write(store, promote_tx, &j);
  if (rc == 0) {
    printf("%s\n", j.user.id);
  } else if (rc == KEEL_ENOTFOUND) {
    fprintf(stderr, "keel user promote: no user with this email\n");
  } else {
    fprintf(stderr, "keel user promote: the store failed (%s)\n", keel_strerror(rc));
  }
  cli_close_store(&cfg, store);
  return rc ? 1 : 0;
}

int cmd_user(int argc, char **argv, char **envp) {
  const char *sub = argc > 1 ? argv[1] : "";
  if (strcmp(sub, "create") == 0) return user_create(argc - 1, argv + 1, envp);
  if (strcmp(sub, "promote") == 0) return user_promote(argc - 1, argv + 1, envp);
  if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
    printf(
        "Usage: keel user create --email E [--password P] [--name N] [--verified]\n"
        "       keel user promote --email E\n\n"
        "Run 'keel user create --help' or 'keel user promote --help' for the flags.\n");
    return 0;
  }
  fprintf(stderr, "keel user: %s (create | promote; see keel user --help)\n",
          sub[0] ? "unknown subcommand" : "a subcommand is required");
  return EXIT_USAGE;
}
