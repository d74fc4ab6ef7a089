/*
 * server.c — keel's HTTP server over libmicrohttpd. The only file that
 * includes microhttpd.h.
 *
 * Threads: keel runs http_options.threads I/O threads. Each owns one
 * libmicrohttpd daemon in "external" epoll mode, all accepting from one
 * listening socket that keel creates, and drives it itself:
 *     epoll_wait(daemon's epoll fd + the thread's eventfd) → resume the
 *     connections whose work finished → MHD_run(daemon)
 * Handlers run on the I/O thread only when they cannot block; anything else
 * is handed to another thread by the handler (on_request returns
 * HTTP_DEFERRED) while the connection is suspended.
 *
 * Why keel drives the loop: with libmicrohttpd's own threads, a resume from
 * another thread can land while the library is still processing the
 * suspension, and the connection then waits for a socket event that never
 * comes (seen with 0.9.75: a few percent of deferred keep-alive requests
 * stalled until the client gave up). Here MHD_resume_connection is only
 * ever called by the I/O thread that runs the daemon, between MHD_run calls,
 * so the two can never overlap. Other threads queue the connection on the
 * I/O thread and wake it through its eventfd.
 *
 * One request, in libmicrohttpd's calls to access_cb:
 *   1. the URI callback creates the struct http_conn (with the raw URI);
 *   2. first access_cb: headers are in → framing checks, request id,
 *      on_headers (routing), declared Content-Length against the limit;
 *   3. access_cb with body bytes: appended, counted, cut at the limit;
 *   4. access_cb with no more bytes: on_request; DONE → respond; DEFERRED →
 *      suspend (unless the other thread already finished);
 *   5. http_req_resume (any thread) queues it; the I/O thread resumes it;
 *      access_cb again → respond;
 *   6. completed_cb: on_complete, then everything is freed.
 *
 * The race between the worker finishing and the I/O thread suspending is
 * closed by conn->mu: whichever of the two comes second acts.
 *
 * Connection limits are keel's: an accept policy shared by all daemons counts
 * connections per IP and in total (libmicrohttpd's own limits would be per
 * daemon).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/errors.h"
#include "core/ids.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/time.h"
#include "core/xmalloc.h"
#include "http/http.h"

/*
 * libmicrohttpd's per-connection memory pool holds the request line, the
 * headers and the read buffer, and is zeroed between requests: its size is
 * paid on every request. 16 KiB fits a 4 KiB session cookie and the rest of
 * a browser's headers with room to spare (a request whose headers do not fit
 * gets 431 from the library).
 */
#define HTTP_CONN_MEMORY (16 * 1024)

enum conn_state {
  CONN_HEADERS = 0, /* waiting for the first access_cb */
  CONN_BODY,        /* reading the body */
  CONN_DISPATCHED,  /* on_request returned DEFERRED, not yet suspended */
  CONN_SUSPENDED,   /* suspended, waiting for http_req_resume */
  CONN_READY,       /* response filled, to be queued */
  CONN_REPLIED      /* response queued */
};

struct http_io; /* one I/O thread and its daemon */

struct http_conn {
  struct http_server *srv;
  struct http_io *io;
  struct http_conn *resume_next; /* in io->resume_head */
  struct MHD_Connection *mhd;
  struct http_req req;
  pthread_mutex_t mu;
  enum conn_state state;
  bool resumed_early; /* http_req_resume ran before we could suspend */
  bool body_cut;      /* the body went over the limit */
  size_t target_len;  /* bytes of the request target as sent */
  size_t body_seen;
};

#define HTTP_IO_MAX      64
#define HTTP_CONN_SPARES 256  /* recycled request states per I/O thread */
#define IP_SLOTS         1024 /* per-IP connection counts (open hashing) */

struct http_io {
  struct http_server *srv;
  struct MHD_Daemon *daemon;
  pthread_t thread;
  int listen_fd; /* this thread's listening socket (SO_REUSEPORT) */
  int epfd;      /* watches the daemon's epoll fd and wake_fd */
  int wake_fd;   /* eventfd: resumes queued, or stop */
  pthread_mutex_t mu;
  struct http_conn *resume_head; /* connections to resume (under mu) */
  atomic_bool stop;
  atomic_bool quiesce;      /* asked to let go of the listening socket */
  atomic_bool quiesced;     /* done */
  struct http_conn *spares; /* finished requests kept for reuse */
  unsigned nspares;
};

