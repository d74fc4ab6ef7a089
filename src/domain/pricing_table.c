/*
 * pricing_table.c — loads the price table: the built-in data/prices.json
 * and the override file (rows, and per-org rows), in keel's price format
 * (docs/pricing.md). Rows are checked strictly; any error fails the whole
 * load with a message naming the file, the row and the rule.
 *
 * Invariants established here (pricing.c relies on them):
 *  - every row's base and tier price sets hold a price for every kind
 *    (absent prices are resolved through price_kinds[].fallback);
 *  - a model's rows are sorted by effective date, with no two on one date;
 *  - names (ids, aliases, prefixes) are lower-cased and sorted by (name,
 *    kind, order); within a layer no name designates two models of one
 *    provider.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/embedded.h"
#include "core/limits.h"
#include "core/time.h"
#include "domain/pricing.h"
#include "domain/pricing_int.h"

#define PRICING_BUILTIN_NAME "prices.json"
#define PRICING_FORMAT       "keel-prices/1"
#define PRICE_ABSENT         INT64_C(-1)

/* Each kind: its member name in usd_per_mtok, whether a row must give it,
 * and the kind whose price it takes when absent (R-ING-3: reasoning at the
 * output rate; cache reads and writes at the input rate). */
static const struct {
  const char *name;
  bool required;
  enum price_kind fallback;
} price_kinds[PRICE_KINDS] = {
    [PRICE_INPUT] = {"input", true, PRICE_INPUT},
    [PRICE_OUTPUT] = {"output", true, PRICE_OUTPUT},
    [PRICE_REASONING] = {"reasoning", false, PRICE_OUTPUT},
    [PRICE_CACHE_READ] = {"cache_read", false, PRICE_INPUT},
    [PRICE_CACHE_WRITE] = {"cache_write", false, PRICE_INPUT},
};

/* Members allowed in a document, a row and a tier. */
static const char *const doc_members[] = {"format", "description", "note", "models", "orgs"};
static const char *const row_members[] = {"provider",       "model",        "aliases", "prefix",
                                          "effective_from", "usd_per_mtok", "tiers",   "note"};
static const char *const tier_members[] = {"above_input_tokens", "usd_per_mtok"};

/* --- helpers ---------------------------------------------------------------- */

static char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static char *arena_lower(struct arena *a, const char *s) {
  char *out = arena_strdup(a, s);
  for (char *p = out; *p; p++) *p = ascii_lower(*p);
  return out;
}

/* Names are printable ASCII without blanks: what providers use, and safe to
 * echo in messages. */
static bool name_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

static const char *unknown_member(const json_t *obj, const char *const *allowed, size_t n) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    bool known = false;
    for (size_t i = 0; i < n && !known; i++) known = strcmp(key, allowed[i]) == 0;
    if (!known) return key;
  }
  return NULL;
}

/* "YYYY-MM-DD" → µs at 00:00 UTC. Returns 0 or -1. */
static int parse_date(const char *s, int64_t *us) {
  if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') return -1;
  for (size_t i = 0; i < 10; i++) {
    if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return -1;
  }
  char full[32];
  int n = snprintf(full, sizeof(full), "%sT00:00:00Z", s);
  return time_parse_rfc3339(slice_make(full, (size_t)n), us);
}

/* --- rows ------------------------------------------------------------------- */

struct load_ctx {
  struct arena *arena;
  const char *source; /* "built-in prices" or the file's path */
  char *err;
  size_t errlen;
};

/* One row as parsed, before rows are grouped into models. */
struct parsed_row {
  const char *provider; /* lower-cased */
  const char *model;
  const char *model_lc;
  const char **aliases; /* lower-cased */
  size_t naliases;
  bool prefix;
  size_t order;
  size_t model_index; /* set by group_models */
  struct price_row row;
};

