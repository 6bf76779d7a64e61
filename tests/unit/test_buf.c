/* Unit tests of core/buf: the capped, NUL-terminated byte buffer. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "testutil.h"

static void test_append_terminates(void **state)
{
	struct buf b = BUF_INIT(0);

	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_int_equal(b.len, 3);
	assert_non_null(b.data);
	assert_memory_equal(b.data, "abc\0", 4);
	assert_true(b.alloc >= b.len + 1);

	/* Binary data with NULs inside: counted in len, still terminated. */
	assert_int_equal(buf_append(&b, "\0x\0", 3), 0);
	assert_int_equal(b.len, 6);
	assert_memory_equal(b.data, "abc\0x\0\0", 7);
	buf_done(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	buf_done(&b); /* twice is fine */
}

static void test_append_empty(void **state)
{
	struct buf b = BUF_INIT(16);

	/* Zero bytes still give a terminated, empty string to parse. */
	assert_int_equal(buf_append(&b, NULL, 0), 0);
	assert_non_null(b.data);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	buf_done(&b);
}

static void test_growth(void **state)
{
	struct buf b = BUF_INIT(0);
	char *want = tu_malloc(3000 + 1);

	assert_non_null(want);
	for (int i = 0; i < 1000; i++) {
		char three[3] = {(char)('a' + i % 26), (char)('0' + i % 10), '|'};
		memcpy(want + 3 * i, three, 3);
		assert_int_equal(buf_append(&b, three, 3), 0);
		assert_int_equal(b.data[b.len], '\0');
	}
	want[3000] = '\0';
	assert_int_equal(b.len, 3000);
	assert_string_equal(b.data, want);
	free(want);
	buf_done(&b);
}

static void test_cap_exact(void **state)
{
	struct buf b = BUF_INIT(10);
	char *before;

	assert_int_equal(buf_append(&b, "hello", 5), 0);
	assert_int_equal(buf_append(&b, "world", 5), 0);
	assert_int_equal(b.len, 10); /* exactly the cap is allowed */
	before = tu_strdup(b.data);
	assert_non_null(before);

	assert_int_equal(buf_append(&b, "!", 1), -EFBIG);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "helloworld");
	assert_int_equal(b.data[10], '\0');

	/* A failing append of many bytes changes nothing either. */
	assert_int_equal(buf_append(&b, "0123456789abcdef", 16), -EFBIG);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, before);

	/* Zero bytes at the cap are fine. */
	assert_int_equal(buf_append(&b, "", 0), 0);
	assert_int_equal(b.len, 10);
	free(before);
	buf_done(&b);
}

static void test_cap_first_append(void **state)
{
	struct buf b = BUF_INIT(10);

	assert_int_equal(buf_append(&b, "0123456789a", 11), -EFBIG);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.alloc, 0);
	/* Overflowing sizes do not wrap around. */
	assert_int_equal(buf_append(&b, "x", SIZE_MAX), -EFBIG);
	assert_int_equal(buf_append(&b, "x", SIZE_MAX - 5), -EFBIG);
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_int_equal(buf_append(&b, "x", SIZE_MAX - 1), -EFBIG);
	assert_int_equal(buf_append(&b, "x", SIZE_MAX - 2), -EFBIG);
	assert_string_equal(b.data, "abc");
	assert_int_equal(b.len, 3);
	buf_done(&b);
}

static void test_default_cap(void **state)
{
	struct buf b = BUF_INIT(0);
	char *mib = tu_repeat('z', (size_t)1 << 20);

	/* cap 0 means 1 MiB. */
	assert_int_equal(buf_append(&b, mib, (size_t)1 << 20), 0);
	assert_int_equal(b.len, (size_t)1 << 20);
	assert_int_equal(buf_append(&b, "y", 1), -EFBIG);
	assert_int_equal(b.len, (size_t)1 << 20);
	assert_int_equal(b.data[b.len], '\0');
	assert_memory_equal(b.data, mib, (size_t)1 << 20);
	buf_done(&b);

	b = BUF_INIT(0);
	assert_int_equal(buf_append(&b, mib, ((size_t)1 << 20) - 1), 0);
	assert_int_equal(buf_append(&b, "yy", 2), -EFBIG);
	assert_int_equal(buf_append(&b, "y", 1), 0);
	assert_int_equal(b.len, (size_t)1 << 20);
	assert_int_equal(b.data[b.len - 1], 'y');
	buf_done(&b);
	free(mib);
}

static void test_steal(void **state)
{
	struct buf b = BUF_INIT(64);
	size_t len = 99;
	char *s;

	assert_int_equal(buf_append(&b, "stolen", 6), 0);
	s = buf_steal(&b, &len);
	assert_string_equal(s, "stolen");
	assert_int_equal(len, 6);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.alloc, 0);
	assert_int_equal(b.cap, 64); /* the cap stays */
	free(s);

	/* Stealing an empty buf gives an allocated "". */
	len = 99;
	s = buf_steal(&b, &len);
	assert_non_null(s);
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	free(s);

	/* NULL ret_len is allowed, and the buf is reusable afterwards. */
	assert_int_equal(buf_append(&b, "again", 5), 0);
	s = buf_steal(&b, NULL);
	assert_string_equal(s, "again");
	free(s);
	assert_int_equal(buf_append(&b, "more", 4), 0);
	assert_string_equal(b.data, "more");
	buf_done(&b);
}

/* Whole small files: exact bytes, the cap, an empty file, a missing one. */
static void test_read_file(void **state)
{
	char *dir = tu_mkdtemp(), *path = tu_strdupf("%s/f", dir), *data = NULL;
	char *big = tu_repeat('x', 70000), *empty = tu_strdupf("%s/e", dir);
	size_t len = 99;

	tu_write_file(path, big, 70000, 0600);
	assert_int_equal(buf_read_file_at(AT_FDCWD, path, 70000, &data, &len), 0);
	assert_int_equal(len, 70000);
	assert_memory_equal(data, big, 70000);
	assert_int_equal(data[len], '\0');
	free(data);
	data = NULL;
	assert_int_equal(buf_read_file_at(AT_FDCWD, path, 69999, &data, &len), -EFBIG);
	assert_null(data);
	tu_write_file(empty, "", 0, 0600);
	assert_int_equal(buf_read_file_at(AT_FDCWD, empty, 10, &data, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(data, "");
	free(data);
	assert_int_equal(buf_read_file_at(AT_FDCWD, "/nonexistent/x", 10, &data, &len), -ENOENT);
	tu_rm_rf(dir);
	free(dir);
	free(path);
	free(empty);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_terminates),
	    cmocka_unit_test(test_read_file),
	    cmocka_unit_test(test_append_empty),
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_cap_exact),
	    cmocka_unit_test(test_cap_first_append),
	    cmocka_unit_test(test_default_cap),
	    cmocka_unit_test(test_steal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