struct ip_count {
  char ip[64];
  unsigned n;
};

struct http_server {
  struct http_io io[HTTP_IO_MAX];
  unsigned nio;
  struct http_handler handler;
  struct http_options opt;
  atomic_uint inflight;
  unsigned port;
  bool quiesced;
  pthread_mutex_t conn_mu; /* connection counts */
  unsigned connections;
  struct ip_count ips[IP_SLOTS];
};

static const char *const method_names[HTTP_METHOD_COUNT] = {"GET",   "HEAD",   "POST",    "PUT",
                                                            "PATCH", "DELETE", "OPTIONS", "OTHER"};

const char *http_method_name(enum http_method m) {
  return (unsigned)m < HTTP_METHOD_COUNT ? method_names[m] : "OTHER";
}

static enum http_method method_parse(const char *s) {
  for (int i = 0; i < HTTP_METHOD_OTHER; i++) {
    if (strcmp(s, method_names[i]) == 0) return (enum http_method)i;
  }
  return HTTP_METHOD_OTHER;
}

/* --- request helpers ---------------------------------------------------- */

struct slice http_req_header(const struct http_req *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++) {
    if (slice_eq_cstr_nocase(req->headers[i].name, name)) return req->headers[i].value;
  }
  return SLICE_NULL;
}

size_t http_req_header_count(const struct http_req *req, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    if (slice_eq_cstr_nocase(req->headers[i].name, name)) n++;
  }
  return n;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s (and '+' → ' ') into arena memory. Invalid escapes are
 * kept literally. */
static char *query_decode(struct arena *a, struct slice s) {
  char *out = arena_alloc(a, s.len + 1);
  size_t n = 0;
  for (size_t i = 0; i < s.len; i++) {
    char c = s.p[i];
    if (c == '+') {
      out[n++] = ' ';
    } else if (c == '%' && i + 2 < s.len && hexval(s.p[i + 1]) >= 0 && hexval(s.p[i + 2]) >= 0) {
      out[n++] = (char)(hexval(s.p[i + 1]) * 16 + hexval(s.p[i + 2]));
      i += 2;
    } else {
      out[n++] = c;
    }
  }
  out[n] = '\0';
  return out;
}

const char *http_req_query(const struct http_req *req, const char *name) {
  struct slice rest = req->query;
  size_t namelen = strlen(name);
  while (rest.len > 0) {
    struct slice pair, key, value;
    slice_cut(rest, '&', &pair, &rest);
    if (!slice_cut(pair, '=', &key, &value)) value = slice_make(pair.p + pair.len, 0);
    if (key.len == namelen && memcmp(key.p, name, namelen) == 0) {
      return query_decode(req->arena, value);
    }
  }
  return NULL;
}

void http_resp_header(struct http_req *req, const char *name, const char *value) {
  if (req->nresp_headers == req->resp_headers_cap) {
    size_t cap = req->resp_headers_cap ? req->resp_headers_cap * 2 : 8;
    struct http_header *h = arena_alloc(req->arena, cap * sizeof(*h));
    if (req->nresp_headers) memcpy(h, req->resp_headers, req->nresp_headers * sizeof(*h));
    req->resp_headers = h;
    req->resp_headers_cap = cap;
  }
  struct http_header *h = &req->resp_headers[req->nresp_headers++];
  h->name = slice_from_cstr(arena_strdup(req->arena, name));
  h->value = slice_from_cstr(arena_strdup(req->arena, value));
}

void http_resp_static(struct http_req *req, int status, const char *content_type, const char *body,
                      size_t len) {
  req->status = status;
  req->content_type = content_type;
  buf_reset(&req->resp_body);
  req->resp_static = body;
  req->resp_static_len = len;
}

void http_resp_set(struct http_req *req, int status, const char *content_type, const char *body,
                   size_t len) {
  req->resp_static = NULL;
  req->status = status;
  req->content_type = content_type;
  buf_reset(&req->resp_body);
  if (len > 0 && buf_append(&req->resp_body, body, len) != 0) {
    KEEL_PANIC("response body over LIMIT_RESPONSE_MAX");
  }
}