/* Reports reason for row index of section, naming the row. Returns -1. */
static int row_fail(struct load_ctx *lc, const char *section, size_t index, const json_t *row,
                    const char *reason) {
  const char *prov = json_string_value(json_object_get(row, "provider"));
  const char *model = json_string_value(json_object_get(row, "model"));
  snprintf(lc->err, lc->errlen, "%s: %s[%zu] (%.64s %.256s): %s", lc->source, section, index,
           prov && name_ok(prov, LIMIT_PRICE_PROVIDER_MAX) ? prov : "?",
           model && name_ok(model, LIMIT_PRICE_MODEL_MAX) ? model : "?", reason);
  return -1;
}

/* One price: a decimal string of USD per million tokens (exact), or a JSON
 * integer. Returns 0, or -1 with why set. */
static int parse_price(const json_t *v, int64_t *out, const char **why) {
  const int64_t max = (int64_t)LIMIT_PRICE_USD_PER_MTOK_MAX * PRICING_NANO_PER_USD;
  int64_t nano;
  if (json_is_real(v)) {
    *why = "write prices as decimal strings (\"2.50\"), so they are exact";
    return -1;
  }
  if ((!json_is_string(v) && !json_is_integer(v)) || pricing_usd_from_json(v, &nano) != 0) {
    *why = "must be a decimal string of USD per million tokens, at most 9 decimals";
    return -1;
  }
  if (nano > max) {
    *why = "is above the ceiling of 1000000 USD per million tokens";
    return -1;
  }
  *out = nano;
  return 0;
}

/* Parses a usd_per_mtok object into set (absent kinds: PRICE_ABSENT).
 * Returns 0, or -1 with the reason in buf. */
static int parse_price_set(const json_t *obj, bool base, struct price_set *set, char *buf,
                           size_t buflen) {
  const char *why = NULL;
  if (!json_is_object(obj)) {
    snprintf(buf, buflen, "usd_per_mtok must be an object");
    return -1;
  }
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    bool known = false;
    for (size_t k = 0; k < PRICE_KINDS && !known; k++) {
      known = strcmp(key, price_kinds[k].name) == 0;
    }
    if (!known) {
      snprintf(buf, buflen,
               "usd_per_mtok: unknown member '%.40s' (input, output, reasoning, "
               "cache_read, cache_write)",
               key);
      return -1;
    }
  }
  for (size_t k = 0; k < PRICE_KINDS; k++) {
    json_t *pv = json_object_get(obj, price_kinds[k].name);
    set->per_mtok[k] = PRICE_ABSENT;
    if (!pv) {
      if (base && price_kinds[k].required) {
        snprintf(buf, buflen, "usd_per_mtok.%s is required", price_kinds[k].name);
        return -1;
      }
      continue;
    }
    if (parse_price(pv, &set->per_mtok[k], &why) != 0) {
      snprintf(buf, buflen, "usd_per_mtok.%s %s", price_kinds[k].name, why);
      return -1;
    }
  }
  return 0;
}

/* Fills absent kinds from their fallback kind (which the row requires). */
static void resolve_set(struct price_set *s) {
  for (size_t k = 0; k < PRICE_KINDS; k++) {
    if (s->per_mtok[k] == PRICE_ABSENT) s->per_mtok[k] = s->per_mtok[price_kinds[k].fallback];
  }
}

/* Parses tiers into row. The base is still unresolved: a tier takes each
 * price it does not state from the tier below it (the first tier: from the
 * base) as stated there, then falls back like the base. Returns 0 or -1
 * with buf. */
