/*
 * cli_prices.c — `keel prices import FILE [--out PATH]`: converts a price
 * file in the LiteLLM model_prices_and_context_window.json format (an object
 * keyed by model name) into keel's price format (docs/pricing.md), so
 * operators can refresh model prices without a new keel release.
 *
 * Conversion, entry by entry (tables below):
 *  - skipped: "sample_spec" (not a model), modes other than chat, completion
 *    and responses, entries without input and output token prices, entries
 *    with a negative or unusable price or name, and a second entry for the
 *    same provider and model (the first in the file wins);
 *  - provider: litellm_provider, renamed by provider_names[]; the model is
 *    the key without a leading "<provider>/";
 *  - prices: per-token USD numbers become decimal strings of USD per million
 *    tokens, rounded to the nearest 1e-15 USD per token (exact for every
 *    price written with up to 15 decimals); "<price>_above_<N>k_tokens"
 *    members become a tier above N*1000 input tokens;
 *  - every row gets effective_from = today (UTC) or --effective-from.
 *
 * The output (default data_dir/prices.json, which keel loads when the
 * setting prices.file is empty) is written to a temporary file, checked by
 * loading it as keel will, fsynced, and renamed into place. An "orgs"
 * section already present in the output file is kept.
 *
 * Output for scripts: "imported N models, skipped M (...)" then
 * "wrote PATH". Exit 0, 1 (unreadable input, nothing to import, write or
 * check failed), 2 (usage).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/buf.h"
#include "core/limits.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "domain/pricing.h"

static const struct command import_command = {
    "prices import",
    "Convert a LiteLLM-format price file into keel's price file (loaded as the override of "
    "the built-in prices).",
    "prices import FILE [--out PATH] [--effective-from YYYY-MM-DD]", NULL};

static const char import_flags_help[] =
    "  FILE                a price file in the LiteLLM model_prices_and_context_window.json\n"
    "                      format\n"
    "  --out PATH          where to write keel's price file (default: DATA_DIR/prices.json,\n"
    "                      which keel loads when the setting prices.file is empty)\n"
    "  --effective-from D  the rows' effective date, YYYY-MM-DD (default: today, UTC)\n";

/* The output is a price document, not a configuration file: generous. */
#define IMPORT_OUT_MAX (256 * 1024 * 1024)

/* LiteLLM provider names → keel's (others are kept as they are). A row with
 * prefix set matches every LiteLLM provider that starts with it. */
static const struct {
  const char *litellm;
  const char *keel;
  bool prefix;
} provider_names[] = {
    {"together_ai", "together", false},
    {"fireworks_ai", "fireworks", false},
    {"gemini", "google", false},
    {"vertex_ai-", "vertex_ai", true},
    {"bedrock_converse", "bedrock", false},
    {"text-completion-openai", "openai", false},
    {"cohere_chat", "cohere", false},
    {"codestral", "mistral", false},
};

/* LiteLLM per-token price members → keel's usd_per_mtok members. Each may
 * also appear as "<member>_above_<N>k_tokens" (a tier). */
static const struct {
  const char *litellm;
  const char *keel;
} price_members[] = {
    {"input_cost_per_token", "input"},
    {"output_cost_per_token", "output"},
    {"output_cost_per_reasoning_token", "reasoning"},
    {"cache_read_input_token_cost", "cache_read"},
    {"cache_creation_input_token_cost", "cache_write"},
};
#define PRICE_MEMBERS (sizeof(price_members) / sizeof(price_members[0]))

/* Modes billed per text token, which keel prices. */
static const char *const chat_modes[] = {"chat", "completion", "responses"};

/* Not a model: LiteLLM documents its format with this entry. */
#define LITELLM_SAMPLE_SPEC "sample_spec"

enum skip_reason { SKIP_MODE, SKIP_NO_PRICES, SKIP_INVALID, SKIP_DUPLICATE, SKIP_REASONS };

static const char *const skip_names[SKIP_REASONS] = {
    [SKIP_MODE] = "not chat",
    [SKIP_NO_PRICES] = "without token prices",
    [SKIP_INVALID] = "invalid",
    [SKIP_DUPLICATE] = "duplicate",
};

struct import_args {
  struct app_flags flags;
  const char *in, *out, *effective_from;
};

/* One converted entry. */
struct import_row {
  char *provider;
  char *model_lc; /* for duplicate detection */
  size_t order;   /* position in the input */
  json_t *row;
};

/* --- arguments ----------------------------------------------------------- */

