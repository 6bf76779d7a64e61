#include "gzip.h"

#include <errno.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* RFC 1952 member header: ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255, as Go's gzip. */
static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};

#define PROBE_PART (16 * 1024) /* four samples of a member are tried at level 1 */

struct gzip {
	struct libdeflate_compressor *c;
	struct libdeflate_compressor *fast;   /* level 1: the probe */
	struct libdeflate_compressor *stored; /* level 0: incompressible members */
	unsigned char *probe;		      /* 4 * PROBE_PART, and room for its output */
	int out_fd;
	int error; /* sticky -errno */
	bool finished;
	uint64_t out_size, in_size, members;
	struct digest_ctx *out_digest, *in_digest;
	size_t pending; /* bytes in in[] */
	size_t out_cap;
	unsigned char *in;  /* GZIP_MEMBER bytes */
	unsigned char *out; /* header + compress bound + trailer */
};

int gzip_new(int out_fd, bool with_input_digest, struct gzip **ret)
{
	struct gzip *g = calloc(1, sizeof(*g));

	if (!g)
		return -ENOMEM;
	g->out_fd = out_fd;
	g->c = libdeflate_alloc_compressor(GZIP_LEVEL);
	g->fast = libdeflate_alloc_compressor(1);
	g->stored = libdeflate_alloc_compressor(0);
	g->probe = malloc(8 * PROBE_PART + 1024);
	g->out_digest = digest_new();
	g->in_digest = with_input_digest ? digest_new() : NULL;
	if (g->c)
		g->out_cap =
		    sizeof(header) + libdeflate_deflate_compress_bound(g->c, GZIP_MEMBER) + 8;
	g->in = malloc(GZIP_MEMBER);
	g->out = g->out_cap ? malloc(g->out_cap) : NULL;
	if (!g->c || !g->fast || !g->stored || !g->probe || !g->out_digest ||
	    (with_input_digest && !g->in_digest) || !g->in || !g->out) {
		gzip_free(g);
		return -ENOMEM;
	}
	*ret = g;
	return 0;
}

void gzip_free(struct gzip *g)
{
	if (!g)
		return;
	libdeflate_free_compressor(g->c);
	libdeflate_free_compressor(g->fast);
	libdeflate_free_compressor(g->stored);
	free(g->probe);
	digest_free(g->out_digest);
	digest_free(g->in_digest);
	free(g->in);
	free(g->out);
	free(g);
}

/* Write all of data to out_fd and hash it. */
static int emit(struct gzip *g, const void *data, size_t len, struct sf_err *err)
{
	const unsigned char *p = data;
	size_t left = len;

	while (left) {
		ssize_t n = write(g->out_fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			g->error = n < 0 ? -errno : -EIO;
			return err_set(err, g->error, "gzip: writing the compressed layer: %s",
				       strerror(-g->error));
		}
		p += n;
		left -= (size_t)n;
	}
	digest_update(g->out_digest, data, len);
	g->out_size += len;
	return 0;
}

static void le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Whether a member is worth compressing: four samples spread over it, compressed together at
 * level 1, must shrink by 1/32 at least. Incompressible data (random bytes, media, layers
 * of already compressed files) then costs no compression time: it is stored, as large as it
 * is plus 5 bytes a 64 KiB block, which is what level 6 gives for it too. */
static bool worth_compressing(struct gzip *g, const unsigned char *p, size_t len)
{
	size_t part = len / 4 < PROBE_PART ? len / 4 : PROBE_PART, sample = 4 * part, n;

	if (part < 512)
		return true;
	for (size_t i = 0; i < 4; i++)
		memcpy(g->probe + i * part, p + i * ((len - part) / 3), part);
	n = libdeflate_deflate_compress(g->fast, g->probe, sample, g->probe + sample,
					4 * PROBE_PART + 1024);
	return n != 0 && n < sample - sample / 32;
}

