/*
 * api/orgs.h — helpers shared by the organisation area's handlers (orgs.c,
 * members.c, invitations.c). Private to api/.
 */
#ifndef KEEL_API_ORGS_H
#define KEEL_API_ORGS_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"
#include "domain/tenancy.h"

/*
 * Answers a refusal from domain/tenancy or domain/invitations:
 * plan_limit_reached → api_plan_limit; forbidden → an audit entry
 * (permission.denied) and 403; validation_failed → a field error; any other
 * code → that problem. When err->code is NULL, status decides (api_status).
 * Returns 0.
 */
int orgs_refusal(struct ctx *ctx, const struct tenancy_err *err, int status);

/*
 * Reads ?limit= (1..LIMIT_PAGE_MAX, default LIMIT_PAGE_DEFAULT) and
 * ?cursor= (base64url of the last row's key, decoded into cursor as text,
 * "" when absent). Returns 0, or 1 after answering 400 invalid_parameter.
 */
int orgs_page_query(struct ctx *ctx, int64_t *limit, char *cursor, size_t cursor_size);
/* The opaque cursor for a row key (arena memory). */
const char *orgs_cursor_encode(struct ctx *ctx, const char *key);

/* Sets the request's org scope (audit entries go to this org's chain) for
 * routes whose org does not come from the path. */
void orgs_set_scope(struct ctx *ctx, const char *org_id);

/* 204 No Content. Returns 0. */
int orgs_no_content(struct ctx *ctx);

/* A path parameter that must be a UUID: the lower-cased id, or NULL after
 * answering 404 (an id that cannot exist is an unknown one). */
const char *orgs_id_param(struct ctx *ctx, const char *name, const char *what);

#endif