/* A problem+json response produced by the HTTP layer itself. */
static void respond_problem(struct http_req *req, const char *code, const char *detail) {
  const struct problem_def *p = problem_lookup(code);
  KEEL_ASSERT(p != NULL);
  buf_reset(&req->resp_body);
  if (problem_render(&req->resp_body, p, detail, req->request_id, NULL) != 0) {
    KEEL_PANIC("problem body over LIMIT_RESPONSE_MAX");
  }
  req->status = p->http_status;
  req->content_type = "application/problem+json";
}

/* --- request id --------------------------------------------------------- */

static bool request_id_sane(struct slice s) {
  if (s.len == 0 || s.len > LIMIT_REQUEST_ID_MAX) return false;
  for (size_t i = 0; i < s.len; i++) {
    char c = s.p[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

static void assign_request_id(struct http_req *req) {
  struct slice given = http_req_header(req, "X-Request-Id");
  if (given.p && request_id_sane(given)) {
    memcpy(req->request_id, given.p, given.len);
    req->request_id[given.len] = '\0';
  } else {
    id_new_str(req->request_id);
  }
}

/* --- headers ------------------------------------------------------------ */

struct header_collect {
  struct http_req *req;
  size_t cap;
  struct http_header *list;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size) {
  (void)kind;
  struct header_collect *hc = cls;
  if (hc->req->nheaders == hc->cap) {
    size_t cap = hc->cap ? hc->cap * 2 : 16;
    struct http_header *l = arena_alloc(hc->req->arena, cap * sizeof(*l));
    if (hc->req->nheaders) memcpy(l, hc->list, hc->req->nheaders * sizeof(*l));
    hc->list = l;
    hc->cap = cap;
  }
  struct http_header *h = &hc->list[hc->req->nheaders++];
  h->name = slice_make(key, key_size);
  h->value = slice_make(value ? value : "", value ? value_size : 0);
  return MHD_YES;
}

static void collect_headers(struct http_conn *c) {
  struct header_collect hc = {.req = &c->req};
  MHD_get_connection_values_n(c->mhd, MHD_HEADER_KIND, collect_header, &hc);
  c->req.headers = hc.list;
}

static void set_remote_ip(struct http_conn *c) {
  struct http_req *req = &c->req;
  snprintf(req->remote_ip, sizeof(req->remote_ip), "unknown");
  if (c->srv->opt.trust_proxy) {
    struct slice xff = http_req_header(req, "X-Forwarded-For");
    if (xff.p && xff.len > 0) {
      struct slice first, rest;
      slice_cut(xff, ',', &first, &rest);
      first = slice_trim(first);
      if (first.len > 0 && first.len < sizeof(req->remote_ip)) {
        memcpy(req->remote_ip, first.p, first.len);
        req->remote_ip[first.len] = '\0';
      }
      struct slice proto = http_req_header(req, "X-Forwarded-Proto");
      req->tls = proto.p && slice_eq_cstr_nocase(slice_trim(proto), "https");
      return;
    }
  }
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!ci || !ci->client_addr) return;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, req->remote_ip,
              sizeof(req->remote_ip));
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, req->remote_ip,
              sizeof(req->remote_ip));
  }
}

/*
 * Message framing that two parsers could read differently is refused: a
 * front proxy and keel must never disagree on where a request ends
 * (request smuggling).
 */
static const char *framing_problem(const struct http_req *req) {
  size_t ncl = http_req_header_count(req, "Content-Length");
  size_t nte = http_req_header_count(req, "Transfer-Encoding");
  if (ncl > 1) return "more than one Content-Length header";
  if (ncl == 1 && nte > 0) return "both Transfer-Encoding and Content-Length are present";
  if (nte > 1) return "more than one Transfer-Encoding header";
  if (ncl == 1) {
    uint64_t v;
    if (slice_to_u64(slice_trim(http_req_header(req, "Content-Length")), &v) != 0) {
      return "Content-Length is not a decimal number";
    }
  }
  return NULL;
}

static bool request_has_body(const struct http_req *req) {
  if (http_req_header(req, "Transfer-Encoding").p) return true;
  uint64_t n = 0;
  struct slice cl = http_req_header(req, "Content-Length");
  return cl.p && slice_to_u64(slice_trim(cl), &n) == 0 && n > 0;
}

/* --- responding --------------------------------------------------------- */

static void free_body(void *p) {
  xfree(p);
}

/* A static body is used unless something wrote a body after it was set
 * (an error response, say): the last writer wins. */
