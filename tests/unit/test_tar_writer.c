/* Unit tests of core/tar_writer: a tar archive planned from known-size entries, read at offsets.
 *
 * One plan mixes every source (memory, a borrowed fd at an offset, a file opened by path, a
 * folder) and every size class around the 512-byte block (0, 1, 511, 512, 513, 100 KiB) and
 * names of 100, 101, 150 and 300 bytes. Its archive must have the exact planned size, read the
 * same in one call and at odd offsets and lengths, and read back identically with the project's
 * own reader (core/tar.h) and with GNU tar (`tar -tv`, `tar -xO`). Also: the empty plan, bad
 * names, a file source that shrank (-EIO) or that is not readable, the pax size record of a
 * file over 8 GiB, determinism.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "tar.h"
#include "tar_writer.h"
#include "testutil.h"

struct want {
	char *name;
	char *data;
	size_t len;
	bool dir;
};

struct fixture {
	char *dir;
	struct tar_plan *plan;
	int fd; /* borrowed by the plan */
	struct want w[16];
	size_t n;
	char *archive; /* the whole archive, read in one call */
	uint64_t size;
};

static char *pattern(size_t len, unsigned seed)
{
	char *s = tu_malloc(len + 1);
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		s[i] = (char)(x >> 16);
	}
	s[len] = '\0';
	return s;
}

static void want_add(struct fixture *f, const char *name, char *data, size_t len, bool dir)
{
	assert_true(f->n < 16);
	f->w[f->n++] = (struct want){tu_strdup(name), data, len, dir};
}

/* The expected archive size: per entry [pax header + records] + header + padded data. */
static uint64_t expected_size(const struct fixture *f)
{
	uint64_t total = 1024;

	for (size_t i = 0; i < f->n; i++) {
		size_t nl = strlen(f->w[i].name);
		total += 512 + (f->w[i].len + 511) / 512 * 512;
		if (nl > 100) {
			/* "LEN path=NAME\n" */
			size_t rec = 1 + 5 + nl + 1, digits = rec + 3 >= 1000 ? 4 : 3;
			rec += digits;
			total += 512 + (rec + 511) / 512 * 512;
		}
	}
	return total;
}

static int setup(void **state)
{
	struct fixture *f = tu_calloc(1, sizeof(*f));
	struct sf_err err = {0};
	char *path, *name;

	f->dir = tu_mkdtemp();
	assert_int_equal(tar_plan_new(1700000000, &f->plan), 0);

	want_add(f, "manifest.json", tu_strdup("[{\"Config\":\"c.json\"}]"), 21, false);
	assert_int_equal(tar_plan_add_mem(f->plan, "manifest.json", f->w[0].data, 21, &err), 0);
	want_add(f, "empty", tu_strdup(""), 0, false);
	assert_int_equal(tar_plan_add_mem(f->plan, "empty", "", 0, &err), 0);
	assert_int_equal(tar_plan_add_dir(f->plan, "blobs", &err), 0);
	want_add(f, "blobs", tu_strdup(""), 0, true);

	/* One file holds several entries at offsets: a borrowed fd. */
	static const size_t sizes[] = {1, 511, 512, 513};
	size_t total = 0;
	for (size_t i = 0; i < 4; i++)
		total += sizes[i];
	char *big = pattern(total + 7, 1);
	path = tu_strdupf("%s/shared", f->dir);
	tu_write_file(path, big, total + 7, 0644);
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(f->fd >= 0);
	free(path);
	size_t off = 7;
	for (size_t i = 0; i < 4; i++) {
		name = tu_strdupf("blobs/fd-%zu", sizes[i]);
		assert_int_equal(tar_plan_add_fd(f->plan, name, f->fd, off, sizes[i], &err), 0);
		char *copy = tu_malloc(sizes[i]);
		memcpy(copy, big + off, sizes[i]);
		want_add(f, name, copy, sizes[i], false);
		free(name);
		off += sizes[i];
	}
	free(big);

	/* Files by path, with names at and past the 100-byte ustar limit. */
	static const size_t nlens[] = {100, 101, 150, 300};
	for (size_t i = 0; i < 4; i++) {
		size_t len = i == 3 ? 100 * 1024 : 1000 + i;
		char *data = pattern(len, 10 + (unsigned)i), *fname = tu_strdupf("f%zu", i);
		path = tu_strdupf("%s/%s", f->dir, fname);
		tu_write_file(path, data, len, 0600);
		char *tail = tu_repeat((char)('a' + i), nlens[i] - 6);
		name = tu_strdupf("dir/%s%zu", tail, i); /* 4 + n-6 + 1 = n-1 ... plus 1 below */
		char *full = tu_strdupf("%sx", name);
		assert_int_equal(strlen(full), nlens[i]);
		int dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		assert_true(dfd >= 0);
		assert_int_equal(tar_plan_add_file_at(f->plan, full, dfd, fname, &err), 0);
		close(dfd);
		want_add(f, full, data, len, false);
		free(tail);
		free(name);
		free(full);
		free(path);
		free(fname);
	}

	f->size = tar_plan_size(f->plan);
	f->archive = tu_malloc(f->size + 10);
	assert_int_equal(tar_plan_read_at(f->plan, 0, f->archive, f->size + 10), (ssize_t)f->size);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tar_plan_free(f->plan);
	close(f->fd);
	for (size_t i = 0; i < f->n; i++) {
		free(f->w[i].name);
		free(f->w[i].data);
	}
	tu_rm_rf(f->dir);
	free(f->dir);
	free(f->archive);
	free(f);
	return 0;
}

