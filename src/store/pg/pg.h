/*
 * pg.h — the pure helpers of the PostgreSQL backend (private to store/pg/).
 *
 * Kept apart from pg.c so the unit tests can reach them without a server.
 */
#ifndef KEEL_STORE_PG_PG_H
#define KEEL_STORE_PG_PG_H

#include <stddef.h>
#include <stdint.h>

struct buf;

/*
 * Rewrites keel's portable SQL (store/db.h) for PostgreSQL: "$N" is kept,
 *   @ts(x) → ('epoch'::timestamptz + (x)::bigint * interval '1 microsecond')
 *   @us(x) → (extract(epoch from (x)) * 1000000)::bigint
 * Text inside single-quoted literals, double-quoted identifiers and "--"
 * comments is copied untouched. Arguments of @ts/@us never nest
 * parentheses. Returns the new text (caller frees with xfree) and sets
 * *nparams (may be NULL) to the highest $N seen, 0 for none. Returns NULL
 * when a @ts( or @us( has no closing parenthesis.
 */
char *pg_sql_rewrite(const char *sql, int *nparams);

/*
 * Decodes PostgreSQL's hex text output of a bytea ("\x0a1b…", n bytes of
 * text) into out, which has room for (n - 2) / 2 bytes. Returns the number
 * of bytes written, or -1 when the text is not hex format.
 */
long pg_bytea_decode(const char *text, size_t n, unsigned char *out);

/* Maps a SQLSTATE to a KEEL_E* status: 23505 (unique violation) →
 * KEEL_ECONFLICT; 40001, 40P01, 55P03 (serialization failure, deadlock,
 * lock not available) → KEEL_EBUSY; anything else, or NULL → KEEL_ESTORE. */
int pg_sqlstate_status(const char *sqlstate);

/*
 * Copies a connection URL into out[n] with its password (if any) replaced
 * by "***", for messages: "postgres://u:pw@h/db" → "postgres://u:***@h/db".
 * A "password=" query parameter is masked the same way. Always
 * NUL-terminates (cut when out is too small).
 */
void pg_url_redact(const char *url, char *out, size_t n);

/*
 * PostgreSQL array literals ("{…}", the text input form of a one-dimensional
 * array), built into a struct buf to bind a whole column of rows as one
 * parameter (CAST($n AS text[]) and unnest). pg_array_begin appends "{",
 * each pg_array_add_* one element (with the separating comma), and
 * pg_array_end "}". Text is always double-quoted with '\' and '"'
 * backslash-escaped, so commas, braces, spaces, empty strings and the word
 * NULL stay text; NULL is the unquoted SQL NULL; a bytea element is its hex
 * input form ("\\x0a1b", the backslash escaped). The text must not hold
 * a NUL byte (a text-format parameter is a C string). Each returns 0, or -1
 * when the buf's maximum would be passed (the buf is then unspecified: start
 * again or give up).
 */
int pg_array_begin(struct buf *b);
int pg_array_add_text(struct buf *b, const char *s, size_t n);
int pg_array_add_null(struct buf *b);
int pg_array_add_i64(struct buf *b, int64_t v);
int pg_array_add_bytea(struct buf *b, const void *p, size_t n);
int pg_array_end(struct buf *b);

#endif
