/*
 * test_tenancy.c — domain/tenancy.c and domain/invitations.c: slug and name
 * rules at their boundaries, slugs from names, the membership rules
 * (last owner, admins and owners), seats, invitation status and tokens, the
 * CSV reader, and org creation on a real (temporary) store: generated and
 * suffixed slugs, the orgs-per-user limit at N and N+1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/xmalloc.h"
#include "domain/invitations.h"
#include "domain/plans.h"
#include "domain/tenancy.h"
#include "store/db.h"
#include "store/store.h"

/* A string of n copies of c (static buffer, one at a time). */
static const char *repeat(char c, size_t n) {
  static char buf[512];
  if (n >= sizeof(buf)) n = sizeof(buf) - 1;
  memset(buf, c, n);
  buf[n] = '\0';
  return buf;
}

/* --- slugs ------------------------------------------------------------------ */

struct slug_case {
  const char *slug;
  bool valid;
};

static void test_slug_valid_table(void **state) {
  (void)state;
  char s2[] = "ab", s3[] = "abc", s48[49], s49[50];
  memset(s48, 'b', 48);
  s48[48] = '\0';
  memset(s49, 'b', 49);
  s49[49] = '\0';
  s49[0] = s48[0] = 'a';
  const struct slug_case cases[] = {
      {s2, false},        {s3, true},        {s48, true},        {s49, false},
      {"a-b", true},      {"a--b", true},    {"-ab", false},     {"ab-", false},
      {"a1-9z", true},    {"123", true},     {"Abc", false},     {"ab_c", false},
      {"ab c", false},    {"ab.c", false},   {"", false},        {"acme-labs", true},
      {"api", false},     {"www", false},    {"admin", false},   {"app", false},
      {"login", false},   {"signup", false}, {"docs", false},    {"static", false},
      {"billing", false}, {"api1", true},    {"my-admin", true}, {"caf\xc3\xa9", false},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    bool got = tenancy_slug_valid(cases[i].slug);
    if (got != cases[i].valid) {
      fail_msg("slug '%s': valid=%d, expected %d", cases[i].slug, got, cases[i].valid);
    }
    assert_true((tenancy_slug_check(cases[i].slug) == NULL) == cases[i].valid);
  }
  assert_non_null(tenancy_slug_check(NULL));
  assert_true(tenancy_slug_reserved("billing"));
  assert_false(tenancy_slug_reserved("billings"));
}

struct from_name_case {
  const char *name;
  const char *slug;
};

static void test_slug_from_name_table(void **state) {
  (void)state;
  char long_words[200] = "";
  for (int i = 0; i < 20; i++) {
    strncat(long_words, "abcd ", sizeof(long_words) - 1 - strlen(long_words));
  }
  char xs[61];
  memset(xs, 'x', 60);
  xs[60] = '\0';
  const struct from_name_case cases[] = {
      {"Acme Labs!", "acme-labs"},
      {"  Acme   Labs  ", "acme-labs"},
      {"ACME", "acme"},
      {"a.b_c/d", "a-b-c-d"},
      {"---x---", "x"},
      {"Caf\xc3\xa9 Noir", "caf-noir"},
      {"\xe6\x97\xa5\xe6\x9c\xac", "org"},
      {"", "org"},
      {"!!!", "org"},
      {"R2-D2 & C-3PO", "r2-d2-c-3po"},
      /* Cut at LIMIT_SLUG_MAX (48) bytes. */
      {xs, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
      {long_words, "abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abc"},
      /* A cut that would end on '-' drops it: 47 x, then a word. */
      {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx yz",
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},
  };
  char out[TENANCY_SLUG_SIZE];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tenancy_slug_from_name(cases[i].name, out, sizeof(out));
    if (strcmp(out, cases[i].slug) != 0) {
      fail_msg("name '%s' -> '%s', expected '%s'", cases[i].name, out, cases[i].slug);
    }
    assert_true(strlen(out) <= LIMIT_SLUG_MAX);
  }
  tenancy_slug_from_name(NULL, out, sizeof(out));
  assert_string_equal(out, "org");
  /* A small buffer bounds the result too. */
  char small[6];
  tenancy_slug_from_name("Acme Labs", small, sizeof(small));
  assert_string_equal(small, "acme");
}

