/* Unit tests of core/auth: WWW-Authenticate challenges (data/challenges.txt), base64
 * (data/base64.txt), Basic headers, and credential lookup in Docker's config.json
 * (data/docker-config/: config files, cases.txt, and fake credential helpers that run as local
 * programs from a temp dir put first on PATH). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "auth.h"
#include "testutil.h"

/* ---- challenges ------------------------------------------------------------------------- */

static void challenge_line(struct tu_case *c, void *userdata)
{
	struct auth_challenge ch = {.scheme = AUTH_NONE, .realm = (char *)"sentinel"};
	const char *value = c->f[1] ? c->f[1] : "";
	int r;

	if (!tu_check(c, c->nf >= 2 && strlen(value) == c->len[1], "bad case line"))
		return;
	r = auth_parse_challenge(value, &ch);
	if (strcmp(c->kind, "invalid") == 0 && c->nf == 2) {
		tu_check_rc(c, "auth_parse_challenge", r, -EINVAL);
		tu_check(c, ch.realm && strcmp(ch.realm, "sentinel") == 0,
			 "ret written on failure");
		if (r == 0)
			auth_challenge_done(&ch);
		return;
	}
	if (strcmp(c->kind, "valid") != 0 || c->nf != 6) {
		tu_check(c, false, "bad case line");
		return;
	}
	if (!tu_check_rc(c, "auth_parse_challenge", r, 0))
		return;
	tu_check_int(c, "scheme", ch.scheme,
		     strcmp(c->f[2], "basic") == 0 ? AUTH_BASIC : AUTH_BEARER);
	tu_check_str(c, "realm", ch.realm, c->f[3]);
	tu_check_str(c, "service", ch.service, c->f[4]);
	tu_check_str(c, "scope", ch.scope, c->f[5]);
	auth_challenge_done(&ch);
	tu_check(c, !ch.realm && !ch.service && !ch.scope && ch.scheme == AUTH_NONE,
		 "auth_challenge_done does not reset");
}

static void test_challenge_data(void **state)
{
	assert_true(tu_each_line("challenges.txt", challenge_line, NULL) >= 60);
	tu_assert_all_passed();
}

static void test_challenge_generated(void **state)
{
	struct auth_challenge ch = {0};
	char *pad, *value, *realm;

	assert_int_equal(auth_parse_challenge(NULL, &ch), -EINVAL);
	auth_challenge_done(NULL);

	/* One parameter value holds at most 8192 bytes, quoted or not. */
	for (int quoted = 0; quoted < 2; quoted++) {
		pad = tu_repeat('r', 8192 - strlen("https://a.io/"));
		realm = tu_strdupf("https://a.io/%s", pad);
		value = tu_strdupf(quoted ? "Bearer realm=\"%s\"" : "Bearer realm=%s", realm);
		assert_int_equal(auth_parse_challenge(value, &ch), 0);
		assert_string_equal(ch.realm, realm);
		auth_challenge_done(&ch);
		free(value);
		value = tu_strdupf(quoted ? "Bearer realm=\"%sr\"" : "Bearer realm=%sr", realm);
		assert_int_equal(auth_parse_challenge(value, &ch), -EINVAL);
		free(value);
		free(realm);
		free(pad);
	}

	/* Megabytes of hostile input. */
	pad = tu_repeat(',', 1 << 20);
	value = tu_strdupf("Bearer realm=\"https://a.io/t\"%sservice=s", pad);
	assert_int_equal(auth_parse_challenge(value, &ch), 0);
	assert_string_equal(ch.service, "s");
	auth_challenge_done(&ch);
	free(value);
	free(pad);
	pad = tu_repeat('"', 1 << 20);
	value = tu_strdupf("Bearer realm=%s", pad);
	assert_int_equal(auth_parse_challenge(value, &ch), -EINVAL);
	free(value);
	free(pad);
	pad = tu_repeat('a', 1 << 20);
	value = tu_strdupf("Bearer %s=\"https://a.io/t\"", pad);
	assert_int_equal(auth_parse_challenge(value, &ch), -EINVAL); /* no realm */
	free(value);
	free(pad);

	/* Many repeated parameters: the last one wins, nothing leaks. */
	value = tu_strdup("Bearer realm=\"https://a.io/t\"");
	for (int i = 0; i < 2000; i++) {
		char *v = tu_strdupf("%s,scope=\"s%d\"", value, i);
		free(value);
		value = v;
	}
	assert_int_equal(auth_parse_challenge(value, &ch), 0);
	assert_string_equal(ch.scope, "s1999");
	auth_challenge_done(&ch);
	free(value);

	/* Thousands of challenges (lines combined): the Bearer at the end is found, the Basic
	 * ones before it are dropped without leaks. */
	value = tu_strdup("Negotiate");
	for (int i = 0; i < 5000; i++) {
		char *v = tu_strdupf("%s, %s", value,
				     i % 2 ? "NTLM abc==" : "Basic realm=\"b\", charset=\"UTF-8\"");
		free(value);
		value = v;
	}
	pad = tu_strdupf("%s, Bearer realm=\"https://a.io/t\",service=\"s\"", value);
	assert_int_equal(auth_parse_challenge(pad, &ch), 0);
	assert_int_equal(ch.scheme, AUTH_BEARER);
	assert_string_equal(ch.service, "s");
	auth_challenge_done(&ch);
	free(pad);
	assert_int_equal(auth_parse_challenge(value, &ch), 0);
	assert_int_equal(ch.scheme, AUTH_BASIC);
	assert_string_equal(ch.realm, "b");
	auth_challenge_done(&ch);
	free(value);
}