/* Parses flags. Returns 0, -1 after printing --help, or EXIT_USAGE. */
static int parse_args(const struct command *c, int argc, char **argv, struct import_args *a) {
  memset(a, 0, sizeof(*a));
  const struct cli_flag flags[] = {
      {"out", &a->out, NULL},
      {"effective-from", &a->effective_from, NULL},
  };
  int rc = cli_parse(c, import_flags_help, argc, argv, flags, 2, &a->in, 1, &a->flags);
  if (rc) return rc;
  if (!a->in) {
    fprintf(stderr, "keel %s: the LiteLLM price FILE is required\n", c->name);
    return EXIT_USAGE;
  }
  if (a->out && !a->out[0]) {
    fprintf(stderr, "keel %s: --out needs a path\n", c->name);
    return EXIT_USAGE;
  }
  return 0;
}

/* "YYYY-MM-DD": ten characters that parse as a date. */
static bool date_ok(const char *s) {
  char full[32];
  int64_t us;
  if (strlen(s) != 10 || s[4] != '-' || s[7] != '-') return false;
  for (size_t i = 0; i < 10; i++) {
    if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return false;
  }
  int n = snprintf(full, sizeof(full), "%sT00:00:00Z", s);
  return time_parse_rfc3339(slice_make(full, (size_t)n), &us) == 0;
}

/* --- conversion ----------------------------------------------------------- */

static const char *keel_provider(const char *litellm) {
  for (size_t i = 0; i < sizeof(provider_names) / sizeof(provider_names[0]); i++) {
    const char *from = provider_names[i].litellm;
    bool hit = provider_names[i].prefix ? strncmp(litellm, from, strlen(from)) == 0
                                        : strcmp(litellm, from) == 0;
    if (hit) return provider_names[i].keel;
  }
  return litellm;
}

/* key without a leading "<name>/" (name: the LiteLLM or the keel provider). */
static const char *model_of(const char *key, const char *litellm, const char *keel) {
  const char *names[] = {litellm, keel};
  for (size_t i = 0; i < 2; i++) {
    size_t n = strlen(names[i]);
    if (strncmp(key, names[i], n) == 0 && key[n] == '/' && key[n + 1]) return key + n + 1;
  }
  return key;
}

static bool name_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return false;
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
  }
  return true;
}

/* A LiteLLM per-token USD number → decimal string of USD per million tokens
 * ("2.50"), into out. Returns 0, or -1 for a negative, non-finite or
 * absurd price. */
static int price_string(const json_t *v, char out[PRICING_USD_MAX]) {
  if (!json_is_number(v)) return -1;
  /* USD per token x 1e15 = nano-USD per million tokens, rounded to nearest. */
  double scaled = json_number_value(v) * 1e15;
  double max = (double)LIMIT_PRICE_USD_PER_MTOK_MAX * 1e9;
  if (!isfinite(scaled) || scaled < 0 || scaled > max) return -1;
  size_t n = pricing_format_usd((int64_t)(scaled + 0.5), out);
  /* Trim trailing zeros, keeping two decimals: "2.500000000" → "2.50". */
  while (out[n - 1] == '0' && out[n - 3] != '.') out[--n] = '\0';
  return 0;
}

/* Matches "<base>_above_<N>k_tokens"; stores N*1000. */
static bool tier_member(const char *key, const char *base, int64_t *above) {
  static const char mid[] = "_above_", tail[] = "k_tokens";
  size_t bl = strlen(base);
  if (strncmp(key, base, bl) != 0 || strncmp(key + bl, mid, sizeof(mid) - 1) != 0) return false;
  const char *p = key + bl + sizeof(mid) - 1;
  int64_t n = 0;
  size_t digits = 0;
  for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) n = n * 10 + (*p - '0');
  if (digits == 0 || n == 0 || strcmp(p, tail) != 0) return false;
  *above = n * 1000;
  return true;
}

/* The tier object for threshold above in tiers (created in ascending
 * order), or NULL when there are too many. */
static json_t *tier_prices(json_t *tiers, int64_t above) {
  size_t i, at = json_array_size(tiers);
  json_t *t;
  json_array_foreach(tiers, i, t) {
    int64_t have = (int64_t)json_integer_value(json_object_get(t, "above_input_tokens"));
    if (have == above) return json_object_get(t, "usd_per_mtok");
    if (have > above && at == json_array_size(tiers)) at = i;
  }
  if (json_array_size(tiers) >= LIMIT_PRICE_TIERS_MAX) return NULL;
  json_t *prices = json_object();
  json_array_insert_new(
      tiers, at,
      json_pack("{s:I, s:o}", "above_input_tokens", (json_int_t)above, "usd_per_mtok", prices));
  return prices;
}

