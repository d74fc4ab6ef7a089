/*
 * plans.c — loads the plan registry from the embedded default and an
 * optional override file.
 */
#include "domain/plans.h"

#include <stdio.h>
#include <string.h>

#include "core/embedded.h"

#define PLANS_MAX 16

static struct plan registry[PLANS_MAX];
static size_t nplans;
static json_t *registry_json;

static int64_t int_at(json_t *obj, const char *a, const char *b, int64_t dflt) {
  json_t *v = json_object_get(obj, a);
  if (b) v = json_object_get(v, b);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static int parse_plan(json_t *p, struct plan *out, char *err, size_t errlen) {
  const char *id = json_string_value(json_object_get(p, "id"));
  const char *name = json_string_value(json_object_get(p, "name"));
  if (!id || !name || strlen(id) >= sizeof(out->id) || strlen(name) >= sizeof(out->name)) {
    snprintf(err, errlen, "plans: every plan needs a short string id and name");
    return -1;
  }
  memset(out, 0, sizeof(*out));
  memcpy(out->id, id, strlen(id) + 1);
  memcpy(out->name, name, strlen(name) + 1);
  out->price_month_cents = int_at(p, "price_month_cents", NULL, 0);
  /* A year costs 12 months less 20 % unless the registry says otherwise. */
  out->price_year_cents = int_at(p, "price_year_cents", NULL, out->price_month_cents * 12 * 8 / 10);
  out->members_max = int_at(p, "limits", "members", PLAN_UNLIMITED);
  out->orgs_per_user_max = int_at(p, "limits", "orgs_per_user", PLAN_UNLIMITED);
  out->api_keys_max = int_at(p, "limits", "api_keys", PLAN_UNLIMITED);
  out->rate_per_min_key = int_at(p, "limits", "rate_per_min_key", 100);
  out->rate_per_min_org = int_at(p, "limits", "rate_per_min_org", 200);
  out->events_per_month = int_at(p, "limits", "events_per_month", 0);
  out->overage_allowed = json_is_true(json_object_get(json_object_get(p, "overage"), "allowed"));
  out->overage_nano_usd_per_1000 = int_at(p, "overage", "nano_usd_per_1000_events", 0);
  out->overage_cap_permille = int_at(p, "overage", "cap_permille", 1000);
  out->grace_permille = int_at(p, "grace_permille", NULL, 0);
  out->retention_days = int_at(p, "retention_days", NULL, 7);
  out->audit_retention_days = int_at(p, "audit_retention_days", NULL, 90);
  if (out->rate_per_min_key <= 0 || out->rate_per_min_org <= 0 ||
      (out->events_per_month < 0 && out->events_per_month != PLAN_UNLIMITED) ||
      out->overage_cap_permille < 1000 || out->grace_permille < 0 ||
      out->overage_nano_usd_per_1000 < 0) {
    snprintf(err, errlen,
             "plans: plan '%s' has a non-positive rate limit, a negative quota, grace or overage "
             "price, or an overage cap below 1000 permille",
             id);
    return -1;
  }
  return 0;
}

static json_t *find_plan(json_t *plans, const char *id) {
  size_t i;
  json_t *p;
  json_array_foreach(plans, i, p) {
    const char *pid = json_string_value(json_object_get(p, "id"));
    if (pid && strcmp(pid, id) == 0) return p;
  }
  return NULL;
}

int plans_load(const char *override_path, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *doc = NULL;
  for (size_t i = 0; i < data_count; i++) {
    if (strcmp(data_files[i].name, "plans.json") == 0) {
      doc = json_loadb(data_files[i].data, data_files[i].len, 0, &jerr);
    }
  }
  if (!doc) {
    snprintf(err, errlen, "plans: the built-in registry does not parse");
    return -1;
  }
  if (override_path && override_path[0]) {
    json_t *over = json_load_file(override_path, 0, &jerr);
    if (!over) {
      snprintf(err, errlen, "plans.file %s: %s (line %d)", override_path, jerr.text, jerr.line);
      json_decref(doc);
      return -1;
    }
    json_t *base = json_object_get(doc, "plans");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(over, "plans"), i, p) {
      const char *id = json_string_value(json_object_get(p, "id"));
      if (!id) continue;
      json_t *existing = find_plan(base, id);
      if (existing) {
        json_object_update_recursive(existing, p);
      } else {
        json_array_append(base, p);
      }
    }
    json_decref(over);
  }
  struct plan tmp[PLANS_MAX];
  size_t n = 0;
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(doc, "plans"), i, p) {
    if (n == PLANS_MAX) break;
    if (parse_plan(p, &tmp[n], err, errlen) != 0) {
      json_decref(doc);
      return -1;
    }
    n++;
  }
  if (n == 0) {
    snprintf(err, errlen, "plans: the registry has no plans");
    json_decref(doc);
    return -1;
  }
  memcpy(registry, tmp, sizeof(tmp[0]) * n);
  nplans = n;
  json_decref(registry_json);
  registry_json = doc;
  if (!plans_get(PLAN_DEFAULT)) {
    snprintf(err, errlen, "plans: the registry must have a '%s' plan", PLAN_DEFAULT);
    return -1;
  }
  return 0;
}

