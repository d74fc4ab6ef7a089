/*
 * cli_key.c — `keel key create`: an API key for an org, on the store
 * directly (works while a server runs on the same data directory).
 *
 * The key is hashed with the MAC key the server derives from the same
 * server secret (app_secret: the `secret` setting or data_dir/keel.secret),
 * so the server accepts it. The plan's key limit applies as in the API.
 *
 * Output is for scripts: the key on the first line of stdout (shown this
 * once: only its HMAC is stored), then "id: …" and "prefix: …". Problems go
 * to stderr.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/apikeys.h"
#include "domain/audit.h"
#include "domain/rbac.h"
#include "store/keys.h"

static const struct command key_commands[] = {
    {"key create", "Create an API key for an organisation; the key is printed once.",
     "key create --org SLUG [--name N] [--scopes ingest,read] [--env live|test]", NULL},
};

static const char create_flags_help[] =
    "  --org SLUG          the organisation (slug or id; required)\n"
    "  --name N            the key's name (default: cli)\n"
    "  --scopes LIST       comma-separated: ingest, read, admin (default: ingest,read)\n"
    "  --env live|test     kl_live_ (environment production; default) or kl_test_ (test)\n";

struct key_args {
  struct app_flags flags;
  const char *org, *name, *scopes, *env;
};

/* "ingest,read" → bits; 0 when a name is unknown, repeated or the list empty. */
static unsigned parse_scope_list(const char *list) {
  unsigned bits = 0;
  struct slice rest = slice_from_cstr(list);
  if (rest.len == 0) return 0;
  while (rest.len) {
    struct slice one;
    slice_cut(rest, ',', &one, &rest);
    unsigned bit = apikeys_scope_parse(slice_trim(one));
    if (!bit || (bits & bit)) return 0;
    bits |= bit;
  }
  return bits;
}

static int parse_args(const struct command *c, int argc, char **argv, struct key_args *a) {
  memset(a, 0, sizeof(*a));
  const struct cli_flag flags[] = {
      {"org", &a->org, NULL},
      {"name", &a->name, NULL},
      {"scopes", &a->scopes, NULL},
      {"env", &a->env, NULL},
  };
  int rc = cli_parse(c, create_flags_help, argc, argv, flags, 4, NULL, 0, &a->flags);
  if (rc) return rc;
  if (!a->org || !a->org[0]) {
    fprintf(stderr, "keel %s: --org is required\n", c->name);
    return EXIT_USAGE;
  }
  return 0;
}

struct issue_job {
  const char *org_ref;
  struct apikey_spec spec;
  const uint8_t *mac_key;
  int64_t now;
  struct org_scope scope;
  struct apikey_created out;
  const char *why;
};

static int issue_tx(struct store_tx *tx, void *arg) {
  struct issue_job *j = arg;
  int rc = store_apikey_org_resolve(tx, j->org_ref, &j->scope);
  if (rc) return rc;
  rc = apikeys_create(tx, &j->scope, &j->spec, j->mac_key, j->now, &j->out, &j->why);
  if (rc) return rc;
  json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:b}", "via", "cli", "prefix", j->out.prefix, "name",
                        j->out.row.name, "environment", j->out.row.env, "live", j->out.row.live);
  json_t *scopes = json_array();
  for (size_t i = 0; i < sizeof(apikeys_scope_bits) / sizeof(apikeys_scope_bits[0]); i++) {
    if (j->spec.scopes & apikeys_scope_bits[i]) {
      json_array_append_new(scopes, json_string(apikeys_scope_name(apikeys_scope_bits[i])));
    }
  }
  json_object_set_new(d, "scopes", scopes);
  struct audit_entry e = {.org_id = j->scope.org_id,
                          .actor_type = "system",
                          .action = "api_key.created",
                          .resource_type = "api_key",
                          .resource_id = j->out.id,
                          .success = true,
                          .details = d};
  rc = audit_append(tx, &e, NULL);
  json_decref(d);
  return rc;
}