/* ---- base64 and Basic ----------------------------------------------------------------- */

static void base64_line(struct tu_case *c, void *userdata)
{
	unsigned char *dec = NULL;
	size_t n = 12345;
	char *enc;
	const char *text = c->f[c->nf - 1] ? c->f[c->nf - 1] : "";
	int r;

	if (strcmp(c->kind, "pair") == 0 && c->nf == 3) {
		const char *bytes = c->f[1] ? c->f[1] : "";
		enc = auth_base64_encode(bytes, c->len[1]);
		tu_check_str(c, "encode", enc, text);
		free(enc);
		r = auth_base64_decode(text, &dec, &n);
		if (tu_check_rc(c, "decode", r, 0)) {
			tu_check_mem(c, "decoded", dec, n, bytes, c->len[1]);
			tu_check(c, dec[n] == '\0', "decoded bytes not NUL-terminated");
		}
		free(dec);
	} else if (strcmp(c->kind, "invalid") == 0 && c->nf == 2) {
		r = auth_base64_decode(text, &dec, &n);
		tu_check_rc(c, "decode", r, -EINVAL);
		tu_check(c, !dec && n == 12345, "outputs written on failure");
		if (r == 0)
			free(dec);
	} else {
		tu_check(c, false, "bad case line");
	}
}

static void test_base64_data(void **state)
{
	assert_true(tu_each_line("base64.txt", base64_line, NULL) >= 35);
	tu_assert_all_passed();
}

static void test_base64_roundtrip(void **state)
{
	unsigned char all[256 * 3 + 2];
	unsigned char *dec;
	size_t n;

	for (size_t i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(all); len += (len < 10 ? 1 : 37)) {
		char *enc = auth_base64_encode(all, len);
		assert_non_null(enc);
		assert_int_equal(strlen(enc), (len + 2) / 3 * 4);
		assert_int_equal(auth_base64_decode(enc, &dec, &n), 0);
		assert_int_equal(n, len);
		assert_memory_equal(dec, all, len);
		free(dec);
		free(enc);
	}
}

