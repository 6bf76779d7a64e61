/* gzip: round trips through zlib's inflate, the exact bytes of a known input, streaming in
 * pieces, digests of input and output, and write failures (/dev/full, a closed pipe). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "digest.h"
#include "gzip.h"

/* sample(3000000) and its gzip at libdeflate level 6 (libdeflate 1.14). */
#define KNOWN_INPUT_DIGEST "sha256:9b9b945f0bb5f15936ac5eec646190f7e42418ec2c89ebfec85772731e02990d"
#define KNOWN_OUTPUT_DIGEST                                                                        \
	"sha256:e99217016112e65cf8f720d3ded7f9db705feb037ac47fced69507397b188c7d"
#define KNOWN_OUTPUT_SIZE 1444929 /* the input digest checked with Python hashlib */

static int memfd(const void *data, size_t len)
{
	int fd = memfd_create("test_gzip", MFD_CLOEXEC);
	assert_true(fd >= 0);
	if (len)
		assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

static unsigned char *slurp(int fd, size_t *ret_len)
{
	off_t n = lseek(fd, 0, SEEK_END);
	unsigned char *p = malloc((size_t)n + 1);
	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)n, 0), n);
	*ret_len = (size_t)n;
	return p;
}

/* Inflate a gzip file (zlib; concatenated members, as every gzip reader takes them).
 * ret_members: how many members it had. */
static unsigned char *inflate_all(const unsigned char *gz, size_t len, size_t cap, size_t *ret,
				  int *ret_members)
{
	unsigned char *out = malloc(cap + 1);
	z_stream s = {0};
	int zr, members = 0;

	assert_non_null(out);
	assert_int_equal(inflateInit2(&s, 16 + 15), Z_OK);
	s.next_in = (unsigned char *)gz;
	s.avail_in = (uInt)len;
	s.next_out = out;
	s.avail_out = (uInt)cap + 1;
	do {
		zr = inflate(&s, Z_FINISH);
		assert_int_equal(zr, Z_STREAM_END);
		members++;
		if (s.avail_in)
			assert_int_equal(inflateReset(&s), Z_OK);
	} while (s.avail_in);
	*ret = (size_t)(s.next_out - out); /* total_out restarts with each member */
	*ret_members = members;
	inflateEnd(&s);
	return out;
}

/* Deterministic, compressible, not trivial: text-like lines with a counter. */
static unsigned char *sample(size_t len)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = 12345;
	assert_non_null(p);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (i % 61 == 60) ? '\n' : (unsigned char)("etaoin shrdlu"[(x >> 16) % 13]);
	}
	return p;
}

static void roundtrip(size_t len)
{
	unsigned char *in = sample(len), *gz, *back;
	char d[DIGEST_LEN], din[DIGEST_LEN], want[DIGEST_LEN];
	struct sf_err err = {0};
	uint64_t size = 0;
	size_t gzlen, backlen;
	int ifd = memfd(in, len), ofd = memfd(NULL, 0);

	assert_int_equal(gzip_file(ifd, ofd, d, &size, din, &err), 0);
	gz = slurp(ofd, &gzlen);
	assert_int_equal(size, gzlen);
	digest_buffer(gz, gzlen, want);
	assert_string_equal(d, want);
	digest_buffer(in, len, want);
	assert_string_equal(din, want);
	/* The fixed header: no name, mtime 0, OS unknown, as Go's gzip; so is every member's. */
	static const unsigned char hdr[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
	assert_memory_equal(gz, hdr, 10);
	int members;
	back = inflate_all(gz, gzlen, len, &backlen, &members);
	assert_int_equal(backlen, len);
	assert_int_equal(members, len ? (len + GZIP_MEMBER - 1) / GZIP_MEMBER : 1);
	if (len)
		assert_memory_equal(back, in, len);
	free(back);
	free(gz);
	free(in);
	close(ifd);
	close(ofd);
}

static void test_roundtrip_sizes(void **state)
{
	static const size_t sizes[] = {0,
				       1,
				       100,
				       65536,
				       GZIP_MEMBER - 1,
				       GZIP_MEMBER,
				       GZIP_MEMBER + 1,
				       3 * GZIP_MEMBER + 5000};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		roundtrip(sizes[i]);
}

/* Incompressible input: the output stays within a small overhead of the input. */
static void test_random(void **state)
{
	size_t len = 4 * 1024 * 1024, gzlen, backlen;
	unsigned char *in = malloc(len), *gz, *back;
	char d[DIGEST_LEN];
	uint64_t size;
	struct sf_err err = {0};
	uint64_t x = 88172645463325252ull;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		in[i] = (unsigned char)x;
	}
	int ifd = memfd(in, len), ofd = memfd(NULL, 0);
	assert_int_equal(gzip_file(ifd, ofd, d, &size, NULL, &err), 0);
	/* Incompressible members are stored: the input plus the headers, trailers and 5 bytes
	 * per stored block of libdeflate (4 members of 17 blocks), with no compression time. */
	assert_int_equal(size, len + 4 * (10 + 8 + 17 * 5));
	gz = slurp(ofd, &gzlen);
	int members;
	back = inflate_all(gz, gzlen, len, &backlen, &members);
	assert_int_equal(backlen, len);
	assert_int_equal(members, 4);
	assert_memory_equal(back, in, len);
	free(back);
	free(gz);
	free(in);
	close(ifd);
	close(ofd);
}

/* A member that starts incompressible but is mostly text is still compressed: the probe
 * samples four places of it, not only its start. */
