/* buf: a growable byte buffer with a hard cap (like curl's dynbuf "toobig").
 *
 * Appending past the cap fails with -EFBIG and leaves the buffer as it was; the data is always
 * NUL-terminated (not counted in len) so JSON and header text can be parsed in place.
 * Owner frees with buf_done(). Not thread-safe.
 */
#pragma once

#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t alloc;
	size_t cap; /* hard maximum of len; 0 means 1 MiB */
};

#define BUF_INIT(c) ((struct buf){.cap = (c)})

int buf_append(struct buf *b, const void *data, size_t len);
/* Append a NUL-terminated string (without its NUL). */
int buf_append_str(struct buf *b, const char *s);
/* Take ownership of the bytes (NUL-terminated); the buf is left empty. */
char *buf_steal(struct buf *b, size_t *ret_len);
void buf_done(struct buf *b);

/* The whole file at path (relative to dirfd, or AT_FDCWD), at most cap bytes: NUL-terminated,
 * caller frees *ret. -EFBIG when the file is larger than cap; -errno of open/read. */
int buf_read_file_at(int dirfd, const char *path, size_t cap, char **ret, size_t *ret_len);
