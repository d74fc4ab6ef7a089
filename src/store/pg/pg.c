/* pg.c — the PostgreSQL backend (being written). */
#include <stdio.h>

#include "core/errors.h"
#include "store/backend.h"

static int pg_open(const struct store_options *opt, struct store **out, char *err, size_t errlen) {
  (void)opt;
  (void)out;
  snprintf(err, errlen, "the PostgreSQL backend is not built yet");
  return KEEL_EINVAL;
}

const struct store_backend store_backend_postgres = {.name = "postgres", .open = pg_open};
