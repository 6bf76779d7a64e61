#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"

#define HELPER_OUTPUT_CAP (64 * 1024)
#define HELPER_TIMEOUT_MS 10000
#define TOKEN_BODY_CAP (256 * 1024)

extern char **environ;

time_t auth_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

void auth_cred_done(struct auth_cred *c)
{
	if (!c)
		return;
	if (c->password)
		explicit_bzero(c->password, strlen(c->password));
	free(c->username);
	free(c->password);
	free(c->identity_token);
	*c = (struct auth_cred){0};
}

void auth_challenge_done(struct auth_challenge *c)
{
	if (!c)
		return;
	free(c->realm);
	free(c->service);
	free(c->scope);
	*c = (struct auth_challenge){0};
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *auth_base64_encode(const void *data, size_t len)
{
	const unsigned char *p = data;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		*o++ = b64[(v >> 18) & 63];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

int auth_base64_decode(const char *text, unsigned char **ret, size_t *ret_len)
{
	size_t n = strlen(text), o = 0;
	unsigned char *out;
	unsigned v = 0;
	int bits = 0;
	size_t pad = 0;

	if (n % 4 != 0)
		return -EINVAL;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *q;
		if (text[i] == '=') {
			if (i < n - 2 || (i == n - 2 && text[n - 1] != '='))
				goto bad;
			pad++;
			continue;
		}
		q = strchr(b64, text[i]);
		if (!q || !text[i] || pad)
			goto bad;
		v = (v << 6) | (unsigned)(q - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(v >> bits);
			v &= (1u << bits) - 1;
		}
	}
	out[o] = '\0';
	*ret = out;
	*ret_len = o;
	return 0;
bad:
	free(out);
	return -EINVAL;
}

char *auth_basic_header(const struct auth_cred *c)
{
	char *pair = NULL, *enc, *hdr = NULL;

	if (asprintf(&pair, "%s:%s", c->username ? c->username : "",
		     c->password ? c->password : "") < 0)
		return NULL;
	enc = auth_base64_encode(pair, strlen(pair));
	explicit_bzero(pair, strlen(pair));
	free(pair);
	if (enc && asprintf(&hdr, "Basic %s", enc) < 0)
		hdr = NULL;
	free(enc);
	return hdr;
}

/* "https://host:port/v1/" -> "host:port" */
static char *normalize_key(const char *key)
{
	const char *p = key, *slash;

	if (strncasecmp(p, "https://", 8) == 0)
		p += 8;
	else if (strncasecmp(p, "http://", 7) == 0)
		p += 7;
	slash = strchr(p, '/');
	return slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
}

static bool is_hub(const char *host)
{
	return strcmp(host, "registry-1.docker.io") == 0 || strcmp(host, "index.docker.io") == 0 ||
	       strcmp(host, "docker.io") == 0;
}

static bool host_matches(const char *key, const char *host)
{
	char *k = normalize_key(key);
	bool m;

	if (!k)
		return false;
	m = strcmp(k, host) == 0 || (is_hub(k) && is_hub(host));
	free(k);
	return m;
}

/* Write to a pipe whose reader may be gone, without dying of SIGPIPE: the signal is blocked
 * for this thread and a pending one consumed. Errors are left to the helper's exit status. */
static void write_all_nosigpipe(int fd, const char *p, size_t n)
{
	sigset_t pipe_set, old;
	bool had_pending;
	sigset_t pending;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	sigpending(&pending);
	had_pending = sigismember(&pending, SIGPIPE);
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			if (errno == EPIPE && !had_pending) {
				struct timespec zero = {0, 0};
				sigtimedwait(&pipe_set, NULL, &zero);
			}
			break;
		}
		p += w;
		n -= (size_t)w;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Run docker-credential-NAME get; fill cred from its JSON answer. */
static int run_helper(const char *name, const char *server, struct auth_cred *ret,
		      struct sf_err *err)
{
	char prog[128];
	int in[2] = {-1, -1}, out[2] = {-1, -1}, status = 0, r;
	posix_spawn_file_actions_t fa;
	struct buf b = BUF_INIT(HELPER_OUTPUT_CAP);
	json_t *root = NULL;
	pid_t pid;

	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return err_set(err, -EINVAL, "bad credential helper name '%s'", name);
	if (snprintf(prog, sizeof(prog), "docker-credential-%s", name) >= (int)sizeof(prog))
		return err_set(err, -EINVAL, "credential helper name too long");
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	char *argv[] = {prog, (char *)"get", NULL};
	r = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	if (r != 0) {
		r = err_set(err, -ENOENT, "credential helper %s: %s", prog, strerror(r));
		goto out;
	}
	write_all_nosigpipe(in[1], server, strlen(server));
	close(in[1]);
	in[1] = -1;
	for (;;) {
		char chunk[4096];
		struct pollfd pfd = {.fd = out[0], .events = POLLIN};
		ssize_t n;
		int pr = poll(&pfd, 1, HELPER_TIMEOUT_MS);
		if (pr == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			r = err_set(err, -ETIMEDOUT, "credential helper %s did not answer", prog);
			goto out;
		}
		if (pr < 0 && errno == EINTR)
			continue;
		n = read(out[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (buf_append(&b, chunk, (size_t)n) < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			r = err_set(err, -EFBIG, "credential helper %s: output too large", prog);
			goto out;
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* Helpers print "credentials not found in native keychain" for unknown servers. */
		r = err_set(err, -ENOENT, "credential helper %s has no credentials for %s", prog,
			    server);
		goto out;
	}
	root = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
	const char *user = json_string_value(json_object_get(root, "Username"));
	const char *secret = json_string_value(json_object_get(root, "Secret"));
	if (!root || !secret) {
		r = err_set(err, -EINVAL, "credential helper %s: answer is not JSON with Secret",
			    prog);
		goto out;
	}
	*ret = (struct auth_cred){0};
	if (user && strcmp(user, "<token>") == 0) {
		ret->identity_token = strdup(secret);
	} else {
		ret->username = strdup(user ? user : "");
		ret->password = strdup(secret);
	}
	r = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	json_decref(root);
	buf_done(&b);
	return r;
}

static int cred_from_auths_entry(json_t *entry, struct auth_cred *ret, struct sf_err *err)
{
	const char *auth = json_string_value(json_object_get(entry, "auth"));

	json_t *aj = json_object_get(entry, "auth");

	if (!json_is_object(entry) || (aj && !json_is_string(aj) && !json_is_null(aj)))
		return err_set(err, -EINVAL, "docker config: an \"auths\" entry is malformed");
	const char *user = json_string_value(json_object_get(entry, "username"));
	const char *pass = json_string_value(json_object_get(entry, "password"));
	const char *idtok = json_string_value(json_object_get(entry, "identitytoken"));
	unsigned char *dec = NULL;
	size_t n;
	char *colon;

	*ret = (struct auth_cred){0};
	if (idtok && *idtok) {
		ret->identity_token = strdup(idtok);
		return ret->identity_token ? 0 : -ENOMEM;
	}
	if (auth && *auth) {
		if (auth_base64_decode(auth, &dec, &n) < 0)
			return err_set(err, -EINVAL, "docker config: \"auth\" is not base64");
		colon = memchr(dec, ':', n);
		if (!colon || memchr(dec, '\0', n)) {
			free(dec);
			return err_set(err, -EINVAL,
				       "docker config: \"auth\" is not user:password");
		}
		ret->username = strndup((char *)dec, (size_t)(colon - (char *)dec));
		ret->password = strdup(colon + 1);
		explicit_bzero(dec, n);
		free(dec);
	} else if (user && pass) {
		ret->username = strdup(user);
		ret->password = strdup(pass);
	} else {
		return -ENOENT;
	}
	if (!ret->username || !ret->password) {
		auth_cred_done(ret);
		return -ENOMEM;
	}
	return 0;
}

int auth_lookup(const char *dir, const char *host, struct auth_cred *ret, struct sf_err *err)
{
	char *path = NULL;
	json_t *root = NULL, *helpers, *auths, *v;
	const char *key, *store;
	json_error_t jerr;
	int r = -ENOENT;
	const char *server = is_hub(host) ? "https://index.docker.io/v1/" : host;

	if (!dir || asprintf(&path, "%s/config.json", dir) < 0)
		return -ENOENT;
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (access(path, F_OK) == 0)
			r = err_set(err, -EINVAL, "%s: line %d: %s", path, jerr.line, jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		r = err_set(err, -EINVAL, "%s: not a JSON object", path);
		goto out;
	}
	helpers = json_object_get(root, "credHelpers");
	store = NULL;
	auths = json_object_get(root, "auths");
	if ((helpers && !json_is_object(helpers)) || (auths && !json_is_object(auths)) ||
	    (json_object_get(root, "credsStore") &&
	     !json_is_string(json_object_get(root, "credsStore")))) {
		r = err_set(err, -EINVAL, "%s: auths, credHelpers or credsStore of the wrong type",
			    path);
		goto out;
	}
	json_object_foreach(helpers, key, v)
	{
		if (host_matches(key, host) && json_is_string(v)) {
			r = run_helper(json_string_value(v), server, ret, err);
			goto out;
		}
	}
	store = json_string_value(json_object_get(root, "credsStore"));
	if (store && *store) {
		r = run_helper(store, server, ret, err);
		if (r != -ENOENT)
			goto out;
		r = -ENOENT;
	}
	auths = json_object_get(root, "auths");
	json_object_foreach(auths, key, v)
	{
		if (host_matches(key, host)) {
			r = cred_from_auths_entry(v, ret, err);
			if (r != -ENOENT)
				goto out;
		}
	}
	r = -ENOENT;
out:
	json_decref(root);
	free(path);
	return r;
}

/* Read one token or quoted-string parameter value. */
static const char *parse_param_value(const char *p, char **ret)
{
	struct buf b = BUF_INIT(8192);

	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (buf_append(&b, p, 1) < 0)
				goto bad;
		}
		if (*p != '"')
			goto bad;
		p++;
	} else {
		/* A token, leniently: up to a comma or whitespace (unquoted URLs hold ':' and
		 * '/'), but not "=x" (that is token68 gone wrong). */
		const char *s = p;
		if (*p == '=')
			goto bad;
		while (*p && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		if (p == s || buf_append(&b, s, (size_t)(p - s)) < 0)
			goto bad;
	}
	*ret = buf_steal(&b, NULL);
	return *ret ? p : NULL;
bad:
	buf_done(&b);
	return NULL;
}

static bool is_token68_char(unsigned char c)
{
	return isalnum(c) || (c && strchr("-._~+/", c));
}

/* At a list element after a comma: true when it starts a new challenge (a scheme not followed
 * by "="), false when it is one more auth-param of the current one. */
static bool starts_challenge(const char *p)
{
	const char *n = p;

	while (http_is_tchar((unsigned char)*n))
		n++;
	return *http_skip_ows(n) != '=';
}

/* The auth-params of one challenge from p (after the scheme and its SP). Returns the position
 * of the comma or end after the last one, or NULL on a syntax error. */
static const char *parse_params(const char *p, struct auth_challenge *c)
{
	for (;;) {
		const char *name, *q;
		size_t nlen;
		char *val = NULL, **slot = NULL;

		/* Empty list elements, then a param or the next challenge. */
		q = p;
		while (*q == ' ' || *q == '\t' || *q == ',')
			q++;
		if (!*q)
			return q;
		if (q != p && *http_skip_ows(p) == ',' && starts_challenge(q))
			return p;
		p = q;
		name = p;
		while (http_is_tchar((unsigned char)*p))
			p++;
		nlen = (size_t)(p - name);
		p = http_skip_ows(p);
		if (nlen == 0 || *p != '=')
			return NULL;
		p = http_skip_ows(p + 1);
		p = parse_param_value(p, &val);
		if (!p)
			return NULL;
		if (nlen == 5 && strncasecmp(name, "realm", 5) == 0)
			slot = &c->realm;
		else if (nlen == 7 && strncasecmp(name, "service", 7) == 0)
			slot = &c->service;
		else if (nlen == 5 && strncasecmp(name, "scope", 5) == 0)
			slot = &c->scope;
		if (slot) {
			free(*slot);
			*slot = val;
		} else {
			free(val);
		}
		p = http_skip_ows(p);
		if (*p && *p != ',')
			return NULL;
	}
}

static bool usable(const struct auth_challenge *c)
{
	if (c->scheme == AUTH_BEARER)
		return c->realm && (strncmp(c->realm, "https://", 8) == 0 ||
				    strncmp(c->realm, "http://", 7) == 0);
	return c->scheme == AUTH_BASIC;
}

int auth_parse_challenge(const char *value, struct auth_challenge *ret)
{
	struct auth_challenge best = {0}, c = {0};
	const char *p = value, *s;

	if (!p)
		return -EINVAL;
	/* 1#challenge, challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ] */
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		s = p;
		while (http_is_tchar((unsigned char)*p))
			p++;
		c = (struct auth_challenge){0};
		if (p - s == 5 && strncasecmp(s, "Basic", 5) == 0)
			c.scheme = AUTH_BASIC;
		else if (p - s == 6 && strncasecmp(s, "Bearer", 6) == 0)
			c.scheme = AUTH_BEARER;
		if (p == s || (*p && *p != ' ' && *p != ','))
			goto bad;
		if (*p == ' ') {
			const char *t = http_skip_ows(p), *e = t;
			while (is_token68_char((unsigned char)*e))
				e++;
			if (e != t) {
				while (*e == '=')
					e++;
				e = http_skip_ows(e);
			}
			if (e != t && (!*e || *e == ',')) {
				/* token68 (Negotiate, NTLM): Basic and Bearer take params only. */
				c.scheme = AUTH_NONE;
				p = e;
			} else {
				p = parse_params(t, &c);
				if (!p)
					goto bad;
			}
		}
		/* Bearer first, then Basic; the first of each kind. */
		if (usable(&c) && (best.scheme == AUTH_NONE ||
				   (best.scheme == AUTH_BASIC && c.scheme == AUTH_BEARER))) {
			auth_challenge_done(&best);
			best = c;
			c = (struct auth_challenge){0};
		}
		auth_challenge_done(&c);
	}
	if (best.scheme == AUTH_NONE)
		return -EINVAL;
	*ret = best;
	return 0;
bad:
	auth_challenge_done(&c);
	auth_challenge_done(&best);
	return -EINVAL;
}

static int append_escaped(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int r = 0;

	for (; *s && r == 0; s++) {
		unsigned char ch = (unsigned char)*s;
		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			r = buf_append(b, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			r = buf_append(b, e, 3);
		}
	}
	return r;
}

int auth_fetch_token(struct http_client *http, const struct auth_challenge *ch, const char *scope,
		     const struct auth_cred *cred, char **ret_header, time_t *ret_expires,
		     struct sf_err *err)
{
	struct buf url = BUF_INIT(16384), form = BUF_INIT(16384);
	struct http_response resp = {0};
	struct http_request req = {.max_body = TOKEN_BODY_CAP};
	char *basic = NULL, *hdr = NULL;
	const char *token;
	json_t *root = NULL;
	json_int_t expires_in;
	int r;

	r = buf_append_str(&url, ch->realm);
	if (cred && cred->identity_token) {
		/* OAuth2 refresh-token grant, as Docker does with identity tokens. */
		r = r
			?: buf_append_str(&form, "grant_type=refresh_token&client_id=stagefs&"
						 "refresh_token=");
		r = r ?: append_escaped(&form, cred->identity_token);
		if (ch->service) {
			r = r ?: buf_append_str(&form, "&service=");
			r = r ?: append_escaped(&form, ch->service);
		}
		if (scope) {
			r = r ?: buf_append_str(&form, "&scope=");
			r = r ?: append_escaped(&form, scope);
		}
		req.method = "POST";
		req.body = form.data;
		req.body_len = form.len;
		static const char *const form_hdr[] = {
		    "Content-Type: application/x-www-form-urlencoded", NULL};
		req.headers = form_hdr;
	} else {
		char sep = strchr(ch->realm, '?') ? '&' : '?';
		if (ch->service) {
			r = r ?: buf_append(&url, &sep, 1);
			r = r ?: buf_append_str(&url, "service=");
			r = r ?: append_escaped(&url, ch->service);
			sep = '&';
		}
		if (scope) {
			r = r ?: buf_append(&url, &sep, 1);
			r = r ?: buf_append_str(&url, "scope=");
			r = r ?: append_escaped(&url, scope);
		}
		if (cred && cred->username) {
			basic = auth_basic_header(cred);
			if (!basic)
				r = -ENOMEM;
			req.authorization = basic;
		}
	}
	if (r < 0) {
		r = err_set(err, r, "token request for %s: %s", ch->realm, strerror(-r));
		goto out;
	}
	req.url = url.data;
	r = http_do(http, &req, &resp, err);
	if (r < 0) {
		err_prefix(err, "token server");
		goto out;
	}
	if (resp.status != 200) {
		/* The token server's 404 is not "no such stage": only auth and load keep their
		 * meaning, everything else is the service failing. */
		r = err_from_http(resp.status);
		if (r != -EACCES && r != -EAGAIN)
			r = -EIO;
		r = err_set(err, r, "token server %s answered %ld%s", ch->realm, resp.status,
			    resp.status == 401 || resp.status == 403 ? " (wrong credentials?)"
								     : "");
		goto out;
	}
	root = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
	token = json_string_value(json_object_get(root, "token"));
	if (!token || !*token)
		token = json_string_value(json_object_get(root, "access_token"));
	if (!token || !*token) {
		r = err_set(err, -EPROTO, "token server %s: answer has no token", ch->realm);
		goto out;
	}
	expires_in = json_integer_value(json_object_get(root, "expires_in"));
	if (expires_in < 60)
		expires_in = 60; /* the spec's minimum and default */
	if (asprintf(&hdr, "Bearer %s", token) < 0) {
		r = -ENOMEM;
		goto out;
	}
	*ret_header = hdr;
	*ret_expires = auth_now() + (time_t)expires_in - 10;
	r = 0;
out:
	json_decref(root);
	http_response_done(&resp);
	free(basic);
	buf_done(&url);
	buf_done(&form);
	return r;
}
