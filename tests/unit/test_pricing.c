/*
 * test_pricing.c — the cost of LLM calls against hand-computed values
 * (tests/fixtures/keel_prices_test.json, loaded as the override file over
 * the built-in table), the loader's refusals, and USD formatting/parsing.
 *
 * Arithmetic reminder: a price of P USD per million tokens costs
 * P x 1000 nano-USD per 1000 tokens; e.g. 1000 tokens at $3.00 = 3 000 000
 * nano-USD ($0.003).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/errors.h"
#include "core/limits.h"
#include "core/time.h"
#include "domain/pricing.h"

#define FIXTURE "tests/fixtures/keel_prices_test.json"

static const char *source_root(void) {
  const char *root = getenv("KEEL_SOURCE_ROOT");
  return root && root[0] ? root : KEEL_SOURCE_ROOT;
}

static void load_fixture(void) {
  char path[1024], err[512];
  snprintf(path, sizeof(path), "%s/%s", source_root(), FIXTURE);
  if (pricing_load(path, err, sizeof(err)) != 0) fail_msg("fixture: %s", err);
}

static int64_t at(const char *rfc3339) {
  int64_t us;
  if (time_parse_rfc3339(slice_from_cstr(rfc3339), &us) != 0) fail_msg("bad time %s", rfc3339);
  return us;
}

/* --- the cost table --------------------------------------------------------- */

#define T_DEFAULT "2025-07-01T00:00:00Z"

struct cost_case {
  const char *name;
  const char *org, *provider, *model;
  const char *when; /* NULL: T_DEFAULT */
  int64_t in, out, reasoning, cache_read, cache_write;
  const char *client_usd; /* NULL: none */
  int64_t want_cost, want_table;
  unsigned want_flags;
  const char *want_model; /* NULL: unpriced */
  int64_t want_tier;      /* tier threshold applied, 0 for base */
};

#define UNPRICED PRICING_UNPRICED
#define CLIENT   PRICING_CLIENT_SUPPLIED
#define CLAMPED  PRICING_TOKENS_CLAMPED
#define BEFORE   PRICING_BEFORE_EFFECTIVE
#define ORG      PRICING_ORG_PRICE