/* One gzip member of len input bytes: header, DEFLATE, CRC-32, ISIZE. */
static int member(struct gzip *g, const unsigned char *p, size_t len, struct sf_err *err)
{
	struct libdeflate_compressor *c = worth_compressing(g, p, len) ? g->c : g->stored;
	size_t n;

	memcpy(g->out, header, sizeof(header));
	n = libdeflate_deflate_compress(c, p, len, g->out + sizeof(header),
					g->out_cap - sizeof(header) - 8);
	if (n == 0) { /* cannot happen with the bound; never write a broken stream */
		g->error = -EIO;
		return err_set(err, -EIO, "gzip: libdeflate found no room for a block");
	}
	n += sizeof(header);
	le32(g->out + n, libdeflate_crc32(0, p, len));
	le32(g->out + n + 4, (uint32_t)len);
	g->members++;
	return emit(g, g->out, n + 8, err);
}

int gzip_write(struct gzip *g, const void *data, size_t len, struct sf_err *err)
{
	const unsigned char *p = data;

	if (g->error)
		return err_set(err, g->error, "gzip: the stream failed before");
	if (g->finished)
		return err_set(err, -EINVAL, "gzip: the stream is finished");
	if (g->in_digest)
		digest_update(g->in_digest, data, len);
	g->in_size += len;
	while (len) {
		if (g->pending == 0 && len >= GZIP_MEMBER) {
			/* A whole member straight from the caller's buffer. */
			if (member(g, p, GZIP_MEMBER, err) < 0)
				return g->error;
			p += GZIP_MEMBER;
			len -= GZIP_MEMBER;
			continue;
		}
		size_t n = GZIP_MEMBER - g->pending < len ? GZIP_MEMBER - g->pending : len;
		memcpy(g->in + g->pending, p, n);
		g->pending += n;
		p += n;
		len -= n;
		if (g->pending == GZIP_MEMBER) {
			g->pending = 0;
			if (member(g, g->in, GZIP_MEMBER, err) < 0)
				return g->error;
		}
	}
	return 0;
}

int gzip_finish(struct gzip *g, char ret_digest[DIGEST_LEN], uint64_t *ret_size,
		char ret_in_digest[DIGEST_LEN], uint64_t *ret_in_size, struct sf_err *err)
{
	if (g->error)
		return err_set(err, g->error, "gzip: the stream failed before");
	if (g->finished)
		return err_set(err, -EINVAL, "gzip: the stream is finished");
	if (ret_in_digest && !g->in_digest)
		return err_set(err, -EINVAL, "gzip: the input digest was not asked for");
	/* The last (short) member; an empty input still gets one, so the output is a gzip
	 * stream that decompresses to nothing. */
	if (g->pending || g->members == 0) {
		if (member(g, g->in, g->pending, err) < 0)
			return g->error;
		g->pending = 0;
	}
	g->finished = true;
	digest_final(g->out_digest, ret_digest);
	if (ret_size)
		*ret_size = g->out_size;
	if (ret_in_digest)
		digest_final(g->in_digest, ret_in_digest);
	if (ret_in_size)
		*ret_in_size = g->in_size;
	return 0;
}

int gzip_file(int in_fd, int out_fd, char ret_digest[DIGEST_LEN], uint64_t *ret_size,
	      char ret_in_digest[DIGEST_LEN], struct sf_err *err)
{
	struct gzip *g = NULL;
	uint64_t off = 0;
	int rc;

	rc = gzip_new(out_fd, ret_in_digest != NULL, &g);
	if (rc < 0)
		return rc;
	/* Read straight into the member buffer: one copy less. */
	for (;;) {
		ssize_t n = pread(in_fd, g->in + g->pending, GZIP_MEMBER - g->pending, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = err_set(err, -errno, "gzip: reading the layer at %llu: %s",
				     (unsigned long long)off, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (g->in_digest)
			digest_update(g->in_digest, g->in + g->pending, (size_t)n);
		g->in_size += (uint64_t)n;
		g->pending += (size_t)n;
		off += (uint64_t)n;
		if (g->pending == GZIP_MEMBER) {
			g->pending = 0;
			rc = member(g, g->in, GZIP_MEMBER, err);
			if (rc < 0)
				goto out;
		}
	}
	rc = gzip_finish(g, ret_digest, ret_size, ret_in_digest, NULL, err);
out:
	gzip_free(g);
	return rc;
}
