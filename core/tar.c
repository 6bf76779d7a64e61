#include "tar.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define BLOCK 512
#define NAME_CAP 4096
#define PAX_CAP (64 * 1024)

enum phase { HEADER, BODY, PADDING, DONE };

struct tar_reader {
	struct tar_callbacks cb;
	void *ud;
	enum phase phase;
	unsigned char hdr[BLOCK];
	size_t hdr_have;
	uint64_t left; /* bytes of the current entry body still to come */
	size_t pad_left;
	char type;	    /* of the current entry */
	struct buf meta;    /* body of a GNU long name or pax header */
	char *next_name;    /* from 'L' or pax 'path' */
	char *next_link;    /* from 'K' or pax 'linkpath' */
	uint64_t next_size; /* from pax 'size' */
	bool has_next_size;
	int zero_blocks;
};

struct tar_reader *tar_reader_new(const struct tar_callbacks *cb, void *userdata)
{
	struct tar_reader *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cb = *cb;
	t->ud = userdata;
	return t;
}

void tar_reader_free(struct tar_reader *t)
{
	if (!t)
		return;
	buf_done(&t->meta);
	free(t->next_name);
	free(t->next_link);
	free(t);
}

static int parse_number(const unsigned char *f, size_t n, uint64_t *ret)
{
	uint64_t v = 0;
	size_t i = 0;

	if (f[0] & 0x80) {
		/* base-256 (GNU) for large sizes */
		v = f[0] & 0x3f;
		for (i = 1; i < n; i++) {
			if (v >> 56)
				return -EBADMSG;
			v = (v << 8) | f[i];
		}
		*ret = v;
		return 0;
	}
	while (i < n && f[i] == ' ')
		i++;
	for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 61)
			return -EBADMSG;
		v = v * 8 + (uint64_t)(f[i] - '0');
	}
	for (; i < n; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return -EBADMSG;
	*ret = v;
	return 0;
}

static bool all_zero(const unsigned char *b)
{
	for (size_t i = 0; i < BLOCK; i++)
		if (b[i])
			return false;
	return true;
}

/* Parse pax records "LEN key=value\n" for path and size. */
static int parse_pax(struct tar_reader *t, struct sf_err *err)
{
	const char *p = t->meta.data ? t->meta.data : "", *end = p + t->meta.len;

	while (p < end) {
		char *sp;
		unsigned long len = strtoul(p, &sp, 10);
		const char *rec = p, *eq, *val;
		if (sp == p || *sp != ' ' || len == 0 || len > (unsigned long)(end - p) ||
		    rec[len - 1] != '\n')
			return err_set(err, -EBADMSG, "tar: bad pax record");
		eq = memchr(sp + 1, '=', (size_t)(rec + len - (sp + 1)));
		if (!eq)
			return err_set(err, -EBADMSG, "tar: bad pax record");
		val = eq + 1;
		size_t klen = (size_t)(eq - (sp + 1)), vlen = (size_t)(rec + len - 1 - val);
		if (klen == 4 && memcmp(sp + 1, "path", 4) == 0) {
			if (vlen >= NAME_CAP)
				return err_set(err, -EBADMSG, "tar: name too long");
			free(t->next_name);
			t->next_name = strndup(val, vlen);
			if (!t->next_name)
				return -ENOMEM;
		} else if (klen == 8 && memcmp(sp + 1, "linkpath", 8) == 0) {
			if (vlen >= NAME_CAP)
				return err_set(err, -EBADMSG, "tar: link target too long");
			free(t->next_link);
			t->next_link = strndup(val, vlen);
			if (!t->next_link)
				return -ENOMEM;
		} else if (klen == 4 && memcmp(sp + 1, "size", 4) == 0) {
			uint64_t v = 0;
			for (size_t i = 0; i < vlen; i++) {
				if (val[i] < '0' || val[i] > '9' || v > UINT64_MAX / 10 - 9)
					return err_set(err, -EBADMSG, "tar: bad pax size");
				v = v * 10 + (uint64_t)(val[i] - '0');
			}
			t->next_size = v;
			t->has_next_size = true;
		}
		p = rec + len;
	}
	return 0;
}