static const struct cost_case cost_cases[] = {
    /* basic: $3 in, $15 out. 1000 x 3 + 500 x 15 (x 1000 nano) */
    {"plain", NULL, "acme", "basic", NULL, 1000, 500, 0, 0, 0, NULL, 10500000, 10500000, 0, "basic",
     0},
    {"any provider", NULL, "", "basic", NULL, 1000, 500, 0, 0, 0, NULL, 10500000, 10500000, 0,
     "basic", 0},
    {"case-insensitive", NULL, "ACME", "Basic", NULL, 1000, 500, 0, 0, 0, NULL, 10500000, 10500000,
     0, "basic", 0},
    {"zero tokens", NULL, "acme", "basic", NULL, 0, 0, 0, 0, 0, NULL, 0, 0, 0, "basic", 0},
    /* cachey: uncached 2000 x 3 + read 6000 x 0.30 + write 2000 x 3.75 + out 1000 x 15 */
    {"cache read and write", NULL, "acme", "cachey", NULL, 10000, 1000, 0, 6000, 2000, NULL,
     30300000, 30300000, 0, "cachey", 0},
    /* no cache prices: cached tokens at the input rate, i.e. 10000 x 3, counted once */
    {"cache without cache prices", NULL, "acme", "basic", NULL, 10000, 0, 0, 6000, 2000, NULL,
     30000000, 30000000, 0, "basic", 0},
    /* thinker: 1000 x 1.10 + visible 1000 x 4.40 + reasoning 2000 x 8.80 */
    {"reasoning price", NULL, "acme", "thinker", NULL, 1000, 3000, 2000, 0, 0, NULL, 23100000,
     23100000, 0, "thinker", 0},
    /* no reasoning price: reasoning at the output rate, 3000 x 15, never 5000 x 15 */
    {"reasoning at output rate", NULL, "acme", "basic", NULL, 0, 3000, 2000, 0, 0, NULL, 45000000,
     45000000, 0, "basic", 0},
    /* tiered: base 1.25/10 up to 200000 input tokens; 2.50/15 above; 5.00 above 1M */
    {"tier boundary N", NULL, "acme", "tiered", NULL, 200000, 1000, 0, 0, 0, NULL, 260000000,
     260000000, 0, "tiered", 0},
    {"tier boundary N+1", NULL, "acme", "tiered", NULL, 200001, 1000, 0, 0, 0, NULL, 515002500,
     515002500, 0, "tiered", 200000},
    /* tier by all input tokens (cache included): 200000 x 2.50 + 100000 x 0.25 */
    {"tier with cache read", NULL, "acme", "tiered", NULL, 300000, 0, 0, 100000, 0, NULL, 525000000,
     525000000, 0, "tiered", 200000},
    /* second tier states input only: output 15 from the tier below */
    {"second tier inherits", NULL, "acme", "tiered", NULL, 1000001, 1000, 0, 0, 0, NULL, 5015005000,
     5015005000, 0, "tiered", 1000000},
    /* dated: $10 from 2025-01-01, $2 from 2025-06-10 */
    {"dated before change", NULL, "acme", "dated", "2025-06-09T23:59:59.999999Z", 1000000, 0, 0, 0,
     0, NULL, 10000000000, 10000000000, 0, "dated", 0},
    {"dated at change", NULL, "acme", "dated", "2025-06-10T00:00:00Z", 1000000, 0, 0, 0, 0, NULL,
     2000000000, 2000000000, 0, "dated", 0},
    {"before every row", NULL, "acme", "dated", "2024-12-31T23:59:59Z", 1000000, 0, 0, 0, 0, NULL,
     10000000000, 10000000000, BEFORE, "dated", 0},
    {"only a future row", NULL, "beta", "later", NULL, 1000000, 0, 0, 0, 0, NULL, 1000000000,
     1000000000, BEFORE, "later", 0},
    /* names: fam $1 in; fam-mini $0.10; beta's fam $5 */
    {"alias", NULL, "acme", "fam-2025-01-01", NULL, 1000000, 0, 0, 0, 0, NULL, 1000000000,
     1000000000, 0, "fam", 0},
    {"prefix", NULL, "acme", "fam-2026-02-02", NULL, 1000000, 0, 0, 0, 0, NULL, 1000000000,
     1000000000, 0, "fam", 0},
    {"prefix after '@'", NULL, "", "fam@2026", NULL, 1000000, 0, 0, 0, 0, NULL, 1000000000,
     1000000000, 0, "fam", 0},
    {"longest prefix", NULL, "acme", "fam-mini-2025-05-05", NULL, 1000000, 0, 0, 0, 0, NULL,
     100000000, 100000000, 0, "fam-mini", 0},
    {"prefix needs a boundary", NULL, "acme", "famous", NULL, 1000000, 0, 0, 0, 0, NULL, 0, 0,
     UNPRICED, NULL, 0},
    {"provider picks the row", NULL, "beta", "fam", NULL, 1000000, 0, 0, 0, 0, NULL, 5000000000,
     5000000000, 0, "fam", 0},
    {"other provider", NULL, "acme", "fam", NULL, 1000000, 0, 0, 0, 0, NULL, 1000000000, 1000000000,
     0, "fam", 0},
    {"unknown provider: table order", NULL, "nobody", "fam", NULL, 1000000, 0, 0, 0, 0, NULL,
     1000000000, 1000000000, 0, "fam", 0},
    {"provider without the alias", NULL, "beta", "fam-latest", NULL, 1000000, 0, 0, 0, 0, NULL,
     1000000000, 1000000000, 0, "fam", 0},
    /* unknown model: 0 and a flag; the client's cost still wins */
    {"unknown model", NULL, "acme", "nope", NULL, 1000, 500, 0, 0, 0, NULL, 0, 0, UNPRICED, NULL,
     0},
    {"empty model", NULL, "acme", "", NULL, 1000, 500, 0, 0, 0, NULL, 0, 0, UNPRICED, NULL, 0},
    {"unknown model, client cost", NULL, "acme", "nope", NULL, 1000, 500, 0, 0, 0, "0.5", 500000000,
     0, UNPRICED | CLIENT, NULL, 0},
    {"client cost wins", NULL, "acme", "basic", NULL, 1000, 500, 0, 0, 0, "0.01", 10000000,
     10500000, CLIENT, "basic", 0},
    {"client cost zero", NULL, "acme", "basic", NULL, 1000, 500, 0, 0, 0, "0", 0, 10500000, CLIENT,
     "basic", 0},
    /* cache tokens above input: uncached clamped at 0; 150 x 0.30 */
    {"cache above input", NULL, "acme", "cachey", NULL, 100, 0, 0, 150, 0, NULL, 45000, 45000,
     CLAMPED, "cachey", 0},
    /* reasoning above output: visible clamped at 0; 300 x 15 */
    {"reasoning above output", NULL, "acme", "basic", NULL, 0, 100, 300, 0, 0, NULL, 4500000,
     4500000, CLAMPED, "basic", 0},
    /* cheap: $0.075 in (75 nano a token), $0.01875 cache read (18.75), $0.0125 write (12.5) */
    {"fractional price exact", NULL, "acme", "cheap", NULL, 1, 0, 0, 0, 0, NULL, 75, 75, 0, "cheap",
     0},
    {"rounded once, not per part", NULL, "acme", "cheap", NULL, 3, 0, 0, 2, 1, NULL, 50, 50, 0,
     "cheap", 0},
    {"rounds up from .75", NULL, "acme", "cheap", NULL, 1, 0, 0, 1, 0, NULL, 19, 19, 0, "cheap", 0},
    {"rounds half up", NULL, "acme", "cheap", NULL, 2, 0, 0, 2, 0, NULL, 38, 38, 0, "cheap", 0},
    {"write half rounds up", NULL, "acme", "cheap", NULL, 1, 0, 0, 0, 1, NULL, 13, 13, 0, "cheap",
     0},
    /* 3 x 18.75 = 56.25 */
    {"rounds down below half", NULL, "acme", "cheap", NULL, 3, 0, 0, 3, 0, NULL, 56, 56, 0, "cheap",
     0},
    /* org-1: basic at $1/$1; dated at $4 from 2025-03-01 */
    {"org price", "org-1", "acme", "basic", NULL, 1000, 500, 0, 0, 0, NULL, 1500000, 1500000, ORG,
     "basic", 0},
    {"other org", "org-2", "acme", "basic", NULL, 1000, 500, 0, 0, 0, NULL, 10500000, 10500000, 0,
     "basic", 0},
    {"org row not yet in effect", "org-1", "acme", "dated", "2025-02-01T00:00:00Z", 1000000, 0, 0,
     0, 0, NULL, 10000000000, 10000000000, 0, "dated", 0},
    {"org row in effect", "org-1", "acme", "dated", "2025-04-01T00:00:00Z", 1000000, 0, 0, 0, 0,
     NULL, 4000000000, 4000000000, ORG, "dated", 0},
    {"org row wins over a later global row", "org-1", "acme", "dated", NULL, 1000000, 0, 0, 0, 0,
     NULL, 4000000000, 4000000000, ORG, "dated", 0},
    /* the file's gpt-4o-mini starts in 2030: until then the built-in 0.15/0.60 */
    {"built-in under a future file row", NULL, "openai", "gpt-4o-mini", NULL, 1000000, 1000000, 0,
     0, 0, NULL, 750000000, 750000000, 0, "gpt-4o-mini", 0},
    {"file row once in effect", NULL, "openai", "gpt-4o-mini", "2030-01-02T00:00:00Z", 1000000,
     1000000, 0, 0, 0, NULL, 2000000000, 2000000000, 0, "gpt-4o-mini", 0},
    /* built-in rows: Claude Sonnet 4.5 above 200k input ($6), a Gemini preview by prefix, and
     * DeepSeek's price of 2025-09-29 */
    {"built-in alias and tier", NULL, "anthropic", "claude-sonnet-4-5-20250929",
     "2025-10-01T00:00:00Z", 200001, 0, 0, 0, 0, NULL, 1200006000, 1200006000, 0,
     "claude-sonnet-4-5", 200000},
    {"built-in prefix", NULL, "", "gemini-2.5-pro-preview-06-05", NULL, 1000, 1000, 0, 0, 0, NULL,
     11250000, 11250000, 0, "gemini-2.5-pro", 0},
    {"built-in dated row", NULL, "deepseek", "deepseek-chat", "2025-10-01T00:00:00Z", 1000000, 0, 0,
     0, 0, NULL, 280000000, 280000000, 0, "deepseek-chat", 0},
    /* token bound N: exact at the ceiling ($3 x 1e12 tokens = $3 000 000) */
    {"tokens at the limit", NULL, "acme", "basic", NULL, LIMIT_PRICE_TOKENS_MAX, 0, 0, 0, 0, NULL,
     3000000000000000, 3000000000000000, 0, "basic", 0},
};