static int parse_tiers(struct arena *a, const json_t *tiers, struct price_row *row, char *buf,
                       size_t buflen) {
  if (!json_is_array(tiers) || json_array_size(tiers) > LIMIT_PRICE_TIERS_MAX) {
    snprintf(buf, buflen, "tiers must be an array of at most %d tiers", LIMIT_PRICE_TIERS_MAX);
    return -1;
  }
  row->ntiers = json_array_size(tiers);
  row->tiers = arena_calloc(a, row->ntiers ? row->ntiers : 1, sizeof(*row->tiers));
  struct price_set below = row->base; /* prices stated up to the previous tier */
  size_t i;
  json_t *t;
  json_array_foreach(tiers, i, t) {
    struct price_tier *tier = &row->tiers[i];
    json_t *above = json_object_get(t, "above_input_tokens");
    if (!json_is_object(t) || unknown_member(t, tier_members, 2)) {
      snprintf(buf, buflen, "tiers[%zu] must be {above_input_tokens, usd_per_mtok}", i);
      return -1;
    }
    if (!json_is_integer(above) || json_integer_value(above) < 1 ||
        json_integer_value(above) > LIMIT_PRICE_TOKENS_MAX) {
      snprintf(buf, buflen, "tiers[%zu].above_input_tokens must be a positive integer", i);
      return -1;
    }
    tier->above_input_tokens = (int64_t)json_integer_value(above);
    if (i > 0 && tier->above_input_tokens <= row->tiers[i - 1].above_input_tokens) {
      snprintf(buf, buflen, "tiers must be in ascending order of above_input_tokens");
      return -1;
    }
    char inner[160];
    if (parse_price_set(json_object_get(t, "usd_per_mtok"), false, &tier->prices, inner,
                        sizeof(inner)) != 0) {
      snprintf(buf, buflen, "tiers[%zu].%s", i, inner);
      return -1;
    }
    for (size_t k = 0; k < PRICE_KINDS; k++) {
      if (tier->prices.per_mtok[k] == PRICE_ABSENT) tier->prices.per_mtok[k] = below.per_mtok[k];
    }
    below = tier->prices;
    resolve_set(&tier->prices);
  }
  return 0;
}

static int parse_aliases(struct load_ctx *lc, const json_t *aliases, struct parsed_row *pr,
                         const char **why) {
  if (!aliases) return 0;
  if (!json_is_array(aliases) || json_array_size(aliases) > LIMIT_PRICE_ALIASES_MAX) {
    *why = "aliases must be an array of at most 32 model names";
    return -1;
  }
  pr->naliases = json_array_size(aliases);
  pr->aliases = arena_calloc(lc->arena, pr->naliases ? pr->naliases : 1, sizeof(char *));
  size_t i;
  json_t *al;
  json_array_foreach(aliases, i, al) {
    const char *s = json_string_value(al);
    if (!s || !name_ok(s, LIMIT_PRICE_MODEL_MAX)) {
      *why = "aliases must be model names (1 to 256 printable ASCII characters, no blanks)";
      return -1;
    }
    pr->aliases[i] = arena_lower(lc->arena, s);
  }
  return 0;
}

static int parse_row(struct load_ctx *lc, const char *section, size_t index, const json_t *row,
                     struct parsed_row *pr) {
  char buf[256];
  const char *why = NULL;
  if (!json_is_object(row)) return row_fail(lc, section, index, row, "must be an object");
  const char *unknown = unknown_member(row, row_members, sizeof(row_members) / sizeof(char *));
  if (unknown) {
    snprintf(buf, sizeof(buf), "unknown member '%.40s'", unknown);
    return row_fail(lc, section, index, row, buf);
  }
  const char *provider = json_string_value(json_object_get(row, "provider"));
  const char *model = json_string_value(json_object_get(row, "model"));
  const char *eff = json_string_value(json_object_get(row, "effective_from"));
  json_t *prefix = json_object_get(row, "prefix");
  json_t *tiers = json_object_get(row, "tiers");
  if (!provider || !name_ok(provider, LIMIT_PRICE_PROVIDER_MAX)) {
    return row_fail(lc, section, index, row,
                    "provider must be a name of 1 to 64 printable ASCII characters, no blanks");
  }
  if (!model || !name_ok(model, LIMIT_PRICE_MODEL_MAX)) {
    return row_fail(lc, section, index, row,
                    "model must be a name of 1 to 256 printable ASCII characters, no blanks");
  }
  if (!eff || parse_date(eff, &pr->row.effective_us) != 0) {
    return row_fail(lc, section, index, row, "effective_from must be a date YYYY-MM-DD");
  }
  if (prefix && !json_is_boolean(prefix)) {
    return row_fail(lc, section, index, row, "prefix must be true or false");
  }
  if (parse_aliases(lc, json_object_get(row, "aliases"), pr, &why) != 0) {
    return row_fail(lc, section, index, row, why);
  }
  if (parse_price_set(json_object_get(row, "usd_per_mtok"), true, &pr->row.base, buf,
                      sizeof(buf)) != 0) {
    return row_fail(lc, section, index, row, buf);
  }
  if (tiers && parse_tiers(lc->arena, tiers, &pr->row, buf, sizeof(buf)) != 0) {
    return row_fail(lc, section, index, row, buf);
  }
  resolve_set(&pr->row.base);
  memcpy(pr->row.effective_from, eff, 11);
  pr->provider = arena_lower(lc->arena, provider);
  pr->model = arena_strdup(lc->arena, model);
  pr->model_lc = arena_lower(lc->arena, model);
  pr->prefix = json_is_true(prefix);
  pr->order = index;
  return 0;
}