/* --- names -------------------------------------------------------------------- */

static void test_name_check(void **state) {
  (void)state;
  assert_null(tenancy_name_check("A"));
  assert_null(tenancy_name_check(repeat('n', 100)));
  assert_non_null(tenancy_name_check(repeat('n', 101)));
  /* 100 two-byte characters (200 bytes) are 100 characters: valid. */
  char wide[404] = "";
  for (int i = 0; i < 100; i++) strncat(wide, "\xc3\xa9", sizeof(wide) - 1 - strlen(wide));
  assert_null(tenancy_name_check(wide));
  strncat(wide, "\xc3\xa9", sizeof(wide) - 1 - strlen(wide));
  assert_non_null(tenancy_name_check(wide));
  assert_non_null(tenancy_name_check(""));
  assert_non_null(tenancy_name_check(NULL));
  assert_non_null(tenancy_name_check("   "));
  assert_non_null(tenancy_name_check("tab\there"));
  assert_non_null(tenancy_name_check("bad \xc3"));         /* truncated sequence */
  assert_non_null(tenancy_name_check("over \xc0\xaf"));    /* overlong '/' */
  assert_non_null(tenancy_name_check("sur \xed\xa0\x80")); /* a surrogate */
  assert_null(tenancy_name_check("Acme \xf0\x9f\x9a\x80 Rockets"));
}

static void test_utf8_valid(void **state) {
  (void)state;
  assert_true(tenancy_utf8_valid("", 0));
  assert_true(tenancy_utf8_valid("abc", 3));
  assert_true(tenancy_utf8_valid("\xc3\xa9", 2));
  assert_false(tenancy_utf8_valid("\xc3", 1));     /* cut at the end */
  assert_false(tenancy_utf8_valid("a\0b", 3));     /* NUL */
  assert_false(tenancy_utf8_valid("\xe2\x82", 2)); /* cut 3-byte sequence */
  assert_true(tenancy_utf8_valid("\xe2\x82\xac", 3));
  assert_false(tenancy_utf8_valid("\xff", 1));
}

/* --- membership rules ---------------------------------------------------------- */

struct rule_case {
  enum role actor, from, to;
  int64_t owners;
  int want;
  const char *code;
};