static void test_cost_table(void **state) {
  (void)state;
  load_fixture();
  for (size_t i = 0; i < sizeof(cost_cases) / sizeof(cost_cases[0]); i++) {
    const struct cost_case *c = &cost_cases[i];
    struct pricing_usage u = {.org_id = c->org,
                              .provider = slice_from_cstr(c->provider),
                              .model = slice_from_cstr(c->model),
                              .input_tokens = c->in,
                              .output_tokens = c->out,
                              .reasoning_tokens = c->reasoning,
                              .cache_read_tokens = c->cache_read,
                              .cache_write_tokens = c->cache_write};
    if (c->client_usd) {
      u.has_client_cost = true;
      if (pricing_parse_usd(slice_from_cstr(c->client_usd), &u.client_cost_nano) != 0) {
        fail_msg("%s: bad client cost", c->name);
      }
    }
    struct pricing_result r;
    int rc = pricing_cost(&u, at(c->when ? c->when : T_DEFAULT), &r);
    if (rc != 0) fail_msg("%s: rc %d", c->name, rc);
    if (r.cost_nano != c->want_cost || r.table_cost_nano != c->want_table) {
      fail_msg("%s: cost %lld table %lld, want %lld and %lld", c->name, (long long)r.cost_nano,
               (long long)r.table_cost_nano, (long long)c->want_cost, (long long)c->want_table);
    }
    if (r.flags != c->want_flags)
      fail_msg("%s: flags %#x, want %#x", c->name, r.flags, c->want_flags);
    if (c->want_model) {
      if (!r.model || strcmp(r.model, c->want_model) != 0) {
        fail_msg("%s: priced as %s, want %s", c->name, r.model ? r.model : "(none)", c->want_model);
      }
      assert_non_null(r.provider);
      assert_non_null(r.effective_from);
      assert_int_equal(strlen(r.effective_from), 10);
    } else if (r.model) {
      fail_msg("%s: priced as %s, want unpriced", c->name, r.model);
    }
    if (r.tier_above_input_tokens != c->want_tier) {
      fail_msg("%s: tier %lld, want %lld", c->name, (long long)r.tier_above_input_tokens,
               (long long)c->want_tier);
    }
  }
  pricing_shutdown();
}