static void test_mixed_member_is_compressed(void **state)
{
	size_t len = GZIP_MEMBER, gzlen, backlen;
	unsigned char *in = sample(len), *gz, *back;
	char d[DIGEST_LEN];
	uint64_t size, x = 88172645463325252ull;
	struct sf_err err = {0};
	int members;

	for (size_t i = 0; i < 64 * 1024; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		in[i] = (unsigned char)x;
	}
	int ifd = memfd(in, len), ofd = memfd(NULL, 0);
	assert_int_equal(gzip_file(ifd, ofd, d, &size, NULL, &err), 0);
	assert_true(size < len * 3 / 4); /* stored would be len + 103 */
	gz = slurp(ofd, &gzlen);
	back = inflate_all(gz, gzlen, len, &backlen, &members);
	assert_int_equal(backlen, len);
	assert_memory_equal(back, in, len);
	free(back);
	free(gz);
	free(in);
	close(ifd);
	close(ofd);
}

/* The exact output for a known input: the digest a layer gets must not drift (a change of
 * library, level or header changes every digest the write path produces). */
static void test_known_digest(void **state)
{
	unsigned char *in = sample(3000000);
	char d[DIGEST_LEN], din[DIGEST_LEN];
	uint64_t size = 0;
	struct sf_err err = {0};
	int ifd = memfd(in, 3000000), ofd = memfd(NULL, 0);

	assert_int_equal(gzip_file(ifd, ofd, d, &size, din, &err), 0);
	assert_string_equal(din, KNOWN_INPUT_DIGEST);
	assert_string_equal(d, KNOWN_OUTPUT_DIGEST);
	assert_int_equal(size, KNOWN_OUTPUT_SIZE);
	free(in);
	close(ifd);
	close(ofd);
}

/* Streaming in odd pieces gives the same bytes as one gzip_file. */
static void test_stream_pieces(void **state)
{
	size_t len = 1500000, gzlen;
	unsigned char *in = sample(len), *gz;
	char d1[DIGEST_LEN], d2[DIGEST_LEN], din[DIGEST_LEN], want[DIGEST_LEN];
	uint64_t s1, s2, insize;
	struct sf_err err = {0};
	struct gzip *g = NULL;
	int ifd = memfd(in, len), ofd = memfd(NULL, 0), ofd2 = memfd(NULL, 0);

	assert_int_equal(gzip_file(ifd, ofd, d1, &s1, NULL, &err), 0);
	assert_int_equal(gzip_new(ofd2, true, &g), 0);
	for (size_t off = 0, step = 1; off < len; step = step * 3 + 7) {
		size_t n = len - off < step ? len - off : step;
		assert_int_equal(gzip_write(g, in + off, n, &err), 0);
		off += n;
	}
	assert_int_equal(gzip_finish(g, d2, &s2, din, &insize, &err), 0);
	assert_int_equal(insize, len);
	digest_buffer(in, len, want);
	assert_string_equal(din, want);
	/* A finished stream takes nothing more. */
	assert_int_equal(gzip_write(g, "x", 1, &err), -EINVAL);
	gzip_free(g);
	/* Where the pieces end changes nothing: input goes to the compressor in fixed blocks. */
	assert_int_equal(s1, s2);
	assert_string_equal(d1, d2);
	gz = slurp(ofd2, &gzlen);
	digest_buffer(gz, gzlen, want);
	assert_string_equal(d2, want);
	free(gz);
	free(in);
	close(ifd);
	close(ofd);
	close(ofd2);
}

static void test_full_disk(void **state)
{
	unsigned char *in = sample(2000000);
	char d[DIGEST_LEN];
	uint64_t size;
	struct sf_err err = {0};
	int ifd = memfd(in, 2000000), ofd = open("/dev/full", O_WRONLY | O_CLOEXEC);

	assert_true(ofd >= 0);
	assert_int_equal(gzip_file(ifd, ofd, d, &size, NULL, &err), -ENOSPC);
	assert_int_equal(err.code, -ENOSPC);
	assert_non_null(strstr(err.msg, "No space left"));
	/* A failed stream stays failed. */
	struct gzip *g = NULL;
	assert_int_equal(gzip_new(ofd, false, &g), 0);
	assert_int_equal(gzip_write(g, in, 2000000, &err), -ENOSPC);
	assert_int_equal(gzip_write(g, in, 10, &err), -ENOSPC);
	assert_int_equal(gzip_finish(g, d, &size, NULL, NULL, &err), -ENOSPC);
	gzip_free(g);
	free(in);
	close(ifd);
	close(ofd);
}

static void test_io_errors(void **state)
{
	char d[DIGEST_LEN];
	uint64_t size;
	struct sf_err err = {0};
	int p[2], ofd = memfd(NULL, 0), ifd = memfd("abc", 3);

	/* Reading a directory: EISDIR from pread. */
	int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(gzip_file(dir, ofd, d, &size, NULL, &err), -EISDIR);
	close(dir);
	/* Writing into a pipe nobody reads: EPIPE (SIGPIPE ignored, as the daemon does). */
	signal(SIGPIPE, SIG_IGN);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	close(p[0]);
	assert_int_equal(gzip_file(ifd, p[1], d, &size, NULL, &err), -EPIPE);
	close(p[1]);
	/* A bad output fd. */
	assert_int_equal(gzip_file(ifd, -1, d, &size, NULL, &err), -EBADF);
	close(ifd);
	close(ofd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_sizes), cmocka_unit_test(test_random),
	    cmocka_unit_test(test_mixed_member_is_compressed),
	    cmocka_unit_test(test_known_digest),    cmocka_unit_test(test_stream_pieces),
	    cmocka_unit_test(test_full_disk),	    cmocka_unit_test(test_io_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
