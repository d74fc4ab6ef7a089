/*
 * keys.c — routes of this area (being built).
 */
#include "api/api.h"

/* API-key authentication (built with the keys area). Without a key this
 * answers 401 when a key is required, else lets the session path run. */
int mw_keys_authenticate(struct ctx *ctx, bool required);
int mw_keys_authenticate(struct ctx *ctx, bool required) {
  struct slice auth = http_req_header(ctx->req, "Authorization");
  if (!auth.p && !required) return 0;
  api_problem(ctx, "unauthorized", "API keys are not accepted by this server yet");
  return 1;
}

const struct route *routes_keys(size_t *count) {
  *count = 0;
  return NULL;
}
