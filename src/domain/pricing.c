/*
 * pricing.c — prices LLM calls with the loaded table (pricing_table.c),
 * and reads and writes USD amounts. Rules: pricing.h and docs/pricing.md.
 *
 * Invariants:
 *  - The table is replaced whole: pricing_load builds a complete new table
 *    and swaps it in only when every layer loaded, so a bad override file
 *    never leaves a half-loaded table.
 *  - A cost is computed exactly (whole nano-USD plus a remainder in 1e-6
 *    nano-USD) and rounded once, half up.
 */
#include "domain/pricing.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/errors.h"
#include "core/limits.h"
#include "domain/pricing_int.h"

/* A price of nano-USD per million tokens, split into whole nano-USD per
 * token and a remainder, keeps tokens x price exact in int64. */
#define TOKENS_PER_MTOK INT64_C(1000000)

static const struct {
  unsigned bit;
  const char *name;
} flag_names[PRICING_FLAG_COUNT] = {
    {PRICING_UNPRICED, "unpriced"},
    {PRICING_CLIENT_SUPPLIED, "client_supplied"},
    {PRICING_TOKENS_CLAMPED, "tokens_clamped"},
    {PRICING_BEFORE_EFFECTIVE, "before_effective"},
    {PRICING_ORG_PRICE, "org_price"},
};

static struct price_table table;

/* --- money ------------------------------------------------------------------ */

size_t pricing_format_usd(int64_t nano, char out[PRICING_USD_MAX]) {
  uint64_t mag = nano < 0 ? (uint64_t)0 - (uint64_t)nano : (uint64_t)nano;
  uint64_t per = (uint64_t)PRICING_NANO_PER_USD;
  int n = snprintf(out, PRICING_USD_MAX, "%s%llu.%09llu", nano < 0 ? "-" : "",
                   (unsigned long long)(mag / per), (unsigned long long)(mag % per));
  return n > 0 ? (size_t)n : 0;
}

int pricing_parse_usd(struct slice s, int64_t *nano) {
  const int64_t whole_max = INT64_MAX / PRICING_NANO_PER_USD;
  size_t i = 0;
  int64_t whole = 0, frac = 0;
  int decimals = 0;

  if (s.len == 0 || s.p[0] < '0' || s.p[0] > '9') return -1;
  for (; i < s.len && s.p[i] >= '0' && s.p[i] <= '9'; i++) {
    whole = whole * 10 + (s.p[i] - '0');
    if (whole > whole_max) return -1;
  }
  if (i < s.len) {
    if (s.p[i] != '.' || i + 1 == s.len) return -1;
    for (i++; i < s.len; i++) {
      if (s.p[i] < '0' || s.p[i] > '9' || decimals == 9) return -1;
      frac = frac * 10 + (s.p[i] - '0');
      decimals++;
    }
  }
  for (; decimals < 9; decimals++) frac *= 10;
  if (whole == whole_max && frac > INT64_MAX % PRICING_NANO_PER_USD) return -1;
  *nano = whole * PRICING_NANO_PER_USD + frac;
  return 0;
}

int pricing_usd_from_json(const json_t *v, int64_t *nano) {
  if (json_is_string(v)) {
    return pricing_parse_usd(slice_make(json_string_value(v), json_string_length(v)), nano);
  }
  if (json_is_integer(v)) {
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > INT64_MAX / PRICING_NANO_PER_USD) return -1;
    *nano = (int64_t)n * PRICING_NANO_PER_USD;
    return 0;
  }
  if (json_is_real(v)) {
    /* A binary float is inexact anyway: round half up to nano-USD. The
     * bound is below INT64_MAX by more than the float's granularity. */
    double scaled = json_real_value(v) * (double)PRICING_NANO_PER_USD;
    if (!isfinite(scaled) || scaled < 0 || scaled >= 9.2e18) return -1;
    *nano = (int64_t)(scaled + 0.5);
    return 0;
  }
  return -1;
}

const char *pricing_flag_name(unsigned flag) {
  for (size_t i = 0; i < PRICING_FLAG_COUNT; i++) {
    if (flag_names[i].bit == flag) return flag_names[i].name;
  }
  return NULL;
}

/* --- the table -------------------------------------------------------------- */

int pricing_load(const char *override_path, char *err, size_t errlen) {
  struct price_table t;
  if (pricing_table_load(&t, override_path, err, errlen) != 0) return -1;
  pricing_table_free(&table);
  table = t;
  return 0;
}

void pricing_shutdown(void) {
  pricing_table_free(&table);
}

/* --- lookup ------------------------------------------------------------------ */