static struct MHD_Response *make_response(struct http_req *req) {
  if (req->resp_static && req->resp_body.len == 0) {
    return MHD_create_response_from_buffer(req->resp_static_len, (void *)req->resp_static,
                                           MHD_RESPMEM_PERSISTENT);
  }
  size_t len = 0;
  char *body = buf_steal(&req->resp_body, &len);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer_with_free_callback(len, body, free_body);
  if (!resp) xfree(body);
  return resp;
}

static enum MHD_Result queue_response(struct http_conn *c) {
  struct http_req *req = &c->req;
  struct MHD_Response *resp = make_response(req);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, "X-Request-Id", req->request_id);
  if (req->content_type) MHD_add_response_header(resp, "Content-Type", req->content_type);
  for (size_t i = 0; i < req->nresp_headers; i++) {
    /* Names and values were NUL-terminated by http_resp_header. */
    MHD_add_response_header(resp, req->resp_headers[i].name.p, req->resp_headers[i].value.p);
  }
  if (c->srv->quiesced || c->body_cut) MHD_add_response_header(resp, "Connection", "close");
  enum MHD_Result r = MHD_queue_response(c->mhd, (unsigned)req->status, resp);
  MHD_destroy_response(resp);
  c->state = CONN_REPLIED;
  return r;
}

/* --- libmicrohttpd callbacks --------------------------------------------- */

/*
 * Per-request state is recycled: each I/O thread keeps up to HTTP_CONN_SPARES
 * finished http_conn objects with their arena's first block, so a request
 * costs no allocation of its own in the common case. Only the owning I/O
 * thread touches its spare list (uri_cb and completed_cb run there).
 */
static struct http_conn *conn_take(struct http_io *io) {
  struct http_conn *c = io->spares;
  if (c) {
    io->spares = c->resume_next;
    io->nspares--;
    struct arena *a = c->req.arena;
    memset(c, 0, sizeof(*c));
    c->req.arena = a;
  } else {
    c = xcalloc(1, sizeof(*c));
    c->req.arena = arena_new(LIMIT_ARENA_BLOCK);
  }
  pthread_mutex_init(&c->mu, NULL);
  return c;
}

static void conn_give(struct http_io *io, struct http_conn *c) {
  buf_free(&c->req.body);
  buf_free(&c->req.resp_body);
  pthread_mutex_destroy(&c->mu);
  if (io->nspares < HTTP_CONN_SPARES) {
    arena_reset(c->req.arena);
    c->resume_next = io->spares;
    io->spares = c;
    io->nspares++;
    return;
  }
  arena_free(c->req.arena);
  xfree(c);
}

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *mhd) {
  struct http_io *io = cls;
  struct http_server *srv = io->srv;
  struct http_conn *c = conn_take(io);
  c->srv = srv;
  c->io = io;
  c->mhd = mhd;
  struct http_req *req = &c->req;
  req->conn = c;
  req->start_mono_us = time_mono_us();
  buf_init(&req->body, 0);
  buf_init(&req->resp_body, LIMIT_RESPONSE_MAX);
  req->status = 500;
  struct slice raw = slice_from_cstr(arena_strdup(req->arena, uri ? uri : "/"));
  c->target_len = raw.len;
  if (!slice_cut(raw, '?', &req->path, &req->query)) req->query = slice_make(raw.p + raw.len, 0);
  atomic_fetch_add(&srv->inflight, 1);
  return c;
}

static void completed_cb(void *cls, struct MHD_Connection *mhd, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)mhd;
  struct http_io *io = cls;
  struct http_server *srv = io->srv;
  struct http_conn *c = *con_cls;
  if (!c) return;
  *con_cls = NULL;
  if (c->state >= CONN_BODY && srv->handler.on_complete) {
    srv->handler.on_complete(&c->req, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK, srv->handler.ud);
  }
  conn_give(io, c);
  atomic_fetch_sub(&srv->inflight, 1);
}

/* First call: the headers are complete. Returns true when a response was
 * decided without reading the body. */