static void test_role_change_rule(void **state) {
  (void)state;
  const struct rule_case cases[] = {
      {ROLE_OWNER, ROLE_MEMBER, ROLE_ADMIN, 1, 0, NULL},
      {ROLE_OWNER, ROLE_MEMBER, ROLE_OWNER, 1, 0, NULL},
      {ROLE_OWNER, ROLE_OWNER, ROLE_ADMIN, 2, 0, NULL},
      {ROLE_OWNER, ROLE_OWNER, ROLE_ADMIN, 1, KEEL_ECONFLICT, "last_owner"},
      {ROLE_OWNER, ROLE_OWNER, ROLE_VIEWER, 1, KEEL_ECONFLICT, "last_owner"},
      {ROLE_ADMIN, ROLE_MEMBER, ROLE_VIEWER, 1, 0, NULL},
      {ROLE_ADMIN, ROLE_VIEWER, ROLE_ADMIN, 1, 0, NULL},
      {ROLE_ADMIN, ROLE_MEMBER, ROLE_OWNER, 1, KEEL_EDENIED, "forbidden"},
      {ROLE_ADMIN, ROLE_OWNER, ROLE_MEMBER, 2, KEEL_EDENIED, "forbidden"},
      {ROLE_ADMIN, ROLE_OWNER, ROLE_ADMIN, 1, KEEL_EDENIED, "forbidden"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct tenancy_err err = {0};
    int rc =
        tenancy_role_change_rule(cases[i].actor, cases[i].from, cases[i].to, cases[i].owners, &err);
    if (rc != cases[i].want) fail_msg("case %zu: rc %d, expected %d", i, rc, cases[i].want);
    if (cases[i].code) assert_string_equal(err.code, cases[i].code);
  }
}

static void test_removal_rule(void **state) {
  (void)state;
  struct tenancy_err err = {0};
  assert_int_equal(tenancy_removal_rule(ROLE_OWNER, ROLE_MEMBER, false, 1, &err), 0);
  assert_int_equal(tenancy_removal_rule(ROLE_ADMIN, ROLE_MEMBER, false, 1, &err), 0);
  assert_int_equal(tenancy_removal_rule(ROLE_ADMIN, ROLE_ADMIN, false, 1, &err), 0);
  assert_int_equal(tenancy_removal_rule(ROLE_ADMIN, ROLE_OWNER, false, 2, &err), KEEL_EDENIED);
  assert_string_equal(err.code, "forbidden");
  assert_int_equal(tenancy_removal_rule(ROLE_OWNER, ROLE_OWNER, false, 2, &err), 0);
  assert_int_equal(tenancy_removal_rule(ROLE_OWNER, ROLE_OWNER, false, 1, &err), KEEL_ECONFLICT);
  assert_string_equal(err.code, "last_owner");
  /* Leaving. */
  assert_int_equal(tenancy_removal_rule(ROLE_OWNER, ROLE_OWNER, true, 1, &err), KEEL_ECONFLICT);
  assert_string_equal(err.code, "last_owner");
  assert_int_equal(tenancy_removal_rule(ROLE_OWNER, ROLE_OWNER, true, 2, &err), 0);
  assert_int_equal(tenancy_removal_rule(ROLE_VIEWER, ROLE_VIEWER, true, 1, &err), 0);
}

static void test_seats(void **state) {
  (void)state;
  /* free: 1 member; pro: 5; team: unlimited (data/plans.json). */
  assert_true(tenancy_seats_within("free", 1, 0, 0));
  assert_false(tenancy_seats_within("free", 1, 0, 1));
  assert_true(tenancy_seats_within("pro", 1, 3, 1));
  assert_false(tenancy_seats_within("pro", 1, 4, 1));
  assert_false(tenancy_seats_within("pro", 5, 0, 1));
  assert_true(tenancy_seats_within("team", 1000, 1000, 1000));
  /* An unknown plan is judged as the default one. */
  assert_false(tenancy_seats_within("nope", 1, 0, 1));
}

/* --- invitations: status, roles, tokens ------------------------------------------ */

static void test_invite_status(void **state) {
  (void)state;
  struct invitation inv = {.expires_at = 1000};
  assert_int_equal(invite_status(&inv, 999), INVITE_PENDING);
  assert_int_equal(invite_status(&inv, 1000), INVITE_EXPIRED);
  inv.revoked_at = 500;
  assert_int_equal(invite_status(&inv, 999), INVITE_REVOKED);
  inv.revoked_at = 1000; /* closed at its expiry: replaced after expiring */
  assert_int_equal(invite_status(&inv, 999), INVITE_EXPIRED);
  inv.revoked_at = 0;
  inv.accepted_at = 10;
  assert_int_equal(invite_status(&inv, 5000), INVITE_ACCEPTED);
  assert_string_equal(invite_status_name(INVITE_PENDING), "pending");
  assert_string_equal(invite_status_name(INVITE_REVOKED), "revoked");
  assert_int_equal(invite_role_parse("owner"), ROLE_NONE);
  assert_int_equal(invite_role_parse("admin"), ROLE_ADMIN);
  assert_int_equal(invite_role_parse("viewer"), ROLE_VIEWER);
  assert_int_equal(invite_role_parse("Admin"), ROLE_NONE);
}

static void test_invite_token_hash(void **state) {
  (void)state;
  uint8_t h1[SHA256_LEN], h2[SHA256_LEN];
  char token[INVITE_TOKEN_SIZE];
  crypto_token(INVITE_TOKEN_BYTES, token, sizeof(token));
  assert_int_equal(strlen(token), INVITE_TOKEN_LEN);
  assert_int_equal(invite_token_hash(token, h1), 0);
  crypto_sha256(token, strlen(token), h2);
  assert_memory_equal(h1, h2, SHA256_LEN);
  assert_int_equal(invite_token_hash(repeat('A', 42), h1), -1);
  assert_int_equal(invite_token_hash(repeat('A', 44), h1), -1);
  assert_int_equal(invite_token_hash(repeat('A', 43), h1), 0);
  char bad[INVITE_TOKEN_SIZE];
  snprintf(bad, sizeof(bad), "%s", token);
  bad[5] = '+';
  assert_int_equal(invite_token_hash(bad, h1), -1);
  assert_int_equal(invite_token_hash(NULL, h1), -1);
}

/* --- the CSV reader ----------------------------------------------------------------- */

static struct invite_csv_row *parse_ok(struct arena *a, const char *csv, size_t *n) {
  struct invite_csv_row *rows = NULL;
  struct invite_csv_error e = {0};
  int rc = invite_csv_parse(a, slice_from_cstr(csv), &rows, n, &e);
  if (rc != 0) fail_msg("parse failed: %s %s %s", e.field, e.code, e.message);
  return rows;
}

static void test_csv_basic(void **state) {
  (void)state;
  struct arena *a = arena_new(0);
  size_t n = 0;
  struct invite_csv_row *r = parse_ok(
      a, " Email , ROLE \r\nada@example.com,admin\r\n\r\n  bob@example.com  ,  viewer  \r\n", &n);
  assert_int_equal(n, 2);
  assert_string_equal(r[0].email, "ada@example.com");
  assert_string_equal(r[0].role, "admin");
  assert_int_equal(r[0].line, 2);
  assert_string_equal(r[1].email, "bob@example.com");
  assert_string_equal(r[1].role, "viewer");
  assert_int_equal(r[1].line, 4);

  /* Quoted fields: commas, doubled quotes, a line break; a BOM; no final
   * newline. */
  r = parse_ok(a,
               "\xEF\xBB\xBF\"email\",\"role\"\n\"a,b@example.com\" , member\n"
               "\"say \"\"hi\"\"\",\"multi\nline\"\nlast@example.com,viewer",
               &n);
  assert_int_equal(n, 3);
  assert_string_equal(r[0].email, "a,b@example.com");
  assert_string_equal(r[0].role, "member");
  assert_string_equal(r[1].email, "say \"hi\"");
  assert_string_equal(r[1].role, "multi\nline");
  assert_int_equal(r[1].line, 3);
  assert_int_equal(r[2].line, 5);

  /* A header alone: no rows. Blank lines before the header are skipped. */
  r = parse_ok(a, "\n\nemail,role\n", &n);
  assert_int_equal(n, 0);
  /* An empty field is a field. */
  r = parse_ok(a, "email,role\n,\n", &n);
  assert_int_equal(n, 1);
  assert_string_equal(r[0].email, "");
  arena_free(a);
}

struct csv_bad {
  const char *csv;
  const char *field;
  const char *code;
};

static void test_csv_malformed(void **state) {
  (void)state;
  const struct csv_bad cases[] = {
      {"", "body", "required"},
      {"\n \n", "body", "required"},
      {"mail,role\na@example.com,admin\n", "line 1", "invalid_format"},
      {"email\na@example.com\n", "line 1", "invalid_format"},
      {"email,role,extra\n", "line 1", "invalid_format"},
      {"email,role\na@example.com\n", "line 2", "invalid_format"},
      {"email,role\na@example.com,admin,x\n", "line 2", "invalid_format"},
      {"email,role\n\"a@example.com,admin\n", "line 2", "invalid_format"},
      {"email,role\na\"b@example.com,admin\n", "line 2", "invalid_format"},
      {"email,role\n\"a@example.com\"x,admin\n", "line 2", "invalid_format"},
      {"email,role\nb\xff@example.com,admin\n", "body", "invalid_format"},
  };
  struct arena *a = arena_new(0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct invite_csv_row *rows = NULL;
    size_t n = 99;
    struct invite_csv_error e = {0};
    int rc = invite_csv_parse(a, slice_from_cstr(cases[i].csv), &rows, &n, &e);
    if (rc != -1) fail_msg("case %zu parsed", i);
    assert_int_equal(n, 0);
    if (strcmp(e.field, cases[i].field) != 0 || strcmp(e.code, cases[i].code) != 0) {
      fail_msg("case %zu: %s/%s, expected %s/%s", i, e.field, e.code, cases[i].field,
               cases[i].code);
    }
    assert_non_null(e.message);
  }
  arena_free(a);
}

/* LIMIT_INVITE_CSV_ROWS rows parse; one more is refused. */
static void test_csv_row_limit(void **state) {
  (void)state;
  struct buf b;
  buf_init(&b, 1 << 20);
  buf_append_cstr(&b, "email,role\n");
  for (int i = 0; i < LIMIT_INVITE_CSV_ROWS; i++) buf_printf(&b, "u%d@example.com,member\n", i);
  struct arena *a = arena_new(0);
  struct invite_csv_row *rows = NULL;
  size_t n = 0;
  struct invite_csv_error e = {0};
  assert_int_equal(invite_csv_parse(a, buf_slice(&b), &rows, &n, &e), 0);
  assert_int_equal(n, LIMIT_INVITE_CSV_ROWS);
  assert_string_equal(rows[LIMIT_INVITE_CSV_ROWS - 1].email, "u999@example.com");
  buf_append_cstr(&b, "one-more@example.com,member\n");
  assert_int_equal(invite_csv_parse(a, buf_slice(&b), &rows, &n, &e), -1);
  assert_string_equal(e.code, "too_long");
  arena_free(a);
  buf_free(&b);
}

/* --- org creation on a store ----------------------------------------------------------- */

static char dir[256];
static struct store *store;

static int store_setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/keel-test-tenancy-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  struct store_options o = {
      .data_dir = dir, .busy_timeout_ms = 5000, .cache_kib = 1024, .migrate_on_open = true};
  char err[256];
  return store_open(&o, &store, err, sizeof(err)) == 0 ? 0 : -1;
}