/* The billed counts: uncached input and visible output, after clamping. */
static void test_billed_tokens(void **state) {
  (void)state;
  load_fixture();
  struct pricing_usage u = {.provider = SLICE_LIT("acme"),
                            .model = SLICE_LIT("cachey"),
                            .input_tokens = 10000,
                            .output_tokens = 1000,
                            .reasoning_tokens = 400,
                            .cache_read_tokens = 6000,
                            .cache_write_tokens = 2000};
  struct pricing_result r;
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.uncached_input_tokens, 2000);
  assert_int_equal(r.visible_output_tokens, 600);
  assert_string_equal(r.provider, "acme");
  assert_string_equal(r.effective_from, "2025-01-01");
  u.cache_read_tokens = 20000;
  u.reasoning_tokens = 5000;
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.uncached_input_tokens, 0);
  assert_int_equal(r.visible_output_tokens, 0);
  assert_true(r.flags & PRICING_TOKENS_CLAMPED);
  pricing_shutdown();
}

static void test_cost_refusals(void **state) {
  (void)state;
  load_fixture();
  struct pricing_result r;
  struct pricing_usage u = {.provider = SLICE_LIT("acme"), .model = SLICE_LIT("basic")};
  int64_t *fields[] = {&u.input_tokens, &u.output_tokens, &u.reasoning_tokens, &u.cache_read_tokens,
                       &u.cache_write_tokens};
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    *fields[i] = -1;
    assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), KEEL_EINVAL);
    assert_int_equal(r.cost_nano, 0);
    *fields[i] = LIMIT_PRICE_TOKENS_MAX + 1; /* N+1 */
    assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), KEEL_EINVAL);
    *fields[i] = 0;
  }
  u.has_client_cost = true;
  u.client_cost_nano = -1;
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), KEEL_EINVAL);
  /* $1 000 000 per million tokens x 1e12 tokens does not fit in int64 nano-USD. */
  struct pricing_usage big = {.model = SLICE_LIT("huge"), .input_tokens = LIMIT_PRICE_TOKENS_MAX};
  assert_int_equal(pricing_cost(&big, at(T_DEFAULT), &r), KEEL_ETOOBIG);
  big.input_tokens = 1000000;
  assert_int_equal(pricing_cost(&big, at(T_DEFAULT), &r), 0);
  assert_true(r.cost_nano == INT64_C(1000000000000000));
  /* a model name longer than the limit is unknown, not an error */
  char longname[LIMIT_PRICE_MODEL_MAX + 2];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  struct pricing_usage lu = {.model = slice_from_cstr(longname), .input_tokens = 1};
  assert_int_equal(pricing_cost(&lu, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.flags, PRICING_UNPRICED);
  pricing_shutdown();
}