static int cmp_parsed(const void *a, const void *b) {
  const struct parsed_row *x = *(const struct parsed_row *const *)a;
  const struct parsed_row *y = *(const struct parsed_row *const *)b;
  int c = strcmp(x->provider, y->provider);
  if (!c) c = strcmp(x->model_lc, y->model_lc);
  if (!c)
    c = (x->row.effective_us > y->row.effective_us) - (x->row.effective_us < y->row.effective_us);
  return c;
}

static int cmp_name(const void *a, const void *b) {
  const struct price_name *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (!c) c = (int)x->kind - (int)y->kind;
  if (!c) c = (x->order > y->order) - (x->order < y->order);
  return c;
}

/* Groups sorted rows into models. Returns 0 or -1 (duplicate date). */
static int group_models(struct load_ctx *lc, const char *section, struct parsed_row **sorted,
                        size_t n, struct price_layer *l) {
  l->models = arena_calloc(lc->arena, n ? n : 1, sizeof(*l->models));
  for (size_t i = 0; i < n;) {
    size_t j = i + 1;
    while (j < n && strcmp(sorted[j]->provider, sorted[i]->provider) == 0 &&
           strcmp(sorted[j]->model_lc, sorted[i]->model_lc) == 0) {
      j++;
    }
    struct price_model *m = &l->models[l->nmodels++];
    m->provider = sorted[i]->provider;
    m->model = sorted[i]->model;
    m->model_lc = sorted[i]->model_lc;
    m->order = sorted[i]->order;
    m->nrows = j - i;
    m->rows = arena_calloc(lc->arena, m->nrows, sizeof(*m->rows));
    for (size_t k = i; k < j; k++) {
      if (k > i && sorted[k]->row.effective_us == sorted[k - 1]->row.effective_us) {
        snprintf(lc->err, lc->errlen, "%s: %s[%zu] (%s %s): a second row for the same date %s",
                 lc->source, section, sorted[k]->order, m->provider, m->model,
                 sorted[k]->row.effective_from);
        return -1;
      }
      m->rows[k - i] = sorted[k]->row;
      sorted[k]->model_index = l->nmodels - 1;
      m->prefix = m->prefix || sorted[k]->prefix;
      if (sorted[k]->order < m->order) m->order = sorted[k]->order;
    }
    i = j;
  }
  return 0;
}

/* Builds the sorted name index (ids and aliases) of l; rejects a name that
 * designates two models of one provider. Returns 0 or -1. */
