/*
 * keys.c — the API-keys area (R-KEY-1..6, R-ING-8):
 *
 *   POST   /v1/orgs/{org}/api-keys        create; the full key in this response only
 *   GET    /v1/orgs/{org}/api-keys        list (newest first, paged)
 *   GET    /v1/orgs/{org}/api-keys/{id}   one key
 *   PATCH  /v1/orgs/{org}/api-keys/{id}   name, rate_limit_per_min (null clears)
 *   DELETE /v1/orgs/{org}/api-keys/{id}   revoke (204); evicts the key from the cache
 *   GET    /v1/whoami                     the key's org, key and plan (any scope)
 *
 * Management routes take a session and keys.manage (owner, admin); changes
 * are audited in the same write as the change (details: prefix, name,
 * scopes — never the key).
 *
 * Also here, the key step of the middleware (see keys.h): bearer key →
 * verifier (domain/apikeys.c: checksum, cache, store) → {org} binding →
 * scopes (403 insufficient_scope, audited as permission.denied) → rate
 * limits (per key, then per org; GCRA, limits/ratelimit.h) → ctx. Every
 * key-authenticated response carries RateLimit-Policy and RateLimit; a
 * refusal is 429 with Retry-After. Exact header forms: docs/api-keys.md.
 *
 * The full key exists here only in the request that carries it (the
 * Authorization header, never copied) and in the creation response. Errors
 * and logs name the display prefix.
 */
#include "api/keys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/apikeys.h"
#include "domain/plans.h"
#include "limits/ratelimit.h"
#include "store/keys.h"

#define RATE_PERIOD_S  60
#define RATE_PERIOD_US (RATE_PERIOD_S * US_PER_SEC)
/* The RateLimit-Policy window, ";w=60", as text (RATE_PERIOD_S spelled out). */
#define STRINGIFY_(x)     #x
#define STRINGIFY(x)      STRINGIFY_(x)
#define RATE_WINDOW_TEXT  ";w=" STRINGIFY(RATE_PERIOD_S)
#define FLUSH_INTERVAL_US (2 * US_PER_SEC) /* last_used_at batches */
#define CURSOR_KIND_KEYS  'K'
#define LIMITER_KEY_SIZE  (2 + ID_STR_SIZE)

/* --- the area's state ------------------------------------------------------ */

enum { RL_ALLOWED = 0, RL_LIMITED_KEY, RL_LIMITED_ORG, RL_RESULTS };
static const char *const rl_result_names[RL_RESULTS] = {"allowed", "limited_key", "limited_org"};

struct keys {
  struct api *api;
  struct apikeys_verifier *verifier;
  struct ratelimiter *limiter;
  atomic_uint_fast64_t decisions[RL_RESULTS];

  pthread_t flusher;
  bool flusher_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping;
};

static void *flusher_main(void *arg) {
  struct keys *k = arg;
  pthread_mutex_lock(&k->mu);
  while (!k->stopping) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += FLUSH_INTERVAL_US / US_PER_SEC;
    pthread_cond_timedwait(&k->cv, &k->mu, &until);
    if (k->stopping) break;
    pthread_mutex_unlock(&k->mu);
    apikeys_verifier_flush(k->verifier, api_store(k->api));
    pthread_mutex_lock(&k->mu);
  }
  pthread_mutex_unlock(&k->mu);
  return NULL;
}

struct keys *keys_start(struct api *api) {
  struct keys *k = xcalloc(1, sizeof(*k));
  k->api = api;
  struct apikeys_verifier_options vo = {.mac_key = api_key_mac_key(api)};
  k->verifier = apikeys_verifier_new(&vo);
  k->limiter = ratelimit_new(RATELIMIT_KEYS_MAX);
  for (size_t i = 0; i < RL_RESULTS; i++) atomic_init(&k->decisions[i], 0);
  pthread_mutex_init(&k->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&k->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (api_store(api)) {
    k->flusher_started = pthread_create(&k->flusher, NULL, flusher_main, k) == 0;
    if (!k->flusher_started) log_error0("keys.flusher_start_failed");
  }
  return k;
}

void keys_stop(struct keys *k) {
  if (!k) return;
  if (k->flusher_started) {
    pthread_mutex_lock(&k->mu);
    k->stopping = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->flusher, NULL);
  }
  if (api_store(k->api)) apikeys_verifier_flush(k->verifier, api_store(k->api));
  pthread_cond_destroy(&k->cv);
  pthread_mutex_destroy(&k->mu);
  ratelimit_free(k->limiter);
  apikeys_verifier_free(k->verifier);
  xfree(k);
}

void keys_org_changed(struct api *api, const char *org_id) {
  struct keys *k = api_keys(api);
  if (k) apikeys_verifier_evict_org(k->verifier, org_id);
}

int keys_render_metrics(struct keys *k, struct buf *out) {
  if (!k) return 0;
  int rc = buf_printf(out,
                      "# HELP keel_ratelimit_decisions_total Rate-limit decisions on "
                      "key-authenticated requests.\n"
                      "# TYPE keel_ratelimit_decisions_total counter\n");
  for (size_t i = 0; i < RL_RESULTS; i++) {
    rc |= buf_printf(out, "keel_ratelimit_decisions_total{result=\"%s\"} %llu\n",
                     rl_result_names[i], (unsigned long long)atomic_load(&k->decisions[i]));
  }
  struct apikeys_cache_stats st;
  apikeys_verifier_stats(k->verifier, &st);
  rc |= buf_printf(out,
                   "# HELP keel_ratelimit_keys Rate-limit states held in memory.\n"
                   "# TYPE keel_ratelimit_keys gauge\n"
                   "keel_ratelimit_keys %zu\n"
                   "# HELP keel_apikey_cache_entries API keys cached (positive and negative).\n"
                   "# TYPE keel_apikey_cache_entries gauge\n"
                   "keel_apikey_cache_entries %zu\n"
                   "# HELP keel_apikey_cache_lookups_total API-key cache lookups.\n"
                   "# TYPE keel_apikey_cache_lookups_total counter\n"
                   "keel_apikey_cache_lookups_total{result=\"hit\"} %llu\n"
                   "keel_apikey_cache_lookups_total{result=\"miss\"} %llu\n"
                   "# HELP keel_apikey_cache_evictions_total Cache entries evicted for room.\n"
                   "# TYPE keel_apikey_cache_evictions_total counter\n"
                   "keel_apikey_cache_evictions_total %llu\n"
                   "# HELP keel_apikey_last_used_dropped_total last_used_at records dropped.\n"
                   "# TYPE keel_apikey_last_used_dropped_total counter\n"
                   "keel_apikey_last_used_dropped_total %llu\n",
                   ratelimit_size(k->limiter), st.entries, (unsigned long long)st.hits,
                   (unsigned long long)st.misses, (unsigned long long)st.evictions,
                   (unsigned long long)st.touches_dropped);
  return rc ? -1 : 0;
}

