/* Unit tests of core/digest: SHA-256 as OCI digests, streaming and files. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "digest.h"
#include "name.h"
#include "testutil.h"

#define D_EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D_ABC "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* FIPS 180-2 vectors. */
#define TWO_BLOCKS "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define D_TWO_BLOCKS "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define D_MILLION_A "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static void test_vectors(void **state)
{
	char out[DIGEST_LEN];
	char *million = tu_repeat('a', 1000000);

	memset(out, 'X', sizeof(out));
	assert_int_equal(digest_buffer("", 0, out), 0);
	assert_string_equal(out, D_EMPTY);
	assert_int_equal(strlen(out), DIGEST_LEN - 1);

	assert_int_equal(digest_buffer("abc", 3, out), 0);
	assert_string_equal(out, D_ABC);
	assert_true(name_digest_valid(out));

	assert_int_equal(digest_buffer(TWO_BLOCKS, strlen(TWO_BLOCKS), out), 0);
	assert_string_equal(out, D_TWO_BLOCKS);

	assert_int_equal(digest_buffer(million, 1000000, out), 0);
	assert_string_equal(out, D_MILLION_A);
	free(million);

	/* NUL bytes are data like any other. */
	assert_int_equal(digest_buffer("abc\0", 4, out), 0);
	assert_string_not_equal(out, D_ABC);
}

static void test_streaming(void **state)
{
	struct digest_ctx *ctx = digest_new();
	char out[DIGEST_LEN];
	char *million = tu_repeat('a', 1000000);

	assert_non_null(ctx);
	digest_update(ctx, "a", 1);
	digest_update(ctx, "", 0);
	digest_update(ctx, "bc", 2);
	digest_final(ctx, out);
	assert_string_equal(out, D_ABC);

	/* final resets the context: the next final over nothing is the empty digest. */
	digest_final(ctx, out);
	assert_string_equal(out, D_EMPTY);

	/* Odd chunk sizes across block boundaries. */
	for (size_t off = 0; off < 1000000;) {
		size_t n = 1 + (off * 7919) % 4099;
		if (n > 1000000 - off)
			n = 1000000 - off;
		digest_update(ctx, million + off, n);
		off += n;
	}
	digest_final(ctx, out);
	assert_string_equal(out, D_MILLION_A);
	digest_free(ctx);
	digest_free(NULL);
	free(million);
}

static void check_file(const char *dir, const char *name, const void *data, size_t len)
{
	char *path = tu_strdupf("%s/%s", dir, name);
	char want[DIGEST_LEN], got[DIGEST_LEN];

	tu_write_file(path, data, len, 0644);
	assert_int_equal(digest_buffer(data, len, want), 0);
	memset(got, 'X', sizeof(got));
	assert_int_equal(digest_file(path, got), 0);
	assert_string_equal(got, want);
	free(path);
}

static void test_file(void **state)
{
	char *dir = tu_mkdtemp();
	size_t big = (3u << 20) + 17; /* more than the 1 MiB read chunk, not a multiple */
	unsigned char *data = tu_malloc(big);
	char out[DIGEST_LEN];
	char *path;

	assert_non_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (unsigned char)(i * 31 + (i >> 11));
	check_file(dir, "empty", "", 0);
	check_file(dir, "abc", "abc", 3);
	check_file(dir, "chunk", data, 1u << 20);
	check_file(dir, "big", data, big);

	path = tu_strdupf("%s/abc", dir);
	assert_int_equal(digest_file(path, out), 0);
	assert_string_equal(out, D_ABC);
	free(path);

	/* Errors are -errno; out is untouched. */
	path = tu_strdupf("%s/missing", dir);
	memset(out, 'X', sizeof(out));
	assert_int_equal(digest_file(path, out), -ENOENT);
	assert_int_equal(out[0], 'X');
	free(path);
	assert_int_equal(digest_file(dir, out), -EISDIR);
	assert_int_equal(out[0], 'X');

	free(data);
	tu_rm_rf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),
	    cmocka_unit_test(test_streaming),
	    cmocka_unit_test(test_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
