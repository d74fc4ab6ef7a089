/*
 * router.c — matches a method and path against the declarative route table.
 *
 * Patterns are '/'-separated segments; "{name}" matches one non-empty
 * segment. Matching is a linear scan: the table has well under a hundred
 * rows and a segment comparison is a few nanoseconds, so a scan costs less
 * than building and walking a trie would save. A trailing slash is not
 * ignored ("/v1/orgs/" is not "/v1/orgs").
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "core/limits.h"

/* Splits path into segments (without the leading '/'). Returns the count, or
 * -1 when the path does not start with '/' or has too many segments. */
static int split_path(struct slice path, struct slice *segs, int max) {
  if (path.len == 0 || path.p[0] != '/') return -1;
  int n = 0;
  struct slice rest = slice_make(path.p + 1, path.len - 1);
  if (rest.len == 0) return 0; /* "/" */
  for (;;) {
    struct slice seg;
    bool more = slice_cut(rest, '/', &seg, &rest);
    if (n == max) return -1;
    segs[n++] = seg;
    if (!more) break;
  }
  return n;
}

/* Matches path segments against pattern; fills params. */
static bool pattern_match(const char *pattern, const struct slice *segs, int nsegs,
                          struct route_params *params) {
  struct slice psegs[LIMIT_PATH_SEGMENTS_MAX];
  int np = split_path(slice_from_cstr(pattern), psegs, LIMIT_PATH_SEGMENTS_MAX);
  if (np != nsegs) return false;
  size_t nparams = 0;
  for (int i = 0; i < np; i++) {
    struct slice p = psegs[i];
    if (p.len >= 2 && p.p[0] == '{' && p.p[p.len - 1] == '}') {
      if (segs[i].len == 0) return false;
      if (nparams < ROUTE_PARAMS_MAX && params) {
        params->names[nparams] = slice_make(p.p + 1, p.len - 2);
        params->values[nparams] = segs[i];
      }
      nparams++;
    } else if (!slice_eq(p, segs[i])) {
      return false;
    }
  }
  if (params) params->count = nparams < ROUTE_PARAMS_MAX ? nparams : ROUTE_PARAMS_MAX;
  return true;
}

enum router_result router_match(const struct route *routes, size_t n, enum http_method method,
                                struct slice path, bool dev_routes, const struct route **found,
                                struct route_params *params, unsigned *allow_mask) {
  struct slice segs[LIMIT_PATH_SEGMENTS_MAX];
  int nsegs = split_path(path, segs, LIMIT_PATH_SEGMENTS_MAX);
  unsigned allow = 0;
  *found = NULL;
  if (nsegs < 0) return ROUTER_NOT_FOUND;
  enum http_method want = method == HTTP_HEAD ? HTTP_GET : method;
  for (size_t i = 0; i < n; i++) {
    const struct route *r = &routes[i];
    if ((r->flags & ROUTE_DEV) && !dev_routes) continue;
    struct route_params tmp = {0};
    if (!pattern_match(r->pattern, segs, nsegs, &tmp)) continue;
    if (r->method == want) {
      *found = r;
      if (params) *params = tmp;
      return ROUTER_FOUND;
    }
    allow |= 1u << r->method;
    if (r->method == HTTP_GET) allow |= 1u << HTTP_HEAD;
  }
  if (allow_mask) *allow_mask = allow;
  return allow ? ROUTER_METHOD_NOT_ALLOWED : ROUTER_NOT_FOUND;
}

void router_allow_header(unsigned allow_mask, char *out, size_t outsize) {
  size_t off = 0;
  out[0] = '\0';
  for (int m = 0; m < HTTP_METHOD_OTHER; m++) {
    if (!(allow_mask & (1u << m))) continue;
    int w = snprintf(out + off, outsize - off, "%s%s", off ? ", " : "",
                     http_method_name((enum http_method)m));
    if (w < 0 || (size_t)w >= outsize - off) break;
    off += (size_t)w;
  }
}
