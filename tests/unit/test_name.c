/* Unit tests of core/name: werf stage names, project names, digests. Cases come from
 * data/stages.txt, data/projects.txt and data/digests.txt; long inputs are generated here. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "name.h"
#include "testutil.h"

#define SIG "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"

static void check_stage(struct tu_case *c, const char *name, size_t name_len)
{
	char sig[NAME_SIGNATURE_LEN + 1];
	uint64_t ms = 0xdeadbeef;
	int r;

	memset(sig, '#', sizeof(sig));
	r = name_stage_parse(name, sig, &ms);
	if (strcmp(c->kind, "valid") == 0) {
		if (!tu_check_rc(c, "name_stage_parse", r, 0))
			return;
		tu_check(c, name_is_stage(name), "name_is_stage is false");
		tu_check_str(c, "signature", sig, c->f[2]);
		tu_check_int(c, "strlen(signature)", (long long)strlen(sig), NAME_SIGNATURE_LEN);
		tu_check(c, ms == strtoull(c->f[3], NULL, 10),
			 "unique ms: got %" PRIu64 ", want %s", ms, c->f[3]);
		/* ret_* may be NULL. */
		tu_check_rc(c, "parse(NULL, NULL)", name_stage_parse(name, NULL, NULL), 0);
		ms = 0;
		tu_check_rc(c, "parse(NULL, &ms)", name_stage_parse(name, NULL, &ms), 0);
		tu_check(c, ms == strtoull(c->f[3], NULL, 10), "unique ms with NULL signature");
		tu_check(c, name_len <= NAME_STAGE_MAX, "longer than NAME_STAGE_MAX");
	} else if (strcmp(c->kind, "invalid") == 0) {
		tu_check_rc(c, "name_stage_parse", r, -EINVAL);
		tu_check(c, !name_is_stage(name), "name_is_stage is true");
		/* Outputs are written only on success. */
		tu_check(c, sig[0] == '#' && sig[NAME_SIGNATURE_LEN] == '#', "signature written");
		tu_check(c, ms == 0xdeadbeef, "unique ms written");
	} else {
		tu_check(c, false, "unknown kind '%s'", c->kind);
	}
}

static void stage_line(struct tu_case *c, void *userdata)
{
	const char *name = c->f[1] ? c->f[1] : "";

	/* A NUL inside would only cut the C string short: the data has none. */
	if (!tu_check(c, strlen(name) == c->len[1], "NUL inside a name field"))
		return;
	check_stage(c, name, c->len[1]);
}

static void test_stage_data(void **state)
{
	size_t n = tu_each_line("stages.txt", stage_line, NULL);

	assert_true(n >= 40);
	tu_assert_all_passed();
}

static void test_stage_generated(void **state)
{
	struct tu_case c;
	char *s;

	assert_int_equal(name_stage_parse(NULL, NULL, NULL), -EINVAL);
	assert_false(name_is_stage(NULL));

	/* The longest stage name is NAME_STAGE_MAX. */
	s = tu_strdupf("%s-%s", SIG, "1234567890123456789");
	assert_int_equal(strlen(s), NAME_STAGE_MAX);
	assert_int_equal(name_stage_parse(s, NULL, NULL), 0);
	free(s);

	/* Every digit count 1..19 parses, 20 and more do not. */
	for (int digits = 1; digits <= 40; digits++) {
		char *num = tu_repeat('9', (size_t)digits);
		uint64_t ms = 0;
		tu_case_begin(&c, false, "%d nines", digits);
		num[0] = '1';
		s = tu_strdupf("%s-%s", SIG, num);
		tu_check_rc(&c, "parse", name_stage_parse(s, NULL, &ms),
			    digits <= 19 ? 0 : -EINVAL);
		if (digits <= 19)
			tu_check(&c, ms == strtoull(num, NULL, 10), "ms %" PRIu64, ms);
		tu_case_end(&c);
		free(num);
		free(s);
	}

	/* Huge names. */
	s = tu_repeat('a', 1 << 20);
	assert_int_equal(name_stage_parse(s, NULL, NULL), -EINVAL);
	s[NAME_SIGNATURE_LEN] = '-';
	assert_int_equal(name_stage_parse(s, NULL, NULL), -EINVAL);
	memset(s + NAME_SIGNATURE_LEN + 1, '7', (1 << 20) - NAME_SIGNATURE_LEN - 1);
	assert_int_equal(name_stage_parse(s, NULL, NULL), -EINVAL);
	free(s);

	/* Empty UNIQUEID. */
	s = tu_strdupf("%s-%s", SIG, "");
	assert_int_equal(name_stage_parse(s, NULL, NULL), -EINVAL);
	free(s);
	tu_assert_all_passed();
}

static void project_line(struct tu_case *c, void *userdata)
{
	const char *name = c->f[1] ? c->f[1] : "";
	bool want = strcmp(c->kind, "valid") == 0;

	tu_check(c, name_project_valid(name) == want, "name_project_valid: got %d, want %d", !want,
		 want);
}

static void test_project(void **state)
{
	char *s;

	assert_true(tu_each_line("projects.txt", project_line, NULL) >= 20);
	assert_false(name_project_valid(NULL));

	s = tu_repeat('p', NAME_PROJECT_MAX);
	assert_true(name_project_valid(s));
	s[NAME_PROJECT_MAX - 1] = '-';
	assert_false(name_project_valid(s));
	s[NAME_PROJECT_MAX - 2] = '-';
	s[NAME_PROJECT_MAX - 1] = '0';
	assert_true(name_project_valid(s));
	free(s);
	s = tu_repeat('p', NAME_PROJECT_MAX + 1);
	assert_false(name_project_valid(s));
	free(s);
	s = tu_repeat('p', 1 << 20);
	assert_false(name_project_valid(s));
	free(s);
	tu_assert_all_passed();
}

static void digest_line(struct tu_case *c, void *userdata)
{
	const char *text = c->f[1] ? c->f[1] : "";

	if (strcmp(c->kind, "digest") == 0 || strcmp(c->kind, "not-digest") == 0) {
		bool want = strcmp(c->kind, "digest") == 0;
		tu_check(c, name_digest_valid(text) == want, "name_digest_valid: got %d", !want);
	} else if (strcmp(c->kind, "hex64") == 0 || strcmp(c->kind, "not-hex64") == 0) {
		bool want = strcmp(c->kind, "hex64") == 0;
		tu_check(c, name_hex64_valid(text) == want, "name_hex64_valid: got %d", !want);
	} else {
		tu_check(c, false, "unknown kind '%s'", c->kind);
	}
}

static void test_digest_names(void **state)
{
	assert_true(tu_each_line("digests.txt", digest_line, NULL) >= 20);
	assert_false(name_digest_valid(NULL));
	assert_false(name_hex64_valid(NULL));
	tu_assert_all_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stage_data),
	    cmocka_unit_test(test_stage_generated),
	    cmocka_unit_test(test_project),
	    cmocka_unit_test(test_digest_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
