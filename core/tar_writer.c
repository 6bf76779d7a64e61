#include "tar_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK 512
#define NAME_MAX_LEN 4096
#define OCTAL11_MAX 077777777777ULL /* the largest value of an 11-digit octal field */

enum source { SRC_NONE, SRC_MEM, SRC_FD };

struct entry {
	uint64_t start; /* archive offset of the entry's first header byte */
	char *hdr;	/* header blocks: [pax header + records], ustar header */
	size_t hdr_len; /* a multiple of BLOCK */
	uint64_t size;	/* data bytes (padding to BLOCK follows) */
	enum source src;
	char *mem; /* SRC_MEM: a copy of the data */
	int fd;	   /* SRC_FD */
	bool own_fd;
	uint64_t off; /* SRC_FD: file offset of the first data byte */
};

struct tar_plan {
	uint64_t mtime;
	struct entry *e;
	size_t n, alloc;
	uint64_t end; /* offset where the two zero end blocks start */
};

static uint64_t padded(uint64_t n)
{
	return (n + BLOCK - 1) / BLOCK * BLOCK;
}

int tar_plan_new(uint64_t mtime, struct tar_plan **ret)
{
	struct tar_plan *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->mtime = mtime;
	*ret = p;
	return 0;
}

void tar_plan_free(struct tar_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->e[i].hdr);
		free(p->e[i].mem);
		if (p->e[i].own_fd)
			close(p->e[i].fd);
	}
	free(p->e);
	free(p);
}

uint64_t tar_plan_size(const struct tar_plan *p)
{
	return p->end + 2 * BLOCK;
}

static int check_name(const char *name, struct sf_err *err)
{
	size_t len = name ? strnlen(name, NAME_MAX_LEN + 1) : 0;

	if (len == 0 || len > NAME_MAX_LEN)
		return err_set(err, -EINVAL, "tar entry name: must be 1 to %d bytes", NAME_MAX_LEN);
	if (name[0] == '/')
		return err_set(err, -EINVAL, "tar entry name '%s': must be relative", name);
	for (const char *s = name; *s;) {
		const char *slash = strchr(s, '/');
		size_t n = slash ? (size_t)(slash - s) : strlen(s);
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return err_set(err, -EINVAL, "tar entry name '%s': no '..' allowed", name);
		s += n;
		if (*s == '/')
			s++;
	}
	return 0;
}

/* An octal field of width w (w-1 digits and a NUL); base-256 (GNU) when the value is too big. */
static void put_num(char *field, size_t w, uint64_t v)
{
	if (w - 1 < 22 && v >> (3 * (w - 1))) {
		memset(field, 0, w);
		field[0] = (char)0x80;
		for (size_t i = w - 1; i > 0 && v; i--, v >>= 8)
			field[i] = (char)(v & 0xff);
		return;
	}
	for (size_t i = w - 1; i > 0; i--, v >>= 3)
		field[i - 1] = (char)('0' + (v & 7));
	field[w - 1] = '\0';
}

/* Fill one ustar header block. name is truncated to 100 bytes (a pax record holds it all). */
static void ustar_header(char *h, const char *name, char type, unsigned mode, uint64_t size,
			 uint64_t mtime)
{
	size_t nlen = strlen(name);
	unsigned sum = 0;

	memset(h, 0, BLOCK);
	memcpy(h, name, nlen > 100 ? 100 : nlen);
	put_num(h + 100, 8, mode);
	put_num(h + 108, 8, 0); /* uid */
	put_num(h + 116, 8, 0); /* gid */
	put_num(h + 124, 12, size);
	put_num(h + 136, 12, mtime);
	h[156] = type;
	memcpy(h + 257, "ustar", 6); /* magic with its NUL */
	memcpy(h + 263, "00", 2);    /* version */
	put_num(h + 329, 8, 0);	     /* devmajor */
	put_num(h + 337, 8, 0);	     /* devminor */
	memset(h + 148, ' ', 8);
	for (size_t i = 0; i < BLOCK; i++)
		sum += (unsigned char)h[i];
	snprintf(h + 148, 8, "%06o", sum & 0777777);
	h[155] = ' ';
}

/* Append one pax record "LEN key=value\n" (LEN counts the whole record, itself included). */
static int pax_record(char **recs, size_t *len, const char *key, const char *value)
{
	size_t body = 1 + strlen(key) + 1 + strlen(value) + 1, digits = 1, total;
	char *grown;

	for (;;) {
		total = body + digits;
		size_t d = 1;
		for (size_t t = total; t >= 10; t /= 10)
			d++;
		if (d == digits)
			break;
		digits = d;
	}
	grown = realloc(*recs, *len + total + 1);
	if (!grown)
		return -ENOMEM;
	*recs = grown;
	snprintf(*recs + *len, total + 1, "%zu %s=%s\n", total, key, value);
	*len += total;
	return 0;
}

/* Build the header blocks of an entry into e->hdr. */
static int make_headers(struct tar_plan *p, struct entry *e, const char *name, char type,
			unsigned mode)
{
	char *recs = NULL, numbuf[32];
	size_t rlen = 0;
	int r = 0;

	if (strlen(name) > 100)
		r = pax_record(&recs, &rlen, "path", name);
	if (r == 0 && e->size > OCTAL11_MAX) {
		snprintf(numbuf, sizeof(numbuf), "%llu", (unsigned long long)e->size);
		r = pax_record(&recs, &rlen, "size", numbuf);
	}
	if (r < 0)
		goto out;
	e->hdr_len = rlen ? BLOCK + padded(rlen) + BLOCK : BLOCK;
	e->hdr = calloc(1, e->hdr_len);
	if (!e->hdr) {
		r = -ENOMEM;
		goto out;
	}
	if (rlen) {
		ustar_header(e->hdr, "PaxHeader", 'x', 0644, rlen, p->mtime);
		memcpy(e->hdr + BLOCK, recs, rlen);
	}
	ustar_header(e->hdr + e->hdr_len - BLOCK, name, type, mode, e->size, p->mtime);
out:
	free(recs);
	return r;
}

