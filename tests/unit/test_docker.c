/* Unit tests of core/docker that need no daemon: docker_version_cmp, from
 * data/docker-versions.txt (each case checked both ways). The Engine client itself is covered
 * by the integration suite against a real dockerd. */
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_version_cmp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