static bool on_headers_in(struct http_conn *c, const char *method) {
  struct http_req *req = &c->req;
  req->method_str = arena_strdup(req->arena, method);
  req->method = method_parse(method);
  collect_headers(c);
  assign_request_id(req);
  set_remote_ip(c);
  req->body_limit = LIMIT_BODY_NONE;
  c->state = CONN_BODY;

  const char *bad = framing_problem(req);
  if (bad) {
    c->body_cut = true; /* the connection cannot be trusted for another request */
    respond_problem(req, "ambiguous_framing", bad);
    return true;
  }
  if (c->target_len > LIMIT_URL_MAX) {
    respond_problem(req, "uri_too_long", "the request target is longer than 2048 bytes");
    return true;
  }
  if (c->srv->handler.on_headers(req, c->srv->handler.ud) != 0) return true;

  struct slice cl = http_req_header(req, "Content-Length");
  uint64_t declared = 0;
  if (cl.p && slice_to_u64(slice_trim(cl), &declared) == 0 && declared > req->body_limit) {
    c->body_cut = true;
    respond_problem(
        req, "payload_too_large",
        arena_printf(req->arena, "the body limit of this route is %zu bytes", req->body_limit));
    return true;
  }
  req->body.max = req->body_limit;
  return false;
}

static enum MHD_Result dispatch(struct http_conn *c) {
  struct http_server *srv = c->srv;
  int r = srv->handler.on_request(&c->req, srv->handler.ud);
  if (r == HTTP_DONE) return queue_response(c);
  pthread_mutex_lock(&c->mu);
  if (c->resumed_early) {
    pthread_mutex_unlock(&c->mu);
    return queue_response(c);
  }
  c->state = CONN_SUSPENDED;
  MHD_suspend_connection(c->mhd);
  pthread_mutex_unlock(&c->mu);
  return MHD_YES;
}

static void io_wake(struct http_io *io) {
  uint64_t one = 1;
  ssize_t w = write(io->wake_fd, &one, sizeof(one));
  (void)w; /* a full counter still wakes the thread */
}

void http_req_resume(struct http_req *req) {
  struct http_conn *c = req->conn;
  struct http_io *io = c->io;
  pthread_mutex_lock(&c->mu);
  bool suspended = c->state == CONN_SUSPENDED;
  if (suspended) {
    c->state = CONN_READY;
  } else {
    c->resumed_early = true;
  }
  pthread_mutex_unlock(&c->mu);
  if (!suspended) return;
  /* Queued only after c->mu is released: once the I/O thread can see it, the
   * connection may be answered and freed at any moment, so nothing here
   * touches c after the push. */
  pthread_mutex_lock(&io->mu);
  bool was_empty = io->resume_head == NULL;
  c->resume_next = io->resume_head;
  io->resume_head = c;
  pthread_mutex_unlock(&io->mu);
  /* One wake per batch of resumes, not per request (a write(2) each, on the
   * store writer's thread for ingestion): a non-empty list means a wake is
   * already on its way, and io_main reads the eventfd before it takes the
   * list, so nothing pushed after a take can be missed. */
  if (was_empty) io_wake(io);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *mhd, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls) {
  (void)cls;
  (void)url;
  (void)version;
  struct http_conn *c = *con_cls;
  if (!c) return MHD_NO; /* no URI callback: cannot happen with our options */
  c->mhd = mhd;
  log_set_request_id(c->req.request_id[0] ? c->req.request_id : NULL);

  switch (c->state) {
    case CONN_HEADERS:
      if (!on_headers_in(c, method)) return MHD_YES;
      /* Decided early. Without a body, answer on the next call so the
       * connection stays open for keep-alive; with an unread body, answer
       * now and let libmicrohttpd close the connection. */
      if (c->body_cut || request_has_body(&c->req)) return queue_response(c);
      c->state = CONN_READY;
      return MHD_YES;
    case CONN_BODY:
      if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        c->body_seen += n;
        if (c->body_cut) {
          /* libmicrohttpd cannot answer in the middle of a body: discard
           * what follows, up to a bound, then answer 413 at its end. */
          return c->body_seen - c->req.body_limit > LIMIT_BODY_DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        if (c->body_seen > c->req.body_limit || buf_append(&c->req.body, upload_data, n) != 0) {
          c->body_cut = true; /* a streamed (chunked) body went past the limit */
          buf_free(&c->req.body);
        }
        return MHD_YES;
      }
      if (c->body_cut) {
        respond_problem(&c->req, "payload_too_large",
                        arena_printf(c->req.arena, "the body limit of this route is %zu bytes",
                                     c->req.body_limit));
        return queue_response(c);
      }
      c->state = CONN_DISPATCHED;
      return dispatch(c);
    case CONN_READY:
      return queue_response(c);
    case CONN_REPLIED:
      /* Body bytes still arriving after an early response: drop them. */
      *upload_data_size = 0;
      return MHD_YES;
    case CONN_DISPATCHED:
    case CONN_SUSPENDED:
      break;
  }
  return MHD_YES;
}

