/*
 * embedded.h — files compiled into the binary by tools/embed.py (migrations,
 * the OpenAPI document). data is NUL-terminated; len excludes the NUL.
 */
#ifndef KEEL_CORE_EMBEDDED_H
#define KEEL_CORE_EMBEDDED_H

#include <stddef.h>

struct embedded_file {
  const char *name;
  const char *data;
  size_t len;
};

extern const struct embedded_file migrations_sqlite_files[];
extern const size_t migrations_sqlite_count;
extern const struct embedded_file migrations_postgres_files[];
extern const size_t migrations_postgres_count;
extern const struct embedded_file openapi_files[];
extern const size_t openapi_count;
extern const struct embedded_file data_files[];
extern const size_t data_count;

#endif