/* After pricing_shutdown nothing is priced; the built-in table alone knows
 * the providers' models but not the fixture's. */
static void test_builtin_only(void **state) {
  (void)state;
  char err[512];
  struct pricing_result r;
  struct pricing_usage u = {.model = SLICE_LIT("gpt-4o-mini"), .input_tokens = 1000000};
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.flags, PRICING_UNPRICED);
  assert_int_equal(pricing_load(NULL, err, sizeof(err)), 0);
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.cost_nano, 150000000);
  /* gpt-4o's price changed on 2024-10-02 */
  u.model = SLICE_LIT("gpt-4o");
  assert_int_equal(pricing_cost(&u, at("2024-10-01T12:00:00Z"), &r), 0);
  assert_int_equal(r.cost_nano, 5000000000);
  assert_int_equal(pricing_cost(&u, at("2024-10-02T00:00:00Z"), &r), 0);
  assert_int_equal(r.cost_nano, 2500000000);
  u.model = SLICE_LIT("basic");
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.flags, PRICING_UNPRICED);
  /* an org id without an orgs section is fine */
  u.org_id = "org-1";
  u.model = SLICE_LIT("gpt-4o-mini");
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.cost_nano, 150000000);
  pricing_shutdown();
}

/* --- the loader ---------------------------------------------------------------- */

#define ROW_OK                                                                      \
  "{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", " \
  "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}}"