/* The usd_per_mtok object and tiers of entry. Returns 0, SKIP_NO_PRICES or
 * SKIP_INVALID (+1, so 0 means success). */
static int convert_prices(const json_t *entry, json_t *base, json_t *tiers) {
  char s[PRICING_USD_MAX];
  const char *key;
  json_t *v;
  if (!json_object_get(entry, "input_cost_per_token") ||
      !json_object_get(entry, "output_cost_per_token")) {
    return SKIP_NO_PRICES + 1;
  }
  json_object_foreach((json_t *)entry, key, v) {
    for (size_t k = 0; k < PRICE_MEMBERS; k++) {
      int64_t above = 0;
      json_t *into = NULL;
      if (strcmp(key, price_members[k].litellm) == 0) {
        into = base;
      } else if (tier_member(key, price_members[k].litellm, &above)) {
        into = tier_prices(tiers, above);
        if (!into) return SKIP_INVALID + 1;
      } else {
        continue;
      }
      if (price_string(v, s) != 0) return SKIP_INVALID + 1;
      json_object_set_new(into, price_members[k].keel, json_string(s));
    }
  }
  return 0;
}

static bool chat_mode(const json_t *entry) {
  const char *mode = json_string_value(json_object_get(entry, "mode"));
  for (size_t i = 0; mode && i < sizeof(chat_modes) / sizeof(chat_modes[0]); i++) {
    if (strcmp(mode, chat_modes[i]) == 0) return true;
  }
  return false;
}

/* Converts one entry into *out. Returns 0 or the skip reason + 1. */
static int convert_entry(const char *key, const json_t *entry, const char *effective_from,
                         struct import_row *out) {
  if (!json_is_object(entry)) return SKIP_INVALID + 1;
  if (!chat_mode(entry)) return SKIP_MODE + 1;
  const char *litellm = json_string_value(json_object_get(entry, "litellm_provider"));
  if (!litellm) return SKIP_INVALID + 1;
  const char *provider = keel_provider(litellm);
  const char *model = model_of(key, litellm, provider);
  if (!name_ok(provider, LIMIT_PRICE_PROVIDER_MAX) || !name_ok(model, LIMIT_PRICE_MODEL_MAX)) {
    return SKIP_INVALID + 1;
  }
  json_t *base = json_object(), *tiers = json_array();
  int rc = convert_prices(entry, base, tiers);
  if (rc) {
    json_decref(base);
    json_decref(tiers);
    return rc;
  }
  out->row = json_pack("{s:s, s:s, s:s, s:o}", "provider", provider, "model", model,
                       "effective_from", effective_from, "usd_per_mtok", base);
  if (json_array_size(tiers)) json_object_set(out->row, "tiers", tiers);
  json_decref(tiers);
  out->provider = xstrdup(provider);
  out->model_lc = xstrdup(model);
  for (char *p = out->model_lc; *p; p++) {
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
  }
  return 0;
}

static int cmp_rows(const void *a, const void *b) {
  const struct import_row *x = a, *y = b;
  int c = strcmp(x->provider, y->provider);
  if (!c) c = strcmp(x->model_lc, y->model_lc);
  if (!c) c = (x->order > y->order) - (x->order < y->order);
  return c;
}

/* Converts every entry of doc; rows are sorted by provider and model with
 * duplicates dropped. Returns the row count; skipped[] counts the rest. */
static size_t convert_all(const json_t *doc, const char *effective_from, struct import_row **out,
                          size_t skipped[SKIP_REASONS]) {
  struct import_row *rows = xcalloc(json_object_size(doc) + 1, sizeof(*rows));
  size_t n = 0, order = 0;
  const char *key;
  json_t *entry;
  json_object_foreach((json_t *)doc, key, entry) {
    if (strcmp(key, LITELLM_SAMPLE_SPEC) == 0) continue;
    int rc = convert_entry(key, entry, effective_from, &rows[n]);
    if (rc) {
      skipped[rc - 1]++;
      continue;
    }
    rows[n++].order = order++;
  }
  qsort(rows, n, sizeof(*rows), cmp_rows);
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    if (kept > 0 && strcmp(rows[kept - 1].provider, rows[i].provider) == 0 &&
        strcmp(rows[kept - 1].model_lc, rows[i].model_lc) == 0) {
      skipped[SKIP_DUPLICATE]++;
      json_decref(rows[i].row);
      xfree(rows[i].provider);
      xfree(rows[i].model_lc);
      continue;
    }
    rows[kept++] = rows[i];
  }
  *out = rows;
  return kept;
}

