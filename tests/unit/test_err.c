/* Unit tests of core/err: HTTP and curl code translation, messages, prefixing, and HTTP answers
 * (status + body shape -> errno and a one-line summary) from data/answers/NAME.txt: header lines
 * "status:", "content-type:" (absent = none), "kind:", "errno:" (OK = 0), "summary:", then a
 * line "--" and the body's exact bytes up to the end of the file. */
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
	    {400, -EINVAL},    {401, -EACCES},	   {403, -EACCES},
	    {404, -ENOENT},    {409, -EEXIST},	   {413, -EFBIG},
	    {416, -ERANGE},    {429, -EAGAIN},	   {503, -EAGAIN},
	    {500, -EIO},       {502, -EIO},	   {504, -ETIMEDOUT},
	    {408, -ETIMEDOUT}, {405, -EOPNOTSUPP}, {501, -EOPNOTSUPP},
	    {507, -ENOSPC},    {410, -EIO},	   {418, -EIO},
	    {599, -EIO},       {600, -EIO},	   {999, -EIO},
	    {200, 0},	       {201, 0},	   {204, 0},
	    {206, 0},	       {301, 0},	   {307, 0},
	    {399, 0},	       {100, 0},	   {0, 0},
	    {-1, 0},	       {-404, 0},
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

/* tu_errno_parse, and the two names only this module's data uses. */
static int errno_of(const char *name)
{
	if (strcmp(name, "EOPNOTSUPP") == 0)
		return -EOPNOTSUPP;
	if (strcmp(name, "ENOSPC") == 0)
		return -ENOSPC;
	return tu_errno_parse(name);
}

static const char *const kind_names[] = {"EMPTY", "REGISTRY", "JSON",  "HTML",
					 "XML",	  "TEXT",     "BINARY"};

/* The value of "NAME: value" in the header block, or NULL. Points into head. */
static char *header_value(char *head, const char *name)
{
	size_t n = strlen(name);

	for (char *line = head; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strncmp(line, name, n) == 0 && line[n] == ':' && line[n + 1] == ' ') {
			if (nl)
				*nl = '\n';
			char *v = line + n + 2, *end = strchr(v, '\n');
			return end ? strndup(v, (size_t)(end - v)) : strdup(v);
		}
		if (nl)
			*nl = '\n';
		line = nl ? nl + 1 : NULL;
	}
	return NULL;
}

static void answer_file(struct tu_case *c, void *userdata)
{
	size_t len;
	char *data = tu_read_file(c->path, &len);
	char *sep = strstr(data, "\n--\n");
	char summary[ERR_SUMMARY_MAX];

	(void)userdata;
	if (!tu_check(c, sep != NULL, "no -- line")) {
		free(data);
		return;
	}
	*sep = '\0';
	const char *body = sep + 4;
	size_t blen = len - (size_t)(body - data);
	char *status = header_value(data, "status"), *ct = header_value(data, "content-type");
	char *kind = header_value(data, "kind"), *want_errno = header_value(data, "errno");
	char *want_sum = header_value(data, "summary");
	if (tu_check(c, status && kind && want_errno && want_sum, "missing header line")) {
		int want = strcmp(want_errno, "OK") == 0 ? 0 : errno_of(want_errno);
		memset(summary, 'Z', sizeof(summary));
		enum err_body got =
		    err_http_body(ct, blen ? body : NULL, blen, summary, sizeof(summary));
		tu_check_str(c, "kind", kind_names[got], kind);
		tu_check_str(c, "summary", summary, want_sum);
		tu_check_rc(c, "err_from_http_answer", err_from_http_answer(atol(status), got),
			    want);
		/* The same answer with too little room: cut, terminated, never half a character. */
		for (size_t room = 0; room < 24; room++) {
			char small[24];
			memset(small, 'Z', sizeof(small));
			tu_check_int(c, "kind with less room",
				     err_http_body(ct, blen ? body : NULL, blen, small, room), got);
			if (room == 0) {
				tu_check_int(c, "room 0 untouched", small[0], 'Z');
				continue;
			}
			size_t sl = strnlen(small, room);
			tu_check(c, sl < room, "room %zu: not terminated", room);
			tu_check(c, strncmp(small, summary, sl) == 0,
				 "room %zu: '%s' is not a prefix", room, small);
			tu_check(c, sl == 0 || ((unsigned char)summary[sl] & 0xc0) != 0x80,
				 "room %zu: half a UTF-8 character", room);
		}
	}
	free(status);
	free(ct);
	free(kind);
	free(want_errno);
	free(want_sum);
	free(data);
}

static void test_answers(void **state)
{
	(void)state;
	assert_true(tu_each_file("answers", ".txt", answer_file, NULL) >= 40);
	tu_assert_all_passed();
}

/* Hostile sizes: a 1 MiB error array, a 1 MiB text line, a NULL body with a length of 0. */
static void test_answers_big(void **state)
{
	char summary[ERR_SUMMARY_MAX];
	size_t n = 20000;
	char *big = malloc(n * 64 + 32), *p = big;

	(void)state;
	assert_non_null(big);
	p += sprintf(p, "{\"errors\":[");
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s{\"code\":\"C%zu\",\"message\":\"m\"}", i ? "," : "", i);
	p += sprintf(p, "]}");
	assert_int_equal(
	    err_http_body("application/json", big, (size_t)(p - big), summary, sizeof(summary)),
	    ERR_BODY_REGISTRY);
	assert_true(strlen(summary) < sizeof(summary));
	assert_int_equal(strncmp(summary, "C0: m; C1: m; C2: m", 19), 0);
	/* Entries "Cn: m" of 5..9 bytes and "; ": what fits, then the count of the rest. */
	const char *more = strstr(summary, " (+");
	assert_non_null(more);
	assert_string_equal(more + strlen(more) - 6, " more)");
	size_t shown = 1;
	for (const char *q = summary; (q = strstr(q, "; ")); q++)
		shown++;
	char want[32];
	snprintf(want, sizeof(want), " (+%zu more)", n - shown);
	assert_string_equal(more, want);
	free(big);

	big = tu_repeat('a', 1 << 20);
	assert_int_equal(err_http_body("text/plain", big, 1 << 20, summary, sizeof(summary)),
			 ERR_BODY_TEXT);
	assert_int_equal(strlen(summary), 1 + 120 + 3 + 1);
	free(big);

	assert_int_equal(err_http_body("text/html", NULL, 0, summary, sizeof(summary)),
			 ERR_BODY_EMPTY);
	assert_string_equal(summary, "");
	assert_int_equal(err_from_http_answer(200, ERR_BODY_EMPTY), 0);
	assert_int_equal(err_from_http_answer(302, ERR_BODY_HTML), 0);
	assert_int_equal(err_from_http_answer(204, ERR_BODY_HTML), -EIO);
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
	    cmocka_unit_test(test_answers),
	    cmocka_unit_test(test_answers_big),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
