#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int buf_append(struct buf *b, const void *data, size_t len)
{
	size_t cap = b->cap ? b->cap : (size_t)1 << 20;

	if (len > cap || b->len > cap - len)
		return -EFBIG;
	if (b->len + len + 1 > b->alloc) {
		size_t n = b->alloc ? b->alloc : 256;
		char *p;
		while (n < b->len + len + 1)
			n *= 2;
		p = realloc(b->data, n);
		if (!p)
			return -ENOMEM;
		b->data = p;
		b->alloc = n;
	}
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

char *buf_steal(struct buf *b, size_t *ret_len)
{
	char *p = b->data;

	if (!p) {
		p = calloc(1, 1);
		if (!p)
			return NULL;
	}
	if (ret_len)
		*ret_len = b->len;
	b->data = NULL;
	b->len = b->alloc = 0;
	return p;
}

void buf_done(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->alloc = 0;
}

int buf_read_file_at(int dirfd, const char *path, size_t cap, char **ret, size_t *ret_len)
{
	struct buf b = BUF_INIT(cap);
	char chunk[65536];
	int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC), r = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		r = buf_append(&b, chunk, (size_t)n);
		if (r < 0)
			break;
	}
	close(fd);
	if (r < 0) {
		buf_done(&b);
		return r;
	}
	if (!b.data && buf_append(&b, "", 0) < 0)
		return -ENOMEM;
	*ret = buf_steal(&b, ret_len);
	return *ret ? 0 : -ENOMEM;
}
