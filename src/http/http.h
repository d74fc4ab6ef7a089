/*
 * http.h — keel's HTTP layer, independent of libmicrohttpd's types.
 *
 * server.c is the only file that includes microhttpd.h. It owns framing:
 * it reads headers, assigns the request id, rejects ambiguous framing
 * (Transfer-Encoding with Content-Length, or two Content-Length headers → 400),
 * asks the handler for the route (on_headers), refuses a declared
 * Content-Length above the route's body limit with 413 before reading the body,
 * counts streamed (chunked) bodies and cuts them at the limit with 413, then
 * hands the complete request to on_request.
 *
 * on_request either fills the response and returns HTTP_DONE, or returns
 * HTTP_DEFERRED after handing the request to another thread; that thread fills
 * the response and calls http_req_resume(req) exactly once. The connection is
 * suspended in between, so an I/O thread never waits.
 *
 * Lifetime: a struct http_req lives from the headers until on_complete
 * returns; everything in it is in req->arena.
 */
#ifndef KEEL_HTTP_HTTP_H
#define KEEL_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/limits.h"
#include "core/slice.h"

enum http_method {
  HTTP_GET = 0,
  HTTP_HEAD,
  HTTP_POST,
  HTTP_PUT,
  HTTP_PATCH,
  HTTP_DELETE,
  HTTP_OPTIONS,
  HTTP_METHOD_OTHER,
  HTTP_METHOD_COUNT
};

const char *http_method_name(enum http_method m);

struct http_header {
  struct slice name;
  struct slice value;
};

enum { HTTP_DONE = 0, HTTP_DEFERRED = 1 };

struct http_conn; /* private to server.c */

struct http_req {
  struct arena *arena;
  enum http_method method;
  const char *method_str;
  struct slice path;  /* without the query; not percent-decoded */
  struct slice query; /* after '?', raw; empty when absent */
  const struct http_header *headers;
  size_t nheaders;
  char remote_ip[64];
  char request_id[LIMIT_REQUEST_ID_MAX + 1];
  bool tls; /* served over TLS, or trusted proxy said https */
  int64_t start_mono_us;

  struct buf body;   /* the request body, complete when on_request runs */
  size_t body_limit; /* set by on_headers; LIMIT_BODY_NONE refuses any body */

  /* The response, filled by the handler. */
  int status;
  const char *content_type; /* NULL: no Content-Type */
  struct buf resp_body;
  const char *resp_static; /* when set: the body, static storage, not copied */
  size_t resp_static_len;
  struct http_header *resp_headers;
  size_t nresp_headers, resp_headers_cap;

  void *user; /* the API layer's per-request state */
  struct http_conn *conn;
};

struct http_handler {
  /*
   * Called once the headers are in. Return 0 to read the body (set
   * req->body_limit first), or non-zero after filling the response (status,
   * body) to answer at once without reading the body.
   */
  int (*on_headers)(struct http_req *req, void *ud);
  /* Called with the complete body. Returns HTTP_DONE or HTTP_DEFERRED. */
  int (*on_request)(struct http_req *req, void *ud);
  /* Called after the response was sent or the connection failed. */
  void (*on_complete)(struct http_req *req, bool sent, void *ud);
  void *ud;
};

struct http_options {
  const char *listen; /* "host:port" */
  unsigned threads;   /* I/O threads (>= 1) */
  unsigned max_connections;
  unsigned per_ip_connections;
  unsigned timeout_s;
  bool trust_proxy;
};

struct http_server;

/* Binds and starts serving. Returns NULL with a message in err. */
struct http_server *http_start(const struct http_options *opt, const struct http_handler *h,
                               char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
unsigned http_port(const struct http_server *s);
/* Requests between headers and completion. */
unsigned http_inflight(const struct http_server *s);
/* Stops accepting new connections (listening socket closed); in-flight
 * requests continue. */
void http_quiesce(struct http_server *s);
/* Waits until no request is in flight or deadline_mono_us passes; returns
 * the number still in flight. */
unsigned http_drain(struct http_server *s, int64_t deadline_mono_us);
/* Closes every connection and frees the server. NULL is fine. */
void http_stop(struct http_server *s);

/* Called once, from any thread, after on_request returned HTTP_DEFERRED and
 * the response is filled. */
void http_req_resume(struct http_req *req);

/* Request helpers. Header lookup is case-insensitive; returns the first
 * match or an empty slice with p == NULL. */
struct slice http_req_header(const struct http_req *req, const char *name);
size_t http_req_header_count(const struct http_req *req, const char *name);
/* Query parameter (percent-decoded into the arena); NULL when absent. */
const char *http_req_query(const struct http_req *req, const char *name);

/* Response helpers (strings are copied into the arena). */
void http_resp_header(struct http_req *req, const char *name, const char *value);
void http_resp_set(struct http_req *req, int status, const char *content_type, const char *body,
                   size_t len);
/* The same for a body in static storage (lives as long as the process): it is
 * sent without a copy. */
void http_resp_static(struct http_req *req, int status, const char *content_type, const char *body,
                      size_t len);

#endif