/* --- rendering ------------------------------------------------------------- */

static json_t *scopes_json(unsigned scopes) {
  json_t *a = json_array();
  for (size_t i = 0; i < sizeof(apikeys_scope_bits) / sizeof(apikeys_scope_bits[0]); i++) {
    if (scopes & apikeys_scope_bits[i]) {
      json_array_append_new(a, json_string(apikeys_scope_name(apikeys_scope_bits[i])));
    }
  }
  return a;
}

/* "ingest, read" (arena). */
static const char *scopes_text(struct ctx *ctx, unsigned scopes) {
  char out[32] = "";
  size_t n = 0;
  for (size_t i = 0; i < sizeof(apikeys_scope_bits) / sizeof(apikeys_scope_bits[0]); i++) {
    if (!(scopes & apikeys_scope_bits[i])) continue;
    n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", n ? ", " : "",
                          apikeys_scope_name(apikeys_scope_bits[i]));
  }
  return arena_strdup(ctx->arena, n ? out : "none");
}

static json_t *time_or_null(int64_t us) {
  if (!us) return json_null();
  char t[RFC3339_MAX];
  time_format_rfc3339(us, t);
  return json_string(t);
}

static json_t *key_json(const struct apikey_row *k, int64_t now_us) {
  const char *status = k->revoked_at                                ? "revoked"
                       : (k->expires_at && k->expires_at <= now_us) ? "expired"
                                                                    : "active";
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:s}", "id", k->id, "name", k->name,
                        "prefix", k->prefix, "environment", k->env, "live", k->live, "scopes",
                        scopes_json(k->scopes), "status", status);
  json_object_set_new(j, "created_at", time_or_null(k->created_at));
  json_object_set_new(j, "created_by", k->created_by[0] ? json_string(k->created_by) : json_null());
  json_object_set_new(j, "last_used_at", time_or_null(k->last_used_at));
  json_object_set_new(j, "expires_at", time_or_null(k->expires_at));
  json_object_set_new(j, "revoked_at", time_or_null(k->revoked_at));
  json_object_set_new(j, "rate_limit_per_min",
                      k->rate_limit_per_min ? json_integer(k->rate_limit_per_min) : json_null());
  return j;
}

static json_t *audit_details(const struct apikey_row *k) {
  return json_pack("{s:s, s:s, s:o, s:s, s:b}", "prefix", k->prefix, "name", k->name, "scopes",
                   scopes_json(k->scopes), "environment", k->env, "live", k->live);
}

/* --- text on the hot path ------------------------------------------------------ */

/*
 * A bounded writer into a caller's array, for the header values and the
 * whoami body built on every key-authenticated request: no printf, no
 * allocation, no strlen of literals (built with the general tools, these
 * few short strings cost more than the key verification). A write that
 * does not fit is dropped and remembered in over; callers size their
 * arrays so that it cannot happen, and check once at the end.
 */
struct text {
  char *start, *p, *end;
  bool over;
};

/* A writer over array[0..size), keeping one byte for text_cstr's NUL. */
static struct text text_init(char *array, size_t size) {
  return (struct text){.start = array, .p = array, .end = array + size - 1};
}

static size_t text_len(const struct text *t) {
  return (size_t)(t->p - t->start);
}

/* The text so far, NUL-terminated. */
static const char *text_cstr(struct text *t) {
  *t->p = '\0';
  return t->start;
}

static void text_put(struct text *t, const char *s, size_t n) {
  if ((size_t)(t->end - t->p) < n) {
    t->over = true;
    return;
  }
  memcpy(t->p, s, n);
  t->p += n;
}

/* A string literal (its length known at compile time). */
#define TEXT_LIT(t, lit) text_put((t), "" lit, sizeof(lit) - 1)

#define I64_TEXT_MAX     20 /* characters of INT64_MIN: a sign and 19 digits */

/* v in decimal, two digits per division. */
static void text_i64(struct text *t, int64_t v) {
  static const char pairs[] =
      "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
      "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
      "8081828384858687888990919293949596979899";
  char digits[I64_TEXT_MAX];
  size_t i = sizeof(digits);
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  while (u >= 100) {
    size_t d = (size_t)(u % 100) * 2;
    u /= 100;
    digits[--i] = pairs[d + 1];
    digits[--i] = pairs[d];
  }
  if (u >= 10) {
    digits[--i] = pairs[u * 2 + 1];
    digits[--i] = pairs[u * 2];
  } else {
    digits[--i] = (char)('0' + u);
  }
  if (v < 0) digits[--i] = '-';
  text_put(t, digits + i, sizeof(digits) - i);
}

/* s as a JSON string: quoted, and escaped when escape is set. Text that
 * needs no escaping by construction goes as it is: ids (UUID text), display
 * prefixes (printable ASCII without quotes or backslashes), environment
 * labels and scope names. */