static int index_names(struct load_ctx *lc, const char *section, struct parsed_row **sorted,
                       size_t n, struct price_layer *l) {
  size_t cap = l->nmodels;
  for (size_t i = 0; i < n; i++) cap += sorted[i]->naliases;
  struct price_name *names = arena_calloc(lc->arena, cap ? cap : 1, sizeof(*names));
  size_t nn = 0;
  for (size_t m = 0; m < l->nmodels; m++) {
    names[nn++] = (struct price_name){l->models[m].model_lc, NAME_EXACT, m, l->models[m].order};
  }
  for (size_t i = 0; i < n; i++) {
    size_t m = sorted[i]->model_index;
    for (size_t a = 0; a < sorted[i]->naliases; a++) {
      names[nn++] = (struct price_name){sorted[i]->aliases[a], NAME_ALIAS, m, l->models[m].order};
    }
  }
  qsort(names, nn, sizeof(*names), cmp_name);
  /* Drop repeats of one name for one model (an alias listed on several rows,
   * or equal to the model's own id); refuse one name for two models of the
   * same provider. */
  size_t out = 0;
  for (size_t i = 0; i < nn; i++) {
    bool repeat = false;
    for (size_t k = out; k-- > 0 && strcmp(names[k].name, names[i].name) == 0;) {
      const struct price_model *a = &l->models[names[k].model], *b = &l->models[names[i].model];
      if (a == b) {
        repeat = true;
        break;
      }
      if (strcmp(a->provider, b->provider) == 0) {
        snprintf(lc->err, lc->errlen, "%s: %s: the name '%s' designates two %s models (%s, %s)",
                 lc->source, section, names[i].name, a->provider, a->model, b->model);
        return -1;
      }
    }
    if (!repeat) names[out++] = names[i];
  }
  l->names = names;
  l->nnames = out;
  return 0;
}

static void index_prefixes(struct load_ctx *lc, struct price_layer *l) {
  l->prefixes = arena_calloc(lc->arena, l->nmodels ? l->nmodels : 1, sizeof(*l->prefixes));
  for (size_t i = 0; i < l->nmodels; i++) {
    if (!l->models[i].prefix) continue;
    l->prefixes[l->nprefixes++] =
        (struct price_name){l->models[i].model_lc, NAME_EXACT, i, l->models[i].order};
  }
  qsort(l->prefixes, l->nprefixes, sizeof(*l->prefixes), cmp_name);
}

/* Builds one layer from an array of rows. Returns 0 or -1 with lc->err. */
static int layer_build(struct load_ctx *lc, const char *section, const json_t *rows,
                       struct price_layer *l) {
  memset(l, 0, sizeof(*l));
  if (!rows) return 0;
  if (!json_is_array(rows) || json_array_size(rows) > LIMIT_PRICE_ROWS_MAX) {
    snprintf(lc->err, lc->errlen, "%s: %s must be an array of at most %d rows", lc->source, section,
             LIMIT_PRICE_ROWS_MAX);
    return -1;
  }
  size_t n = json_array_size(rows);
  struct parsed_row *parsed = arena_calloc(lc->arena, n ? n : 1, sizeof(*parsed));
  struct parsed_row **sorted = arena_calloc(lc->arena, n ? n : 1, sizeof(*sorted));
  for (size_t i = 0; i < n; i++) {
    if (parse_row(lc, section, i, json_array_get(rows, i), &parsed[i]) != 0) return -1;
    sorted[i] = &parsed[i];
  }
  qsort(sorted, n, sizeof(*sorted), cmp_parsed);
  if (group_models(lc, section, sorted, n, l) != 0) return -1;
  if (index_names(lc, section, sorted, n, l) != 0) return -1;
  index_prefixes(lc, l);
  return 0;
}

int pricing_org_cmp(const void *a, const void *b) {
  return strcmp(((const struct price_org *)a)->org_id, ((const struct price_org *)b)->org_id);
}