static const struct {
  const char *json;
  const char *want; /* a substring of the message */
} bad_files[] = {
    {"{\"models\": [", "line"},
    {"[]", "must be a JSON object"},
    {"{\"models\": {}}", "must be an array"},
    {"{\"models\": [], \"extra\": 1}", "unknown member 'extra'"},
    {"{\"format\": \"keel-prices/2\", \"models\": []}", "format must be"},
    {"{\"models\": [], \"models\": []}", "duplicate"},
    {"{\"models\": [42]}", "must be an object"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"cache_reads\": 1, \"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}}]}",
     "unknown member 'cache_reads'"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\", \"cached\": \"1\"}}]}",
     "unknown member 'cached'"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"output\": \"2\"}}]}",
     "usd_per_mtok.input is required"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": 2.5, \"output\": \"2\"}}]}",
     "decimal strings"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"0.0000000001\", \"output\": \"2\"}}]}",
     "at most 9 decimals"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"-1\", \"output\": \"2\"}}]}",
     "usd_per_mtok.input must be a decimal"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"1000000.000000001\", \"output\": \"2\"}}]}",
     "ceiling"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-13-01\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}}]}",
     "effective_from must be a date"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-1-1\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}}]}",
     "effective_from must be a date"},
    {"{\"models\": [{\"provider\": \"ac me\", \"model\": \"m\", \"effective_from\": "
     "\"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}}]}",
     "provider must be"},
    {"{\"models\": [{\"provider\": \"acme\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}}]}",
     "model must be"},
    {"{\"models\": [" ROW_OK ", " ROW_OK "]}", "a second row for the same date"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}, \"tiers\": ["
     "{\"above_input_tokens\": 200, \"usd_per_mtok\": {\"input\": \"2\"}},"
     "{\"above_input_tokens\": 100, \"usd_per_mtok\": {\"input\": \"3\"}}]}]}",
     "ascending"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}, \"tiers\": ["
     "{\"above_input_tokens\": 0, \"usd_per_mtok\": {\"input\": \"2\"}}]}]}",
     "positive integer"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"m\", \"effective_from\": \"2025-01-01\", "
     "\"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}, \"tiers\": ["
     "{\"above_input_tokens\": 1, \"usd_per_mtok\": {}}, {\"above_input_tokens\": 2, "
     "\"usd_per_mtok\": {}}, {\"above_input_tokens\": 3, \"usd_per_mtok\": {}}, "
     "{\"above_input_tokens\": 4, \"usd_per_mtok\": {}}, {\"above_input_tokens\": 5, "
     "\"usd_per_mtok\": {}}, {\"above_input_tokens\": 6, \"usd_per_mtok\": {}}, "
     "{\"above_input_tokens\": 7, \"usd_per_mtok\": {}}, {\"above_input_tokens\": 8, "
     "\"usd_per_mtok\": {}}, {\"above_input_tokens\": 9, \"usd_per_mtok\": {}}]}]}",
     "at most 8 tiers"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"a\", \"aliases\": [\"x\"], "
     "\"effective_from\": \"2025-01-01\", \"usd_per_mtok\": {\"input\": \"1\", \"output\": \"2\"}},"
     "{\"provider\": \"acme\", \"model\": \"b\", \"aliases\": [\"X\"], "
     "\"effective_from\": \"2025-01-01\", \"usd_per_mtok\": {\"input\": \"1\", \"output\": "
     "\"2\"}}]}",
     "designates two acme models"},
    {"{\"models\": [{\"provider\": \"acme\", \"model\": \"a\", \"aliases\": \"x\", "
     "\"effective_from\": \"2025-01-01\", \"usd_per_mtok\": {\"input\": \"1\", \"output\": "
     "\"2\"}}]}",
     "aliases must be"},
    {"{\"models\": [], \"orgs\": []}", "orgs must be an object"},
    {"{\"models\": [], \"orgs\": {\"org-1\": [{\"provider\": \"acme\"}]}}", "orgs.org-1[0]"},
};

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
}

static void test_load_refusals(void **state) {
  (void)state;
  char path[] = "/tmp/keel-test-prices-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  load_fixture();
  for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
    char err[512] = "";
    write_text(path, bad_files[i].json);
    if (pricing_load(path, err, sizeof(err)) == 0) fail_msg("case %zu loaded", i);
    if (!strstr(err, bad_files[i].want) || !strstr(err, path)) {
      fail_msg("case %zu: message '%s' lacks '%s' or the path", i, err, bad_files[i].want);
    }
  }
  /* nothing was half-loaded: the fixture's table still prices */
  struct pricing_usage u = {.model = SLICE_LIT("basic"), .input_tokens = 1000};
  struct pricing_result r;
  assert_int_equal(pricing_cost(&u, at(T_DEFAULT), &r), 0);
  assert_int_equal(r.cost_nano, 3000000);
  /* the good cases of the same shapes load */
  write_text(path, "{\"models\": [" ROW_OK "], \"orgs\": {}}");
  char err[512];
  assert_int_equal(pricing_load(path, err, sizeof(err)), 0);
  write_text(path, "{}");
  assert_int_equal(pricing_load(path, err, sizeof(err)), 0);
  unlink(path);
  assert_int_equal(pricing_load(path, err, sizeof(err)), -1);
  assert_non_null(strstr(err, path));
  pricing_shutdown();
}

/* --- money --------------------------------------------------------------------- */

static const struct {
  int64_t nano;
  const char *text;
} usd_formats[] = {
    {0, "0.000000000"},
    {1, "0.000000001"},
    {123450, "0.000123450"},
    {1000000000, "1.000000000"},
    {1234567890123, "1234.567890123"},
    {INT64_MAX, "9223372036.854775807"},
    {-1, "-0.000000001"},
    {INT64_MIN, "-9223372036.854775808"},
};