static int on_header(struct tar_reader *t, struct sf_err *err)
{
	const unsigned char *h = t->hdr;
	uint64_t size, sum_field, sum = 0;
	char name[NAME_CAP], link[NAME_CAP];
	int r;

	if (all_zero(h)) {
		if (++t->zero_blocks == 2)
			t->phase = DONE;
		return 0;
	}
	if (t->zero_blocks)
		return err_set(err, -EBADMSG, "tar: data after an end block");
	if (parse_number(h + 148, 8, &sum_field) < 0)
		return err_set(err, -EBADMSG, "tar: bad header checksum field");
	for (size_t i = 0; i < BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : h[i];
	if (sum != sum_field)
		return err_set(err, -EBADMSG, "tar: header checksum mismatch");
	if (parse_number(h + 124, 12, &size) < 0)
		return err_set(err, -EBADMSG, "tar: bad size field");
	t->type = (char)h[156];
	if (t->has_next_size && t->type != 'x' && t->type != 'L' && t->type != 'K' &&
	    t->type != 'g')
		size = t->next_size;
	t->left = size;
	t->pad_left = (size_t)((BLOCK - size % BLOCK) % BLOCK);
	t->phase = BODY;
	buf_done(&t->meta);

	/* Links, devices, directories and FIFOs carry no data, whatever their size field says. */
	if (t->type >= '1' && t->type <= '6') {
		size = 0;
		t->left = 0;
		t->pad_left = 0;
	}
	if (t->type == 'L' || t->type == 'K' || t->type == 'x' || t->type == 'g') {
		if (size > (t->type == 'L' || t->type == 'K' ? NAME_CAP : PAX_CAP))
			return err_set(err, -EBADMSG, "tar: metadata entry too large");
		t->meta.cap = PAX_CAP;
		return 0;
	}
	if (t->next_name) {
		snprintf(name, sizeof(name), "%s", t->next_name);
	} else {
		/* ustar: prefix "/" name when the prefix is set */
		const char *prefix = (const char *)h + 345, *nm = (const char *)h;
		size_t pl = strnlen(prefix, 155), nl = strnlen(nm, 100);
		/* POSIX ustar ("ustar\0") has a prefix at 345; GNU ("ustar  ") keeps times there.
		 */
		if (memcmp(h + 257, "ustar", 6) == 0 && pl)
			snprintf(name, sizeof(name), "%.*s/%.*s", (int)pl, prefix, (int)nl, nm);
		else
			snprintf(name, sizeof(name), "%.*s", (int)nl, nm);
	}
	if (t->next_link) {
		snprintf(link, sizeof(link), "%s", t->next_link);
	} else {
		size_t ll = strnlen((const char *)h + 157, 100);
		snprintf(link, sizeof(link), "%.*s", (int)ll, (const char *)h + 157);
	}
	free(t->next_name);
	t->next_name = NULL;
	free(t->next_link);
	t->next_link = NULL;
	t->has_next_size = false;
	if ((t->type == '1' || t->type == '2') && t->cb.link) {
		r = t->cb.link(t->ud, name, link, t->type == '1');
		if (r < 0)
			return r;
	}
	if (t->type == '0' || t->type == '\0' || t->type == '7') {
		t->type = '0';
		r = t->cb.file_begin ? t->cb.file_begin(t->ud, name, size) : 0;
		if (r < 0)
			return r;
		if (size == 0 && t->cb.file_end) {
			r = t->cb.file_end(t->ud);
			if (r < 0)
				return r;
		}
	}
	if (size == 0)
		t->phase = t->pad_left ? PADDING : HEADER;
	return 0;
}

static int on_body_end(struct tar_reader *t, struct sf_err *err)
{
	int r = 0;

	if (t->type == '0' && t->cb.file_end)
		r = t->cb.file_end(t->ud);
	else if (t->type == 'L' || t->type == 'K') {
		size_t n = strnlen(t->meta.data ? t->meta.data : "", t->meta.len);
		char **dst = t->type == 'L' ? &t->next_name : &t->next_link;
		if (n >= NAME_CAP)
			return err_set(err, -EBADMSG, "tar: name too long");
		free(*dst);
		*dst = strndup(t->meta.data ? t->meta.data : "", n);
		r = *dst ? 0 : -ENOMEM;
	} else if (t->type == 'x') {
		r = parse_pax(t, err);
	}
	buf_done(&t->meta);
	t->phase = t->pad_left ? PADDING : HEADER;
	return r;
}

int tar_feed(struct tar_reader *t, const void *data, size_t len, struct sf_err *err)
{
	const unsigned char *p = data;
	int r;

	while (len) {
		switch (t->phase) {
		case DONE:
			return 0; /* trailing blocks after the end */
		case HEADER: {
			size_t n = BLOCK - t->hdr_have;
			if (n > len)
				n = len;
			memcpy(t->hdr + t->hdr_have, p, n);
			t->hdr_have += n;
			p += n;
			len -= n;
			if (t->hdr_have == BLOCK) {
				t->hdr_have = 0;
				r = on_header(t, err);
				if (r < 0)
					return r;
			}
			break;
		}
		case BODY: {
			size_t n = t->left < len ? (size_t)t->left : len;
			if (t->type == '0') {
				r = t->cb.file_data ? t->cb.file_data(t->ud, p, n) : 0;
				if (r < 0)
					return r;
			} else if (t->type == 'L' || t->type == 'K' || t->type == 'x') {
				if (buf_append(&t->meta, p, n) < 0)
					return err_set(err, -EBADMSG, "tar: metadata too large");
			}
			t->left -= n;
			p += n;
			len -= n;
			if (t->left == 0) {
				r = on_body_end(t, err);
				if (r < 0)
					return r;
			}
			break;
		}
		case PADDING: {
			size_t n = t->pad_left < len ? t->pad_left : len;
			t->pad_left -= n;
			p += n;
			len -= n;
			if (t->pad_left == 0)
				t->phase = HEADER;
			break;
		}
		}
	}
	return 0;
}

int tar_finish(struct tar_reader *t, struct sf_err *err)
{
	if (t->phase == BODY || t->phase == PADDING || t->hdr_have != 0)
		return err_set(err, -EBADMSG, "tar: archive ends inside an entry");
	return 0;
}
