/*
 * pricing.h — the model price table and the cost of one LLM call (R-ING-3).
 *
 * Money is int64 nano-USD (1 USD = 1 000 000 000). A price is held as an
 * integer number of nano-USD per million tokens, which is exact for any list
 * price written with up to 9 decimals of USD per million tokens ($0.075,
 * $0.01875, ...). A cost is computed exactly (in units of 1e-15 USD) and
 * rounded once, half up, to nano-USD. docs/pricing.md has the details.
 *
 * The table has up to three layers, consulted in this order for each call:
 *   1. the org's own rows ("orgs" section of the override file);
 *   2. the override file's rows (setting prices.file, else data_dir/
 *      prices.json when present: what `keel prices import` writes);
 *   3. the built-in table (data/prices.json, compiled into the binary).
 * Within a layer a model is found by exact id, then alias, then longest
 * prefix (rows marked "prefix"), first among the rows of the given provider,
 * then among all rows. Among a model's rows, the latest effective_from not
 * after the event time applies; the first layer with such a row prices the
 * call. When no layer has one, the earliest row of the first layer that
 * knows the model applies (flag PRICING_BEFORE_EFFECTIVE).
 *
 * Token semantics (OpenTelemetry GenAI): input_tokens include the cache
 * reads and cache writes; output_tokens include the reasoning tokens. So
 * uncached input = input - cache_read - cache_write and visible output =
 * output - reasoning; nothing is counted twice.
 *
 * Thread-safety: pricing_load and pricing_shutdown run before threads start
 * (or in tests); every other function is read-only and thread-safe.
 */
#ifndef KEEL_DOMAIN_PRICING_H
#define KEEL_DOMAIN_PRICING_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

/* The override file keel loads from the data directory when prices.file is
 * empty, and that `keel prices import` writes by default. */
#define PRICING_DATA_DIR_FILE "prices.json"

#define PRICING_NANO_PER_USD  INT64_C(1000000000)
/* Room for "-9223372036.854775808" and a NUL. */
#define PRICING_USD_MAX 32

/* Result flags: a bit set, each bit with a stable name (pricing_flag_name). */
enum pricing_flag {
  PRICING_UNPRICED = 1u << 0,         /* "unpriced": no row matched; table cost 0 */
  PRICING_CLIENT_SUPPLIED = 1u << 1,  /* "client_supplied": cost is the client's cost_usd */
  PRICING_TOKENS_CLAMPED = 1u << 2,   /* "tokens_clamped": cache > input or reasoning > output */
  PRICING_BEFORE_EFFECTIVE = 1u << 3, /* "before_effective": event predates every row */
  PRICING_ORG_PRICE = 1u << 4,        /* "org_price": the org's own row applied */
};
#define PRICING_FLAG_COUNT 5

/* One call's usage. Token counts are 0..LIMIT_PRICE_TOKENS_MAX. */
struct pricing_usage {
  const char *org_id;    /* NUL-terminated org id, or NULL: no org prices */
  struct slice provider; /* may be empty: any provider */
  struct slice model;    /* matched case-insensitively */
  int64_t input_tokens;  /* every prompt token, cache reads and writes included */
  int64_t output_tokens; /* every completion token, reasoning included */
  int64_t reasoning_tokens;
  int64_t cache_read_tokens;
  int64_t cache_write_tokens;
  bool has_client_cost;     /* the client sent cost_usd */
  int64_t client_cost_nano; /* then: its value (pricing_parse_usd / pricing_usd_from_json) */
};

struct pricing_result {
  int64_t cost_nano;       /* the cost to record: the client's when supplied, else the table's */
  int64_t table_cost_nano; /* the table's cost (0 when unpriced) */
  unsigned flags;          /* enum pricing_flag bits */
  /* The row that priced the call (borrowed from the table: valid until the
   * next pricing_load or pricing_shutdown); NULL when unpriced. */
  const char *provider;
  const char *model;
  const char *effective_from;      /* "YYYY-MM-DD" */
  int64_t tier_above_input_tokens; /* 0: base prices; else the tier's threshold */
  /* The billed token counts after clamping. */
  int64_t uncached_input_tokens;
  int64_t visible_output_tokens; /* output - reasoning */
};

/*
 * Loads the built-in table and the override file at override_path (NULL or
 * "" for none). The file is the keel price format ("models" and optional
 * "orgs"); any error in it is an error (nothing is half-loaded). Returns 0,
 * or -1 with a message naming the file and the row in err. May be called
 * again (tests): the previous table is released.
 */
int pricing_load(const char *override_path, char *err, size_t errlen);
/* Releases the table (a later pricing_cost finds nothing). */
void pricing_shutdown(void);

/*
 * Prices one call at event time at_us (µs since the epoch). Fills *out.
 * An unknown model is not an error: cost 0 and PRICING_UNPRICED. Returns 0;
 * KEEL_EINVAL when a token count is negative or above LIMIT_PRICE_TOKENS_MAX
 * (out is zeroed); KEEL_ETOOBIG when the cost does not fit in int64.
 */
int pricing_cost(const struct pricing_usage *u, int64_t at_us, struct pricing_result *out);

/* The stable name of one flag bit ("unpriced", ...), NULL for others. */
const char *pricing_flag_name(unsigned flag);

/*
 * Formats nano as a decimal USD string with exactly 9 decimals
 * ("0.000123450"; negative values get a '-'). Returns the length.
 */
size_t pricing_format_usd(int64_t nano, char out[PRICING_USD_MAX]);
/*
 * Parses a decimal USD amount strictly: digits, optionally '.' and 1 to 9
 * digits; no sign, exponent, blanks, or more than 9 decimals (rejected, not
 * rounded: money is never silently changed). Returns 0 and stores nano-USD,
 * or -1 (out untouched).
 */
int pricing_parse_usd(struct slice s, int64_t *nano);
/*
 * A client's cost_usd: a string as pricing_parse_usd, or a JSON number
 * (an integer, or a real rounded half up to nano-USD), not negative, at most
 * INT64_MAX nano-USD. Returns 0 or -1.
 */
int pricing_usd_from_json(const json_t *v, int64_t *nano);

#endif
