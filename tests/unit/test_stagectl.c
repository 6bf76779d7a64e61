/* Unit tests of stagectl's pure parts: werf.yaml's project and --to's default
 * (tools/defaults.c; data/stagectl/werf-yaml.txt, repo.txt) and the exact strings of sizes,
 * durations, times, the progress bar and the progress lines (tools/format.c;
 * data/stagectl/format.txt). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "defaults.h"
#include "format.h"
#include "testutil.h"

static void yaml_line(struct tu_case *c, void *userdata)
{
	char got[64];
	const char *text = c->f[1] ? c->f[1] : "";
	int r;

	(void)userdata;
	memset(got, '#', sizeof(got));
	r = defaults_project_parse(text, c->len[1], got, sizeof(got));
	if (strcmp(c->kind, "valid") == 0) {
		if (tu_check_rc(c, "defaults_project_parse", r, 0))
			tu_check_str(c, "project", got, c->f[2]);
	} else {
		tu_check_rc(c, "defaults_project_parse", r, tu_errno_parse(c->f[2]));
	}
}

static void test_werf_yaml(void **state)
{
	(void)state;
	assert_true(tu_each_line("stagectl/werf-yaml.txt", yaml_line, NULL) >= 40);
	tu_assert_all_passed();
}

/* The buffer's size bounds the name: a 9-byte name needs 10 bytes. */
static void test_werf_yaml_small_buffer(void **state)
{
	static const char text[] = "project: myproject\n";
	struct tu_case c;
	char buf[10];

	(void)state;
	tu_case_begin(&c, false, "%s:%d", __FILE__, __LINE__);
	tu_check_rc(&c, "9 bytes", defaults_project_parse(text, strlen(text), buf, 9), -EINVAL);
	tu_check_rc(&c, "10 bytes", defaults_project_parse(text, strlen(text), buf, 10), 0);
	tu_check_str(&c, "project", buf, "myproject");
	/* the length is what counts, not a NUL: text past len is not read */
	tu_check_rc(&c, "cut", defaults_project_parse(text, 9, buf, sizeof(buf)), -EINVAL);
	tu_check_rc(&c, "cut in the key", defaults_project_parse(text, 7, buf, sizeof(buf)),
		    -ENOENT);
	tu_case_end(&c);
	tu_assert_all_passed();
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char *p = tu_strdupf("%s/%s", dir, name);
	tu_write_file(p, text, strlen(text), 0644);
	free(p);
}

/* werf.yaml first, else werf.yml; the directory's files, not the current directory's. */
static void test_werf_yaml_files(void **state)
{
	char *dir = tu_mkdtemp(), buf[64] = "";
	struct tu_case c;

	(void)state;
	tu_case_begin(&c, false, "%s:%d", __FILE__, __LINE__);
	tu_check_rc(&c, "no file", defaults_project(dir, buf, sizeof(buf)), -ENOENT);
	write_text(dir, "werf.yml", "project: from-yml\n");
	tu_check_rc(&c, "werf.yml", defaults_project(dir, buf, sizeof(buf)), 0);
	tu_check_str(&c, "werf.yml's project", buf, "from-yml");
	write_text(dir, "werf.yaml", "configVersion: 1\n");
	tu_check_rc(&c, "werf.yaml without project", defaults_project(dir, buf, sizeof(buf)),
		    -ENOENT);
	write_text(dir, "werf.yaml", "project: from-yaml\n");
	tu_check_rc(&c, "werf.yaml", defaults_project(dir, buf, sizeof(buf)), 0);
	tu_check_str(&c, "werf.yaml's project", buf, "from-yaml");
	/* over 1 MiB: refused, not cut */
	char *big = tu_repeat('#', (1 << 20) + 1);
	big[0] = 'p';
	write_text(dir, "werf.yaml", big);
	free(big);
	tu_check_rc(&c, "over 1 MiB", defaults_project(dir, buf, sizeof(buf)), -EFBIG);
	char *sub = tu_strdupf("%s/werf.yaml", dir);
	unlink(sub);
	tu_check(&c, mkdir(sub, 0755) == 0, "mkdir werf.yaml");
	tu_check_rc(&c, "werf.yaml is a directory", defaults_project(dir, buf, sizeof(buf)),
		    -EISDIR);
	free(sub);
	tu_case_end(&c);
	tu_rm_rf(dir);
	free(dir);
	tu_assert_all_passed();
}

