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

/* Matches path segments against pattern; fills params (only meaningful
 * when it returns true). The pattern is walked character by character
 * against the path's segments and the walk stops at the first difference:
 * most rows differ from a path within their first segments, so a scan of
 * the table rarely reads a whole pattern (splitting every pattern first
 * made routing a tenth of the CPU time of a cheap request at the end of the
 * table). */
static bool pattern_match(const char *pattern, const struct slice *segs, int nsegs,
                          struct route_params *params) {
  if (pattern[0] != '/') return false;
  const char *p = pattern + 1;
  if (*p == '\0') return nsegs == 0; /* "/" */
  size_t nparams = 0;
  int i = 0;
  for (;;) {
    if (i == nsegs) return false;
    struct slice seg = segs[i++];
    if (p[0] == '{') {
      const char *end = p;
      while (*end && *end != '/') end++;
      size_t len = (size_t)(end - p);
      if (len < 2 || end[-1] != '}') {
        /* "{" without a closing brace is a literal segment. */
        if (seg.len != len || memcmp(seg.p, p, len) != 0) return false;
      } else {
        if (seg.len == 0) return false;
        if (nparams < ROUTE_PARAMS_MAX && params) {
          params->names[nparams] = slice_make(p + 1, len - 2);
          params->values[nparams] = seg;
        }
        nparams++;
      }
      p = end;
    } else {
      size_t k = 0;
      while (k < seg.len && p[k] == seg.p[k] && p[k] != '/' && p[k] != '\0') k++;
      if (k != seg.len || (p[k] != '/' && p[k] != '\0')) return false;
      p += k;
    }
    if (*p == '\0') break;
    p++; /* the '/' */
  }
  if (i != nsegs) return false;
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
  struct route_params tmp; /* set by pattern_match when it matches */
  for (size_t i = 0; i < n; i++) {
    const struct route *r = &routes[i];
    if ((r->flags & ROUTE_DEV) && !dev_routes) continue;
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