static void text_json_str(struct text *t, const char *s, bool escape) {
  size_t n = strlen(s);
  if ((size_t)(t->end - t->p) < (escape ? BUF_JSON_ESCAPED_MAX(n) : n) + 2) {
    t->over = true;
    return;
  }
  *t->p++ = '"';
  if (escape) {
    t->p += buf_json_escape_into(t->p, s, n);
  } else {
    memcpy(t->p, s, n);
    t->p += n;
  }
  *t->p++ = '"';
}

/* --- rate limits ------------------------------------------------------------ */

/* Room for a RateLimit-Policy or RateLimit value: two items of two numbers
 * of at most 20 characters each, with their names. */
#define RATELIMIT_HEADER_MAX 160

/* Appends one RateLimit item: "name";r=R;t=T (a leading ", " after the
 * first). */
static void text_limit_item(struct text *t, const char *name, int64_t remaining, int64_t reset_s) {
  if (text_len(t)) TEXT_LIT(t, ", ");
  text_put(t, "\"", 1);
  text_put(t, name, strlen(name));
  TEXT_LIT(t, "\";r=");
  text_i64(t, remaining);
  TEXT_LIT(t, ";t=");
  text_i64(t, reset_s);
}

/* The limiter's name of a key or an org: "k:<id>" / "o:<id>". */
static void limiter_name(char out[LIMITER_KEY_SIZE], char kind, const char *id) {
  out[0] = kind;
  out[1] = ':';
  size_t n = strnlen(id, ID_STR_SIZE - 1);
  memcpy(out + 2, id, n);
  out[2 + n] = '\0';
}

static int64_t ceil_seconds(int64_t us) {
  return (us + US_PER_SEC - 1) / US_PER_SEC;
}

/* The limiter's clock: monotonic (wall-clock steps do not matter) plus the
 * --dev test offset, so tests can let a bucket refill. */
static int64_t limiter_now(void) {
  return time_mono_us() + time_offset_us();
}

/*
 * Applies the key's and the org's limits. Sets RateLimit-Policy and
 * RateLimit; on a refusal answers 429 with Retry-After. Returns 0 or 1.
 */
static int apply_rate_limits(struct ctx *ctx, struct keys *k, const struct apikey_identity *id) {
  const struct plan *plan = plans_get(ctx->org.plan);
  if (!plan) plan = plans_get(PLAN_DEFAULT);
  int64_t key_limit = id->rate_limit_per_min ? id->rate_limit_per_min
                      : plan                 ? plan->rate_per_min_key
                                             : 100;
  int64_t org_limit = plan ? plan->rate_per_min_org : 200;
  char key_name[LIMITER_KEY_SIZE], org_name[LIMITER_KEY_SIZE];
  limiter_name(key_name, 'k', id->id);
  limiter_name(org_name, 'o', id->org_id);
  int64_t now = limiter_now();

  char policy_text[RATELIMIT_HEADER_MAX], left_text[RATELIMIT_HEADER_MAX];
  struct text policy = text_init(policy_text, sizeof(policy_text));
  TEXT_LIT(&policy, "\"key\";q=");
  text_i64(&policy, key_limit);
  TEXT_LIT(&policy, RATE_WINDOW_TEXT ", \"org\";q=");
  text_i64(&policy, org_limit);
  TEXT_LIT(&policy, RATE_WINDOW_TEXT);
  http_resp_header(ctx->req, "RateLimit-Policy", text_cstr(&policy));
  struct text left = text_init(left_text, sizeof(left_text));
  struct ratelimit_decision dk, dorg;
  ratelimit_check(k->limiter, key_name, key_limit, RATE_PERIOD_US, now, &dk);
  if (!dk.allowed) {
    atomic_fetch_add(&k->decisions[RL_LIMITED_KEY], 1);
    text_limit_item(&left, "key", 0, ceil_seconds(dk.reset_us));
    http_resp_header(ctx->req, "RateLimit", text_cstr(&left));
    int64_t retry = ceil_seconds(dk.retry_after_us);
    if (retry < 1) retry = 1;
    http_resp_header(ctx->req, "Retry-After", arena_printf(ctx->arena, "%lld", (long long)retry));
    api_problemf(ctx, "rate_limited",
                 "API key %s is over its limit of %lld requests per minute; retry after %lld s",
                 id->prefix, (long long)key_limit, (long long)retry);
    return 1;
  }
  ratelimit_check(k->limiter, org_name, org_limit, RATE_PERIOD_US, now, &dorg);
  if (!dorg.allowed) {
    /* The key's budget is not spent on a request the org refused. */
    ratelimit_refund(k->limiter, key_name, key_limit, RATE_PERIOD_US);
    atomic_fetch_add(&k->decisions[RL_LIMITED_ORG], 1);
    int64_t key_rem = dk.remaining + 1 > key_limit ? key_limit : dk.remaining + 1;
    text_limit_item(&left, "key", key_rem, ceil_seconds(dk.reset_us));
    text_limit_item(&left, "org", 0, ceil_seconds(dorg.reset_us));
    http_resp_header(ctx->req, "RateLimit", text_cstr(&left));
    int64_t retry = ceil_seconds(dorg.retry_after_us);
    if (retry < 1) retry = 1;
    http_resp_header(ctx->req, "Retry-After", arena_printf(ctx->arena, "%lld", (long long)retry));
    api_problemf(ctx, "rate_limited",
                 "the organisation is over its limit of %lld requests per minute across its "
                 "keys; retry after %lld s",
                 (long long)org_limit, (long long)retry);
    return 1;
  }
  atomic_fetch_add(&k->decisions[RL_ALLOWED], 1);
  text_limit_item(&left, "key", dk.remaining, ceil_seconds(dk.reset_us));
  text_limit_item(&left, "org", dorg.remaining, ceil_seconds(dorg.reset_us));
  http_resp_header(ctx->req, "RateLimit", text_cstr(&left));
  return 0;
}

/* --- authentication ---------------------------------------------------------- */