static void test_exact_size(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->size, expected_size(f));
	assert_int_equal(f->size % 512, 0);
	/* It ends with two zero blocks. */
	for (size_t i = 0; i < 1024; i++)
		assert_int_equal(f->archive[f->size - 1024 + i], 0);
	/* Walk the headers: each entry's data is padded with zero bytes to the block. */
	uint64_t off = 0;
	size_t headers = 0;
	while (off < f->size - 1024) {
		const char *h = f->archive + off;
		uint64_t size = strtoull(h + 124, NULL, 8), pad = (512 - size % 512) % 512;
		assert_memory_equal(h + 257,
				    "ustar\0"
				    "00",
				    8);
		off += 512 + size;
		for (uint64_t i = 0; i < pad; i++)
			assert_int_equal(f->archive[off + i], 0);
		off += pad;
		headers++;
	}
	assert_int_equal(off, f->size - 1024);
	assert_int_equal(headers, f->n + 3); /* three pax headers for the long names */
}

/* ---- read back with core/tar ------------------------------------------------------------ */

struct got {
	struct fixture *f;
	size_t i; /* regular files seen */
	char *data;
	size_t len;
	char name[4200];
	uint64_t size;
};

static int got_begin(void *ud, const char *name, uint64_t size)
{
	struct got *g = ud;
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->size = size;
	g->len = 0;
	g->data = tu_realloc(g->data, size + 1);
	return 0;
}

static int got_data(void *ud, const void *data, size_t len)
{
	struct got *g = ud;
	assert_true(g->len + len <= g->size);
	memcpy(g->data + g->len, data, len);
	g->len += len;
	return 0;
}

static int got_end(void *ud)
{
	struct got *g = ud;
	struct fixture *f = g->f;

	while (g->i < f->n && f->w[g->i].dir)
		g->i++; /* the reader reports regular files only */
	assert_true(g->i < f->n);
	assert_string_equal(g->name, f->w[g->i].name);
	assert_int_equal(g->size, f->w[g->i].len);
	assert_int_equal(g->len, f->w[g->i].len);
	assert_memory_equal(g->data, f->w[g->i].data, g->len);
	g->i++;
	return 0;
}

