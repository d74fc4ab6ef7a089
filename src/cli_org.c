/*
 * cli_org.c — `keel org create`: creates an organisation with an existing
 * user as its owner, on the store directly (works beside a running server on
 * the same data directory).
 *
 * The same rules as POST /v1/orgs (domain/tenancy.c): name, slug (generated
 * from the name when omitted), plan (default free), and the owner's limit of
 * free orgs. The creation and its audit entry (org.created, actor system,
 * via cli) are one write.
 *
 * Output is for scripts: the org id on the first line of stdout, then
 * "slug: <slug>". Problems go to stderr; exit 0, 1 (refused or failed), 2
 * (usage).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/errors.h"
#include "core/xmalloc.h"
#include "domain/audit.h"
#include "domain/iam.h"
#include "domain/plans.h"
#include "domain/tenancy.h"
#include "store/users.h"

static const struct command org_create_command = {
    "org create", "Create an organisation owned by an existing user.",
    "org create --name N [--slug S] --owner EMAIL [--plan P]", NULL};

static const char create_flags_help[] =
    "  --name N            the organisation's name (1 to 100 characters; required)\n"
    "  --slug S            its slug (3 to 48 of a-z, 0-9, '-'); omitted: from the name\n"
    "  --owner EMAIL       the email of the user who owns it (required)\n"
    "  --plan P            free (default), pro, team, enterprise\n";

struct org_args {
  struct app_flags flags;
  const char *name, *slug, *owner, *plan;
};

/* Parses flags. Returns 0, -1 after printing --help, or EXIT_USAGE. */
static int parse_args(const struct command *c, int argc, char **argv, struct org_args *a) {
  memset(a, 0, sizeof(*a));
  const struct cli_flag flags[] = {
      {"name", &a->name, NULL},
      {"slug", &a->slug, NULL},
      {"owner", &a->owner, NULL},
      {"plan", &a->plan, NULL},
  };
  int rc = cli_parse(c, create_flags_help, argc, argv, flags, 4, NULL, 0, &a->flags);
  if (rc) return rc;
  if (!a->name || !a->owner) {
    fprintf(stderr, "keel %s: --name and --owner are required\n", c->name);
    return EXIT_USAGE;
  }
  return 0;
}

struct create_job {
  const struct org_args *args;
  char owner_norm[256];
  struct user owner;
  struct org org;
  const char *why;
};

static int create_tx(struct store_tx *tx, void *arg) {
  struct create_job *j = arg;
  int rc = store_user_by_email(tx, j->owner_norm, &j->owner);
  if (rc) return rc;
  rc = tenancy_org_create(tx, j->owner.id, j->args->name, j->args->slug, j->args->plan, &j->org,
                          &j->why);
  if (rc) return rc;
  json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:s}", "via", "cli", "name", j->org.name, "slug",
                        j->org.slug, "plan", j->org.plan, "owner", j->owner.id);
  struct audit_entry e = {.org_id = j->org.id,
                          .actor_type = "system",
                          .action = "org.created",
                          .resource_type = "org",
                          .resource_id = j->org.id,
                          .success = true,
                          .details = d};
  rc = audit_append(tx, &e, NULL);
  json_decref(d);
  return rc;
}

/* The message for a refused creation. */
static const char *create_problem(int rc, const struct create_job *j) {
  switch (rc) {
    case KEEL_ENOTFOUND:
      return "no user with the --owner email";
    case KEEL_ECONFLICT:
      return "the slug is taken";
    case KEEL_EINVAL:
    case KEEL_EDENIED:
      return j->why ? j->why : "refused";
    default:
      return NULL;
  }
}

static int org_create(int argc, char **argv, char **envp) {
  const struct command *c = &org_create_command;
  struct org_args a;
  int rc = parse_args(c, argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  struct create_job *j = xcalloc(1, sizeof(*j));
  j->args = &a;
  if (iam_email_normalise(a.owner, j->owner_norm, sizeof(j->owner_norm)) != 0) {
    fprintf(stderr, "keel %s: --owner is not a valid email address\n", c->name);
    xfree(j);
    return EXIT_USAGE;
  }
  struct config cfg;
  struct store *store;
  if ((rc = cli_open_store(&a.flags, envp, &cfg, &store))) {
    xfree(j);
    return rc;
  }
  rc = store_write(store, create_tx, j);
  if (rc == 0) {
    printf("%s\nslug: %s\n", j->org.id, j->org.slug);
  } else if (create_problem(rc, j)) {
    fprintf(stderr, "keel %s: %s\n", c->name, create_problem(rc, j));
  } else {
    fprintf(stderr, "keel %s: the store failed (%s)\n", c->name, keel_strerror(rc));
  }
  xfree(j);
  cli_close_store(&cfg, store);
  return rc ? 1 : 0;
}

int cmd_org(int argc, char **argv, char **envp) {
  const char *sub = argc > 1 ? argv[1] : "";
  if (strcmp(sub, "create") == 0) return org_create(argc - 1, argv + 1, envp);
  if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
    printf("Usage: keel %s\n\n%s\n\n%s", org_create_command.usage, org_create_command.summary,
           create_flags_help);
    return 0;
  }
  fprintf(stderr, "keel org: %s (create; see keel org --help)\n",
          sub[0] ? "unknown subcommand" : "a subcommand is required");
  return EXIT_USAGE;
}
