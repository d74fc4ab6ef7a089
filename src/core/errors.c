/*
 * errors.c — status names, the problem catalogue and problem+json rendering.
 *
 * Invariants:
 *  - problem_catalogue is constant: codes are unique snake_case, statuses are
 *    4xx/5xx, titles never change with the request (test_errors checks this,
 *    and that docs/errors.md lists every code).
 *  - problem_render either appends one complete JSON object or leaves the
 *    buffer exactly as it found it, so a caller can fall back to a smaller
 *    body without cleaning up half a document.
 */
#include "core/errors.h"

#include <string.h>

/* Indexed by -status; KEEL_EINTERNAL is the most negative code. */
static const char *const status_names[] = {
    "ok",    "einval", "enomem",  "enotfound", "econflict", "estore",
    "ebusy", "eio",    "etoobig", "edenied",   "einternal",
};

const char *keel_strerror(int status) {
  if (status > 0 || status < KEEL_EINTERNAL) return "unknown";
  return status_names[-status];
}

/*
 * The public catalogue. Codes are API: add rows, never rename one. Keep the
 * rows grouped by status so docs/errors.md can mirror the order.
 */
static const struct problem_def problem_catalogue[] = {
    {"bad_request", 400, "Bad request"},
    {"invalid_json", 400, "Malformed JSON"},
    {"validation_failed", 400, "Validation failed"},
    {"invalid_parameter", 400, "Invalid parameter"},
    {"ambiguous_framing", 400, "Ambiguous message framing"},
    {"invalid_token", 400, "Invalid or expired token"},
    {"unauthorized", 401, "Authentication required"},
    {"invalid_credentials", 401, "Invalid credentials"},
    {"invalid_api_key", 401, "Invalid API key"},
    {"payment_required", 402, "Payment required"},
    {"quota_exceeded", 402, "Quota exceeded"},
    {"overage_cap_reached", 402, "Overage cap reached"},
    {"forbidden", 403, "Forbidden"},
    {"insufficient_scope", 403, "Insufficient scope"},
    {"csrf_failed", 403, "CSRF check failed"},
    {"plan_limit_reached", 403, "Plan limit reached"},
    {"invitation_email_mismatch", 403, "Invitation for another email"},
    {"email_not_verified", 403, "Email not verified"},
    {"not_found", 404, "Not found"},
    {"method_not_allowed", 405, "Method not allowed"},
    {"not_acceptable", 406, "Not acceptable"},
    {"conflict", 409, "Conflict"},
    {"slug_taken", 409, "Slug taken"},
    {"already_member", 409, "Already a member"},
    {"last_owner", 409, "Last owner"},
    {"gone", 410, "Gone"},
    {"payload_too_large", 413, "Payload too large"},
    {"uri_too_long", 414, "URI too long"},
    {"unsupported_media_type", 415, "Unsupported media type"},
    {"unprocessable", 422, "Unprocessable content"},
    {"locked", 423, "Account locked"},
    {"rate_limited", 429, "Too many requests"},
    {"internal_error", 500, "Internal error"},
    {"not_implemented", 501, "Not implemented"},
    {"service_unavailable", 503, "Service unavailable"},
    {"overloaded", 503, "Overloaded"},
    {"not_ready", 503, "Not ready"},
};

#define PROBLEM_COUNT (sizeof(problem_catalogue) / sizeof(problem_catalogue[0]))

const struct problem_def *problem_lookup(const char *code) {
  if (code == NULL) return NULL;
  for (size_t i = 0; i < PROBLEM_COUNT; i++) {
    if (strcmp(problem_catalogue[i].code, code) == 0) return &problem_catalogue[i];
  }
  return NULL;
}

const struct problem_def *problem_table(size_t *count) {
  if (count != NULL) *count = PROBLEM_COUNT;
  return problem_catalogue;
}

/* Statuses without a row here are bugs or infrastructure failures from the
 * client's point of view, hence internal_error. */
