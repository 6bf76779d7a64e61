/* Unit tests of core/registry's parsers: tag list pages (data/tags/: valid-*.json with the
 * expected tags one per line in .expect, invalid-*.json) and Link headers (data/links.txt). */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "registry.h"
#include "testutil.h"

#define SIG "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"

/* Tags one per line, with \n, \t and \\ escaped as in the .expect files. */
static char *render_tags(const struct strv *s)
{
	struct buf b = BUF_INIT(0);

	for (size_t i = 0; i < s->n; i++) {
		for (const char *p = s->v[i]; *p; p++) {
			const char *e = *p == '\n'   ? "\\n"
					: *p == '\t' ? "\\t"
					: *p == '\\' ? "\\\\"
						     : NULL;
			assert_int_equal(buf_append(&b, e ? e : p, e ? 2 : 1), 0);
		}
		assert_int_equal(buf_append(&b, "\n", 1), 0);
	}
	return buf_steal(&b, NULL);
}

static void tags_file(struct tu_case *c, void *userdata)
{
	struct strv tags = {0};
	struct sf_err err = {0};
	size_t len;
	char *data = tu_read_file(c->path, &len);
	int r = registry_parse_tags(data, len, &tags, &err);

	if (strcmp(c->kind, "valid") == 0) {
		char *exp_path = tu_strdupf("%.*s.expect", (int)(strlen(c->path) - 5), c->path);
		char *want = tu_read_file(exp_path, NULL);
		if (tu_check_rc(c, "registry_parse_tags", r, 0)) {
			char *got = render_tags(&tags);
			tu_check_str(c, "tags", got, want);
			free(got);
		} else {
			tu_check(c, false, "error: %s", err.msg);
		}
		free(want);
		free(exp_path);
	} else {
		tu_check_rc(c, "registry_parse_tags", r, -EINVAL);
		tu_check_rc(c, "err.code", err.code, -EINVAL);
		tu_check(c, err.msg[0] != '\0', "no error message");
	}
	strv_done(&tags);
	tu_check(c, tags.n == 0 && !tags.v, "strv_done does not reset");
	free(data);
}

static void test_tags_files(void **state)
{
	assert_true(tu_each_file("tags", ".json", tags_file, NULL) >= 30);
	tu_assert_all_passed();
}

static void test_tags_append(void **state)
{
	struct strv tags = {0};
	const char *p1 = "{\"name\":\"app\",\"tags\":[\"a\",\"b\"]}";
	const char *p2 = "{\"name\":\"app\",\"tags\":[\"c\"]}";
	const char *p3 = "{\"name\":\"app\",\"tags\":null}";

	/* Pages append to what is there. */
	assert_int_equal(registry_parse_tags(p1, strlen(p1), &tags, NULL), 0);
	assert_int_equal(registry_parse_tags(p3, strlen(p3), &tags, NULL), 0);
	assert_int_equal(registry_parse_tags(p2, strlen(p2), &tags, NULL), 0);
	assert_int_equal(tags.n, 3);
	assert_string_equal(tags.v[0], "a");
	assert_string_equal(tags.v[1], "b");
	assert_string_equal(tags.v[2], "c");
	strv_done(&tags);
	strv_done(&tags);
	strv_done(NULL);

	/* Only len bytes count. */
	assert_int_equal(registry_parse_tags(p1, strlen(p1) - 1, &tags, NULL), -EINVAL);
	strv_done(&tags);
	assert_int_equal(registry_parse_tags("{}garbage", 2, &tags, NULL), 0);
	assert_int_equal(tags.n, 0);
}

static void test_tags_many(void **state)
{
	struct buf b = BUF_INIT(64 << 20);
	struct strv tags = {0};
	const size_t n = 50000;
	char name[128];

	/* A big page (about the 4 MiB page cap is the HTTP layer's business). */
	assert_int_equal(buf_append(&b, "{\"tags\":[", 9), 0);
	for (size_t i = 0; i < n; i++) {
		int l = snprintf(name, sizeof(name), "%s\"%s-%zu\"", i ? "," : "", SIG, i);
		assert_int_equal(buf_append(&b, name, (size_t)l), 0);
	}
	assert_int_equal(buf_append(&b, "]}", 2), 0);
	assert_int_equal(registry_parse_tags(b.data, b.len, &tags, NULL), 0);
	assert_int_equal(tags.n, n);
	snprintf(name, sizeof(name), "%s-%zu", SIG, n - 1);
	assert_string_equal(tags.v[n - 1], name);
	strv_done(&tags);
	buf_done(&b);
}

static void test_tags_max(void **state)
{
	struct strv tags = {0};
	struct sf_err err = {0};
	const char *page = "{\"tags\":[\"last\",\"one-too-many\"]}";
	size_t cap = (REGISTRY_TAGS_MAX + 255) / 256 * 256;

	/* At REGISTRY_TAGS_MAX - 1 tags (NULL entries stand for them: strv_done frees NULL), one
	 * more fits and the next is refused. */
	tags.v = tu_calloc(cap, sizeof(*tags.v));
	assert_non_null(tags.v);
	tags.n = REGISTRY_TAGS_MAX - 1;
	assert_int_equal(registry_parse_tags(page, strlen(page), &tags, &err), -E2BIG);
	assert_int_equal(err.code, -E2BIG);
	assert_string_equal(err.msg, "more than 1000000 tags");
	assert_int_equal(tags.n, REGISTRY_TAGS_MAX);
	assert_string_equal(tags.v[REGISTRY_TAGS_MAX - 1], "last");
	strv_done(&tags);
}