/* Keeps the URI as the client sent it: keel's router decodes what it needs. */
static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls;
  (void)c;
  return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  log_warn("http.library", LS("message", msg));
}

/* --- lifecycle ----------------------------------------------------------- */

static int resolve_listen(const char *listen, struct sockaddr_storage *ss, char *err,
                          size_t errlen) {
  char host[256];
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen || colon[1] == '\0') {
    snprintf(err, errlen, "listen address '%s' is not host:port", listen);
    return -1;
  }
  uint64_t port;
  if (slice_to_u64(slice_from_cstr(colon + 1), &port) != 0 || port > 65535) {
    snprintf(err, errlen, "listen address '%s': the port must be a number from 0 to 65535", listen);
    return -1;
  }
  size_t hlen = (size_t)(colon - listen);
  if (listen[0] == '[' && hlen >= 2 && listen[hlen - 1] == ']') {
    listen++;
    hlen -= 2;
  }
  if (hlen >= sizeof(host)) {
    snprintf(err, errlen, "listen host is too long");
    return -1;
  }
  memcpy(host, listen, hlen);
  host[hlen] = '\0';
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(host, colon + 1, &hints, &res);
  if (rc != 0 || !res) {
    snprintf(err, errlen, "cannot resolve listen address '%s': %s", listen, gai_strerror(rc));
    return -1;
  }
  memset(ss, 0, sizeof(*ss));
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
}

/* --- connection limits (shared by every daemon) --------------------------- */

static void sockaddr_ip(const struct sockaddr *sa, char *out, size_t n) {
  snprintf(out, n, "unknown");
  if (!sa) return;
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
              (socklen_t)n);
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
              (socklen_t)n);
  }
}

/* The slot of ip (existing, or the free one where it would go); NULL when
 * the table is full. Called with conn_mu held. */
static struct ip_count *ip_slot(struct http_server *s, const char *ip) {
  uint64_t h = UINT64_C(1469598103934665603);
  for (const char *p = ip; *p; p++) h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
  struct ip_count *free_slot = NULL;
  for (size_t k = 0; k < IP_SLOTS; k++) {
    struct ip_count *e = &s->ips[(h + k) % IP_SLOTS];
    if (e->n > 0 && strcmp(e->ip, ip) == 0) return e;
    if (e->n == 0 && !free_slot) free_slot = e;
    if (e->n == 0 && e->ip[0] == '\0') break; /* never used: the chain ends */
  }
  return free_slot;
}

static enum MHD_Result accept_cb(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
  (void)addrlen;
  struct http_server *s = cls;
  char ip[64];
  sockaddr_ip(addr, ip, sizeof(ip));
  pthread_mutex_lock(&s->conn_mu);
  bool ok = s->connections < s->opt.max_connections;
  if (ok && s->opt.per_ip_connections > 0) {
    struct ip_count *e = ip_slot(s, ip);
    ok = e && (e->n == 0 || e->n < s->opt.per_ip_connections);
  }
  pthread_mutex_unlock(&s->conn_mu);
  return ok ? MHD_YES : MHD_NO;
}

static void notify_conn_cb(void *cls, struct MHD_Connection *mhd, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe) {
  (void)socket_context;
  struct http_server *s = ((struct http_io *)cls)->srv;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char ip[64];
  sockaddr_ip(ci ? ci->client_addr : NULL, ip, sizeof(ip));
  pthread_mutex_lock(&s->conn_mu);
  struct ip_count *e = ip_slot(s, ip);
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    s->connections++;
    if (e) {
      if (e->n == 0) snprintf(e->ip, sizeof(e->ip), "%s", ip);
      e->n++;
    }
  } else {
    if (s->connections > 0) s->connections--;
    if (e && e->n > 0) e->n--;
  }
  pthread_mutex_unlock(&s->conn_mu);
}

/* --- I/O threads ------------------------------------------------------------ */