static const struct {
  int status;
  const char *code;
} status_problems[] = {
    {KEEL_EINVAL, "validation_failed"},  {KEEL_ENOTFOUND, "not_found"},
    {KEEL_ECONFLICT, "conflict"},        {KEEL_EBUSY, "overloaded"},
    {KEEL_ETOOBIG, "payload_too_large"}, {KEEL_EDENIED, "forbidden"},
};

const char *problem_code_for_status(int status) {
  for (size_t i = 0; i < sizeof(status_problems) / sizeof(status_problems[0]); i++) {
    if (status_problems[i].status == status) return status_problems[i].code;
  }
  return "internal_error";
}

void field_errors_add(struct field_errors *fe, const char *field, const char *code,
                      const char *message) {
  if (fe == NULL) return;
  if (fe->count >= FIELD_ERRORS_MAX) {
    fe->dropped++;
    return;
  }
  fe->items[fe->count++] = (struct field_error){.field = field, .code = code, .message = message};
}

/* Appends "s" (quoted, escaped); NULL is rendered as an empty string so a
 * missing message never breaks the document. */
static int append_json_string(struct buf *out, const char *s) {
  int rc;
  if (s == NULL) s = "";
  rc = buf_putc(out, '"');
  if (rc) return rc;
  rc = buf_append_json_escaped(out, s, strlen(s));
  if (rc) return rc;
  return buf_putc(out, '"');
}

/* Appends ,"key":"value" — keys here are our own literals, never escaped. */
static int append_member_str(struct buf *out, const char *key, const char *value) {
  int rc = buf_putc(out, ',');
  if (rc) return rc;
  rc = append_json_string(out, key);
  if (rc) return rc;
  rc = buf_putc(out, ':');
  if (rc) return rc;
  return append_json_string(out, value);
}

static int render_errors(struct buf *out, const struct field_errors *fe) {
  int rc = buf_append_cstr(out, ",\"errors\":[");
  if (rc) return rc;
  for (size_t i = 0; i < fe->count; i++) {
    const struct field_error *e = &fe->items[i];
    if (i > 0) {
      rc = buf_putc(out, ',');
      if (rc) return rc;
    }
    rc = buf_append_cstr(out, "{\"field\":");
    if (rc) return rc;
    rc = append_json_string(out, e->field);
    if (rc) return rc;
    rc = append_member_str(out, "code", e->code);
    if (rc) return rc;
    rc = append_member_str(out, "message", e->message);
    if (rc) return rc;
    rc = buf_putc(out, '}');
    if (rc) return rc;
  }
  return buf_putc(out, ']');
}

int problem_render(struct buf *out, const struct problem_def *p, const char *detail,
                   const char *request_id, const struct field_errors *fe) {
  size_t start = out->len;
  int rc;

  /* A missing definition is a caller bug; still answer with a valid body. */
  if (p == NULL) p = problem_lookup("internal_error");

  rc = buf_append_cstr(out, "{\"type\":\"urn:keel:problem:");
  if (rc) goto fail;
  rc = buf_append_json_escaped(out, p->code, strlen(p->code));
  if (rc) goto fail;
  rc = buf_putc(out, '"');
  if (rc) goto fail;
  rc = append_member_str(out, "title", p->title);
  if (rc) goto fail;
  rc = buf_printf(out, ",\"status\":%d", p->http_status);
  if (rc) goto fail;
  if (detail != NULL) {
    rc = append_member_str(out, "detail", detail);
    if (rc) goto fail;
  }
  rc = append_member_str(out, "code", p->code);
  if (rc) goto fail;
  if (request_id != NULL) {
    rc = append_member_str(out, "request_id", request_id);
    if (rc) goto fail;
  }
  if (fe != NULL && fe->count > 0) {
    rc = render_errors(out, fe);
    if (rc) goto fail;
  }
  rc = buf_putc(out, '}');
  if (rc) goto fail;
  return 0;

fail:
  /* Drop the partial document; buf keeps its bytes NUL-terminated. */
  out->len = start;
  if (out->data != NULL) out->data[start] = '\0';
  return -1;
}
