/* gzip_bench: the gzip candidates on one input file (issue 7, scope 10).
 *
 * Usage: gzip_bench FILE [FILE...]. Reads each file into memory (so only the compressor is
 * timed), then compresses it with each candidate as one standard gzip stream (zlib and ISA-L
 * streaming; libdeflate, whose API is whole-buffer only, in 1 MiB gzip members, the way a
 * streaming, memory-bounded use of it would have to). Prints MB/s (input MB per second of CPU
 * time on one thread) and the output size relative to zlib level 6 (what Go's gzip default, so
 * `docker push`, stores). Each output is inflated with zlib and compared with the input.
 */
#include <errno.h>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

struct out {
	unsigned char *p;
	size_t len, cap;
};

static void put(struct out *o, const void *d, size_t n)
{
	if (o->len + n > o->cap) {
		fprintf(stderr, "output buffer too small\n");
		exit(1);
	}
	memcpy(o->p + o->len, d, n);
	o->len += n;
}

static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};

static void trailer(struct out *o, uint32_t crc, uint64_t len)
{
	unsigned char t[8];
	for (int i = 0; i < 4; i++) {
		t[i] = (unsigned char)(crc >> (8 * i));
		t[4 + i] = (unsigned char)(len >> (8 * i));
	}
	put(o, t, 8);
}

/* Streaming, 256 KiB in and out at a time, as a file-to-file copy would. */
static void run_zlib(const unsigned char *in, size_t n, int level, struct out *o)
{
	z_stream s = {0};
	size_t chunk = 256 * 1024;

	if (deflateInit2(&s, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		exit(1);
	put(o, header, 10);
	for (size_t off = 0;;) {
		size_t take = n - off < chunk ? n - off : chunk;
		int flush = off + take == n ? Z_FINISH : Z_NO_FLUSH, zr;
		s.next_in = (unsigned char *)in + off;
		s.avail_in = (uInt)take;
		do {
			s.next_out = o->p + o->len;
			s.avail_out = (uInt)(chunk < o->cap - o->len ? chunk : o->cap - o->len);
			size_t before = s.avail_out;
			zr = deflate(&s, flush);
			o->len += before - s.avail_out;
		} while (s.avail_out == 0 || (flush == Z_FINISH && zr != Z_STREAM_END));
		off += take;
		if (flush == Z_FINISH)
			break;
	}
	deflateEnd(&s);
	trailer(o, (uint32_t)crc32(crc32(0, NULL, 0), in, (uInt)n), n);
}

static void run_deflate(const unsigned char *in, size_t n, int level, struct out *o)
{
	struct libdeflate_compressor *c = libdeflate_alloc_compressor(level);
	size_t member = 1024 * 1024;

	for (size_t off = 0; off < n || off == 0; off += member) {
		size_t take = n - off < member ? n - off : member;
		put(o, header, 10);
		size_t w =
		    libdeflate_deflate_compress(c, in + off, take, o->p + o->len, o->cap - o->len);
		if (!w)
			exit(1);
		o->len += w;
		trailer(o, libdeflate_crc32(0, in + off, take), take);
		if (n == 0)
			break;
	}
	libdeflate_free_compressor(c);
}

static void run_isal(const unsigned char *in, size_t n, int level, struct out *o)
{
	static const uint32_t lvl_buf[] = {0, ISAL_DEF_LVL1_DEFAULT, ISAL_DEF_LVL2_DEFAULT,
					   ISAL_DEF_LVL3_DEFAULT};
	struct isal_zstream s;
	size_t chunk = 256 * 1024;
	uint8_t *lb = malloc(lvl_buf[level] ? lvl_buf[level] : 1);

	isal_deflate_init(&s);
	s.level = (uint32_t)level;
	s.level_buf = lb;
	s.level_buf_size = lvl_buf[level];
	s.gzip_flag = 0; /* raw deflate; our own header */
	put(o, header, 10);
	for (size_t off = 0;;) {
		size_t take = n - off < chunk ? n - off : chunk;
		s.next_in = (uint8_t *)in + off;
		s.avail_in = (uint32_t)take;
		s.end_of_stream = off + take == n;
		do {
			s.next_out = o->p + o->len;
			s.avail_out = (uint32_t)(chunk < o->cap - o->len ? chunk : o->cap - o->len);
			size_t before = s.avail_out;
			if (isal_deflate(&s) != COMP_OK)
				exit(1);
			o->len += before - s.avail_out;
		} while (s.avail_in || (s.end_of_stream && s.internal_state.state != ZSTATE_END));
		off += take;
		if (s.end_of_stream)
			break;
	}
	free(lb);
	trailer(o, crc32_gzip_refl(0, in, n), n);
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Inflate with zlib (multi-member) and compare: a wrong stream must not count. */
static void check(const unsigned char *in, size_t n, const struct out *o)
{
	unsigned char *back = malloc(n + 1);
	size_t got = 0;
	z_stream s = {0};
	int zr = Z_OK;

	s.next_in = o->p;
	s.avail_in = (uInt)o->len;
	inflateInit2(&s, 16 + 15);
	while (s.avail_in) {
		s.next_out = back + got;
		s.avail_out = (uInt)(n + 1 - got);
		zr = inflate(&s, Z_NO_FLUSH);
		got = n + 1 - s.avail_out;
		if (zr == Z_STREAM_END && s.avail_in)
			inflateReset(&s);
		else if (zr != Z_OK && zr != Z_STREAM_END)
			break;
	}
	inflateEnd(&s);
	if (zr != Z_STREAM_END || got != n || memcmp(back, in, n) != 0) {
		fprintf(stderr, "round trip failed\n");
		exit(1);
	}
	free(back);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(const unsigned char *, size_t, int, struct out *);
		int level;
	} cand[] = {
	    {"zlib -6 (docker push)", run_zlib, 6},
	    {"zlib -1", run_zlib, 1},
	    {"libdeflate -1", run_deflate, 1},
	    {"libdeflate -4", run_deflate, 4},
	    {"libdeflate -6", run_deflate, 6},
	    {"isal -1", run_isal, 1},
	    {"isal -2", run_isal, 2},
	    {"isal -3", run_isal, 3},
	};
	for (int a = 1; a < argc; a++) {
		int fd = open(argv[a], O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			perror(argv[a]);
			return 1;
		}
		size_t n = (size_t)st.st_size, got = 0;
		unsigned char *in = malloc(n ? n : 1);
		while (got < n) {
			ssize_t r = read(fd, in + got, n - got);
			if (r <= 0) {
				perror("read");
				return 1;
			}
			got += (size_t)r;
		}
		close(fd);
		struct out o = {.cap = n + n / 8 + (1 << 20)};
		o.p = malloc(o.cap);
		size_t base = 0;
		printf("%s: %.1f MB\n", argv[a], (double)n / 1e6);
		printf("  %-24s %10s %14s %10s\n", "candidate", "MB/s", "bytes", "vs zlib-6");
		for (size_t c = 0; c < sizeof(cand) / sizeof(cand[0]); c++) {
			o.len = 0;
			double t0 = cpu_now();
			cand[c].fn(in, n, cand[c].level, &o);
			double t = cpu_now() - t0;
			if (c == 0)
				base = o.len;
			check(in, n, &o);
			printf("  %-24s %10.1f %14zu %9.3fx\n", cand[c].name, (double)n / 1e6 / t,
			       o.len, (double)o.len / (double)base);
			fflush(stdout);
		}
		free(o.p);
		free(in);
	}
	return 0;
}