static void io_resume_queued(struct http_io *io) {
  pthread_mutex_lock(&io->mu);
  struct http_conn *c = io->resume_head;
  io->resume_head = NULL;
  pthread_mutex_unlock(&io->mu);
  while (c) {
    struct http_conn *next = c->resume_next;
    MHD_resume_connection(c->mhd);
    c = next;
  }
}

static void *io_main(void *arg) {
  struct http_io *io = arg;
  pthread_setname_np(pthread_self(), "keel-http");
  while (!atomic_load(&io->stop)) {
    MHD_UNSIGNED_LONG_LONG to = 0;
    int timeout_ms = 1000;
    if (MHD_get_timeout(io->daemon, &to) == MHD_YES) timeout_ms = to < 1000 ? (int)to : 1000;
    struct epoll_event ev[4];
    int n = epoll_wait(io->epfd, ev, 4, timeout_ms);
    for (int i = 0; i < n; i++) {
      if (ev[i].data.ptr == io) {
        uint64_t v;
        ssize_t r = read(io->wake_fd, &v, sizeof(v));
        (void)r;
      }
    }
    if (atomic_load(&io->quiesce) && !atomic_load(&io->quiesced)) {
      /* libmicrohttpd in external mode is driven by this thread only: the
       * daemon lets go of the listening socket here, never concurrently with
       * MHD_run. */
      MHD_quiesce_daemon(io->daemon);
      atomic_store(&io->quiesced, true);
    }
    io_resume_queued(io);
    MHD_run(io->daemon);
  }
  return NULL;
}

/*
 * One listening socket per I/O thread, all bound to the same address with
 * SO_REUSEPORT: the kernel spreads new connections evenly over the threads
 * (with one shared socket, whichever thread woke first took them, and the
 * load could pile up on one core).
 */
static int listen_socket(const struct sockaddr_storage *ss, char *err, size_t errlen) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  socklen_t len =
      ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 1024) != 0) {
    snprintf(err, errlen, "%s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static unsigned bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)(void *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)(void *)&ss)->sin6_port);
}

static int io_start(struct http_server *srv, struct http_io *io, unsigned per_daemon_limit,
                    char *err, size_t errlen) {
  io->srv = srv;
  pthread_mutex_init(&io->mu, NULL);
  atomic_init(&io->stop, false);
  atomic_init(&io->quiesce, false);
  atomic_init(&io->quiesced, false);
  io->epfd = -1;
  io->wake_fd = -1;
  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  io->daemon = MHD_start_daemon(
      flags, 0, accept_cb, srv, access_cb, io, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)io->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
      per_daemon_limit, MHD_OPTION_CONNECTION_TIMEOUT, srv->opt.timeout_s,
      MHD_OPTION_URI_LOG_CALLBACK, uri_cb, io, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, io,
      MHD_OPTION_NOTIFY_CONNECTION, notify_conn_cb, io, MHD_OPTION_UNESCAPE_CALLBACK, unescape_none,
      NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY, MHD_OPTION_END);
  if (!io->daemon) {
    snprintf(err, errlen, "libmicrohttpd refused to start");
    return -1;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(io->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  io->epfd = epoll_create1(EPOLL_CLOEXEC);
  io->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!di || io->epfd < 0 || io->wake_fd < 0) {
    snprintf(err, errlen, "cannot set up the I/O loop: %s", strerror(errno));
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  struct epoll_event wake = {.events = EPOLLIN, .data.ptr = io};
  if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, di->epoll_fd, &ev) != 0 ||
      epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->wake_fd, &wake) != 0 ||
      pthread_create(&io->thread, NULL, io_main, io) != 0) {
    snprintf(err, errlen, "cannot start an I/O thread: %s", strerror(errno));
    return -1;
  }
  return 0;
}

static void io_close(struct http_io *io) {
  /* Stopping the daemon may complete requests (into the spares): first. */
  if (io->daemon) MHD_stop_daemon(io->daemon);
  while (io->spares) {
    struct http_conn *c = io->spares;
    io->spares = c->resume_next;
    arena_free(c->req.arena);
    xfree(c);
  }
  if (io->epfd >= 0) close(io->epfd);
  if (io->wake_fd >= 0) close(io->wake_fd);
  pthread_mutex_destroy(&io->mu);
}