enum bearer { BEARER_ABSENT, BEARER_FOUND, BEARER_NOT_BEARER };

/* The token of "Authorization: Bearer <token>" (a slice into the header;
 * never copied, so the key lives only in the request). */
static enum bearer bearer_token(struct ctx *ctx, struct slice *token) {
  struct slice h = http_req_header(ctx->req, "Authorization");
  if (!h.p) return BEARER_ABSENT;
  h = slice_trim(h);
  static const char scheme[] = "bearer ";
  if (h.len < sizeof(scheme) - 1 ||
      !slice_eq_cstr_nocase(slice_make(h.p, sizeof(scheme) - 1), scheme)) {
    return BEARER_NOT_BEARER;
  }
  *token = slice_trim(slice_make(h.p + sizeof(scheme) - 1, h.len - (sizeof(scheme) - 1)));
  return BEARER_FOUND;
}

static void www_authenticate(struct ctx *ctx, bool invalid) {
  http_resp_header(
      ctx->req, "WWW-Authenticate",
      invalid ? "Bearer realm=\"keel\", error=\"invalid_token\"" : "Bearer realm=\"keel\"");
}

/* 401 for a verdict other than valid (or 503 for a store failure). The
 * detail names the display prefix only. */
static int reject_key(struct ctx *ctx, enum apikey_verdict v, const char *prefix) {
  const char *why;
  switch (v) {
    case APIKEY_MALFORMED:
      www_authenticate(ctx, true);
      return api_problem(ctx, "invalid_api_key",
                         "the bearer token is not a keel API key (kl_live_... or kl_test_..., "
                         "42 characters)");
    case APIKEY_BAD_CHECKSUM:
      why = "fails its checksum: it was mistyped or cut short";
      break;
    case APIKEY_UNKNOWN:
      why = "is not recognised";
      break;
    case APIKEY_REVOKED:
      why = "has been revoked";
      break;
    case APIKEY_EXPIRED:
      why = "has expired";
      break;
    case APIKEY_ORG_DELETED:
      why = "belongs to an organisation that has been deleted";
      break;
    case APIKEY_CREATOR_SUSPENDED:
      why = "was created by a user who is suspended";
      break;
    default:
      http_resp_header(ctx->req, "Retry-After", "1");
      return api_problem(ctx, "service_unavailable", "API keys cannot be checked right now");
  }
  www_authenticate(ctx, true);
  return api_problemf(ctx, "invalid_api_key", "API key %s... %s", prefix, why);
}

static bool route_has_org(const struct route *r) {
  return strstr(r->pattern, "{org}") != NULL;
}

/* A key is bound to its org: on a route with {org}, the parameter must name
 * it (id or slug). */
static bool org_param_matches(struct ctx *ctx) {
  if (!route_has_org(ctx->route)) return true;
  const char *ref = ctx_param(ctx, "org");
  return ref && (strcmp(ref, ctx->org.id) == 0 || strcmp(ref, ctx->org.slug) == 0);
}

/* Makes ctx act for the key (ctx->org already holds its org). */
static void become_key(struct ctx *ctx, const struct apikey_identity *id) {
  struct key_auth *ka = &ctx->key;
  memset(ka, 0, sizeof(*ka));
  memcpy(ka->id, id->id, sizeof(ka->id));
  memcpy(ka->prefix, id->prefix, sizeof(ka->prefix));
  memcpy(ka->env, id->env, sizeof(ka->env));
  ka->scopes = id->scopes;
  ka->live = id->live;
  ka->rate_override_per_min = id->rate_limit_per_min;
  ctx->actor = ACTOR_KEY;
  ctx->has_org = true;
  memcpy(ctx->scope.org_id, id->org_id, sizeof(ctx->scope.org_id));
  log_set_org_id(ctx->scope.org_id);
}

static int deny_scope(struct ctx *ctx, const struct apikey_identity *id) {
  unsigned need = ctx->route->scope;
  json_t *d = json_pack("{s:s, s:s, s:o, s:o}", "route", ctx->route->pattern, "method",
                        http_method_name(ctx->route->method), "required_scopes", scopes_json(need),
                        "key_scopes", scopes_json(id->scopes));
  ctx_audit_now(ctx, "permission.denied", "route", ctx->route->pattern, false, d);
  json_decref(d);
  return api_problemf(ctx, "insufficient_scope",
                      "API key %s... has the scopes %s; this route needs %s", id->prefix,
                      scopes_text(ctx, id->scopes), scopes_text(ctx, need));
}

static bool scopes_suffice(const struct ctx *ctx, const struct apikey_identity *id) {
  return (id->scopes & ctx->route->scope) == ctx->route->scope;
}

/* The steps after a key is found valid: {org} binding, scopes, rate limits.
 * Returns 0, or 1 after answering. */
static int admit_key(struct ctx *ctx, struct keys *k, const struct apikey_identity *id) {
  if (!org_param_matches(ctx)) {
    api_problem(ctx, "not_found", "no such organisation");
    return 1;
  }
  become_key(ctx, id);
  if (!scopes_suffice(ctx, id)) {
    deny_scope(ctx, id);
    return 1;
  }
  return apply_rate_limits(ctx, k, id);
}

int mw_keys_authenticate(struct ctx *ctx, bool required) {
  if (ctx->actor == ACTOR_KEY) return 0; /* pre-authenticated on the I/O thread */
  struct slice token = SLICE_NULL;
  switch (bearer_token(ctx, &token)) {
    case BEARER_ABSENT:
      if (!required) return 0;
      www_authenticate(ctx, false);
      api_problem(ctx, "unauthorized",
                  "this route needs an API key: send Authorization: Bearer kl_live_...");
      return 1;
    case BEARER_NOT_BEARER:
      www_authenticate(ctx, true);
      api_problem(ctx, "invalid_api_key", "the Authorization header must be: Bearer <API key>");
      return 1;
    case BEARER_FOUND:
      break;
  }
  struct keys *k = api_keys(ctx->api);
  struct apikey_identity id;
  enum apikey_verdict v =
      apikeys_verify(k->verifier, api_store(ctx->api), token, time_now_us(), &id, &ctx->org);
  if (v != APIKEY_VALID) {
    reject_key(ctx, v, id.prefix);
    return 1;
  }
  return admit_key(ctx, k, &id);
}

