/* Unit tests of core/http's pure helpers: Retry-After, same-origin (for dropping the
 * Authorization on redirects) and URL resolution (Location, Link). Cases come from
 * data/retry-after.txt, data/same-origin.txt and data/resolve.txt. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "http.h"
#include "testutil.h"

static void retry_line(struct tu_case *c, void *userdata)
{
	long got;

	if (c->nf < 2) {
		tu_check(c, false, "need KIND and VALUE");
		return;
	}
	got = http_parse_retry_after(c->f[1]);
	if (strcmp(c->kind, "int") == 0 && c->nf == 3)
		tu_check_int(c, "seconds", got, strtol(c->f[2], NULL, 10));
	else if (strcmp(c->kind, "none") == 0 && c->nf == 2)
		tu_check_int(c, "seconds", got, -1);
	else
		tu_check(c, false, "bad case line");
}

static void test_retry_after(void **state)
{
	assert_true(tu_each_line("retry-after.txt", retry_line, NULL) >= 35);
	tu_assert_all_passed();
}

static void test_retry_after_generated(void **state)
{
	char *s = tu_repeat('9', 1 << 20);

	/* A megabyte of digits: clamped, no overflow (UBSan would tell). */
	assert_int_equal(http_parse_retry_after(s), 100000);
	free(s);
	s = tu_repeat(' ', 1 << 16);
	assert_int_equal(http_parse_retry_after(s), -1);
	s[(1 << 16) - 1] = '3';
	assert_int_equal(http_parse_retry_after(s), 3);
	free(s);
}

static void same_line(struct tu_case *c, void *userdata)
{
	bool want = strcmp(c->kind, "same") == 0, got;

	if (c->nf != 3 || (!want && strcmp(c->kind, "different") != 0)) {
		tu_check(c, false, "bad case line");
		return;
	}
	got = http_same_origin(c->f[1], c->f[2]);
	tu_check(c, got == want, "http_same_origin: got %s", got ? "same" : "different");
	got = http_same_origin(c->f[2], c->f[1]);
	tu_check(c, got == want, "http_same_origin (swapped): got %s", got ? "same" : "different");
}

static void test_same_origin(void **state)
{
	assert_true(tu_each_line("same-origin.txt", same_line, NULL) >= 20);
	tu_assert_all_passed();
}

static void resolve_line(struct tu_case *c, void *userdata)
{
	char *got;

	if (c->nf < 3) {
		tu_check(c, false, "bad case line");
		return;
	}
	got = http_resolve_url(c->f[1], c->f[2]);
	if (strcmp(c->kind, "ok") == 0 && c->nf == 4)
		tu_check_str(c, "resolved", got, c->f[3]);
	else if (strcmp(c->kind, "null") == 0 && c->nf == 3)
		tu_check_str(c, "resolved", got, NULL);
	else
		tu_check(c, false, "bad case line");
	free(got);
}

static void test_resolve(void **state)
{
	assert_true(tu_each_line("resolve.txt", resolve_line, NULL) >= 14);
	tu_assert_all_passed();
}

static void test_resolve_long(void **state)
{
	char *path = tu_repeat('p', 100000), *ref = tu_strdupf("/%s", path);
	char *want = tu_strdupf("https://r.io/%s", path);
	char *got = http_resolve_url("https://r.io/v2/", ref);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
	free(want);
	free(ref);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_retry_after),	 cmocka_unit_test(test_retry_after_generated),
	    cmocka_unit_test(test_same_origin),	 cmocka_unit_test(test_resolve),
	    cmocka_unit_test(test_resolve_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