static void test_basic_header(void **state)
{
	struct auth_cred c = {.username = (char *)"aladdin", .password = (char *)"opensesame"};
	char *h = auth_basic_header(&c);

	assert_string_equal(h, "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
	free(h);
	c.password = (char *)"pa:ss word";
	h = auth_basic_header(&c);
	assert_string_equal(h, "Basic YWxhZGRpbjpwYTpzcyB3b3Jk");
	free(h);
	c = (struct auth_cred){0};
	h = auth_basic_header(&c);
	assert_string_equal(h, "Basic Og=="); /* ":" */
	free(h);
	auth_cred_done(NULL);
}

/* ---- auth_lookup -------------------------------------------------------------------- */

struct lookup_env {
	char *tmp; /* removed at the end */
	char *bin; /* the fake helpers, first on PATH */
	char *cfg; /* DOCKER_CONFIG dir for one case */
	char *old_path;
};

static void install_helper(const char *bin, const char *script, const char *name)
{
	char *src = tu_data_path(script), *dst = tu_strdupf("%s/docker-credential-%s", bin, name);
	size_t len;
	char *data = tu_read_file(src, &len);

	tu_write_file(dst, data, len, 0755);
	free(data);
	free(dst);
	free(src);
}

static int lookup_setup(void **state)
{
	struct lookup_env *e = tu_calloc(1, sizeof(*e));
	const char *path = getenv("PATH");
	char *new_path;

	assert_non_null(e);
	e->tmp = tu_mkdtemp();
	e->bin = tu_strdupf("%s/bin", e->tmp);
	e->cfg = tu_strdupf("%s/config", e->tmp);
	assert_int_equal(mkdir(e->bin, 0755), 0);
	assert_int_equal(mkdir(e->cfg, 0755), 0);
	install_helper(e->bin, "docker-config/helper-test.sh", "test");
	install_helper(e->bin, "docker-config/helper-fail.sh", "fail");
	install_helper(e->bin, "docker-config/helper-nostdin.sh", "nostdin");
	e->old_path = tu_strdup(path ? path : "/usr/bin:/bin");
	new_path = tu_strdupf("%s:%s", e->bin, e->old_path);
	setenv("PATH", new_path, 1);
	free(new_path);
	/* auth_lookup writes to a helper's stdin unguarded: a helper gone early (or one that never
	 * started: under valgrind posix_spawn cannot report exec failures) would kill this process.
	 * That defect has its own test below, with SIGPIPE at its default. */
	signal(SIGPIPE, SIG_IGN);
	*state = e;
	return 0;
}

static int lookup_teardown(void **state)
{
	struct lookup_env *e = *state;

	signal(SIGPIPE, SIG_DFL);
	setenv("PATH", e->old_path, 1);
	tu_rm_rf(e->tmp);
	free(e->tmp);
	free(e->bin);
	free(e->cfg);
	free(e->old_path);
	free(e);
	return 0;
}

/* Put data/docker-config/NAME as the config dir's config.json (NULL: no config.json). */
static char *config_path(struct lookup_env *e)
{
	return tu_strdupf("%s/config.json", e->cfg);
}

static void use_config(struct lookup_env *e, const char *name)
{
	char *dst = config_path(e);

	unlink(dst);
	if (name) {
		char *rel = tu_strdupf("docker-config/%s", name);
		char *src = tu_data_path(rel);
		size_t len;
		char *data = tu_read_file(src, &len);
		tu_write_file(dst, data, len, 0600);
		free(data);
		free(src);
		free(rel);
	}
	free(dst);
}

static void lookup_line(struct tu_case *c, void *userdata)
{
	struct lookup_env *e = userdata;
	struct auth_cred cred = {0};
	struct sf_err err = {0};
	int r, want;

	if (!tu_check(c, c->nf == 3 || (c->nf == 6 && strcmp(c->kind, "ok") == 0), "bad case line"))
		return;
	use_config(e, c->f[1]);
	want = tu_errno_parse(c->kind);
	r = auth_lookup(e->cfg, c->f[2] ? c->f[2] : "", &cred, &err);
	tu_check_rc(c, "auth_lookup", r, want);
	if (r == 0 && want == 0) {
		tu_check_str(c, "username", cred.username, c->f[3]);
		tu_check_str(c, "password", cred.password, c->f[4]);
		tu_check_str(c, "identity_token", cred.identity_token, c->f[5]);
	}
	if (want != 0 && want != -ENOENT) {
		tu_check_rc(c, "err.code", err.code, want);
		tu_check(c, err.msg[0] != '\0', "no error message");
	}
	if (r == 0)
		auth_cred_done(&cred);
	tu_check(c, !cred.username && !cred.password && !cred.identity_token,
		 "credentials left after failure or auth_cred_done");
}

static void test_lookup_data(void **state)
{
	struct lookup_env *e = *state;

	assert_true(tu_each_line("docker-config/cases.txt", lookup_line, e) >= 80);
	tu_assert_all_passed();
}

static void test_lookup_edges(void **state)
{
	struct lookup_env *e = *state;
	struct auth_cred cred = {0};
	struct sf_err err = {0};
	char *path, *deep, *host;
	size_t n = 100000;

	/* No directory: nothing to look up. */
	assert_int_equal(auth_lookup(NULL, "registry.example.com", &cred, &err), -ENOENT);
	assert_int_equal(auth_lookup("/nonexistent/stagefs-unit", "r.io", &cred, NULL), -ENOENT);

	/* The error message names the file. */
	use_config(e, "malformed.json");
	assert_int_equal(auth_lookup(e->cfg, "registry.example.com", &cred, &err), -EINVAL);
	path = config_path(e);
	assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);

	/* Deeply nested JSON is refused, not a stack overflow. */
	{
		char *open = tu_repeat('[', n), *close = tu_repeat(']', n);
		deep = tu_strdupf("{\"auths\":%s%s}", open, close);
		free(open);
		free(close);
	}
	tu_write_file(path, deep, strlen(deep), 0600);
	assert_int_equal(auth_lookup(e->cfg, "registry.example.com", &cred, &err), -EINVAL);
	free(deep);

	/* A host name of a megabyte matches nothing. */
	use_config(e, "auths.json");
	host = tu_repeat('h', 1 << 20);
	assert_int_equal(auth_lookup(e->cfg, host, &cred, NULL), -ENOENT);
	free(host);

	/* err is optional on every path. */
	use_config(e, "bad-auth-no-colon.json");
	assert_int_equal(auth_lookup(e->cfg, "registry.example.com", &cred, NULL), -EINVAL);
	use_config(e, "helpers.json");
	assert_int_equal(auth_lookup(e->cfg, "unknown.example.com", &cred, NULL), -ENOENT);
	assert_int_equal(auth_lookup(e->cfg, "helper.example.com", &cred, NULL), 0);
	assert_string_equal(cred.username, "helperuser");
	auth_cred_done(&cred);
	free(path);
}