static void test_own_reader(void **state)
{
	struct fixture *f = *state;
	struct tar_callbacks cb = {.file_begin = got_begin, .file_data = got_data, .file_end = got_end};
	struct got g = {.f = f};
	struct sf_err err = {0};
	struct tar_reader *t = tar_reader_new(&cb, &g);

	assert_non_null(t);
	assert_int_equal(tar_feed(t, f->archive, f->size, &err), 0);
	assert_int_equal(tar_finish(t, &err), 0);
	assert_int_equal(g.i, f->n);
	tar_reader_free(t);
	free(g.data);
}

/* ---- read back with GNU tar ------------------------------------------------------------- */

/* Run a shell command, collect stdout (and the exit status). */
static char *run(const char *cmd, size_t *ret_len, int *ret_status)
{
	FILE *p = popen(cmd, "re");
	char *out = NULL;
	size_t len = 0, n;
	char chunk[4096];

	assert_non_null(p);
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0) {
		out = tu_realloc(out, len + n + 1);
		memcpy(out + len, chunk, n);
		len += n;
	}
	out = tu_realloc(out, len + 1);
	out[len] = '\0';
	int st = pclose(p);
	*ret_status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	if (ret_len)
		*ret_len = len;
	return out;
}

static void test_gnu_tar(void **state)
{
	struct fixture *f = *state;
	char *path = tu_strdupf("%s/a.tar", f->dir), *cmd, *out, *line, *next;
	int status;
	size_t len;

	tu_write_file(path, f->archive, f->size, 0644);
	/* Listing: nothing on stderr (no "lone zero block" or unknown-header warnings). */
	cmd = tu_strdupf("TZ=UTC LC_ALL=C tar --numeric-owner -tvf '%s' 2>&1", path);
	out = run(cmd, NULL, &status);
	assert_int_equal(status, 0);
	line = out;
	for (size_t i = 0; i < f->n; i++, line = next) {
		char mode[16], owner[32], date[16], tm[16];
		unsigned long long size;
		int name_at = 0;
		next = strchr(line, '\n');
		assert_non_null(next);
		*next++ = '\0';
		assert_int_equal(sscanf(line, "%15s %31s %llu %15s %15s %n", mode, owner, &size,
					date, tm, &name_at),
				 5);
		assert_string_equal(mode, f->w[i].dir ? "drwxr-xr-x" : "-rw-r--r--");
		assert_string_equal(owner, "0/0");
		assert_int_equal(size, f->w[i].len);
		assert_string_equal(date, "2023-11-14");
		assert_string_equal(tm, "22:13");
		char *want_name = tu_strdupf("%s%s", f->w[i].name, f->w[i].dir ? "/" : "");
		assert_string_equal(line + name_at, want_name);
		free(want_name);
	}
	assert_string_equal(line, "");
	free(out);
	free(cmd);
	/* Contents, one file at a time. */
	for (size_t i = 0; i < f->n; i++) {
		if (f->w[i].dir)
			continue;
		cmd = tu_strdupf("tar -xOf '%s' '%s'", path, f->w[i].name);
		out = run(cmd, &len, &status);
		assert_int_equal(status, 0);
		assert_int_equal(len, f->w[i].len);
		assert_memory_equal(out, f->w[i].data, len);
		free(out);
		free(cmd);
	}
	free(path);
}

/* ---- reads at any offset ---------------------------------------------------------------- */

