/*
 * ids.c — UUIDv7 (RFC 9562) generation and canonical text.
 *
 * Layout of the 16 bytes (big-endian):
 *   0..5   unix_ts_ms (48 bits)
 *   6..7   version 0b0111 (4 bits), then rand_a (12 bits) = counter
 *   8..15  variant 0b10 (2 bits), then rand_b (62 bits) from libsodium
 *
 * Monotonicity (RFC 9562 §6.2, method 1): the generator remembers the last
 * millisecond it used. Within the same millisecond the 12-bit counter goes up
 * by one; a new millisecond restarts it at 0. When the wall clock steps back
 * (NTP, the test clock) the generator stays on its last millisecond and keeps
 * counting; when 4096 ids were made in one millisecond it borrows the next
 * one. So ids from this process always sort in generation order. The state
 * is guarded by a mutex: the critical section is a few instructions.
 */
#include "core/ids.h"

#include <pthread.h>
#include <string.h>

#include "core/crypto.h"
#include "core/time.h"

#define ID_COUNTER_MAX 0x0fffu
#define ID_MS_MAX      ((INT64_C(1) << 48) - 1)

static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t id_last_ms = -1;
static unsigned id_counter;

/*
 * Picks the (ms, counter) pair for a new id at millisecond ms.
 *
 * tracked (id_new): ms is "now"; the generator state follows it and never
 * goes back. Untracked (id_new_at): ms is a caller's time, possibly far in the
 * past or future, and must not drag the state along (a future time would push
 * every later id_new into the future). It continues the counter only when it
 * lands on the generator's current millisecond; otherwise rand_a is random,
 * as the counter of another millisecond means nothing there.
 */
static void id_next_stamp(int64_t ms, bool tracked, int64_t *ms_out, unsigned *counter_out) {
  pthread_mutex_lock(&id_lock);
  if (tracked && ms > id_last_ms) {
    id_last_ms = ms;
    id_counter = 0;
  } else if (ms == id_last_ms || (tracked && ms < id_last_ms)) {
    if (id_counter == ID_COUNTER_MAX) {
      /* Counter exhausted: borrow the next millisecond (RFC 9562 §6.2). */
      id_last_ms++;
      id_counter = 0;
    } else {
      id_counter++;
    }
  } else {
    pthread_mutex_unlock(&id_lock);
    uint8_t r[2];
    crypto_random(r, sizeof r);
    *ms_out = ms;
    *counter_out = (((unsigned)r[0] << 8) | r[1]) & ID_COUNTER_MAX;
    return;
  }
  *ms_out = id_last_ms;
  *counter_out = id_counter;
  pthread_mutex_unlock(&id_lock);
}

/*
 * Random bits for ids come from a small per-thread buffer refilled from
 * libsodium, so an id costs a getrandom(2) call only once in 32. Id bits are
 * unguessable but not secret (they are public identifiers); secrets such as
 * tokens draw from crypto_random directly.
 */
#define ID_RANDOM_POOL 256
static __thread uint8_t id_pool[ID_RANDOM_POOL];
static __thread size_t id_pool_pos = ID_RANDOM_POOL;

static void id_random(uint8_t *out, size_t n) {
  if (id_pool_pos + n > ID_RANDOM_POOL) {
    crypto_random(id_pool, sizeof(id_pool));
    id_pool_pos = 0;
  }
  memcpy(out, id_pool + id_pool_pos, n);
  id_pool_pos += n;
}

static void id_build(struct id *out, int64_t unix_us, bool tracked) {
  int64_t ms = unix_us < 0 ? 0 : unix_us / 1000;
  if (ms > ID_MS_MAX) ms = ID_MS_MAX;
  unsigned counter;
  id_next_stamp(ms, tracked, &ms, &counter);
  for (int i = 5; i >= 0; i--) {
    out->b[i] = (uint8_t)(ms & 0xff);
    ms >>= 8;
  }
  out->b[6] = (uint8_t)(0x70 | (counter >> 8));
  out->b[7] = (uint8_t)(counter & 0xff);
  id_random(out->b + 8, 8);
  out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80);
}

void id_new(struct id *out) {
  id_build(out, time_now_us(), true);
}

void id_new_at(struct id *out, int64_t unix_us) {
  id_build(out, unix_us, false);
}

void id_format(const struct id *id, char out[ID_STR_SIZE]) {
  static const char hex[] = "0123456789abcdef";
  size_t pos = 0;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[pos++] = '-';
    out[pos++] = hex[id->b[i] >> 4];
    out[pos++] = hex[id->b[i] & 0x0f];
  }
  out[pos] = '\0';
}

void id_new_str(char out[ID_STR_SIZE]) {
  struct id id;
  id_new(&id);
  id_format(&id, out);
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool is_hyphen_pos(size_t i) {
  return i == 8 || i == 13 || i == 18 || i == 23;
}

int id_parse(struct slice s, struct id *out) {
  if (s.len != ID_STR_LEN) return -1;
  struct id parsed;
  size_t byte = 0;
  for (size_t i = 0; i < ID_STR_LEN;) {
    if (is_hyphen_pos(i)) {
      if (s.p[i] != '-') return -1;
      i++;
      continue;
    }
    int hi = hex_value(s.p[i]);
    int lo = hex_value(s.p[i + 1]);
    if (hi < 0 || lo < 0) return -1;
    parsed.b[byte++] = (uint8_t)(hi << 4 | lo);
    i += 2;
  }
  *out = parsed;
  return 0;
}

bool id_valid(struct slice s) {
  struct id ignored;
  return id_parse(s, &ignored) == 0;
}

int64_t id_unix_ms(const struct id *id) {
  int64_t ms = 0;
  for (size_t i = 0; i < 6; i++) ms = ms << 8 | id->b[i];
  return ms;
}