static void test_tags_hostile(void **state)
{
	struct strv tags = {0};
	size_t n = 100000;
	char *doc = tu_malloc(2 * n + 32), *big;
	int len;

	/* Deeply nested. */
	assert_non_null(doc);
	len = snprintf(doc, 32, "{\"tags\":");
	memset(doc + len, '[', n);
	memset(doc + len + n, ']', n);
	memcpy(doc + len + 2 * n, "}", 2);
	assert_int_equal(registry_parse_tags(doc, strlen(doc), &tags, NULL), -EINVAL);
	strv_done(&tags);
	len = snprintf(doc, 32, "{\"x\":");
	memset(doc + len, '[', n);
	memset(doc + len + n, ']', n);
	memcpy(doc + len + 2 * n, "}", 2);
	assert_int_equal(registry_parse_tags(doc, strlen(doc), &tags, NULL), -EINVAL);
	free(doc);

	/* A megabyte-long tag is handed on as it is. */
	big = tu_repeat('t', 1 << 20);
	doc = tu_strdupf("{\"tags\":[\"%s\"]}", big);
	assert_int_equal(registry_parse_tags(doc, strlen(doc), &tags, NULL), 0);
	assert_int_equal(tags.n, 1);
	assert_string_equal(tags.v[0], big);
	strv_done(&tags);
	free(doc);
	free(big);

	/* Numbers beyond int64 anywhere make the page invalid JSON for jansson. */
	doc = tu_strdupf("{\"n\":99999999999999999999999,\"tags\":[\"a\"]}");
	assert_int_equal(registry_parse_tags(doc, strlen(doc), &tags, NULL), -EINVAL);
	strv_done(&tags);
	free(doc);
}

static void link_line(struct tu_case *c, void *userdata)
{
	char *got;

	if (c->nf < 2) {
		tu_check(c, false, "bad case line");
		return;
	}
	got = registry_parse_link_next(c->f[1]);
	if (strcmp(c->kind, "next") == 0 && c->nf == 3)
		tu_check_str(c, "next", got, c->f[2]);
	else if (strcmp(c->kind, "none") == 0 && c->nf == 2)
		tu_check_str(c, "next", got, NULL);
	else
		tu_check(c, false, "bad case line");
	free(got);
}

static void test_links(void **state)
{
	assert_true(tu_each_line("links.txt", link_line, NULL) >= 40);
	tu_assert_all_passed();
}

static void test_links_generated(void **state)
{
	char *path = tu_repeat('p', 1 << 20), *link, *got;
	struct buf b = BUF_INIT(16 << 20);

	/* A megabyte URL comes back whole. */
	link = tu_strdupf("</%s>; rel=\"next\"", path);
	got = registry_parse_link_next(link);
	assert_non_null(got);
	assert_int_equal(strlen(got), (1 << 20) + 1);
	assert_int_equal(got[0], '/');
	assert_memory_equal(got + 1, path, 1 << 20);
	free(got);
	free(link);
	free(path);

	/* Thousands of other links before the next one. */
	for (int i = 0; i < 20000; i++) {
		char one[64];
		int l = snprintf(one, sizeof(one), "</p%d>; rel=\"prev\", ", i);
		assert_int_equal(buf_append(&b, one, (size_t)l), 0);
	}
	assert_int_equal(buf_append(&b, "</n>; rel=\"next\"", 16), 0);
	got = registry_parse_link_next(b.data);
	assert_string_equal(got, "/n");
	free(got);
	buf_done(&b);

	/* Only separators. */
	path = tu_repeat(',', 1 << 20);
	assert_null(registry_parse_link_next(path));
	memset(path, '<', 1 << 20);
	assert_null(registry_parse_link_next(path));
	free(path);
}

/* The final PUT of an upload: digest= after '?' or '&', the session's query kept. */
static void test_upload_url(void **state)
{
	static const char *const cases[][2] = {
	    {"http://h/v2/r/blobs/uploads/u", "http://h/v2/r/blobs/uploads/u?digest=sha256:x"},
	    {"http://h/u?_state=abc", "http://h/u?_state=abc&digest=sha256:x"},
	    {"http://h/u?", "http://h/u?digest=sha256:x"},
	    {"http://h/u?a=1&", "http://h/u?a=1&digest=sha256:x"},
	    {"http://h/u?a=1#frag", "http://h/u?a=1&digest=sha256:x"},
	    {"https://s3/b/u?X-Amz=1&Sig=z", "https://s3/b/u?X-Amz=1&Sig=z&digest=sha256:x"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *u = registry_upload_url(cases[i][0], "sha256:x");
		assert_non_null(u);
		assert_string_equal(u, cases[i][1]);
		free(u);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tags_files),	    cmocka_unit_test(test_tags_append),
	    cmocka_unit_test(test_tags_many),	    cmocka_unit_test(test_tags_max),
	    cmocka_unit_test(test_tags_hostile),    cmocka_unit_test(test_links),
	    cmocka_unit_test(test_links_generated), cmocka_unit_test(test_upload_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
