/* Unit tests of core/addr: stages storage addresses. Cases come from data/addresses.txt;
 * over-long addresses are generated here. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "addr.h"
#include "testutil.h"

/* A struct addr that parse must leave alone on failure. */
static const struct addr sentinel = {.local = true,
				     .host = (char *)"sentinel",
				     .hostname = (char *)"s",
				     .port = 7,
				     .repo = (char *)"r"};

static void check_unchanged(struct tu_case *c, const struct addr *a)
{
	tu_check(c,
		 a->local == sentinel.local && a->host == sentinel.host &&
		     a->hostname == sentinel.hostname && a->port == sentinel.port &&
		     a->repo == sentinel.repo,
		 "ret written on failure");
}

static void check_one(struct tu_case *c, const char *text)
{
	struct addr a = sentinel;
	struct sf_err err = {0};
	int r = addr_parse(text, &a, &err);

	if (strcmp(c->kind, "invalid") == 0) {
		tu_check_rc(c, "addr_parse", r, -EINVAL);
		tu_check_rc(c, "err.code", err.code, -EINVAL);
		tu_check(c, err.msg[0] != '\0', "no error message");
		tu_check(c, strlen(err.msg) < sizeof(err.msg), "message not terminated");
		check_unchanged(c, &a);
		if (r == 0)
			addr_done(&a);
		return;
	}
	if (!tu_check_rc(c, "addr_parse", r, 0))
		return;
	tu_check_rc(c, "err.code", err.code, 0);
	if (strcmp(c->kind, "local") == 0) {
		tu_check(c, a.local, "local is false");
		tu_check(c, !a.host && !a.hostname && !a.repo && a.port == 0,
			 "strings set for :local");
		tu_check(c, !addr_is_loopback(&a), ":local is loopback");
	} else if (strcmp(c->kind, "valid") == 0 && c->nf == 7) {
		tu_check(c, !a.local, "local is true");
		tu_check_str(c, "host", a.host, c->f[2]);
		tu_check_str(c, "repo", a.repo, c->f[3]);
		tu_check_str(c, "hostname", a.hostname, c->f[4]);
		tu_check_int(c, "port", a.port, strtol(c->f[5], NULL, 10));
		tu_check_int(c, "loopback", addr_is_loopback(&a), strcmp(c->f[6], "yes") == 0);
	} else {
		tu_check(c, false, "bad case line (kind '%s', %zu fields)", c->kind, c->nf);
	}
	addr_done(&a);
	tu_check(c, !a.host && !a.hostname && !a.repo && !a.local && a.port == 0,
		 "addr_done does not reset");
}

static void address_line(struct tu_case *c, void *userdata)
{
	size_t *counts = userdata;

	if (!tu_check(c, c->nf >= 2 && c->f[1] && strlen(c->f[1]) == c->len[1],
		      "need an address without NUL"))
		return;
	check_one(c, c->f[1]);
	counts[strcmp(c->kind, "invalid") == 0]++;
}

static void test_data(void **state)
{
	size_t counts[2] = {0, 0};

	tu_each_line("addresses.txt", address_line, counts);
	assert_true(counts[0] >= 30);
	assert_true(counts[1] >= 60);
	tu_assert_all_passed();
}

static void test_null_and_empty(void **state)
{
	struct addr a = sentinel;
	struct sf_err err = {0};

	assert_int_equal(addr_parse(NULL, &a, &err), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "empty stages storage address");
	assert_ptr_equal(a.host, sentinel.host);
	assert_int_equal(addr_parse("", &a, NULL), -EINVAL); /* err is optional */
	assert_int_equal(addr_parse("reg.io/App", &a, NULL), -EINVAL);
	assert_ptr_equal(a.host, sentinel.host);
	addr_done(NULL);
	assert_false(addr_is_loopback(NULL));
}

static void test_length(void **state)
{
	struct addr a;
	struct tu_case c;
	char *tail, *text;

	/* 255 characters is the maximum; the check holds for any length beyond. */
	tail = tu_repeat('a', 250);
	text = tu_strdupf("r.io/%s", tail);
	assert_int_equal(strlen(text), 255);
	assert_int_equal(addr_parse(text, &a, NULL), 0);
	assert_string_equal(a.repo, tail);
	addr_done(&a);
	free(text);
	free(tail);

	for (size_t n = 251; n < 100000; n = n * 3 + 1) {
		struct sf_err err = {0};
		tu_case_begin(&c, false, "r.io/ + %zu x 'a'", n);
		tail = tu_repeat('a', n);
		text = tu_strdupf("r.io/%s", tail);
		a = sentinel;
		tu_check_rc(&c, "addr_parse", addr_parse(text, &a, &err), -EINVAL);
		tu_check_str(&c, "message", err.msg,
			     "stages storage address longer than 255 characters");
		check_unchanged(&c, &a);
		tu_case_end(&c);
		free(text);
		free(tail);
	}

	/* A long Hub name and a long host. */
	tail = tu_repeat('b', 300);
	a = sentinel;
	assert_int_equal(addr_parse(tail, &a, NULL), -EINVAL);
	assert_ptr_equal(a.host, sentinel.host);
	text = tu_strdupf("%s.io/app", tail);
	assert_int_equal(addr_parse(text, &a, NULL), -EINVAL);
	free(text);
	free(tail);

	/* Many components within the limit. */
	text = tu_strdupf("r.io/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z");
	assert_int_equal(addr_parse(text, &a, NULL), 0);
	assert_string_equal(a.repo, text + 5);
	addr_done(&a);
	free(text);
	tu_assert_all_passed();
}

static void test_error_messages(void **state)
{
	struct addr a;
	struct sf_err err = {0};

	assert_int_equal(addr_parse("https://reg.io/app", &a, &err), -EINVAL);
	assert_string_equal(err.msg, "'https://reg.io/app': write the address without a scheme");
	assert_int_equal(addr_parse("reg.io/app@sha256:00", &a, &err), -EINVAL);
	assert_string_equal(
	    err.msg, "'reg.io/app@sha256:00': a stages storage is a repository, not a digest");
	assert_int_equal(addr_parse("reg.io:0/app", &a, &err), -EINVAL);
	assert_string_equal(err.msg, "port out of range in address");
	assert_int_equal(addr_parse("re g.io/app", &a, &err), -EINVAL);
	assert_string_equal(err.msg, "bad character ' ' in registry host");
	assert_int_equal(addr_parse("reg.io/app:1", &a, &err), -EINVAL);
	assert_string_equal(err.msg, "'reg.io/app:1': bad repository path (lowercase letters, "
				     "digits and separators ._- only; no tag)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_data),
	    cmocka_unit_test(test_null_and_empty),
	    cmocka_unit_test(test_length),
	    cmocka_unit_test(test_error_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
