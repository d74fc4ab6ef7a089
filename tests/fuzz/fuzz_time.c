/*
 * fuzz_time.c — libFuzzer driver for the RFC 3339 parser: a parsed time must
 * format and parse back to the same instant.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t us;
  if (time_parse_rfc3339(slice_make((const char *)data, size), &us) != 0) return 0;
  char out[RFC3339_MAX];
  size_t n = time_format_rfc3339(us, out);
  int64_t again;
  if (time_parse_rfc3339(slice_make(out, n), &again) != 0 || again != us) abort();
  return 0;
}
