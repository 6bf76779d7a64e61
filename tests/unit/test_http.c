/* Unit tests of core/http's pure helpers: header lines combined into fields (data/headers.txt),
 * the parsers of the fields we read (Retry-After, HTTP-date, Content-Length, Content-Range,
 * Content-Type, Docker-Content-Digest: data/retry-after.txt, dates.txt, content-length.txt,
 * content-range.txt, media-types.txt, digest-headers.txt), same-origin (for dropping the
 * Authorization on redirects) and URL resolution (Location, Link: data/same-origin.txt,
 * data/resolve.txt). */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include <time.h>

#include "http.h"
#include "testutil.h"

static void retry_line(struct tu_case *c, void *userdata)
{
	long got;

	if (c->nf < 2) {
		tu_check(c, false, "need KIND and VALUE");
		return;
	}
	got = http_parse_retry_after_at(c->f[1], 1445412480);
	if (strcmp(c->kind, "int") == 0 && c->nf == 3)
		tu_check_int(c, "seconds", got, strtol(c->f[2], NULL, 10));
	else if (strcmp(c->kind, "none") == 0 && c->nf == 2)
		tu_check_int(c, "seconds", got, -1);
	else
		tu_check(c, false, "bad case line");
}

static void test_retry_after(void **state)
{
	assert_true(tu_each_line("retry-after.txt", retry_line, NULL) >= 50);
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
	/* The clock form: a date an hour ahead of the real clock. */
	{
		char date[64];
		time_t t = time(NULL) + 3600;
		struct tm tm;
		long got;
		gmtime_r(&t, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		got = http_parse_retry_after(date);
		assert_true(got >= 3598 && got <= 3600);
	}
}

static void date_line(struct tu_case *c, void *userdata)
{
	time_t got = 12345;
	int r;

	if (c->nf < 2) {
		tu_check(c, false, "bad case line");
		return;
	}
	r = http_parse_date(c->f[1], &got);
	if (strcmp(c->kind, "ok") == 0 && c->nf == 3) {
		if (tu_check_rc(c, "http_parse_date", r, 0))
			tu_check_int(c, "seconds", got, strtoll(c->f[2], NULL, 10));
	} else if (strcmp(c->kind, "bad") == 0 && c->nf == 2) {
		tu_check_rc(c, "http_parse_date", r, -EINVAL);
		tu_check_int(c, "untouched on failure", got, 12345);
	} else {
		tu_check(c, false, "bad case line");
	}
}

static void test_dates(void **state)
{
	assert_true(tu_each_line("dates.txt", date_line, NULL) >= 45);
	tu_assert_all_passed();
}

static void length_line(struct tu_case *c, void *userdata)
{
	int64_t got;

	if (c->nf < 2) {
		tu_check(c, false, "bad case line");
		return;
	}
	got = http_parse_content_length(c->f[1]);
	if (strcmp(c->kind, "len") == 0 && c->nf == 3)
		tu_check_int(c, "length", got, strtoll(c->f[2], NULL, 10));
	else if (strcmp(c->kind, "none") == 0 && c->nf == 2)
		tu_check_int(c, "length", got, -1);
	else
		tu_check(c, false, "bad case line");
}

static void test_content_length(void **state)
{
	assert_true(tu_each_line("content-length.txt", length_line, NULL) >= 28);
	tu_assert_all_passed();
}

static void range_line(struct tu_case *c, void *userdata)
{
	struct http_content_range got = {.first = 77};
	int r;

	if (c->nf < 2) {
		tu_check(c, false, "bad case line");
		return;
	}
	r = http_parse_content_range(c->f[1], &got);
	if (strcmp(c->kind, "ok") == 0 && c->nf == 6) {
		if (!tu_check_rc(c, "http_parse_content_range", r, 0))
			return;
		tu_check_int(c, "first", (long long)got.first, strtoll(c->f[2], NULL, 10));
		tu_check_int(c, "last", (long long)got.last, strtoll(c->f[3], NULL, 10));
		tu_check_int(c, "complete", got.complete, strtoll(c->f[4], NULL, 10));
		tu_check_int(c, "unsatisfied", got.unsatisfied,
			     strcmp(c->f[5], "unsatisfied") == 0);
	} else if (strcmp(c->kind, "bad") == 0 && c->nf == 2) {
		tu_check_rc(c, "http_parse_content_range", r, -EINVAL);
		tu_check_int(c, "untouched on failure", (long long)got.first, 77);
	} else {
		tu_check(c, false, "bad case line");
	}
}

static void test_content_range(void **state)
{
	assert_true(tu_each_line("content-range.txt", range_line, NULL) >= 30);
	tu_assert_all_passed();
}

static void media_type_line(struct tu_case *c, void *userdata)
{
	char *got = (char *)"sentinel";
	int r;

	if (c->nf < 2) {
		tu_check(c, false, "bad case line");
		return;
	}
	r = http_parse_media_type(c->f[1], &got);
	if (strcmp(c->kind, "ok") == 0 && c->nf == 3) {
		if (tu_check_rc(c, "http_parse_media_type", r, 0)) {
			tu_check_str(c, "type", got, c->f[2]);
			free(got);
		}
	} else if (strcmp(c->kind, "bad") == 0 && c->nf == 2) {
		tu_check_rc(c, "http_parse_media_type", r, -EINVAL);
		tu_check_str(c, "untouched on failure", got, "sentinel");
	} else {
		tu_check(c, false, "bad case line");
	}
}

static void test_media_types(void **state)
{
	assert_true(tu_each_line("media-types.txt", media_type_line, NULL) >= 35);
	tu_assert_all_passed();
}

static void digest_line(struct tu_case *c, void *userdata)
{
	char got[DIGEST_LEN] = "untouched";
	int r;

	if (c->nf < 2) {
		tu_check(c, false, "bad case line");
		return;
	}
	r = http_parse_digest(c->f[1], got);
	if (strcmp(c->kind, "sha256") == 0 && c->nf == 3) {
		if (tu_check_rc(c, "http_parse_digest", r, 0))
			tu_check_str(c, "digest", got, c->f[2]);
	} else if (strcmp(c->kind, "other") == 0 && c->nf == 2) {
		tu_check_rc(c, "http_parse_digest", r, -ENOTSUP);
		tu_check_str(c, "untouched", got, "untouched");
	} else if (strcmp(c->kind, "bad") == 0 && c->nf == 2) {
		tu_check_rc(c, "http_parse_digest", r, -EINVAL);
		tu_check_str(c, "untouched", got, "untouched");
	} else {
		tu_check(c, false, "bad case line");
	}
}

static void test_digests(void **state)
{
	assert_true(tu_each_line("digest-headers.txt", digest_line, NULL) >= 25);
	tu_assert_all_passed();
}

/* Feed BLOCK line by line; return the response. */
static void feed_block(struct http_response *r, const char *block)
{
	*r = (struct http_response){.content_length = -1, .retry_after = -1};
	for (const char *p = block; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p + 1) : strlen(p);
		assert_int_equal(http_response_add_header(r, p, n), 0);
		p += n;
	}
}