static void repo_line(struct tu_case *c, void *userdata)
{
	char buf[256];
	const char *got = defaults_repo(c->f[1], c->f[2], buf, sizeof(buf));

	(void)userdata;
	if (!c->f[3])
		tu_check(c, got == NULL, "got %s, want NULL", got);
	else
		tu_check_str(c, "repo", got ? got : "(null)", c->f[3]);
}

static void test_repo(void **state)
{
	struct tu_case c;
	char buf[24];

	(void)state;
	assert_true(tu_each_line("stagectl/repo.txt", repo_line, NULL) >= 9);
	/* "$CI_REGISTRY_IMAGE/stages" that does not fit: no default rather than a cut one */
	tu_case_begin(&c, false, "%s:%d", __FILE__, __LINE__);
	tu_check(&c, defaults_repo(NULL, "reg.example.com/g/p", buf, sizeof(buf)) == NULL,
		 "26 bytes into 24");
	tu_check_str(&c, "23 bytes and NUL",
		     defaults_repo(NULL, "reg.example.co/g", buf, sizeof(buf)),
		     "reg.example.co/g/stages");
	tu_case_end(&c);
	tu_assert_all_passed();
}

static unsigned long long ull(const char *s)
{
	return strtoull(s, NULL, 10);
}

static void format_line(struct tu_case *c, void *userdata)
{
	char buf[512];
	const char *want = c->f[c->nf - 1];

	(void)userdata;
	memset(buf, '#', sizeof(buf));
	if (strcmp(c->kind, "size") == 0)
		tu_check_str(c, "format_size", format_size(ull(c->f[1]), buf, sizeof(buf)), want);
	else if (strcmp(c->kind, "duration") == 0)
		tu_check_str(c, "format_duration",
			     format_duration(strtod(c->f[1], NULL), buf, sizeof(buf)), want);
	else if (strcmp(c->kind, "time") == 0)
		tu_check_str(c, "format_time_ms", format_time_ms(ull(c->f[1]), buf, sizeof(buf)),
			     want);
	else if (strcmp(c->kind, "bar") == 0)
		tu_check_str(c, "format_bar",
			     format_bar(buf, sizeof(buf), ull(c->f[1]), ull(c->f[2]), ull(c->f[3]),
					strtod(c->f[4], NULL), ull(c->f[5])),
			     want);
	else if (strcmp(c->kind, "line") == 0)
		tu_check_str(c, "format_stage_line",
			     format_stage_line(buf, sizeof(buf), ull(c->f[1]), ull(c->f[2]),
					       c->f[3], c->f[4], c->f[5]),
			     want);
	else
		tu_check(c, false, "unknown kind %s", c->kind);
}

static void test_format(void **state)
{
	(void)state;
	assert_true(tu_each_line("stagectl/format.txt", format_line, NULL) >= 40);
	tu_assert_all_passed();
}

/* A buffer too small is cut, NUL-terminated, never overrun. */
static void test_format_truncates(void **state)
{
	char buf[16];
	struct tu_case c;

	(void)state;
	tu_case_begin(&c, false, "%s:%d", __FILE__, __LINE__);
	memset(buf, 'Z', sizeof(buf));
	format_bar(buf, 8, 1, 2, 3, 4, 5);
	tu_check_str(&c, "bar in 8 bytes", buf, "[######");
	tu_check(&c, buf[8] == 'Z', "wrote past 8 bytes");
	format_stage_line(buf, 6, 1, 2, "synced", "p/s", NULL);
	tu_check_str(&c, "line in 6 bytes", buf, "    1");
	tu_check(&c, buf[5] == '\0', "NUL at byte 5");
	format_size(1536, buf, 4);
	tu_check_str(&c, "size in 4 bytes", buf, "1.5");
	tu_case_end(&c);
	tu_assert_all_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_werf_yaml),	    cmocka_unit_test(test_werf_yaml_small_buffer),
	    cmocka_unit_test(test_werf_yaml_files), cmocka_unit_test(test_repo),
	    cmocka_unit_test(test_format),	    cmocka_unit_test(test_format_truncates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
