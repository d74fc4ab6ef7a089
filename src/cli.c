/*
 * cli.c — `keel <command> [flags]`.
 *
 * Commands are rows of one table: name, one-line summary, usage text, and
 * the function. Flags common to commands that touch data (--data-dir,
 * --store, --config, --set) are parsed by one helper so every command takes
 * them the same way.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "cli.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/log.h"
#include "keel_build.h"
#include "store/store.h"

static const struct command *commands(size_t *n);

static const char common_flags_help[] =
    "  --data-dir DIR      data directory of the embedded store (default ./keel-data)\n"
    "  --store URL         store URL (default: the embedded SQLite store in --data-dir)\n"
    "  --config FILE       configuration file (also KEEL_CONFIG)\n"
    "  --set NAME=VALUE    set any configuration setting (repeatable)\n"
    "  -h, --help          show this help\n";

void cli_print_usage(const struct command *c, const char *extra_flags_help) {
  printf("Usage: keel %s\n\n%s\n\n%s%s", c->usage, c->summary,
         extra_flags_help ? extra_flags_help : "", common_flags_help);
}

int cli_common_flag(int opt, const char *arg, struct app_flags *flags) {
  switch (opt) {
    case CLI_OPT_DATA_DIR:
      flags->data_dir = arg;
      return 1;
    case CLI_OPT_STORE:
      flags->store_url = arg;
      return 1;
    case CLI_OPT_CONFIG:
      flags->config_file = arg;
      return 1;
    case CLI_OPT_SET:
      if (flags->nsets == (int)(sizeof(flags->sets) / sizeof(flags->sets[0]))) {
        fprintf(stderr, "keel: too many --set flags\n");
        return EXIT_USAGE;
      }
      flags->sets[flags->nsets++] = arg;
      return 1;
    default:
      return 0;
  }
}

int cli_parse(const struct command *c, const char *flags_help, int argc, char **argv,
              const struct cli_flag *flags, size_t n, const char **positional,
              size_t max_positional, struct app_flags *common) {
  static const struct option common_opts[] = {CLI_COMMON_OPTIONS};
  const size_t ncommon = sizeof(common_opts) / sizeof(common_opts[0]);
  struct option opts[CLI_FLAGS_MAX + sizeof(common_opts) / sizeof(common_opts[0]) + 1];
  if (n > CLI_FLAGS_MAX) n = CLI_FLAGS_MAX;
  for (size_t i = 0; i < n; i++) {
    opts[i] = (struct option){flags[i].name, flags[i].value ? required_argument : no_argument, NULL,
                              CLI_OPT_FIRST_FREE + (int)i};
  }
  memcpy(&opts[n], common_opts, sizeof(common_opts));
  memset(&opts[n + ncommon], 0, sizeof(opts[0]));
  memset(common, 0, sizeof(*common));
  for (size_t i = 0; i < max_positional; i++) positional[i] = NULL;
  optind = 1;
  opterr = 0;
  int o;
  while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    int rc = cli_common_flag(o, optarg, common);
    if (rc == EXIT_USAGE) return rc;
    if (rc == 1) continue;
    if (o == 'h') {
      cli_print_usage(c, flags_help);
      return -1;
    }
    if (o >= CLI_OPT_FIRST_FREE && o < CLI_OPT_FIRST_FREE + (int)n) {
      const struct cli_flag *f = &flags[o - CLI_OPT_FIRST_FREE];
      if (f->value) *f->value = optarg;
      if (f->on) *f->on = true;
      continue;
    }
    if (o == ':') {
      fprintf(stderr, "keel %s: flag '%s' needs a value\n", c->name, argv[optind - 1]);
    } else {
      fprintf(stderr, "keel %s: unknown flag '%s' (see keel %s --help)\n", c->name,
              argv[optind - 1], c->name);
    }
    return EXIT_USAGE;
  }
  for (size_t i = 0; optind < argc; i++, optind++) {
    if (i == max_positional) {
      fprintf(stderr, "keel %s: unexpected argument '%s'\n", c->name, argv[optind]);
      return EXIT_USAGE;
    }
    positional[i] = argv[optind];
  }
  return 0;
}

int cli_open_store(const struct app_flags *flags, char **envp, struct config *cfg,
                   struct store **store) {
  *store = NULL;
  if (app_config(flags, envp, cfg) != 0) {
    config_free(cfg);
    return EXIT_USAGE;
  }
  app_logging(cfg);
  if (app_init(cfg) != 0 || app_store_open(cfg, true, store) != 0) {
    config_free(cfg);
    return 1;
  }
  return 0;
}

void cli_close_store(struct config *cfg, struct store *store) {
  store_close(store);
  config_free(cfg);
}

/* Flags of serve and migrate: the common ones, plus --listen and --dev for
 * serve. Returns 0, -1 after --help, or EXIT_USAGE. */
static int parse_common(const struct command *c, int argc, char **argv, bool allow_serve,
                        struct app_flags *flags) {
  const struct cli_flag serve_flags[] = {
      {"listen", &flags->listen, NULL},
      {"dev", NULL, &flags->dev},
  };
  return cli_parse(c, NULL, argc, argv, serve_flags, allow_serve ? 2 : 0, NULL, 0, flags);
}

static const struct command *find_command(const char *name) {
  size_t n;
  const struct command *cs = commands(&n);
  for (size_t i = 0; i < n; i++) {
    if (strcmp(cs[i].name, name) == 0) return &cs[i];
  }
  return NULL;
}

