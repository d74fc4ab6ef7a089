/*
 * cli.h — the `keel` command line: a table of commands, each with its own
 * flags and --help. Exit codes: 0 success, 1 failure while running, 2 usage
 * error (unknown command or flag, bad value).
 */
#ifndef KEEL_CLI_H
#define KEEL_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "app.h"
#include "core/config.h"
#include "store/store.h"

#define EXIT_USAGE 2

struct command {
  const char *name;
  const char *summary;
  const char *usage; /* after "keel " */
  int (*run)(int argc, char **argv, char **envp);
};

int cli_main(int argc, char **argv, char **envp);

/* Long options every data command takes; splice CLI_COMMON_OPTIONS into a
 * command's own getopt_long table (before the terminating zero row). */
enum {
  CLI_OPT_DATA_DIR = 1001,
  CLI_OPT_STORE,
  CLI_OPT_CONFIG,
  CLI_OPT_SET,
  CLI_OPT_FIRST_FREE = 1100 /* commands number their own options from here */
};
#define CLI_COMMON_OPTIONS                                 \
  {"data-dir", required_argument, NULL, CLI_OPT_DATA_DIR}, \
      {"store", required_argument, NULL, CLI_OPT_STORE},   \
      {"config", required_argument, NULL, CLI_OPT_CONFIG}, \
      {"set", required_argument, NULL, CLI_OPT_SET}, {     \
    "help", no_argument, NULL, 'h'                         \
  }

/* One flag of a command, for cli_parse: "--name VALUE" stores VALUE in
 * *value; a flag without a value (value NULL) sets *on. */
struct cli_flag {
  const char *name;
  const char **value;
  bool *on;
};

#define CLI_FLAGS_MAX 16

/*
 * Parses argv (argv[0] is the command's name) against the command's own
 * flags[0..n) and the common ones (CLI_COMMON_OPTIONS) into *common.
 * Positional arguments after the flags go to positional[0..max_positional)
 * (unused slots NULL). Returns 0; -1 after printing --help (the usage with
 * flags_help); or EXIT_USAGE after printing the problem (an unknown flag, a
 * missing value, too many arguments).
 */
int cli_parse(const struct command *c, const char *flags_help, int argc, char **argv,
              const struct cli_flag *flags, size_t n, const char **positional,
              size_t max_positional, struct app_flags *common);

/* Handles a common option; returns 1 when opt was one, 0 when not, or
 * EXIT_USAGE after printing a problem. */
int cli_common_flag(int opt, const char *arg, struct app_flags *flags);
/* Prints "Usage: keel <usage>", the summary and the common flags. */
void cli_print_usage(const struct command *c, const char *extra_flags_help);
/* Configuration, process start-up and the store (migrated), for a data
 * command. Returns 0, or an exit code after printing the problem. */
int cli_open_store(const struct app_flags *flags, char **envp, struct config *cfg,
                   struct store **store);
/* Undoes cli_open_store. */
void cli_close_store(struct config *cfg, struct store *store);

/* Commands that live in their own files. */
int cmd_user(int argc, char **argv, char **envp);      /* cli_user.c: user create|promote */
int cmd_org(int argc, char **argv, char **envp);       /* cli_org.c: org create */
int cmd_key(int argc, char **argv, char **envp);       /* cli_key.c: key create */
int cmd_bootstrap(int argc, char **argv, char **envp); /* cli_bootstrap.c: first admin */
int cmd_prices(int argc, char **argv, char **envp);    /* cli_prices.c: prices import */

/* cli_key.c: creates an API key for the org org_ref (slug or id) with the
 * server's MAC key (from cfg's secret) and audits it; fills key_out
 * (APIKEY_MAX bytes: print it once, then wipe it), prefix_out (16 bytes) and
 * id_out (ID_STR_SIZE). Returns 0, or a KEEL_E* status with *why set. */
int cli_key_issue(const struct config *cfg, struct store *store, const char *org_ref,
                  const char *name, unsigned scopes, bool live, char *key_out, char *prefix_out,
                  char *id_out, const char **why);

#endif