static void free_rows(struct import_row *rows, size_t n) {
  for (size_t i = 0; i < n; i++) {
    json_decref(rows[i].row);
    xfree(rows[i].provider);
    xfree(rows[i].model_lc);
  }
  xfree(rows);
}

/* --- output --------------------------------------------------------------- */

/* Appends v as one line of JSON. Returns 0 or -1. */
static int append_json_line(struct buf *b, const json_t *v) {
  char *text = json_dumps(v, JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
  if (!text) return -1;
  int rc = buf_append_cstr(b, text);
  xfree(text); /* jansson allocates through xmalloc (set in prices_import) */
  return rc;
}

/* Appends rows as a JSON array body, one row a line. */
static int append_rows(struct buf *b, const json_t *rows, const char *indent) {
  size_t i;
  json_t *row;
  int rc = buf_append_cstr(b, "[");
  json_array_foreach(rows, i, row) {
    rc |= buf_printf(b, "%s\n%s  ", i ? "," : "", indent);
    rc |= append_json_line(b, row);
  }
  rc |= buf_printf(b, "\n%s]", indent);
  return rc;
}

/* Renders the document: header, models one a line, the kept orgs section. */
static int render(struct buf *b, const char *in, const char *effective_from, const json_t *models,
                  const json_t *orgs) {
  json_t *desc = json_sprintf(
      "Model prices imported by `keel prices import` from %s; list prices in USD per million "
      "tokens, effective from %s. Format: docs/pricing.md.",
      in, effective_from);
  int rc = buf_printf(b, "{\n  \"format\": \"keel-prices/1\",\n  \"description\": ");
  rc |= append_json_line(b, desc);
  json_decref(desc);
  rc |= buf_append_cstr(b, ",\n  \"models\": ");
  rc |= append_rows(b, models, "  ");
  if (orgs) {
    const char *id;
    json_t *rows;
    size_t i = 0;
    rc |= buf_append_cstr(b, ",\n  \"orgs\": {");
    json_object_foreach((json_t *)orgs, id, rows) {
      json_t *key = json_string(id);
      rc |= buf_printf(b, "%s\n    ", i++ ? "," : "");
      rc |= append_json_line(b, key);
      json_decref(key);
      rc |= buf_append_cstr(b, ": ");
      rc |= append_rows(b, rows, "    ");
    }
    rc |= buf_append_cstr(b, "\n  }");
  }
  rc |= buf_append_cstr(b, "\n}\n");
  return rc ? -1 : 0;
}

/* Creates dir and its missing parents (mode 0700, as the store does).
 * Returns 0, or -1 with errno set. */
static int make_dirs(const char *dir) {
  char path[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof(path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char saved = path[i];
    path[i] = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) return -1;
    path[i] = saved;
  }
  return 0;
}

/* Writes data to path durably. Returns 0, or -1 with errno set. */
static int write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, len, f);
  int rc = (w == len && fflush(f) == 0 && fsync(fileno(f)) == 0) ? 0 : -1;
  int saved = errno;
  if (fclose(f) != 0 && rc == 0) return -1;
  errno = saved;
  return rc;
}

/* The "orgs" section of an existing output file (new reference), NULL when
 * the file does not exist or has none. Returns 0, or -1 after printing. */
static int existing_orgs(const char *path, json_t **orgs) {
  json_error_t jerr;
  *orgs = NULL;
  if (access(path, F_OK) != 0) return 0;
  json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (!doc) {
    fprintf(stderr,
            "keel prices import: %s exists and does not parse (%s, line %d); move it away "
            "first\n",
            path, jerr.text, jerr.line);
    return -1;
  }
  json_t *o = json_object_get(doc, "orgs");
  if (json_is_object(o)) *orgs = json_incref(o);
  json_decref(doc);
  return 0;
}

/* Prints "imported N models, skipped M (a not chat, ...)". */
static void print_counts(size_t imported, const size_t skipped[SKIP_REASONS]) {
  size_t total = 0;
  for (size_t i = 0; i < SKIP_REASONS; i++) total += skipped[i];
  printf("imported %zu models, skipped %zu", imported, total);
  const char *sep = " (";
  for (size_t i = 0; i < SKIP_REASONS; i++) {
    if (!skipped[i]) continue;
    printf("%s%zu %s", sep, skipped[i], skip_names[i]);
    sep = ", ";
  }
  printf("%s\n", total ? ")" : "");
}

/* Renders, writes to path.tmp, loads it as keel would, and renames it into
 * place. Returns 0 or 1 after printing. */