/* Append an entry (its source already set in *proto) to the plan. */
static int add(struct tar_plan *p, const char *name, char type, unsigned mode, struct entry *proto,
	       struct sf_err *err)
{
	struct entry *e;
	int r;

	r = check_name(name, err);
	if (r < 0)
		return r;
	if (p->n == p->alloc) {
		size_t na = p->alloc ? p->alloc * 2 : 8;
		struct entry *grown = realloc(p->e, na * sizeof(*grown));
		if (!grown)
			return -ENOMEM;
		p->e = grown;
		p->alloc = na;
	}
	e = &p->e[p->n];
	*e = *proto;
	e->start = p->end;
	r = make_headers(p, e, name, type, mode);
	if (r < 0)
		return r;
	p->end += e->hdr_len + padded(e->size);
	p->n++;
	return 0;
}

int tar_plan_add_mem(struct tar_plan *p, const char *name, const void *data, size_t len,
		     struct sf_err *err)
{
	struct entry e = {.size = len, .src = SRC_MEM, .fd = -1};
	int r;

	e.mem = malloc(len ? len : 1);
	if (!e.mem)
		return -ENOMEM;
	if (len)
		memcpy(e.mem, data, len);
	r = add(p, name, '0', 0644, &e, err);
	if (r < 0)
		free(e.mem);
	return r;
}

int tar_plan_add_fd(struct tar_plan *p, const char *name, int fd, uint64_t off, uint64_t size,
		    struct sf_err *err)
{
	struct entry e = {.size = size, .src = SRC_FD, .fd = fd, .off = off};

	return add(p, name, '0', 0644, &e, err);
}

int tar_plan_add_file_at(struct tar_plan *p, const char *name, int dirfd, const char *path,
			 struct sf_err *err)
{
	struct entry e = {.src = SRC_FD, .own_fd = true};
	struct stat st;
	int r;

	e.fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (e.fd < 0)
		return err_set(err, -errno, "opening %s for the archive: %s", path,
			       strerror(errno));
	if (fstat(e.fd, &st) < 0) {
		r = err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		r = err_set(err, -EINVAL, "%s: not a regular file", path);
		goto fail;
	}
	e.size = (uint64_t)st.st_size;
	r = add(p, name, '0', 0644, &e, err);
	if (r == 0)
		return 0;
fail:
	close(e.fd);
	return r;
}

int tar_plan_add_dir(struct tar_plan *p, const char *name, struct sf_err *err)
{
	struct entry e = {.src = SRC_NONE, .fd = -1};
	size_t len;
	char *slashed;
	int r;

	r = check_name(name, err);
	if (r < 0)
		return r;
	len = strlen(name);
	if (name[len - 1] == '/')
		return add(p, name, '5', 0755, &e, err);
	/* Folder names end with '/' in the archive, as tar writes them. */
	if (len + 1 > NAME_MAX_LEN)
		return err_set(err, -EINVAL, "tar entry name: must be 1 to %d bytes", NAME_MAX_LEN);
	if (asprintf(&slashed, "%s/", name) < 0)
		return -ENOMEM;
	r = add(p, slashed, '5', 0755, &e, err);
	free(slashed);
	return r;
}

/* Copy entry data bytes [rel, rel+len) into buf: all of them or -errno. */
static int read_data(const struct entry *e, uint64_t rel, char *buf, size_t len)
{
	if (e->src == SRC_MEM) {
		memcpy(buf, e->mem + rel, len);
		return 0;
	}
	while (len) {
		ssize_t n = pread(e->fd, buf, len, (off_t)(e->off + rel));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file is shorter than planned */
		buf += n;
		len -= (size_t)n;
		rel += (uint64_t)n;
	}
	return 0;
}

ssize_t tar_plan_read_at(const struct tar_plan *p, uint64_t off, void *out, size_t len)
{
	const uint64_t total = tar_plan_size(p);
	char *buf = out;
	size_t done = 0, lo = 0, hi = p->n;

	if (off >= total)
		return 0;
	if (len > total - off)
		len = (size_t)(total - off);
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;
	/* The last entry starting at or before off. */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->e[mid].start <= off)
			lo = mid;
		else
			hi = mid;
	}
	for (size_t i = lo; done < len && i < p->n; i++) {
		const struct entry *e = &p->e[i];
		const uint64_t data_end = e->hdr_len + e->size,
			       entry_end = e->hdr_len + padded(e->size);
		while (done < len && off - e->start < entry_end) {
			uint64_t rel = off - e->start;
			size_t n;
			if (rel < e->hdr_len) {
				n = (size_t)(e->hdr_len - rel);
				n = n < len - done ? n : len - done;
				memcpy(buf + done, e->hdr + rel, n);
			} else if (rel < data_end) {
				uint64_t left = data_end - rel;
				n = left < len - done ? (size_t)left : len - done;
				int r = read_data(e, rel - e->hdr_len, buf + done, n);
				if (r < 0)
					return r;
			} else {
				uint64_t left = entry_end - rel;
				n = left < len - done ? (size_t)left : len - done;
				memset(buf + done, 0, n);
			}
			done += n;
			off += n;
		}
	}
	if (done < len) /* the end blocks */
		memset(buf + done, 0, len - done);
	return (ssize_t)len;
}

ssize_t tar_plan_read_at_cb(void *plan, uint64_t off, void *buf, size_t len)
{
	return tar_plan_read_at(plan, off, buf, len);
}
