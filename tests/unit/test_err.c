/* Unit tests of core/err: HTTP and curl code translation, messages, prefixing. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "err.h"
#include "testutil.h"

static void test_from_http(void **state)
{
	static const struct {
		long status;
		int want;
	} cases[] = {
	    {400, -EINVAL}, {401, -EACCES}, {403, -EACCES}, {404, -ENOENT}, {409, -EEXIST},
	    {413, -EFBIG},  {416, -ERANGE}, {429, -EAGAIN}, {503, -EAGAIN}, {500, -EIO},
	    {502, -EIO},    {504, -EIO},    {405, -EIO},    {418, -EIO},    {599, -EIO},
	    {600, -EIO},    {999, -EIO},    {200, 0},	    {201, 0},	    {204, 0},
	    {206, 0},	    {301, 0},	    {307, 0},	    {399, 0},	    {100, 0},
	    {0, 0},	    {-1, 0},	    {-404, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tu_case c;
		tu_case_begin(&c, false, "err_from_http(%ld)", cases[i].status);
		tu_check_rc(&c, "rc", err_from_http(cases[i].status), cases[i].want);
		tu_case_end(&c);
	}
	tu_assert_all_passed();
}

static void test_from_curl(void **state)
{
	static const struct {
		CURLcode rc;
		int want;
	} cases[] = {
	    {CURLE_OK, 0},
	    {CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT},
	    {CURLE_COULDNT_CONNECT, -EIO},
	    {CURLE_COULDNT_RESOLVE_HOST, -EIO},
	    {CURLE_COULDNT_RESOLVE_PROXY, -EIO},
	    {CURLE_SSL_CONNECT_ERROR, -EIO},
	    {CURLE_PEER_FAILED_VERIFICATION, -EIO},
	    {CURLE_RECV_ERROR, -EIO},
	    {CURLE_SEND_ERROR, -EIO},
	    {CURLE_GOT_NOTHING, -EIO},
	    {CURLE_PARTIAL_FILE, -EIO},
	    {CURLE_URL_MALFORMAT, -EIO},
	    {CURLE_TOO_MANY_REDIRECTS, -EIO},
	    {CURLE_HTTP2, -EIO},
	    /* Beyond the header's "everything else -> -EIO": the caller's own abort and OOM. */
	    {CURLE_OUT_OF_MEMORY, -ENOMEM},
	    {CURLE_ABORTED_BY_CALLBACK, -ECANCELED},
	    {CURLE_WRITE_ERROR, -ECANCELED},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tu_case c;
		tu_case_begin(&c, false, "err_from_curl(%d)", (int)cases[i].rc);
		tu_check_rc(&c, "rc", err_from_curl(cases[i].rc), cases[i].want);
		tu_case_end(&c);
	}
	tu_assert_all_passed();
}

static void test_set(void **state)
{
	struct sf_err e = {0};
	char *long_arg = tu_repeat('m', 2000);

	assert_int_equal(err_set(NULL, -EIO, "ignored %d", 1), -EIO);
	assert_int_equal(err_set(&e, -ENOENT, "tag %s not found", "x"), -ENOENT);
	assert_int_equal(e.code, -ENOENT);
	assert_string_equal(e.msg, "tag x not found");
	/* Later calls overwrite. */
	assert_int_equal(err_set(&e, -EACCES, "denied"), -EACCES);
	assert_int_equal(e.code, -EACCES);
	assert_string_equal(e.msg, "denied");
	/* Truncated, NUL-terminated, within size. */
	assert_int_equal(err_set(&e, -EINVAL, "%s", long_arg), -EINVAL);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	assert_memory_equal(e.msg, long_arg, sizeof(e.msg) - 1);
	free(long_arg);
}

static void test_prefix(void **state)
{
	struct sf_err e = {0};

	err_prefix(NULL, "nothing %d", 1); /* no crash */

	err_set(&e, -ENOENT, "not found");
	err_prefix(&e, "GET %s", "/v2/app/manifests/x");
	assert_string_equal(e.msg, "GET /v2/app/manifests/x: not found");
	assert_int_equal(e.code, -ENOENT); /* the code is kept */

	err_prefix(&e, "listing");
	assert_string_equal(e.msg, "listing: GET /v2/app/manifests/x: not found");

	/* No message yet. */
	e = (struct sf_err){0};
	err_prefix(&e, "token server");
	assert_string_equal(e.msg, "token server: failed");
	assert_int_equal(e.code, 0);

	/* Empty prefix. */
	err_set(&e, -EIO, "boom");
	err_prefix(&e, "%s", "");
	assert_string_equal(e.msg, ": boom");
}

static void test_prefix_truncation(void **state)
{
	struct sf_err e;
	char *a = tu_repeat('a', 1000), *b = tu_repeat('b', 600);
	char want[sizeof(e.msg)];

	/* A long prefix is cut to 255 bytes (the head buffer), then ": " and the old message. */
	memset(&e, 0x55, sizeof(e));
	err_set(&e, -EIO, "old");
	err_prefix(&e, "%s", a);
	assert_int_equal(strlen(e.msg), 255 + 2 + 3);
	assert_memory_equal(e.msg, a, 255);
	assert_string_equal(e.msg + 255, ": old");

	/* A full old message: the result stays within msg and NUL-terminated. */
	memset(&e, 0x55, sizeof(e));
	err_set(&e, -EIO, "%s", b);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	err_prefix(&e, "p");
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	assert_int_equal(e.msg[sizeof(e.msg) - 1], '\0');
	memcpy(want, "p: ", 3);
	memset(want + 3, 'b', sizeof(want) - 4);
	want[sizeof(want) - 1] = '\0';
	assert_string_equal(e.msg, want);

	/* Both long. */
	err_set(&e, -EIO, "%s", b);
	err_prefix(&e, "%s", a);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	assert_memory_equal(e.msg, a, 255);
	assert_memory_equal(e.msg + 255, ": ", 2);
	assert_memory_equal(e.msg + 257, b, sizeof(e.msg) - 1 - 257);

	/* Prefixing again and again stays bounded. */
	for (int i = 0; i < 100; i++)
		err_prefix(&e, "level %d", i);
	assert_int_equal(strlen(e.msg), sizeof(e.msg) - 1);
	assert_int_equal(strncmp(e.msg, "level 99: level 98: ", 20), 0);
	free(a);
	free(b);
}

static void test_msg(void **state)
{
	struct sf_err e = {0};

	assert_string_equal(err_msg(NULL, -ENOENT), strerror(ENOENT));
	assert_string_equal(err_msg(&e, -EACCES), strerror(EACCES));
	assert_string_equal(err_msg(&e, EACCES), strerror(EACCES));
	err_set(&e, -EIO, "registry down");
	assert_string_equal(err_msg(&e, -EIO), "registry down");
	assert_string_equal(err_msg(&e, -ENOENT), "registry down");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_from_http),
	    cmocka_unit_test(test_from_curl),
	    cmocka_unit_test(test_set),
	    cmocka_unit_test(test_prefix),
	    cmocka_unit_test(test_prefix_truncation),
	    cmocka_unit_test(test_msg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
