/*
 * fuzz_router.c — libFuzzer driver for route matching over the real route
 * table, with arbitrary paths and methods.
 */
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t n;
  const struct route *routes = api_routes(&n);
  const struct route *found = NULL;
  struct route_params params;
  unsigned allow = 0;
  enum http_method m = (enum http_method)(data[0] % HTTP_METHOD_COUNT);
  router_match(routes, n, m, slice_make((const char *)data + 1, size - 1), (data[0] & 0x80) != 0,
               &found, &params, &allow);
  char hdr[96];
  router_allow_header(allow, hdr, sizeof(hdr));
  return 0;
}
