/*
 * pricing_int.h — the in-memory price table shared by the loader
 * (pricing_table.c) and the pricer (pricing.c). Not for other modules: they
 * use pricing.h.
 *
 * A table lives in one arena. Prices are nano-USD per million tokens and are
 * resolved at load time (no kind is left absent). Names are lower-cased and
 * sorted for binary search.
 */
#ifndef KEEL_DOMAIN_PRICING_INT_H
#define KEEL_DOMAIN_PRICING_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

enum price_kind { PRICE_INPUT, PRICE_OUTPUT, PRICE_REASONING, PRICE_CACHE_READ, PRICE_CACHE_WRITE };
#define PRICE_KINDS 5

struct price_set {
  int64_t per_mtok[PRICE_KINDS]; /* nano-USD per million tokens */
};

struct price_tier {
  int64_t above_input_tokens; /* applies when input_tokens > this */
  struct price_set prices;
};

struct price_row {
  int64_t effective_us;
  char effective_from[11]; /* "YYYY-MM-DD" */
  struct price_set base;
  struct price_tier *tiers; /* ascending thresholds */
  size_t ntiers;
};

/* One model of one provider: its rows, ascending by effective date. */
struct price_model {
  const char *provider; /* lower-cased */
  const char *model;    /* as written in the file */
  const char *model_lc;
  bool prefix;
  size_t order; /* position of its first row in the file: breaks ties */
  struct price_row *rows;
  size_t nrows;
};

enum name_kind { NAME_EXACT = 0, NAME_ALIAS = 1 };

struct price_name {
  const char *name; /* lower-cased */
  enum name_kind kind;
  size_t model; /* index into the layer's models */
  size_t order; /* the model's order */
};

struct price_layer {
  struct price_model *models;
  size_t nmodels;
  struct price_name *names; /* ids and aliases, sorted (name, kind, order) */
  size_t nnames;
  struct price_name *prefixes; /* ids of prefix models, sorted (name, order) */
  size_t nprefixes;
};

struct price_org {
  const char *org_id;
  struct price_layer layer;
};

struct price_table {
  struct arena *arena;
  struct price_layer builtin;
  struct price_layer file;
  struct price_org *orgs; /* sorted by org_id */
  size_t norgs;
};

/*
 * Builds a table: the built-in data/prices.json, then the override file at
 * override_path (NULL or "": none). Returns 0 with *t owning a new arena, or
 * -1 with a message naming the file and the row in err (nothing allocated).
 */
int pricing_table_load(struct price_table *t, const char *override_path, char *err, size_t errlen);
/* Releases t (a zeroed table is fine) and zeroes it. */
void pricing_table_free(struct price_table *t);
/* Orders struct price_org by org_id (qsort and bsearch). */
int pricing_org_cmp(const void *a, const void *b);

#endif