static void test_format_usd(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(usd_formats) / sizeof(usd_formats[0]); i++) {
    char out[PRICING_USD_MAX];
    size_t n = pricing_format_usd(usd_formats[i].nano, out);
    assert_string_equal(out, usd_formats[i].text);
    assert_int_equal(n, strlen(usd_formats[i].text));
    int64_t back = -42;
    if (usd_formats[i].nano >= 0) {
      assert_int_equal(pricing_parse_usd(slice_from_cstr(out), &back), 0);
      assert_true(back == usd_formats[i].nano);
    }
  }
}

static const struct {
  const char *text;
  int64_t nano;
} usd_parses[] = {
    {"0", 0},
    {"0.00012345", 123450},
    {"1", 1000000000},
    {"12.5", 12500000000},
    {"0.000000001", 1},
    {"007.50", 7500000000},
    {"9223372036.854775807", INT64_MAX},
};

static const char *const usd_rejects[] = {
    "",    "1e-3", "-1",   "+1",  "abc",  ".5", "1.",  "1.0000000001",         " 1",          "1 ",
    "1,5", "0x10", "1..2", "NaN", "1.5.", "-0", "1e3", "9223372036.854775808", "99999999999",
};

static void test_parse_usd(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(usd_parses) / sizeof(usd_parses[0]); i++) {
    int64_t v = -42;
    if (pricing_parse_usd(slice_from_cstr(usd_parses[i].text), &v) != 0) {
      fail_msg("'%s' rejected", usd_parses[i].text);
    }
    assert_true(v == usd_parses[i].nano);
  }
  for (size_t i = 0; i < sizeof(usd_rejects) / sizeof(usd_rejects[0]); i++) {
    int64_t v = -42;
    if (pricing_parse_usd(slice_from_cstr(usd_rejects[i]), &v) == 0) {
      fail_msg("'%s' accepted", usd_rejects[i]);
    }
    assert_true(v == -42); /* untouched */
  }
  /* not NUL-terminated: only the slice counts */
  int64_t v;
  assert_int_equal(pricing_parse_usd(slice_make("1.25xyz", 4), &v), 0);
  assert_true(v == 1250000000);
}

static void test_usd_from_json(void **state) {
  (void)state;
  struct {
    json_t *v;
    int ok;
    int64_t nano;
  } cases[] = {
      {json_string("0.25"), 0, 250000000},
      {json_integer(2), 0, 2000000000},
      {json_real(0.1), 0, 100000000},
      {json_real(0.000123), 0, 123000},
      {json_real(1e-10), 0, 0},
      {json_real(0.0), 0, 0},
      {json_string("1e-3"), -1, 0},
      {json_real(-0.5), -1, 0},
      {json_integer(-1), -1, 0},
      {json_integer(9223372037), -1, 0},
      {json_real(1e10), -1, 0},
      {json_true(), -1, 0},
      {json_null(), -1, 0},
      {json_object(), -1, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int64_t nano = -42;
    int rc = pricing_usd_from_json(cases[i].v, &nano);
    if (rc != cases[i].ok) fail_msg("case %zu: rc %d", i, rc);
    if (rc == 0 && nano != cases[i].nano) fail_msg("case %zu: %lld", i, (long long)nano);
    json_decref(cases[i].v);
  }
}

static void test_flag_names(void **state) {
  (void)state;
  const char *names[PRICING_FLAG_COUNT];
  for (unsigned i = 0; i < PRICING_FLAG_COUNT; i++) {
    names[i] = pricing_flag_name(1u << i);
    assert_non_null(names[i]);
    for (unsigned j = 0; j < i; j++) assert_string_not_equal(names[i], names[j]);
  }
  assert_string_equal(pricing_flag_name(PRICING_UNPRICED), "unpriced");
  assert_string_equal(pricing_flag_name(PRICING_CLIENT_SUPPLIED), "client_supplied");
  assert_null(pricing_flag_name(0));
  assert_null(pricing_flag_name(1u << PRICING_FLAG_COUNT));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cost_table),    cmocka_unit_test(test_billed_tokens),
      cmocka_unit_test(test_cost_refusals), cmocka_unit_test(test_builtin_only),
      cmocka_unit_test(test_load_refusals), cmocka_unit_test(test_format_usd),
      cmocka_unit_test(test_parse_usd),     cmocka_unit_test(test_usd_from_json),
      cmocka_unit_test(test_flag_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