enum keys_preauth keys_preauthenticate(struct ctx *ctx) {
  struct slice token = SLICE_NULL;
  switch (bearer_token(ctx, &token)) {
    case BEARER_ABSENT:
      /* No key: a session may follow (AUTH_ANY: the worker path), or the
       * same 401 mw_keys_authenticate would give. */
      if (ctx->route->auth != AUTH_KEY) return KEYS_PREAUTH_DEFER;
      mw_keys_authenticate(ctx, true);
      return KEYS_PREAUTH_ANSWERED;
    case BEARER_NOT_BEARER:
      mw_keys_authenticate(ctx, true); /* answers without the store */
      return KEYS_PREAUTH_ANSWERED;
    case BEARER_FOUND:
      break;
  }
  struct keys *k = api_keys(ctx->api);
  struct apikey_identity id;
  enum apikey_verdict v = apikeys_verify(k->verifier, NULL, token, time_now_us(), &id, &ctx->org);
  if (v == APIKEY_MISS) return KEYS_PREAUTH_DEFER;
  if (v != APIKEY_VALID) {
    reject_key(ctx, v, id.prefix);
    return KEYS_PREAUTH_ANSWERED;
  }
  /* A scope denial writes an audit entry: that is the worker's job. */
  if (!scopes_suffice(ctx, &id)) return KEYS_PREAUTH_DEFER;
  if (admit_key(ctx, k, &id)) {
    log_clear_context(); /* become_key set the org on this I/O thread */
    return KEYS_PREAUTH_ANSWERED;
  }
  return KEYS_PREAUTH_READY;
}

/* --- management handlers ------------------------------------------------------ */

static struct keys *area(struct ctx *ctx) {
  return api_keys(ctx->api);
}

/* Forgets what this process holds about a key: its cache entry (so a
 * revocation or a change applies at once) and, when its limit changed or it
 * is gone, its limiter state (a new override starts from a full bucket; a
 * rename must not reset the bucket). */
static void forget_key(struct ctx *ctx, const struct apikey_row *row, bool limiter_too) {
  apikeys_verifier_evict(area(ctx)->verifier, row->key_hash);
  if (!limiter_too) return;
  char name[LIMITER_KEY_SIZE];
  limiter_name(name, 'k', row->id);
  ratelimit_forget(area(ctx)->limiter, name);
}

static const char *const env_values[] = {"production", "staging", "development", "test"};

/* scopes: a non-empty array of distinct scope names. */
static unsigned parse_scopes(struct ctx *ctx, json_t *arr, struct field_errors *fe) {
  unsigned bits = 0;
  if (json_array_size(arr) == 0) {
    field_errors_add(fe, "scopes", "too_short", "give at least one of ingest, read, admin");
    return 0;
  }
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    const char *path = arena_printf(ctx->arena, "scopes[%zu]", i);
    unsigned bit =
        json_is_string(v)
            ? apikeys_scope_parse(slice_make(json_string_value(v), json_string_length(v)))
            : 0;
    if (!json_is_string(v)) {
      field_errors_add(fe, path, "wrong_type", "must be a string");
    } else if (!bit) {
      field_errors_add(fe, path, "not_allowed", "must be one of ingest, read, admin");
    } else if (bits & bit) {
      field_errors_add(fe, path, "not_allowed", "is listed twice");
    }
    bits |= bit;
  }
  return bits;
}

/* expires_at: RFC 3339 in the future, or null/absent. */
static int64_t parse_expiry(json_t *body, int64_t now_us, struct field_errors *fe) {
  json_t *v = json_object_get(body, "expires_at");
  if (!v || json_is_null(v)) return 0;
  int64_t at = 0;
  if (!json_is_string(v) ||
      time_parse_rfc3339(slice_make(json_string_value(v), json_string_length(v)), &at) != 0) {
    field_errors_add(fe, "expires_at", "invalid_format", "must be an RFC 3339 time");
    return 0;
  }
  if (at <= now_us) {
    field_errors_add(fe, "expires_at", "out_of_range", "must be in the future");
    return 0;
  }
  return at;
}

struct create_job {
  struct ctx *ctx;
  struct apikey_spec spec;
  int64_t now_us;
  struct apikey_created out;
  const char *why;
};

static int create_tx(struct store_tx *tx, void *arg) {
  struct create_job *j = arg;
  int rc = apikeys_create(tx, &j->ctx->scope, &j->spec, api_key_mac_key(j->ctx->api), j->now_us,
                          &j->out, &j->why);
  if (rc) return rc;
  json_t *d = audit_details(&j->out.row);
  rc = ctx_audit(j->ctx, tx, "api_key.created", "api_key", j->out.id, true, d);
  json_decref(d);
  return rc;
}