static int store_teardown(void **state) {
  (void)state;
  store_close(store);
  const char *files[] = {"keel.db", "keel.db-wal", "keel.db-shm"};
  char path[512];
  for (size_t i = 0; i < 3; i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
  return 0;
}

struct create {
  const char *owner, *name, *slug, *plan;
  struct org org;
  const char *why;
};

static int create_tx(struct store_tx *tx, void *arg) {
  struct create *c = arg;
  return tenancy_org_create(tx, c->owner, c->name, c->slug, c->plan, &c->org, &c->why);
}

static int create(const char *owner, const char *name, const char *slug, const char *plan,
                  struct org *out) {
  struct create *c = xcalloc(1, sizeof(*c));
  *c = (struct create){.owner = owner, .name = name, .slug = slug, .plan = plan};
  int rc = store_write(store, create_tx, c);
  if (out) *out = c->org;
  xfree(c);
  return rc;
}

static int user_tx(struct store_tx *tx, void *arg) {
  const char *id = arg;
  struct db_stmt *st = db_prepare(tx,
                                  "INSERT INTO users(id, email, email_norm, name, created_at,"
                                  " updated_at) VALUES($1, $1, $1, 'T', 1, 1)");
  if (!st) return KEEL_ESTORE;
  db_bind_text(st, 1, id);
  return db_step(st) == DB_DONE ? 0 : KEEL_ESTORE;
}

static void new_user(char id[ID_STR_SIZE]) {
  id_new_str(id);
  assert_int_equal(store_write(store, user_tx, id), 0);
}

static void test_org_create_slugs(void **state) {
  (void)state;
  char owner[ID_STR_SIZE];
  new_user(owner);
  struct org *o = xmalloc(sizeof(*o));
  assert_int_equal(create(owner, "Zeta Works", NULL, "pro", o), 0);
  assert_string_equal(o->slug, "zeta-works");
  assert_string_equal(o->plan, "pro");
  assert_string_equal(o->settings, "{}");
  assert_true(o->created_at > 0);
  /* Taken: the same name gets a random suffix. */
  assert_int_equal(create(owner, "Zeta Works", NULL, "pro", o), 0);
  assert_int_equal(strlen(o->slug), strlen("zeta-works-") + 4);
  assert_memory_equal(o->slug, "zeta-works-", strlen("zeta-works-"));
  assert_true(tenancy_slug_valid(o->slug));
  /* Reserved and too-short forms get one too. */
  assert_int_equal(create(owner, "Admin", NULL, "pro", o), 0);
  assert_memory_equal(o->slug, "admin-", 6);
  assert_true(tenancy_slug_valid(o->slug));
  assert_int_equal(create(owner, "Q", NULL, "pro", o), 0);
  assert_memory_equal(o->slug, "q-", 2);
  assert_int_equal(strlen(o->slug), 6);
  /* An explicit slug that is taken is a conflict; an invalid one, EINVAL. */
  assert_int_equal(create(owner, "Other", "zeta-works", "pro", o), KEEL_ECONFLICT);
  assert_int_equal(create(owner, "Other", "Zeta", "pro", o), KEEL_EINVAL);
  assert_int_equal(create(owner, "", "fine-slug", "pro", o), KEEL_EINVAL);
  assert_int_equal(create(owner, "Fine", "fine-slug", "no-such-plan", o), KEEL_EINVAL);
  xfree(o);
}

/* The free plan allows orgs_per_user (3) free orgs per owner: N ok, N+1
 * refused; paid orgs do not count; another user is not affected. */
static void test_org_create_limit(void **state) {
  (void)state;
  const struct plan *free_plan = plans_get("free");
  assert_non_null(free_plan);
  assert_int_equal(free_plan->orgs_per_user_max, 3);
  char owner[ID_STR_SIZE], other[ID_STR_SIZE];
  new_user(owner);
  new_user(other);
  assert_int_equal(create(owner, "Paid", NULL, "pro", NULL), 0);
  for (int i = 0; i < 3; i++) assert_int_equal(create(owner, "Free", NULL, NULL, NULL), 0);
  struct create *c = xcalloc(1, sizeof(*c));
  *c = (struct create){.owner = owner, .name = "Fourth"};
  assert_int_equal(store_write(store, create_tx, c), KEEL_EDENIED);
  assert_non_null(c->why);
  xfree(c);
  assert_int_equal(create(owner, "Paid again", NULL, "team", NULL), 0);
  assert_int_equal(create(other, "Free", NULL, NULL, NULL), 0);
}

int main(void) {
  if (crypto_init() != 0) return 1;
  char err[256];
  if (plans_load(NULL, err, sizeof(err)) != 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slug_valid_table),
      cmocka_unit_test(test_slug_from_name_table),
      cmocka_unit_test(test_name_check),
      cmocka_unit_test(test_utf8_valid),
      cmocka_unit_test(test_role_change_rule),
      cmocka_unit_test(test_removal_rule),
      cmocka_unit_test(test_seats),
      cmocka_unit_test(test_invite_status),
      cmocka_unit_test(test_invite_token_hash),
      cmocka_unit_test(test_csv_basic),
      cmocka_unit_test(test_csv_malformed),
      cmocka_unit_test(test_csv_row_limit),
      cmocka_unit_test_setup_teardown(test_org_create_slugs, store_setup, store_teardown),
      cmocka_unit_test_setup_teardown(test_org_create_limit, store_setup, store_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