int cli_key_issue(const struct config *cfg, struct store *store, const char *org_ref,
                  const char *name, unsigned scopes, bool live, char *key_out, char *prefix_out,
                  char *id_out, const char **why) {
  uint8_t secret[APP_SECRET_MAX];
  int secret_len = app_secret(cfg, secret);
  if (secret_len < 0) {
    *why = "cannot read the server secret";
    return KEEL_EIO;
  }
  uint8_t mac_key[APIKEY_MAC_KEY_LEN];
  apikeys_mac_key_derive(secret, (size_t)secret_len, mac_key);
  crypto_wipe(secret, sizeof(secret));
  struct issue_job *j = xcalloc(1, sizeof(*j));
  j->org_ref = org_ref;
  j->spec = (struct apikey_spec){.name = name, .scopes = scopes, .live = live};
  j->mac_key = mac_key;
  j->now = time_now_us();
  int rc = store_write(store, issue_tx, j);
  crypto_wipe(mac_key, sizeof(mac_key));
  *why = NULL;
  if (rc == 0) {
    memcpy(key_out, j->out.key, APIKEY_MAX);
    memcpy(prefix_out, j->out.prefix, 16);
    memcpy(id_out, j->out.id, ID_STR_SIZE);
  } else if (rc == KEEL_ENOTFOUND) {
    *why = "no such organisation";
  } else if (rc == KEEL_EDENIED) {
    static char msg[128];
    snprintf(msg, sizeof(msg), "the %s plan allows %lld active API keys; revoke one first",
             j->out.plan, (long long)j->out.plan_limit);
    *why = msg;
  } else if (rc == KEEL_EINVAL) {
    *why = j->why ? j->why : "invalid key settings";
  } else {
    *why = keel_strerror(rc);
  }
  xfree_secret(j, sizeof(*j));
  return rc;
}

static int key_create(int argc, char **argv, char **envp) {
  const struct command *c = &key_commands[0];
  struct key_args a;
  int rc = parse_args(c, argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  unsigned scopes = parse_scope_list(a.scopes ? a.scopes : "ingest,read");
  if (!scopes) {
    fprintf(stderr, "keel %s: --scopes takes distinct names from ingest, read, admin\n", c->name);
    return EXIT_USAGE;
  }
  bool live = true;
  if (a.env && strcmp(a.env, "test") == 0) {
    live = false;
  } else if (a.env && strcmp(a.env, "live") != 0) {
    fprintf(stderr, "keel %s: --env is live or test\n", c->name);
    return EXIT_USAGE;
  }
  const char *name = a.name ? a.name : "cli";
  if (!name[0] || strlen(name) > APIKEY_NAME_MAX) {
    fprintf(stderr, "keel %s: --name must be 1 to %d bytes\n", c->name, APIKEY_NAME_MAX);
    return EXIT_USAGE;
  }
  struct config cfg;
  struct store *store;
  if ((rc = cli_open_store(&a.flags, envp, &cfg, &store))) return rc;
  char key[APIKEY_MAX], prefix[16], id[ID_STR_SIZE];
  const char *why = NULL;
  rc = cli_key_issue(&cfg, store, a.org, name, scopes, live, key, prefix, id, &why);
  if (rc == 0) {
    printf("%s\nid: %s\nprefix: %s\n", key, id, prefix);
    fflush(stdout);
    fprintf(stderr, "keel key create: store this key now; it is not shown again\n");
  } else {
    fprintf(stderr, "keel key create: %s\n", why);
  }
  crypto_wipe(key, sizeof(key));
  cli_close_store(&cfg, store);
  return rc == 0 ? 0 : 1;
}

int cmd_key(int argc, char **argv, char **envp) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    FILE *f = argc < 2 ? stderr : stdout;
    fprintf(f,
            "Usage: keel key create --org SLUG [--name N] [--scopes ingest,read] "
            "[--env live|test]\n\nRun 'keel key create --help' for the flags.\n");
    return argc < 2 ? EXIT_USAGE : 0;
  }
  if (strcmp(argv[1], "create") == 0) return key_create(argc - 1, argv + 1, envp);
  fprintf(stderr, "keel key: unknown subcommand '%s' (see keel key --help)\n", argv[1]);
  return EXIT_USAGE;
}
