/*
 * rbac.h — organisation roles and the permission matrix (R-IAM-6).
 *
 * The matrix is one table in rbac.c: a row per permission, a column per
 * role. owner: everything; admin: everything but billing, org deletion and
 * ownership transfer; member: read and write telemetry and own agents, no API
 * keys, team, billing or settings; viewer: read only.
 */
#ifndef KEEL_DOMAIN_RBAC_H
#define KEEL_DOMAIN_RBAC_H

#include <stdbool.h>

enum role { ROLE_NONE = 0, ROLE_VIEWER, ROLE_MEMBER, ROLE_ADMIN, ROLE_OWNER, ROLE_COUNT };

enum permission {
  PERM_NONE = 0,
  PERM_ORG_READ,   /* see the org */
  PERM_ORG_UPDATE, /* rename, settings */
  PERM_ORG_DELETE, /* delete the org */
  PERM_OWNERSHIP_TRANSFER,
  PERM_MEMBERS_READ,   /* the team page */
  PERM_MEMBERS_MANAGE, /* change roles, remove members, invitations */
  PERM_KEYS_MANAGE,    /* API keys */
  PERM_AUDIT_READ,     /* audit log and export */
  PERM_BILLING_READ,
  PERM_BILLING_MANAGE,
  PERM_SETTINGS_MANAGE, /* tenant configuration */
  PERM_USAGE_READ,
  PERM_USAGE_ADMIN,     /* reconciliation */
  PERM_TELEMETRY_READ,  /* sessions, events, analytics */
  PERM_TELEMETRY_WRITE, /* ingestion through a session */
  PERM_DATA_ADMIN,      /* dead letters, import/export */
  PERM_COUNT
};

/* API-key scopes. */
enum scope { SCOPE_NONE = 0, SCOPE_INGEST = 1u << 0, SCOPE_READ = 1u << 1, SCOPE_ADMIN = 1u << 2 };

bool rbac_allows(enum role role, enum permission perm);
const char *rbac_role_name(enum role role); /* "owner" … ; "none" */
enum role rbac_role_parse(const char *s);   /* ROLE_NONE when unknown */
const char *rbac_permission_name(enum permission perm);

#endif
