/*
 * members.c — routes of this area (being built).
 */
#include "api/api.h"

const struct route *routes_members(size_t *count) {
  *count = 0;
  return NULL;
}
