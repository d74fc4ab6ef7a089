/*
 * test_rbac.c — the permission matrix of R-IAM-6, written out here as a
 * table of every (role, permission) pair independently of rbac.c's own
 * table, so a changed cell in either shows up; role and permission names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "domain/rbac.h"

/*
 * R-IAM-6: owner: everything; admin: everything but billing (read and
 * manage), org deletion and ownership transfer; member: org.read,
 * usage.read, telemetry.read, telemetry.write only; viewer: org.read,
 * usage.read, telemetry.read only.
 */
struct cell {
  enum permission perm;
  const char *name;
  bool viewer, member, admin, owner;
};

static const struct cell expected[] = {
    /*                                                    viewer member admin  owner */
    {PERM_ORG_READ, "org.read", true, true, true, true},
    {PERM_ORG_UPDATE, "org.update", false, false, true, true},
    {PERM_ORG_DELETE, "org.delete", false, false, false, true},
    {PERM_OWNERSHIP_TRANSFER, "org.transfer_ownership", false, false, false, true},
    {PERM_MEMBERS_READ, "members.read", false, false, true, true},
    {PERM_MEMBERS_MANAGE, "members.manage", false, false, true, true},
    {PERM_KEYS_MANAGE, "api_keys.manage", false, false, true, true},
    {PERM_AUDIT_READ, "audit.read", false, false, true, true},
    {PERM_BILLING_READ, "billing.read", false, false, false, true},
    {PERM_BILLING_MANAGE, "billing.manage", false, false, false, true},
    {PERM_SETTINGS_MANAGE, "settings.manage", false, false, true, true},
    {PERM_USAGE_READ, "usage.read", true, true, true, true},
    {PERM_USAGE_ADMIN, "usage.admin", false, false, true, true},
    {PERM_TELEMETRY_READ, "telemetry.read", true, true, true, true},
    {PERM_TELEMETRY_WRITE, "telemetry.write", false, true, true, true},
    {PERM_DATA_ADMIN, "data.admin", false, false, true, true},
};

#define NEXPECTED (sizeof(expected) / sizeof(expected[0]))

/* Every permission but PERM_NONE has exactly one row above: a permission
 * added to rbac.h without a decision here fails. */
static void test_table_covers_every_permission(void **state) {
  (void)state;
  assert_int_equal(NEXPECTED, PERM_COUNT - 1);
  for (int p = PERM_NONE + 1; p < PERM_COUNT; p++) {
    int rows = 0;
    for (size_t i = 0; i < NEXPECTED; i++) rows += expected[i].perm == (enum permission)p;
    if (rows != 1) fail_msg("permission %d (%s) has %d rows", p, rbac_permission_name(p), rows);
  }
}

static void test_matrix(void **state) {
  (void)state;
  int wrong = 0;
  for (size_t i = 0; i < NEXPECTED; i++) {
    const struct cell *c = &expected[i];
    const struct {
      enum role role;
      bool allowed;
    } cols[] = {{ROLE_VIEWER, c->viewer},
                {ROLE_MEMBER, c->member},
                {ROLE_ADMIN, c->admin},
                {ROLE_OWNER, c->owner},
                {ROLE_NONE, false}};
    for (size_t k = 0; k < sizeof(cols) / sizeof(cols[0]); k++) {
      bool got = rbac_allows(cols[k].role, c->perm);
      if (got != cols[k].allowed) {
        print_error("%s × %s: expected %s, got %s\n", rbac_role_name(cols[k].role), c->name,
                    cols[k].allowed ? "allowed" : "denied", got ? "allowed" : "denied");
        wrong++;
      }
    }
  }
  assert_int_equal(wrong, 0);
}

/* The summary rules, checked as rules rather than cells. */
static void test_role_rules(void **state) {
  (void)state;
  for (int p = PERM_NONE + 1; p < PERM_COUNT; p++) {
    enum permission perm = (enum permission)p;
    assert_true(rbac_allows(ROLE_OWNER, perm)); /* owner: everything */
    /* Each role allows a subset of the next one up. */
    if (rbac_allows(ROLE_VIEWER, perm)) assert_true(rbac_allows(ROLE_MEMBER, perm));
    if (rbac_allows(ROLE_MEMBER, perm)) assert_true(rbac_allows(ROLE_ADMIN, perm));
    assert_false(rbac_allows(ROLE_NONE, perm));
  }
  int admin_denied = 0, member_allowed = 0, viewer_allowed = 0;
  for (int p = PERM_NONE + 1; p < PERM_COUNT; p++) {
    admin_denied += !rbac_allows(ROLE_ADMIN, (enum permission)p);
    member_allowed += rbac_allows(ROLE_MEMBER, (enum permission)p);
    viewer_allowed += rbac_allows(ROLE_VIEWER, (enum permission)p);
  }
  assert_int_equal(admin_denied, 4);
  assert_int_equal(member_allowed, 4);
  assert_int_equal(viewer_allowed, 3);
  /* Nobody writes telemetry read-only. */
  assert_false(rbac_allows(ROLE_VIEWER, PERM_TELEMETRY_WRITE));
}

static void test_out_of_range_denied(void **state) {
  (void)state;
  assert_false(rbac_allows((enum role)ROLE_COUNT, PERM_ORG_READ));
  assert_false(rbac_allows((enum role) - 1, PERM_ORG_READ));
  assert_false(rbac_allows(ROLE_OWNER, (enum permission)PERM_COUNT));
  assert_false(rbac_allows(ROLE_OWNER, (enum permission) - 1));
  /* PERM_NONE on a route means "no permission needed". */
  assert_true(rbac_allows(ROLE_VIEWER, PERM_NONE));
}

static void test_role_names_round_trip(void **state) {
  (void)state;
  const struct {
    enum role role;
    const char *name;
  } names[] = {{ROLE_VIEWER, "viewer"},
               {ROLE_MEMBER, "member"},
               {ROLE_ADMIN, "admin"},
               {ROLE_OWNER, "owner"}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    assert_string_equal(rbac_role_name(names[i].role), names[i].name);
    assert_int_equal(rbac_role_parse(names[i].name), names[i].role);
    assert_int_equal(rbac_role_parse(rbac_role_name(names[i].role)), names[i].role);
  }
  assert_string_equal(rbac_role_name(ROLE_NONE), "none");
  assert_string_equal(rbac_role_name((enum role)99), "none");
  /* Parsing is exact: no case folding, no prefixes, "none" is not a role. */
  const char *bad[] = {"Owner", "OWNER", "own", "owners", " owner", "", "none", "root"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(rbac_role_parse(bad[i]), ROLE_NONE);
  }
  assert_int_equal(rbac_role_parse(NULL), ROLE_NONE);
}

static void test_permission_names(void **state) {
  (void)state;
  for (size_t i = 0; i < NEXPECTED; i++) {
    assert_string_equal(rbac_permission_name(expected[i].perm), expected[i].name);
  }
  /* Names are unique (they appear in audit entries of denials). */
  for (int a = 0; a < PERM_COUNT; a++) {
    for (int b = a + 1; b < PERM_COUNT; b++) {
      assert_string_not_equal(rbac_permission_name(a), rbac_permission_name(b));
    }
  }
  assert_string_equal(rbac_permission_name((enum permission)PERM_COUNT), "unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_covers_every_permission),
      cmocka_unit_test(test_matrix),
      cmocka_unit_test(test_role_rules),
      cmocka_unit_test(test_out_of_range_denied),
      cmocka_unit_test(test_role_names_round_trip),
      cmocka_unit_test(test_permission_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