static int h_key_create(struct ctx *ctx) {
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  static const char *const allowed[] = {"name", "scopes",     "environment",
                                        "live", "expires_at", "rate_limit_per_min"};
  struct field_errors fe = {0};
  json_reject_unknown(body, NULL, allowed, sizeof(allowed) / sizeof(allowed[0]), &fe);
  const char *name = NULL;
  json_t *scopes = NULL;
  int env_idx = -1;
  bool live = true;
  int64_t rate = 0;
  json_get_str(body, "name", NULL, JSON_REQUIRED, 1, APIKEY_NAME_MAX, &name, &fe);
  json_get_arr(body, "scopes", NULL, JSON_REQUIRED, 3, &scopes, &fe);
  json_get_enum(body, "environment", NULL, JSON_OPTIONAL, env_values,
                sizeof(env_values) / sizeof(env_values[0]), &env_idx, &fe);
  json_get_bool(body, "live", NULL, JSON_OPTIONAL, &live, &fe);
  json_get_int(body, "rate_limit_per_min", NULL, JSON_OPTIONAL, 1, APIKEY_RATE_OVERRIDE_MAX, &rate,
               &fe);
  int64_t now = time_now_us();
  int64_t expires = parse_expiry(body, now, &fe);
  unsigned bits = scopes ? parse_scopes(ctx, scopes, &fe) : 0;
  if (fe.count) return api_validation(ctx, &fe);

  struct create_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  j->now_us = now;
  j->spec = (struct apikey_spec){.name = name,
                                 .scopes = bits,
                                 .env = env_idx >= 0 ? env_values[env_idx] : NULL,
                                 .live = live,
                                 .created_by = ctx->user.id,
                                 .expires_at = expires,
                                 .rate_limit_per_min = rate};
  int rc = store_write(api_store(ctx->api), create_tx, j);
  if (rc == KEEL_EDENIED) {
    crypto_wipe(j->out.key, sizeof(j->out.key));
    return api_plan_limit(ctx, "api_keys", j->out.plan_limit, j->out.plan);
  }
  if (rc == KEEL_EINVAL) {
    crypto_wipe(j->out.key, sizeof(j->out.key));
    return api_problem(ctx, "validation_failed", j->why);
  }
  if (rc) {
    crypto_wipe(j->out.key, sizeof(j->out.key));
    return api_status(ctx, rc);
  }
  apikeys_verifier_evict(area(ctx)->verifier, j->out.row.key_hash); /* any negative entry */
  json_t *doc = key_json(&j->out.row, now);
  json_object_set_new(doc, "key", json_string(j->out.key));
  crypto_wipe(j->out.key, sizeof(j->out.key));
  http_resp_header(ctx->req, "Cache-Control", "no-store");
  char *loc = arena_printf(ctx->arena, "/v1/orgs/%s/api-keys/%s", ctx->org.id, j->out.id);
  http_resp_header(ctx->req, "Location", loc);
  return api_json(ctx, 201, doc);
}

struct list_job {
  const struct org_scope *scope;
  const char *before_id;
  bool include_revoked;
  int64_t limit;
  int64_t now;
  json_t *data;
  int64_t n;
  char last_id[ID_STR_SIZE];
};

static int list_row(const struct apikey_row *row, void *arg) {
  struct list_job *j = arg;
  j->n++;
  if (j->n > j->limit) return 0; /* the look-ahead row: more exist */
  json_array_append_new(j->data, key_json(row, j->now));
  memcpy(j->last_id, row->id, sizeof(j->last_id));
  return 0;
}

static int list_tx(struct store_tx *tx, void *arg) {
  struct list_job *j = arg;
  return store_apikey_list(tx, j->scope, j->before_id, j->include_revoked, j->limit + 1, list_row,
                           j);
}

static int h_key_list(struct ctx *ctx) {
  struct list_job j = {.scope = &ctx->scope, .now = time_now_us()};
  if (api_query_limit(ctx, LIMIT_PAGE_MAX, &j.limit)) return 0;
  const char *inc = http_req_query(ctx->req, "include_revoked");
  if (inc) {
    if (strcmp(inc, "true") != 0 && strcmp(inc, "false") != 0) {
      return api_problem(ctx, "invalid_parameter", "include_revoked must be true or false");
    }
    j.include_revoked = strcmp(inc, "true") == 0;
  }
  const char *cursor = http_req_query(ctx->req, "cursor");
  char before[ID_STR_SIZE];
  if (cursor) {
    struct id last;
    if (api_cursor_decode(ctx, CURSOR_KIND_KEYS, ctx->scope.org_id, cursor, last.b,
                          sizeof(last.b)) != (long)sizeof(last.b)) {
      return api_problem(ctx, "invalid_parameter",
                         "cursor is not one this server issued for this list; start again "
                         "without it");
    }
    id_format(&last, before);
    j.before_id = before;
  }
  j.data = json_array();
  int rc = store_read(api_store(ctx->api), list_tx, &j);
  if (rc) {
    json_decref(j.data);
    return api_status(ctx, rc);
  }
  json_t *next = json_null();
  struct id last;
  char enc[128];
  if (j.n > j.limit && id_parse(slice_from_cstr(j.last_id), &last) == 0 &&
      api_cursor_encode(ctx, CURSOR_KIND_KEYS, ctx->scope.org_id, last.b, sizeof(last.b), enc,
                        sizeof(enc)) == 0) {
    next = json_string(enc);
  }
  return api_json(ctx, 200, json_pack("{s:o, s:o}", "data", j.data, "next_cursor", next));
}

/* The {id} parameter when it is a UUID; else answers 404 and returns NULL. */
static const char *key_id_param(struct ctx *ctx) {
  const char *id = ctx_param(ctx, "id");
  if (!id || !id_valid(slice_from_cstr(id))) {
    api_problem(ctx, "not_found", "no such API key");
    return NULL;
  }
  return id;
}

struct get_job {
  const struct org_scope *scope;
  const char *id;
  struct apikey_row row;
};

static int get_tx(struct store_tx *tx, void *arg) {
  struct get_job *j = arg;
  return store_apikey_get(tx, j->scope, j->id, &j->row);
}

static int h_key_get(struct ctx *ctx) {
  struct get_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->scope = &ctx->scope;
  if (!(j->id = key_id_param(ctx))) return 0;
  int rc = store_read(api_store(ctx->api), get_tx, j);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such API key");
  if (rc) return api_status(ctx, rc);
  return api_json(ctx, 200, key_json(&j->row, time_now_us()));
}

struct update_job {
  struct ctx *ctx;
  const char *id;
  const char *name; /* NULL: unchanged */
  bool set_rate;
  int64_t rate; /* 0: clear */
  struct apikey_row before, after;
};