/* --- commands ----------------------------------------------------------- */

static int cmd_serve(int argc, char **argv, char **envp) {
  const struct command *c = find_command("serve");
  struct app_flags flags;
  int rc = parse_common(c, argc, argv, true, &flags);
  if (rc) return rc < 0 ? 0 : rc;
  struct config cfg;
  if (app_config(&flags, envp, &cfg) != 0) {
    config_free(&cfg);
    return EXIT_USAGE;
  }
  rc = app_serve(&cfg);
  config_free(&cfg);
  return rc;
}

static int cmd_migrate(int argc, char **argv, char **envp) {
  const struct command *c = find_command("migrate");
  struct app_flags flags;
  int rc = parse_common(c, argc, argv, false, &flags);
  if (rc) return rc < 0 ? 0 : rc;
  struct config cfg;
  if (app_config(&flags, envp, &cfg) != 0) {
    config_free(&cfg);
    return EXIT_USAGE;
  }
  app_logging(&cfg);
  struct store *store = NULL;
  rc = 1;
  if (app_init(&cfg) != 0) {
    config_free(&cfg);
    return 1;
  }
  if (app_store_open(&cfg, false, &store) == 0) {
    char err[512];
    int applied = 0, current = 0, latest = 0;
    if (store_migrate(store, &applied, err, sizeof(err)) != 0) {
      fprintf(stderr, "keel migrate: %s\n", err);
    } else {
      store_schema_version(store, &current, &latest);
      printf("migrated: %d applied, schema version %d (%s)\n", applied, current,
             store_backend(store));
      rc = 0;
    }
    store_close(store);
  }
  config_free(&cfg);
  return rc;
}

static int cmd_version(int argc, char **argv, char **envp) {
  (void)envp;
  const struct command *c = find_command("version");
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("Usage: keel %s\n\n%s\n", c->usage, c->summary);
    return 0;
  }
  if (argc > 1) {
    fprintf(stderr, "keel version: unexpected argument '%s'\n", argv[1]);
    return EXIT_USAGE;
  }
  printf("keel %s (commit %s)\n", KEEL_VERSION, KEEL_COMMIT);
  return 0;
}

static int cmd_help(int argc, char **argv, char **envp);

static const struct command command_table[] = {
    {"serve", "Run the HTTP API server (and the embedded writer) until SIGTERM/SIGINT.",
     "serve [--listen ADDR] [--data-dir DIR] [--store URL] [--config FILE] [--dev]\n"
     "  --listen ADDR       host:port to listen on (default 127.0.0.1:8080)\n"
     "  --dev               development mode: test clock, emails in the log",
     cmd_serve},
    {"migrate", "Apply pending schema migrations to the store, then exit.",
     "migrate [--data-dir DIR] [--store URL] [--config FILE]", cmd_migrate},
    {"user", "Manage users: create one, or make one a platform administrator.",
     "user create --email E [--password P] [--name N] [--verified] | user promote --email E",
     cmd_user},
    {"org", "Manage organisations: create one with an owner.",
     "org create --name N [--slug S] --owner EMAIL [--plan P]", cmd_org},
    {"key", "Manage API keys: create one (the key is printed once).",
     "key create --org SLUG [--name N] [--scopes ingest,read] [--env live|test]", cmd_key},
    {"bootstrap",
     "First start: create an administrator, an organisation and an API key when the store has "
     "no users yet, and print them once.",
     "bootstrap [--email E]", cmd_bootstrap},
    {"prices", "Model prices: import a LiteLLM-format price file as keel's price override.",
     "prices import FILE [--out PATH] [--effective-from YYYY-MM-DD]", cmd_prices},
    {"version", "Print the version and exit.", "version", cmd_version},
    {"help", "Show help for keel or one command.", "help [COMMAND]", cmd_help},
};

static const struct command *commands(size_t *n) {
  *n = sizeof(command_table) / sizeof(command_table[0]);
  return command_table;
}

static void print_main_help(FILE *f) {
  size_t n;
  const struct command *cs = commands(&n);
  fprintf(f,
          "keel — multi-tenant backend for AI-agent products\n\n"
          "Usage: keel <command> [flags]\n\nCommands:\n");
  for (size_t i = 0; i < n; i++) fprintf(f, "  %-10s %s\n", cs[i].name, cs[i].summary);
  fprintf(f,
          "\nRun 'keel <command> --help' for a command's flags.\n"
          "Configuration: docs/configuration.md (flags > KEEL_* environment > file > "
          "defaults).\n");
}

static int cmd_help(int argc, char **argv, char **envp) {
  (void)envp;
  if (argc < 2) {
    print_main_help(stdout);
    return 0;
  }
  const struct command *c = find_command(argv[1]);
  if (!c) {
    fprintf(stderr, "keel help: unknown command '%s'\n", argv[1]);
    return EXIT_USAGE;
  }
  cli_print_usage(c, NULL);
  return 0;
}

int cli_main(int argc, char **argv, char **envp) {
  if (argc < 2) {
    print_main_help(stderr);
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    print_main_help(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) return cmd_version(1, argv + 1, envp);
  const struct command *c = find_command(argv[1]);
  if (!c) {
    fprintf(stderr, "keel: unknown command '%s' (see keel --help)\n", argv[1]);
    return EXIT_USAGE;
  }
  /* The command sees argv[0] = its own name. */
  return c->run(argc - 1, argv + 1, envp);
}
