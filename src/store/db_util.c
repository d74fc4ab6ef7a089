/*
 * db_util.c — helpers over the statement layer, shared by every backend.
 */
#include <string.h>

#include "store/db.h"

void db_col_copy(struct db_stmt *st, int col, char *dst, size_t n) {
  const char *s = db_col_text(st, col);
  size_t len = s ? strlen(s) : 0;
  if (len >= n) {
    len = n - 1;
    while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80) len--;
  }
  if (len) memcpy(dst, s, len);
  dst[len] = '\0';
}