static int update_tx(struct store_tx *tx, void *arg) {
  struct update_job *j = arg;
  int rc = store_apikey_get(tx, &j->ctx->scope, j->id, &j->before);
  if (rc) return rc;
  rc = store_apikey_update(tx, &j->ctx->scope, j->id, j->name, j->set_rate, j->rate);
  if (rc) return rc;
  if ((rc = store_apikey_get(tx, &j->ctx->scope, j->id, &j->after)) != 0) return rc;
  json_t *d = audit_details(&j->after);
  json_t *changes = json_object();
  if (j->name && strcmp(j->before.name, j->after.name) != 0) {
    json_object_set_new(changes, "name",
                        json_pack("{s:s, s:s}", "from", j->before.name, "to", j->after.name));
  }
  if (j->set_rate && j->before.rate_limit_per_min != j->after.rate_limit_per_min) {
    json_object_set_new(
        changes, "rate_limit_per_min",
        json_pack(
            "{s:o, s:o}", "from",
            j->before.rate_limit_per_min ? json_integer(j->before.rate_limit_per_min) : json_null(),
            "to",
            j->after.rate_limit_per_min ? json_integer(j->after.rate_limit_per_min) : json_null()));
  }
  json_object_set_new(d, "changes", changes);
  rc = ctx_audit(j->ctx, tx, "api_key.updated", "api_key", j->id, true, d);
  json_decref(d);
  return rc;
}

static int h_key_update(struct ctx *ctx) {
  struct update_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  if (!(j->id = key_id_param(ctx))) return 0;
  json_t *body = api_body_object(ctx);
  if (!body) return 0;
  static const char *const allowed[] = {"name", "rate_limit_per_min"};
  struct field_errors fe = {0};
  json_reject_unknown(body, NULL, allowed, sizeof(allowed) / sizeof(allowed[0]), &fe);
  json_get_str(body, "name", NULL, JSON_OPTIONAL, 1, APIKEY_NAME_MAX, &j->name, &fe);
  json_t *rate = json_object_get(body, "rate_limit_per_min");
  if (rate) {
    j->set_rate = true;
    if (!json_is_null(rate)) {
      json_get_int(body, "rate_limit_per_min", NULL, JSON_REQUIRED, 1, APIKEY_RATE_OVERRIDE_MAX,
                   &j->rate, &fe);
    }
  }
  if (fe.count) return api_validation(ctx, &fe);
  if (!j->name && !j->set_rate) {
    return api_problem(ctx, "validation_failed",
                       "nothing to change: send name and/or rate_limit_per_min");
  }
  int rc = store_write(api_store(ctx->api), update_tx, j);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such API key");
  if (rc == KEEL_ECONFLICT) {
    return api_problem(ctx, "conflict", "the API key is revoked; it cannot be changed");
  }
  if (rc) return api_status(ctx, rc);
  forget_key(ctx, &j->after, j->before.rate_limit_per_min != j->after.rate_limit_per_min);
  return api_json(ctx, 200, key_json(&j->after, time_now_us()));
}

struct revoke_job {
  struct ctx *ctx;
  const char *id;
  int64_t now;
  bool already;
  struct apikey_row row;
};

static int revoke_tx(struct store_tx *tx, void *arg) {
  struct revoke_job *j = arg;
  int rc = store_apikey_get(tx, &j->ctx->scope, j->id, &j->row);
  if (rc) return rc;
  rc = store_apikey_revoke(tx, &j->ctx->scope, j->id, j->now, &j->already);
  if (rc || j->already) return rc;
  json_t *d = audit_details(&j->row);
  rc = ctx_audit(j->ctx, tx, "api_key.revoked", "api_key", j->id, true, d);
  json_decref(d);
  return rc;
}

static int h_key_revoke(struct ctx *ctx) {
  struct revoke_job *j = arena_calloc(ctx->arena, 1, sizeof(*j));
  j->ctx = ctx;
  j->now = time_now_us();
  if (!(j->id = key_id_param(ctx))) return 0;
  int rc = store_write(api_store(ctx->api), revoke_tx, j);
  if (rc == KEEL_ENOTFOUND) return api_problem(ctx, "not_found", "no such API key");
  if (rc) return api_status(ctx, rc);
  forget_key(ctx, &j->row, true);
  http_resp_set(ctx->req, 204, NULL, NULL, 0);
  return 0;
}

/* --- whoami ------------------------------------------------------------------ */

/* The longest whoami body: its fixed text with every scope (229 bytes; 320
 * allowed), the fields that go as they are, the escaped ones at their
 * longest and six bytes a byte, and three numbers. */
#define WHOAMI_BODY_MAX                                                                     \
  (320 + 2 * ID_STR_SIZE + sizeof(((struct key_auth *)0)->prefix) +                         \
   sizeof(((struct key_auth *)0)->env) + 3 * I64_TEXT_MAX +                                 \
   BUF_JSON_ESCAPED_MAX(sizeof(((struct org *)0)->slug) + sizeof(((struct org *)0)->name) + \
                        sizeof(((struct org *)0)->plan) + sizeof(((struct plan *)0)->id) +  \
                        sizeof(((struct plan *)0)->name)))

/*
 * GET /v1/whoami. Never blocks (ROUTE_INLINE_KEY): everything comes from
 * ctx. The body is written into an array on the stack, sized for the
 * longest body, then copied into the response in one append, rather than
 * built with jansson (a tree and its serialisation cost more than
 * everything else on the path together) or with one buffer append per
 * piece (each growing the buffer). The shape is fixed and documented in
 * docs/openapi/40-keys.json.
 */