static int install(const struct import_args *a, const char *path, const char *effective_from,
                   const json_t *models, const json_t *orgs) {
  struct buf b;
  char tmp[4096], err[512];
  int rc = 1;
  buf_init(&b, IMPORT_OUT_MAX);
  if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
    fprintf(stderr, "keel prices import: the output path is too long\n");
    goto done;
  }
  if (render(&b, a->in, effective_from, models, orgs) != 0) {
    fprintf(stderr, "keel prices import: the output is larger than %d bytes\n", IMPORT_OUT_MAX);
    goto done;
  }
  if (write_file(tmp, b.data, b.len) != 0) {
    fprintf(stderr, "keel prices import: cannot write %s: %s\n", tmp, strerror(errno));
    unlink(tmp);
    goto done;
  }
  if (pricing_load(tmp, err, sizeof(err)) != 0) {
    fprintf(stderr, "keel prices import: the converted file does not load: %s\n", err);
    unlink(tmp);
    goto done;
  }
  pricing_shutdown();
  if (rename(tmp, path) != 0) {
    fprintf(stderr, "keel prices import: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
    unlink(tmp);
    goto done;
  }
  rc = 0;
done:
  buf_free(&b);
  return rc;
}

static int prices_import(int argc, char **argv, char **envp) {
  const struct command *c = &import_command;
  struct import_args a;
  int rc = parse_args(c, argc, argv, &a);
  if (rc) return rc < 0 ? 0 : rc;
  char today[RFC3339_MAX];
  time_format_rfc3339(time_now_us(), today);
  today[10] = '\0';
  const char *effective_from = a.effective_from ? a.effective_from : today;
  if (!date_ok(effective_from)) {
    fprintf(stderr, "keel %s: --effective-from must be a date YYYY-MM-DD\n", c->name);
    return EXIT_USAGE;
  }
  struct config cfg;
  if (app_config(&a.flags, envp, &cfg) != 0) {
    config_free(&cfg);
    return EXIT_USAGE;
  }
  json_set_alloc_funcs(xmalloc, xfree);

  char path[4096];
  json_t *doc = NULL, *orgs = NULL, *models = json_array();
  struct import_row *rows = NULL;
  size_t nrows = 0, skipped[SKIP_REASONS] = {0};
  json_error_t jerr;
  rc = 1;
  if (a.out) {
    snprintf(path, sizeof(path), "%s", a.out);
  } else {
    if (make_dirs(cfg.data_dir) != 0) {
      fprintf(stderr, "keel %s: cannot create %s: %s\n", c->name, cfg.data_dir, strerror(errno));
      goto done;
    }
    size_t dl = strlen(cfg.data_dir);
    snprintf(path, sizeof(path), "%s%s%s", cfg.data_dir,
             dl && cfg.data_dir[dl - 1] == '/' ? "" : "/", PRICING_DATA_DIR_FILE);
  }
  doc = json_load_file(a.in, JSON_REJECT_DUPLICATES, &jerr);
  if (!doc || !json_is_object(doc)) {
    fprintf(stderr, "keel %s: %s: %s\n", c->name, a.in,
            doc ? "not a JSON object keyed by model name" : jerr.text);
    goto done;
  }
  nrows = convert_all(doc, effective_from, &rows, skipped);
  if (nrows == 0) {
    print_counts(0, skipped);
    fprintf(stderr, "keel %s: %s has no chat model with token prices; nothing written\n", c->name,
            a.in);
    goto done;
  }
  for (size_t i = 0; i < nrows; i++) json_array_append(models, rows[i].row);
  if (existing_orgs(path, &orgs) != 0) goto done;
  if ((rc = install(&a, path, effective_from, models, orgs)) != 0) goto done;
  print_counts(nrows, skipped);
  printf("wrote %s (effective from %s%s)\n", path, effective_from,
         orgs ? "; kept its orgs section" : "");

done:
  free_rows(rows, nrows);
  json_decref(models);
  json_decref(orgs);
  json_decref(doc);
  config_free(&cfg);
  return rc;
}

int cmd_prices(int argc, char **argv, char **envp) {
  const char *sub = argc > 1 ? argv[1] : "";
  if (strcmp(sub, "import") == 0) return prices_import(argc - 1, argv + 1, envp);
  if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
    printf("Usage: keel %s\n\n%s\n\n%s", import_command.usage, import_command.summary,
           import_flags_help);
    return 0;
  }
  fprintf(stderr, "keel prices: %s (import; see keel prices --help)\n",
          sub[0] ? "unknown subcommand" : "a subcommand is required");
  return EXIT_USAGE;
}