/* A helper that exits without reading its stdin must give -ENOENT, not kill the caller with
 * SIGPIPE (the daemon looks up credentials before FUSE ignores SIGPIPE). A huge host name makes
 * the write block until the helper is gone, so the outcome does not depend on timing. */
static void test_lookup_helper_ignores_stdin(void **state)
{
	struct lookup_env *e = *state;
	struct tu_case c;
	int status = 0;
	pid_t pid;

	{
		char *path = config_path(e);
		static const char cfg[] = "{\"credsStore\": \"nostdin\"}\n";
		tu_write_file(path, cfg, sizeof(cfg) - 1, 0600);
		free(path);
	}
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct auth_cred cred = {0};
		char *host = tu_repeat('h', 1 << 20);
		signal(SIGPIPE, SIG_DFL);
		_exit(auth_lookup(e->cfg, host, &cred, NULL) == -ENOENT ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	tu_case_begin(&c, false, "%s:%d (credsStore helper that does not read stdin)", __FILE__,
		      __LINE__);
	tu_check(&c, !WIFSIGNALED(status), "auth_lookup was killed by signal %d (%s)",
		 WIFSIGNALED(status) ? WTERMSIG(status) : 0,
		 WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "");
	tu_check(&c, WIFEXITED(status) && WEXITSTATUS(status) == 0, "result is not -ENOENT");
	tu_case_end(&c);

	/* With a short name, the same helper is simply "no credentials". */
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct auth_cred cred = {0};
		signal(SIGPIPE, SIG_IGN);
		_exit(auth_lookup(e->cfg, "r.io", &cred, NULL) == -ENOENT ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	tu_assert_all_passed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_challenge_data),
	    cmocka_unit_test(test_challenge_generated),
	    cmocka_unit_test(test_base64_data),
	    cmocka_unit_test(test_base64_roundtrip),
	    cmocka_unit_test(test_basic_header),
	    cmocka_unit_test_setup_teardown(test_lookup_data, lookup_setup, lookup_teardown),
	    cmocka_unit_test_setup_teardown(test_lookup_edges, lookup_setup, lookup_teardown),
	    cmocka_unit_test_setup_teardown(test_lookup_helper_ignores_stdin, lookup_setup,
					    lookup_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
