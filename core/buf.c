#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
