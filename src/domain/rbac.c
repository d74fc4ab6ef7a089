/*
 * rbac.c — the permission matrix, as one table.
 */
#include "domain/rbac.h"

#include <string.h>

struct perm_row {
  const char *name;
  bool allowed[ROLE_COUNT]; /* none, viewer, member, admin, owner */
};

/*                                            none   viewer member admin  owner */
static const struct perm_row matrix[PERM_COUNT] = {
    [PERM_NONE] = {"none", {true, true, true, true, true}},
    [PERM_ORG_READ] = {"org.read", {false, true, true, true, true}},
    [PERM_ORG_UPDATE] = {"org.update", {false, false, false, true, true}},
    [PERM_ORG_DELETE] = {"org.delete", {false, false, false, false, true}},
    [PERM_OWNERSHIP_TRANSFER] = {"org.transfer_ownership", {false, false, false, false, true}},
    [PERM_MEMBERS_READ] = {"members.read", {false, false, false, true, true}},
    [PERM_MEMBERS_MANAGE] = {"members.manage", {false, false, false, true, true}},
    [PERM_KEYS_MANAGE] = {"api_keys.manage", {false, false, false, true, true}},
    [PERM_AUDIT_READ] = {"audit.read", {false, false, false, true, true}},
    [PERM_BILLING_READ] = {"billing.read", {false, false, false, false, true}},
    [PERM_BILLING_MANAGE] = {"billing.manage", {false, false, false, false, true}},
    [PERM_SETTINGS_MANAGE] = {"settings.manage", {false, false, false, true, true}},
    [PERM_USAGE_READ] = {"usage.read", {false, true, true, true, true}},
    [PERM_USAGE_ADMIN] = {"usage.admin", {false, false, false, true, true}},
    [PERM_TELEMETRY_READ] = {"telemetry.read", {false, true, true, true, true}},
    [PERM_TELEMETRY_WRITE] = {"telemetry.write", {false, false, true, true, true}},
    [PERM_DATA_ADMIN] = {"data.admin", {false, false, false, true, true}},
};

static const char *const role_names[ROLE_COUNT] = {"none", "viewer", "member", "admin", "owner"};

bool rbac_allows(enum role role, enum permission perm) {
  if ((unsigned)role >= ROLE_COUNT || (unsigned)perm >= PERM_COUNT) return false;
  return matrix[perm].allowed[role];
}

const char *rbac_role_name(enum role role) {
  return (unsigned)role < ROLE_COUNT ? role_names[role] : "none";
}

enum role rbac_role_parse(const char *s) {
  if (!s) return ROLE_NONE;
  for (int r = ROLE_VIEWER; r < ROLE_COUNT; r++) {
    if (strcmp(s, role_names[r]) == 0) return (enum role)r;
  }
  return ROLE_NONE;
}

const char *rbac_permission_name(enum permission perm) {
  return (unsigned)perm < PERM_COUNT ? matrix[perm].name : "unknown";
}