static void header_line(struct tu_case *c, void *userdata)
{
	static const struct {
		const char *name;
		size_t off;
	} fields[] = {
	    {"content-type", offsetof(struct http_response, content_type)},
	    {"www-authenticate", offsetof(struct http_response, www_authenticate)},
	    {"link", offsetof(struct http_response, link)},
	    {"location", offsetof(struct http_response, location)},
	    {"docker-content-digest", offsetof(struct http_response, docker_content_digest)},
	    {"content-range", offsetof(struct http_response, content_range)},
	};
	struct http_response r;
	bool known = false;

	if (strcmp(c->kind, "field") != 0 || c->nf != 4 || !c->f[1] || !c->f[2]) {
		tu_check(c, false, "bad case line");
		return;
	}
	feed_block(&r, c->f[1]);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (strcmp(c->f[2], fields[i].name) == 0) {
			known = true;
			tu_check_str(c, fields[i].name, *(char **)((char *)&r + fields[i].off),
				     c->f[3]);
		}
	}
	if (strcmp(c->f[2], "content-length") == 0) {
		known = true;
		tu_check_int(c, "content_length", r.content_length, strtoll(c->f[3], NULL, 10));
	} else if (strcmp(c->f[2], "retry-after") == 0) {
		known = true;
		tu_check_int(c, "retry_after", r.retry_after, strtol(c->f[3], NULL, 10));
	}
	tu_check(c, known, "unknown field name %s", c->f[2]);
	http_response_done(&r);
}

static void test_headers(void **state)
{
	struct http_response r;
	char *big, *block;

	assert_true(tu_each_line("headers.txt", header_line, NULL) >= 35);
	tu_assert_all_passed();

	/* Thousands of challenge lines combine into one list. */
	big = tu_repeat('x', 0);
	for (int i = 0; i < 3000; i++) {
		char *b = tu_strdupf("%sWWW-Authenticate: Negotiate%d\r\n", big, i);
		free(big);
		big = b;
	}
	block = tu_strdupf("HTTP/1.1 401 x\r\n%s", big);
	feed_block(&r, block);
	assert_non_null(r.www_authenticate);
	assert_int_equal(strncmp(r.www_authenticate, "Negotiate0, Negotiate1, ", 24), 0);
	assert_non_null(strstr(r.www_authenticate, ", Negotiate2999"));
	http_response_done(&r);
	free(block);
	free(big);
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
	    cmocka_unit_test(test_retry_after),	  cmocka_unit_test(test_retry_after_generated),
	    cmocka_unit_test(test_dates),	  cmocka_unit_test(test_content_length),
	    cmocka_unit_test(test_content_range), cmocka_unit_test(test_media_types),
	    cmocka_unit_test(test_digests),	  cmocka_unit_test(test_headers),
	    cmocka_unit_test(test_same_origin),	  cmocka_unit_test(test_resolve),
	    cmocka_unit_test(test_resolve_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