struct http_server *http_start(const struct http_options *opt, const struct http_handler *h,
                               char *err, size_t errlen) {
  struct sockaddr_storage ss;
  if (resolve_listen(opt->listen, &ss, err, errlen) != 0) return NULL;
  struct http_server *srv = xcalloc(1, sizeof(*srv));
  srv->handler = *h;
  srv->opt = *opt;
  atomic_init(&srv->inflight, 0);
  pthread_mutex_init(&srv->conn_mu, NULL);
  srv->nio = opt->threads ? opt->threads : 1;
  if (srv->nio > HTTP_IO_MAX) srv->nio = HTTP_IO_MAX;
  for (unsigned i = 0; i < srv->nio; i++) srv->io[i].listen_fd = -1;
  char why[256];
  for (unsigned i = 0; i < srv->nio; i++) {
    srv->io[i].listen_fd = listen_socket(&ss, why, sizeof(why));
    if (srv->io[i].listen_fd < 0) {
      snprintf(err, errlen, "cannot listen on %s: %s", opt->listen, why);
      for (unsigned k = 0; k < i; k++) close(srv->io[k].listen_fd);
      pthread_mutex_destroy(&srv->conn_mu);
      xfree(srv);
      return NULL;
    }
    if (i == 0) {
      /* Port 0 picks a port: the other sockets take the same one. */
      srv->port = bound_port(srv->io[0].listen_fd);
      if (ss.ss_family == AF_INET) {
        ((struct sockaddr_in *)(void *)&ss)->sin_port = htons((uint16_t)srv->port);
      } else {
        ((struct sockaddr_in6 *)(void *)&ss)->sin6_port = htons((uint16_t)srv->port);
      }
    }
  }
  /* Each daemon may hold all connections; keel's accept policy enforces the
   * shared totals. */
  unsigned per_daemon = opt->max_connections ? opt->max_connections : 1;
  for (unsigned i = 0; i < srv->nio; i++) {
    if (io_start(srv, &srv->io[i], per_daemon, err, errlen) != 0) {
      for (unsigned k = i + 1; k < srv->nio; k++) close(srv->io[k].listen_fd);
      srv->nio = i + 1;
      http_stop(srv);
      return NULL;
    }
  }
  return srv;
}

unsigned http_port(const struct http_server *s) {
  return s->port;
}

unsigned http_inflight(const struct http_server *s) {
  return atomic_load(&((struct http_server *)s)->inflight);
}

void http_quiesce(struct http_server *s) {
  if (!s || s->quiesced) return;
  s->quiesced = true;
  /* Every daemon lets go of its listening socket on its own thread (never
   * concurrently with MHD_run); then the sockets are closed. A daemon whose
   * thread never started is quiesced here. */
  for (unsigned i = 0; i < s->nio; i++) {
    struct http_io *io = &s->io[i];
    if (!io->daemon) continue;
    if (!io->thread) {
      MHD_quiesce_daemon(io->daemon);
      continue;
    }
    atomic_store(&io->quiesce, true);
    io_wake(io);
  }
  for (unsigned i = 0; i < s->nio; i++) {
    struct http_io *io = &s->io[i];
    while (io->daemon && io->thread && !atomic_load(&io->quiesced)) usleep(1000);
  }
  for (unsigned i = 0; i < s->nio; i++) {
    if (s->io[i].listen_fd >= 0) close(s->io[i].listen_fd);
    s->io[i].listen_fd = -1;
  }
}

unsigned http_drain(struct http_server *s, int64_t deadline_mono_us) {
  unsigned n;
  while ((n = http_inflight(s)) > 0 && time_mono_us() < deadline_mono_us) usleep(5000);
  return n;
}

void http_stop(struct http_server *s) {
  if (!s) return;
  /* Quiesced first: otherwise each daemon would close the shared socket. */
  http_quiesce(s);
  for (unsigned i = 0; i < s->nio; i++) {
    struct http_io *io = &s->io[i];
    if (!io->thread) continue;
    atomic_store(&io->stop, true);
    io_wake(io);
    pthread_join(io->thread, NULL);
    io->thread = 0;
    io_resume_queued(io); /* nothing may stay suspended when the daemon stops */
  }
  for (unsigned i = 0; i < s->nio; i++) io_close(&s->io[i]);
  pthread_mutex_destroy(&s->conn_mu);
  xfree(s);
}