static int h_whoami(struct ctx *ctx) {
  const struct plan *plan = plans_get(ctx->org.plan);
  if (!plan) plan = plans_get(PLAN_DEFAULT);
  const struct key_auth *ka = &ctx->key;
  int64_t key_rate =
      ka->rate_override_per_min ? ka->rate_override_per_min : (plan ? plan->rate_per_min_key : 0);
  char body[WHOAMI_BODY_MAX];
  struct text t = text_init(body, sizeof(body));
  TEXT_LIT(&t, "{\"org\":{\"id\":");
  text_json_str(&t, ctx->org.id, false);
  TEXT_LIT(&t, ",\"slug\":");
  text_json_str(&t, ctx->org.slug, true);
  TEXT_LIT(&t, ",\"name\":");
  text_json_str(&t, ctx->org.name, true);
  TEXT_LIT(&t, ",\"plan\":");
  text_json_str(&t, ctx->org.plan, true);
  TEXT_LIT(&t, "},\"key\":{\"id\":");
  text_json_str(&t, ka->id, false);
  TEXT_LIT(&t, ",\"prefix\":");
  text_json_str(&t, ka->prefix, false);
  TEXT_LIT(&t, ",\"scopes\":[");
  bool first = true;
  for (size_t i = 0; i < sizeof(apikeys_scope_bits) / sizeof(apikeys_scope_bits[0]); i++) {
    if (!(ka->scopes & apikeys_scope_bits[i])) continue;
    if (!first) TEXT_LIT(&t, ",");
    text_json_str(&t, apikeys_scope_name(apikeys_scope_bits[i]), false);
    first = false;
  }
  TEXT_LIT(&t, "],\"environment\":");
  text_json_str(&t, ka->env, false);
  if (ka->live) {
    TEXT_LIT(&t, ",\"live\":true");
  } else {
    TEXT_LIT(&t, ",\"live\":false");
  }
  TEXT_LIT(&t, ",\"rate_limit_per_min\":");
  text_i64(&t, key_rate);
  TEXT_LIT(&t, "},\"plan\":");
  if (plan) {
    TEXT_LIT(&t, "{\"id\":");
    text_json_str(&t, plan->id, true);
    TEXT_LIT(&t, ",\"name\":");
    text_json_str(&t, plan->name, true);
    TEXT_LIT(&t, ",\"rate_per_min_key\":");
    text_i64(&t, plan->rate_per_min_key);
    TEXT_LIT(&t, ",\"rate_per_min_org\":");
    text_i64(&t, plan->rate_per_min_org);
    TEXT_LIT(&t, "}}");
  } else {
    TEXT_LIT(&t, "null}");
  }
  struct buf *b = &ctx->req->resp_body;
  buf_reset(b);
  if (t.over || buf_append(b, body, text_len(&t)) != 0) {
    return api_problem(ctx, "internal_error", "the response does not fit");
  }
  ctx->req->status = 200;
  ctx->req->content_type = "application/json";
  return 0;
}

/* --- development-only probes (--dev) ------------------------------------------- */

/* GET /v1/dev/keys/{scope}-probe and /v1/dev/orgs/{org}/key-probe: routes
 * that need one scope, or bind the key to {org}, with nothing behind them,
 * so the black-box tests can check the scope matrix and the org binding
 * before the data-plane routes that use them exist. Only routed with --dev. */
static int h_dev_key_probe(struct ctx *ctx) {
  return api_json(ctx, 200,
                  json_pack("{s:s, s:s, s:s}", "route", ctx->route->pattern, "actor",
                            ctx->actor == ACTOR_KEY    ? "api_key"
                            : ctx->actor == ACTOR_USER ? "user"
                                                       : "none",
                            "org_id", ctx->has_org ? ctx->scope.org_id : ""));
}

/* --- routes ------------------------------------------------------------------- */

static const struct route keys_routes[] = {
    {.method = HTTP_POST,
     .pattern = "/v1/orgs/{org}/api-keys",
     .handler = h_key_create,
     .auth = AUTH_SESSION,
     .permission = PERM_KEYS_MANAGE,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/api-keys",
     .handler = h_key_list,
     .auth = AUTH_SESSION,
     .permission = PERM_KEYS_MANAGE},
    {.method = HTTP_GET,
     .pattern = "/v1/orgs/{org}/api-keys/{id}",
     .handler = h_key_get,
     .auth = AUTH_SESSION,
     .permission = PERM_KEYS_MANAGE},
    {.method = HTTP_PATCH,
     .pattern = "/v1/orgs/{org}/api-keys/{id}",
     .handler = h_key_update,
     .auth = AUTH_SESSION,
     .permission = PERM_KEYS_MANAGE,
     .body = ROUTE_BODY_DEFAULT},
    {.method = HTTP_DELETE,
     .pattern = "/v1/orgs/{org}/api-keys/{id}",
     .handler = h_key_revoke,
     .auth = AUTH_SESSION,
     .permission = PERM_KEYS_MANAGE},
    {.method = HTTP_GET,
     .pattern = "/v1/whoami",
     .handler = h_whoami,
     .auth = AUTH_KEY,
     .flags = ROUTE_INLINE_KEY},
    {.method = HTTP_GET,
     .pattern = "/v1/dev/keys/ingest-probe",
     .handler = h_dev_key_probe,
     .auth = AUTH_KEY,
     .scope = SCOPE_INGEST,
     .flags = ROUTE_DEV | ROUTE_INLINE_KEY},
    {.method = HTTP_GET,
     .pattern = "/v1/dev/keys/read-probe",
     .handler = h_dev_key_probe,
     .auth = AUTH_KEY,
     .scope = SCOPE_READ,
     .flags = ROUTE_DEV},
    {.method = HTTP_GET,
     .pattern = "/v1/dev/keys/admin-probe",
     .handler = h_dev_key_probe,
     .auth = AUTH_ANY,
     .scope = SCOPE_ADMIN,
     .flags = ROUTE_DEV},
    {.method = HTTP_GET,
     .pattern = "/v1/dev/orgs/{org}/key-probe",
     .handler = h_dev_key_probe,
     .auth = AUTH_ANY,
     .flags = ROUTE_DEV},
};

const struct route *routes_keys(size_t *count) {
  *count = sizeof(keys_routes) / sizeof(keys_routes[0]);
  return keys_routes;
}