const struct plan *plans_get(const char *id) {
  if (!id) return NULL;
  for (size_t i = 0; i < nplans; i++) {
    if (strcmp(registry[i].id, id) == 0) return &registry[i];
  }
  return NULL;
}

const struct plan *plans_all(size_t *count) {
  *count = nplans;
  return registry;
}

/* Money as a decimal string: cents, or nano-USD (2 to 9 decimals). */
static json_t *usd_cents(int64_t cents) {
  char t[32];
  snprintf(t, sizeof(t), "%lld.%02lld", (long long)(cents / 100), (long long)(cents % 100));
  return json_string(t);
}

static json_t *usd_nano(int64_t nano) {
  char frac[24], t[64];
  snprintf(frac, sizeof(frac), "%09lld", (long long)(nano % 1000000000));
  int len = 9;
  while (len > 2 && frac[len - 1] == '0') len--;
  frac[len] = '\0';
  snprintf(t, sizeof(t), "%lld.%s", (long long)(nano / 1000000000), frac);
  return json_string(t);
}

/* The registry as served: each plan as configured, plus "prices_usd" (the
 * money as decimal strings) and "quota" (the monthly quota with the
 * overage cap and grace as event counts). */
json_t *plans_json(void) {
  json_t *doc = json_deep_copy(registry_json);
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(doc, "plans"), i, p) {
    if (i >= nplans) break;
    const struct plan *pl = &registry[i];
    json_object_set_new(
        p, "prices_usd",
        json_pack("{s:o, s:o, s:o}", "month", usd_cents(pl->price_month_cents), "year",
                  usd_cents(pl->price_year_cents), "overage_per_1000_events",
                  usd_nano(pl->overage_allowed ? pl->overage_nano_usd_per_1000 : 0)));
    bool unlimited = pl->events_per_month == PLAN_UNLIMITED;
    int64_t q = pl->events_per_month;
    json_object_set_new(
        p, "quota",
        json_pack("{s:o, s:b, s:o, s:o, s:o}", "events_per_month",
                  unlimited ? json_null() : json_integer(q), "overage_allowed", pl->overage_allowed,
                  "overage_cap_multiple",
                  pl->overage_allowed ? json_real((double)pl->overage_cap_permille / 1000.0)
                                      : json_null(),
                  "overage_cap_events",
                  pl->overage_allowed && !unlimited
                      ? json_integer(q / 1000 * pl->overage_cap_permille +
                                     q % 1000 * pl->overage_cap_permille / 1000)
                      : json_null(),
                  "grace_events",
                  unlimited ? json_null()
                            : json_integer(pl->overage_allowed
                                               ? 0
                                               : q / 1000 * pl->grace_permille +
                                                     q % 1000 * pl->grace_permille / 1000)));
  }
  return doc;
}

bool plans_within(int64_t limit, int64_t value) {
  return limit == PLAN_UNLIMITED || value <= limit;
}
