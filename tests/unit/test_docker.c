/* Unit tests of core/docker that need no daemon: docker_version_cmp, from
 * data/docker-versions.txt (each case checked both ways), and the API version negotiation
 * docker_choose_version, from data/docker-negotiate.txt. The Engine client itself is covered
 * by the integration suite against a real dockerd (local_read) and a fake Docker 29
 * (local_formats). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "docker.h"
#include "testutil.h"

static int sign(int v)
{
	return v < 0 ? -1 : v > 0 ? 1 : 0;
}

static void version_case(struct tu_case *c, void *userdata)
{
	size_t *n = userdata;
	int want;

	if (c->nf != 4 || !c->f[1] || !c->f[2] || !c->f[3] || strlen(c->f[3]) != 1 ||
	    !strchr("<=>", c->f[3][0]))
		fail_msg("%s: want KIND, A, B and one of < = >", c->where);
	want = c->f[3][0] == '<' ? -1 : c->f[3][0] == '>' ? 1 : 0;
	tu_check_int(c, "sign of cmp(A, B)", sign(docker_version_cmp(c->f[1], c->f[2])), want);
	tu_check_int(c, "sign of cmp(B, A)", sign(docker_version_cmp(c->f[2], c->f[1])), -want);
	tu_check_int(c, "cmp(A, A)", docker_version_cmp(c->f[1], c->f[1]), 0);
	(*n)++;
}

static void test_version_cmp(void **state)
{
	size_t n = 0, ran = tu_each_line("docker-versions.txt", version_case, &n);

	assert_int_equal(ran, n);
	assert_true(n >= 25);
	tu_assert_all_passed();
}

static void negotiate_case(struct tu_case *c, void *userdata)
{
	size_t *n = userdata;
	struct sf_err err = {0};
	char got[16] = "unset";
	int want_rc, r;

	if (c->nf != 4 || !c->f[3])
		fail_msg("%s: want KIND, API, MIN and WANT", c->where);
	want_rc = c->f[3][0] >= '0' && c->f[3][0] <= '9' ? 0 : tu_errno_parse(c->f[3]);
	r = docker_choose_version(c->f[1], c->f[2], got, sizeof(got), &err);
	tu_check_rc(c, "docker_choose_version", r, want_rc);
	if (want_rc == 0) {
		tu_check_str(c, "version used", got, c->f[3]);
	} else {
		tu_check_str(c, "ret untouched", got, "unset");
		tu_check(c, err.code == r && err.msg[0], "no reason in err");
	}
	(*n)++;
}

static void test_choose_version(void **state)
{
	size_t n = 0, ran = tu_each_line("docker-negotiate.txt", negotiate_case, &n);
	struct sf_err err = {0};
	char small[4];

	assert_int_equal(ran, n);
	assert_int_equal(n, 28); /* every case of the file ran */
	tu_assert_all_passed();
	/* The reason names both ranges, so a user knows which side to upgrade. */
	assert_int_equal(docker_choose_version("1.60", "1.53", small, sizeof(small), &err),
			 -EPROTO);
	assert_string_equal(err.msg, "Docker speaks API 1.53..1.60 and stagefs 1.24..1.52: no "
				     "version in common (a newer stagefs is needed)");
	assert_int_equal(docker_choose_version("1.52", "1.44", small, sizeof(small), &err),
			 -ENOBUFS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_version_cmp),
	    cmocka_unit_test(test_choose_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
