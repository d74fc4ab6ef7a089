/*
 * app.h — the process-level pieces shared by the CLI commands: resolving the
 * configuration from its four sources, opening the store, and running the
 * server until a signal.
 */
#ifndef KEEL_APP_H
#define KEEL_APP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "store/store.h"

/* Flags common to commands that touch data. */
struct app_flags {
  const char *config_file; /* --config */
  const char *listen;      /* --listen */
  const char *data_dir;    /* --data-dir */
  const char *store_url;   /* --store */
  bool dev;                /* --dev */
  const char *sets[64];    /* --set name=value */
  int nsets;
};

/*
 * Builds cfg: defaults < file (flags->config_file or KEEL_CONFIG) < KEEL_*
 * environment < flags. Returns 0, or -1 after printing the problem to stderr.
 */
int app_config(const struct app_flags *flags, char *const *envp, struct config *cfg);
/* Applies log.level and friends. */
void app_logging(const struct config *cfg);
/* Opens the store named by cfg (migrating when asked). Returns 0 or -1 after
 * printing the problem. */
int app_store_open(const struct config *cfg, bool migrate, struct store **out);
#define APP_SECRET_MAX 64

/*
 * Loads the server secret: the `secret` setting (hex), else the file
 * data_dir/keel.secret, created with 32 random bytes (mode 0600) when absent.
 * Returns the length (>= 32), or -1 after printing the problem.
 */
int app_secret(const struct config *cfg, uint8_t out[APP_SECRET_MAX]);
/* Process-wide start-up shared by every command: libsodium, jansson's
 * allocator, the plan registry, the model price table (prices.file, else
 * data_dir/prices.json when present). Returns 0 or -1 after printing. */
int app_init(const struct config *cfg);

/* Runs the server until SIGTERM/SIGINT; returns the process exit code. */
int app_serve(const struct config *cfg);

#endif