static void test_read_at_offsets(void **state)
{
	struct fixture *f = *state;
	static const size_t lens[] = {1, 2, 7, 100, 511, 512, 513, 1023, 1024, 4097, 70000};
	char *buf = tu_malloc(70000);

	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		size_t len = lens[li];
		/* Offsets stepping by a prime, and every offset around each block boundary. */
		for (uint64_t off = 0; off < f->size + 3;
		     off += (off % 512 < 3 || off % 512 > 508) ? 1 : 251) {
			ssize_t n = tar_plan_read_at(f->plan, off, buf, len);
			uint64_t want = off >= f->size	      ? 0
					: f->size - off < len ? f->size - off
							      : len;
			assert_int_equal(n, (ssize_t)want);
			if (want)
				assert_memory_equal(buf, f->archive + off, want);
		}
	}
	/* Sequential reads with an odd chunk give the one-call stream. */
	char *seq = tu_malloc(f->size);
	uint64_t pos = 0;
	ssize_t n;
	while ((n = tar_plan_read_at(f->plan, pos, seq + pos, 333)) > 0)
		pos += (uint64_t)n;
	assert_int_equal(n, 0);
	assert_int_equal(pos, f->size);
	assert_memory_equal(seq, f->archive, f->size);
	free(seq);
	free(buf);
}

static void test_deterministic(void **state)
{
	struct fixture *f = *state;
	struct tar_plan *p;
	struct sf_err err = {0};
	char a[2048], b[2048];

	/* The same entry twice gives the same bytes; another mtime changes only the header. */
	for (int k = 0; k < 2; k++) {
		assert_int_equal(tar_plan_new(1700000000, &p), 0);
		assert_int_equal(tar_plan_add_mem(p, "manifest.json", f->w[0].data, 21, &err), 0);
		assert_int_equal(tar_plan_size(p), 2048);
		assert_int_equal(tar_plan_read_at(p, 0, k ? b : a, 2048), 2048);
		tar_plan_free(p);
	}
	assert_memory_equal(a, b, 2048);
	assert_memory_equal(a, f->archive, 1024);
	/* The header checksum: the byte sum with the field as spaces, as "%06o\0 " at 148. */
	unsigned sum = 0;
	char field[8];
	for (size_t i = 0; i < 512; i++)
		sum += i >= 148 && i < 156 ? ' ' : (unsigned char)a[i];
	snprintf(field, sizeof(field), "%06o", sum);
	assert_memory_equal(a + 148, field, 7);
	assert_int_equal(a[155], ' ');
}