/* First index of v[0..n) whose name is >= key. */
static size_t names_lower_bound(const struct price_name *v, size_t n, const char *key) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(v[mid].name, key) < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/* Characters after which a prefix model matches: "claude-3-5-sonnet" prices
 * "claude-3-5-sonnet-20241022" and "...@20241022", not "gpt-4" "gpt-4o". */
static bool prefix_boundary(char c) {
  return c == '-' || c == ':' || c == '@' || c == '/';
}

static bool provider_is(const struct price_layer *l, size_t model, const char *provider) {
  return !provider || strcmp(l->models[model].provider, provider) == 0;
}

/* Exact id, then alias, then longest prefix; provider NULL: any. */
static const struct price_model *layer_find(const struct price_layer *l, const char *provider,
                                            const char *model, size_t len) {
  const struct price_model *alias = NULL;
  for (size_t i = names_lower_bound(l->names, l->nnames, model);
       i < l->nnames && strcmp(l->names[i].name, model) == 0; i++) {
    if (!provider_is(l, l->names[i].model, provider)) continue;
    if (l->names[i].kind == NAME_EXACT) return &l->models[l->names[i].model];
    if (!alias) alias = &l->models[l->names[i].model];
  }
  if (alias || l->nprefixes == 0) return alias;
  char head[LIMIT_PRICE_MODEL_MAX + 1];
  for (size_t cut = len - 1; cut > 0; cut--) {
    if (!prefix_boundary(model[cut])) continue;
    memcpy(head, model, cut);
    head[cut] = '\0';
    for (size_t i = names_lower_bound(l->prefixes, l->nprefixes, head);
         i < l->nprefixes && strcmp(l->prefixes[i].name, head) == 0; i++) {
      if (provider_is(l, l->prefixes[i].model, provider)) return &l->models[l->prefixes[i].model];
    }
  }
  return NULL;
}

static const struct price_model *layer_match(const struct price_layer *l, const char *provider,
                                             const char *model, size_t len) {
  const struct price_model *m = provider ? layer_find(l, provider, model, len) : NULL;
  return m ? m : layer_find(l, NULL, model, len);
}

/* The latest row in effect at at_us, or NULL. */
static const struct price_row *row_at(const struct price_model *m, int64_t at_us) {
  const struct price_row *best = NULL;
  for (size_t i = 0; i < m->nrows && m->rows[i].effective_us <= at_us; i++) best = &m->rows[i];
  return best;
}

static const struct price_layer *org_layer(const char *org_id) {
  if (!org_id || table.norgs == 0) return NULL;
  struct price_org key = {.org_id = org_id};
  const struct price_org *o = bsearch(&key, table.orgs, table.norgs, sizeof(key), pricing_org_cmp);
  return o ? &o->layer : NULL;
}