static int orgs_build(struct load_ctx *lc, const json_t *orgs, struct price_table *t) {
  if (!orgs) return 0;
  if (!json_is_object(orgs) || json_object_size(orgs) > LIMIT_PRICE_ORGS_MAX) {
    snprintf(lc->err, lc->errlen, "%s: orgs must be an object {\"<org id>\": [rows]}", lc->source);
    return -1;
  }
  t->orgs = arena_calloc(lc->arena, json_object_size(orgs) + 1, sizeof(*t->orgs));
  const char *id;
  json_t *rows;
  json_object_foreach((json_t *)orgs, id, rows) {
    if (!name_ok(id, 64)) {
      snprintf(lc->err, lc->errlen, "%s: orgs: '%.64s' is not an org id", lc->source, id);
      return -1;
    }
    char *section = arena_printf(lc->arena, "orgs.%s", id);
    struct price_org *o = &t->orgs[t->norgs++];
    o->org_id = arena_strdup(lc->arena, id);
    if (layer_build(lc, section, rows, &o->layer) != 0) return -1;
  }
  qsort(t->orgs, t->norgs, sizeof(*t->orgs), pricing_org_cmp);
  return 0;
}

/* Checks a document's shape; builds its "models" into l and, when t is not
 * NULL, its "orgs" into t. Returns 0 or -1. */
static int doc_build(struct load_ctx *lc, const json_t *doc, struct price_layer *l,
                     struct price_table *t) {
  if (!json_is_object(doc)) {
    snprintf(lc->err, lc->errlen, "%s: must be a JSON object with \"models\"", lc->source);
    return -1;
  }
  const char *unknown = unknown_member(doc, doc_members, sizeof(doc_members) / sizeof(char *));
  if (unknown) {
    snprintf(lc->err, lc->errlen, "%s: unknown member '%.40s' (format, description, models, orgs)",
             lc->source, unknown);
    return -1;
  }
  json_t *format = json_object_get(doc, "format");
  if (format &&
      !(json_is_string(format) && strcmp(json_string_value(format), PRICING_FORMAT) == 0)) {
    snprintf(lc->err, lc->errlen, "%s: format must be \"%s\"", lc->source, PRICING_FORMAT);
    return -1;
  }
  if (layer_build(lc, "models", json_object_get(doc, "models"), l) != 0) return -1;
  if (t) return orgs_build(lc, json_object_get(doc, "orgs"), t);
  if (json_object_get(doc, "orgs")) {
    snprintf(lc->err, lc->errlen, "%s: the built-in table has no orgs section", lc->source);
    return -1;
  }
  return 0;
}

static json_t *builtin_doc(void) {
  for (size_t i = 0; i < data_count; i++) {
    if (strcmp(data_files[i].name, PRICING_BUILTIN_NAME) == 0) {
      return json_loadb(data_files[i].data, data_files[i].len, JSON_REJECT_DUPLICATES, NULL);
    }
  }
  return NULL;
}

int pricing_table_load(struct price_table *out, const char *override_path, char *err,
                       size_t errlen) {
  struct price_table t = {.arena = arena_new(64 * 1024)};
  struct load_ctx lc = {
      .arena = t.arena, .source = "built-in prices", .err = err, .errlen = errlen};
  json_t *doc = builtin_doc();
  int rc = -1;

  if (!doc) {
    snprintf(err, errlen, "prices: the built-in table does not parse");
    goto fail;
  }
  if (doc_build(&lc, doc, &t.builtin, NULL) != 0) goto fail;
  json_decref(doc);
  doc = NULL;
  if (override_path && override_path[0]) {
    json_error_t jerr;
    lc.source = arena_printf(t.arena, "prices file %s", override_path);
    doc = json_load_file(override_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
      snprintf(err, errlen, "%s: %s (line %d)", lc.source, jerr.text, jerr.line);
      goto fail;
    }
    if (doc_build(&lc, doc, &t.file, &t) != 0) goto fail;
  }
  *out = t;
  t.arena = NULL;
  rc = 0;

fail:
  json_decref(doc);
  arena_free(t.arena);
  return rc;
}

void pricing_table_free(struct price_table *t) {
  arena_free(t->arena);
  memset(t, 0, sizeof(*t));
}