static void test_empty_plan(void **state)
{
	struct tar_plan *p;
	char buf[1100];

	assert_int_equal(tar_plan_new(0, &p), 0);
	assert_int_equal(tar_plan_size(p), 1024);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(tar_plan_read_at(p, 0, buf, sizeof(buf)), 1024);
	for (size_t i = 0; i < 1024; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(buf[1024], 'x');
	assert_int_equal(tar_plan_read_at(p, 1024, buf, 10), 0);
	assert_int_equal(tar_plan_read_at(p, 5000, buf, 10), 0);
	tar_plan_free(p);
	tar_plan_free(NULL);
}

static void test_bad_names(void **state)
{
	struct tar_plan *p;
	struct sf_err err = {0};
	char *huge = tu_repeat('n', 4097);

	assert_int_equal(tar_plan_new(0, &p), 0);
	assert_int_equal(tar_plan_add_mem(p, "", "x", 1, &err), -EINVAL);
	assert_int_equal(tar_plan_add_mem(p, NULL, "x", 1, &err), -EINVAL);
	assert_int_equal(tar_plan_add_mem(p, "/etc/passwd", "x", 1, &err), -EINVAL);
	assert_int_equal(tar_plan_add_mem(p, "a/../../b", "x", 1, &err), -EINVAL);
	assert_int_equal(tar_plan_add_mem(p, "..", "x", 1, &err), -EINVAL);
	assert_int_equal(tar_plan_add_dir(p, huge, &err), -EINVAL);
	huge[4095] = '\0'; /* 4096 with the slash */
	assert_int_equal(tar_plan_add_dir(p, huge, &err), 0);
	assert_int_equal(tar_plan_add_mem(p, "a/..b/c..", "x", 1, &err), 0);
	assert_int_equal(tar_plan_add_file_at(p, "x", AT_FDCWD, "/nonexistent/file", &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/file"));
	assert_int_equal(tar_plan_add_file_at(p, "x", AT_FDCWD, "/", &err), -EINVAL);
	/* Failed adds left nothing behind: a 4096-byte name (pax) + "x" (1 block + data). */
	assert_int_equal(tar_plan_size(p), 512 + 4608 + 512 + 512 + 512 + 1024);
	tar_plan_free(p);
	free(huge);
}

static void test_failing_source(void **state)
{
	struct fixture *f = *state;
	struct tar_plan *p;
	struct sf_err err = {0};
	char *path = tu_strdupf("%s/shrinks", f->dir), buf[4096];
	char *data = pattern(3000, 3);
	int fd;

	tu_write_file(path, data, 3000, 0644);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(tar_plan_new(0, &p), 0);
	assert_int_equal(tar_plan_add_fd(p, "layer", fd, 0, 3000, &err), 0);
	assert_int_equal(tar_plan_size(p), 512 + 3072 + 1024);
	/* The header alone still reads; data past the new end is -EIO. */
	assert_int_equal(ftruncate(fd, 1000), 0);
	assert_int_equal(tar_plan_read_at(p, 0, buf, 512), 512);
	assert_int_equal(tar_plan_read_at(p, 512, buf, 1000), 1000);
	assert_memory_equal(buf, data, 1000);
	assert_int_equal(tar_plan_read_at(p, 0, buf, sizeof(buf)), -EIO);
	assert_int_equal(tar_plan_read_at(p, 1600, buf, 1), -EIO);
	/* Padding after the data is not read from the file. */
	assert_int_equal(tar_plan_read_at(p, 512 + 3000, buf, 72), 72);
	tar_plan_free(p);
	close(fd);

	/* A write-only fd: pread's own errno (EBADF) comes back. */
	fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(tar_plan_new(0, &p), 0);
	assert_int_equal(tar_plan_add_fd(p, "layer", fd, 0, 10, &err), 0);
	assert_int_equal(tar_plan_read_at(p, 0, buf, sizeof(buf)), -EBADF);
	tar_plan_free(p);
	close(fd);
	free(data);
	free(path);
}

/* A file of 8 GiB or more: a pax "size" record, and base-256 in the ustar size field. */
static void test_huge_size(void **state)
{
	struct fixture *f = *state;
	struct tar_plan *p;
	struct sf_err err = {0};
	char *path = tu_strdupf("%s/sparse", f->dir), buf[1536];
	const uint64_t size = (8ULL << 30) + 5;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(tar_plan_new(0, &p), 0);
	assert_int_equal(tar_plan_add_file_at(p, "big", AT_FDCWD, path, &err), 0);
	assert_int_equal(tar_plan_size(p), 512 + 512 + 512 + (size + 511) / 512 * 512 + 1024);
	assert_int_equal(tar_plan_read_at(p, 0, buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(buf[156], 'x');
	assert_string_equal(buf + 512, "19 size=8589934597\n");
	assert_int_equal(buf[1024 + 156], '0');
	assert_int_equal((unsigned char)buf[1024 + 124], 0x80);
	assert_memory_equal(buf + 1024 + 124 + 7, "\x02\x00\x00\x00\x05", 5);
	/* The reader takes the size from the pax record. */
	struct got g = {0};
	struct tar_callbacks cb = {.file_begin = got_begin};
	struct tar_reader *t = tar_reader_new(&cb, &g);
	assert_int_equal(tar_feed(t, buf, sizeof(buf), &err), 0);
	assert_string_equal(g.name, "big");
	assert_int_equal(g.size, size);
	tar_reader_free(t);
	free(g.data);
	tar_plan_free(p);
	close(fd);
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_exact_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_own_reader, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_gnu_tar, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_at_offsets, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deterministic, setup, teardown),
	    cmocka_unit_test(test_empty_plan),
	    cmocka_unit_test(test_bad_names),
	    cmocka_unit_test_setup_teardown(test_failing_source, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_huge_size, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