/* Copies s lower-cased (ASCII) into out (size len+1). */
static void lower_into(struct slice s, char *out) {
  for (size_t i = 0; i < s.len; i++) {
    char c = s.p[i];
    out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  out[s.len] = '\0';
}

/* --- cost ------------------------------------------------------------------------ */

/* Exact sum of tokens x nano-USD-per-Mtok terms: whole nano-USD, plus a
 * remainder in 1e-6 nano-USD kept below one nano-USD. */
struct money_acc {
  int64_t nano;
  int64_t micro_nano;
};

static int money_add(struct money_acc *acc, int64_t tokens, int64_t per_mtok) {
  int64_t whole;
  if (__builtin_mul_overflow(tokens, per_mtok / TOKENS_PER_MTOK, &whole) ||
      __builtin_add_overflow(acc->nano, whole, &acc->nano)) {
    return KEEL_ETOOBIG;
  }
  /* tokens <= 1e12 and the remainder < 1e6: the product fits in int64. */
  acc->micro_nano += tokens * (per_mtok % TOKENS_PER_MTOK);
  if (__builtin_add_overflow(acc->nano, acc->micro_nano / TOKENS_PER_MTOK, &acc->nano)) {
    return KEEL_ETOOBIG;
  }
  acc->micro_nano %= TOKENS_PER_MTOK;
  return 0;
}

/* Rounds once, half up. */
static int money_total(const struct money_acc *acc, int64_t *out) {
  int64_t up = acc->micro_nano * 2 >= TOKENS_PER_MTOK ? 1 : 0;
  return __builtin_add_overflow(acc->nano, up, out) ? KEEL_ETOOBIG : 0;
}

static bool tokens_ok(int64_t n) {
  return n >= 0 && n <= LIMIT_PRICE_TOKENS_MAX;
}

/* The billed token counts (OpenTelemetry GenAI: input includes the cache
 * tokens, output the reasoning tokens), clamped at 0 and flagged. */
static void count_billed(const struct pricing_usage *u, struct pricing_result *out) {
  int64_t uncached = u->input_tokens - u->cache_read_tokens - u->cache_write_tokens;
  int64_t visible = u->output_tokens - u->reasoning_tokens;
  if (uncached < 0 || visible < 0) out->flags |= PRICING_TOKENS_CLAMPED;
  out->uncached_input_tokens = uncached < 0 ? 0 : uncached;
  out->visible_output_tokens = visible < 0 ? 0 : visible;
}

/* Prices the billed counts of out with row (tier by all input tokens);
 * fills table_cost_nano and tier_above_input_tokens. Returns 0 or
 * KEEL_ETOOBIG. */
static int cost_with_row(const struct pricing_usage *u, const struct price_row *row,
                         struct pricing_result *out) {
  const struct price_set *p = &row->base;
  for (size_t i = 0; i < row->ntiers; i++) {
    if (u->input_tokens > row->tiers[i].above_input_tokens) {
      p = &row->tiers[i].prices;
      out->tier_above_input_tokens = row->tiers[i].above_input_tokens;
    }
  }
  const struct {
    int64_t tokens;
    enum price_kind kind;
  } terms[] = {
      {out->uncached_input_tokens, PRICE_INPUT},  {u->cache_read_tokens, PRICE_CACHE_READ},
      {u->cache_write_tokens, PRICE_CACHE_WRITE}, {out->visible_output_tokens, PRICE_OUTPUT},
      {u->reasoning_tokens, PRICE_REASONING},
  };
  struct money_acc acc = {0, 0};
  for (size_t i = 0; i < sizeof(terms) / sizeof(terms[0]); i++) {
    int rc = money_add(&acc, terms[i].tokens, p->per_mtok[terms[i].kind]);
    if (rc) return rc;
  }
  return money_total(&acc, &out->table_cost_nano);
}

/* Finds the row that prices u at at_us (pricing.h: layers org, file,
 * built-in; the first with a row in effect wins; else the earliest row of
 * the first layer that knows the model). Sets the row's flags in out and
 * returns the row, its model in *model_out, or NULL when unpriced. */
static const struct price_row *find_row(const struct pricing_usage *u, int64_t at_us,
                                        const struct price_model **model_out,
                                        struct pricing_result *out) {
  char provider[LIMIT_PRICE_PROVIDER_MAX + 1];
  char model[LIMIT_PRICE_MODEL_MAX + 1];
  if (u->model.len == 0 || u->model.len > LIMIT_PRICE_MODEL_MAX) return NULL;
  bool has_provider = u->provider.len > 0 && u->provider.len <= LIMIT_PRICE_PROVIDER_MAX;
  if (has_provider) lower_into(u->provider, provider);
  lower_into(u->model, model);

  const struct price_layer *layers[] = {org_layer(u->org_id), &table.file, &table.builtin};
  const struct price_model *known = NULL; /* the first layer's match */
  bool known_in_org = false;
  for (size_t i = 0; i < sizeof(layers) / sizeof(layers[0]); i++) {
    if (!layers[i]) continue;
    const struct price_model *m =
        layer_match(layers[i], has_provider ? provider : NULL, model, u->model.len);
    if (!m) continue;
    const struct price_row *row = row_at(m, at_us);
    if (row) {
      if (i == 0) out->flags |= PRICING_ORG_PRICE;
      *model_out = m;
      return row;
    }
    if (!known) {
      known = m;
      known_in_org = i == 0;
    }
  }
  if (!known) return NULL;
  out->flags |= PRICING_BEFORE_EFFECTIVE | (known_in_org ? PRICING_ORG_PRICE : 0u);
  *model_out = known;
  return &known->rows[0];
}

int pricing_cost(const struct pricing_usage *u, int64_t at_us, struct pricing_result *out) {
  memset(out, 0, sizeof(*out));
  if (!tokens_ok(u->input_tokens) || !tokens_ok(u->output_tokens) ||
      !tokens_ok(u->reasoning_tokens) || !tokens_ok(u->cache_read_tokens) ||
      !tokens_ok(u->cache_write_tokens) || (u->has_client_cost && u->client_cost_nano < 0)) {
    return KEEL_EINVAL;
  }
  count_billed(u, out);
  const struct price_model *m = NULL;
  const struct price_row *row = find_row(u, at_us, &m, out);
  if (row) {
    out->provider = m->provider;
    out->model = m->model;
    out->effective_from = row->effective_from;
    int rc = cost_with_row(u, row, out);
    if (rc) {
      memset(out, 0, sizeof(*out));
      return rc;
    }
  } else {
    out->flags |= PRICING_UNPRICED;
  }
  out->cost_nano = out->table_cost_nano;
  if (u->has_client_cost) {
    out->cost_nano = u->client_cost_nano;
    out->flags |= PRICING_CLIENT_SUPPLIED;
  }
  return 0;
}
