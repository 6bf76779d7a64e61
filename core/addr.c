#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_MAX 255

static bool is_alnum_lower(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool path_component_valid(const char *s, size_t n)
{
	size_t i = 0;

	if (n == 0 || !is_alnum_lower(s[0]) || !is_alnum_lower(s[n - 1]))
		return false;
	while (i < n) {
		if (is_alnum_lower(s[i])) {
			i++;
			continue;
		}
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
		} else if (s[i] == '-') {
			while (i < n && s[i] == '-')
				i++;
		} else {
			return false;
		}
		if (i >= n || !is_alnum_lower(s[i]))
			return false;
	}
	return true;
}

static bool host_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-';
}

/* HOST[:PORT] where HOST is dns labels or [ipv6]. Fills hostname and port. */
static int parse_host(const char *s, size_t n, struct addr *a, struct sf_err *err)
{
	const char *colon = NULL;
	size_t hn;

	if (n > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close || close == s + 1)
			return err_set(err, -EINVAL, "bad IPv6 host in address");
		for (const char *p = s + 1; p < close; p++)
			if (!strchr("0123456789abcdefABCDEF:.", *p))
				return err_set(err, -EINVAL, "bad IPv6 host in address");
		a->hostname = strndup(s + 1, (size_t)(close - s - 1));
		if ((size_t)(close - s) + 1 < n) {
			if (close[1] != ':')
				return err_set(err, -EINVAL, "junk after IPv6 host in address");
			colon = close + 1;
		}
	} else {
		colon = memchr(s, ':', n);
		hn = colon ? (size_t)(colon - s) : n;
		if (hn == 0)
			return err_set(err, -EINVAL, "empty registry host in address");
		for (size_t i = 0; i < hn; i++) {
			bool label_start = i == 0 || s[i - 1] == '.';
			bool label_end = i + 1 == hn || s[i + 1] == '.';
			if (s[i] == '.') {
				if (i == 0 || i + 1 == hn || s[i + 1] == '.')
					return err_set(err, -EINVAL,
						       "bad registry host in address");
			} else if (!host_label_char(s[i])) {
				return err_set(err, -EINVAL, "bad character '%c' in registry host",
					       s[i]);
			} else if (s[i] == '-' && (label_start || label_end)) {
				return err_set(
				    err, -EINVAL,
				    "registry host labels may not start or end with '-'");
			}
		}
		a->hostname = strndup(s, hn);
	}
	if (!a->hostname)
		return -ENOMEM;
	if (colon) {
		const char *p = colon + 1, *end = s + n;
		long port = 0;
		if (p == end || end - p > 5)
			return err_set(err, -EINVAL, "bad port in address");
		for (; p < end; p++) {
			if (*p < '0' || *p > '9')
				return err_set(err, -EINVAL, "bad port in address");
			port = port * 10 + (*p - '0');
		}
		if (port < 1 || port > 65535)
			return err_set(err, -EINVAL, "port out of range in address");
		a->port = (int)port;
	}
	a->host = strndup(s, n);
	return a->host ? 0 : -ENOMEM;
}

int addr_parse(const char *text, struct addr *ret, struct sf_err *err)
{
	struct addr a = {0};
	const char *slash, *path;
	size_t hostlen;
	bool hub;
	int r;

	if (!text || !*text)
		return err_set(err, -EINVAL, "empty stages storage address");
	if (strcmp(text, ":local") == 0) {
		a.local = true;
		*ret = a;
		return 0;
	}
	if (strlen(text) > ADDR_MAX)
		return err_set(err, -EINVAL, "stages storage address longer than %d characters",
			       ADDR_MAX);
	if (strchr(text, '@'))
		return err_set(err, -EINVAL, "'%s': a stages storage is a repository, not a digest",
			       text);
	if (strstr(text, "://"))
		return err_set(err, -EINVAL, "'%s': write the address without a scheme", text);

	slash = strchr(text, '/');
	hostlen = slash ? (size_t)(slash - text) : 0;
	hub = !slash || (!memchr(text, '.', hostlen) && !memchr(text, ':', hostlen) &&
			 !(hostlen == 9 && memcmp(text, "localhost", 9) == 0) && text[0] != '[');
	if (hub) {
		a.host = strdup("registry-1.docker.io");
		a.hostname = strdup("registry-1.docker.io");
		path = text;
		if (!a.host || !a.hostname) {
			r = -ENOMEM;
			goto fail;
		}
	} else {
		r = parse_host(text, hostlen, &a, err);
		if (r < 0)
			goto fail;
		path = slash + 1;
		if (!a.port && (strcmp(a.hostname, "docker.io") == 0 ||
				strcmp(a.hostname, "index.docker.io") == 0)) {
			/* Docker's names for Hub; its API lives at registry-1.docker.io. */
			free(a.host);
			free(a.hostname);
			a.host = strdup("registry-1.docker.io");
			a.hostname = strdup("registry-1.docker.io");
			hub = true;
			if (!a.host || !a.hostname) {
				r = -ENOMEM;
				goto fail;
			}
		}
	}

	/* Path: components separated by single '/', nothing after (no tag). */
	for (const char *p = path;;) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (!path_component_valid(p, n)) {
			r = err_set(err, -EINVAL,
				    "'%s': bad repository path (lowercase letters, digits and "
				    "separators ._- only; no tag)",
				    text);
			goto fail;
		}
		if (!end)
			break;
		p = end + 1;
	}
	if (hub && !strchr(path, '/')) {
		if (asprintf(&a.repo, "library/%s", path) < 0)
			a.repo = NULL;
	} else {
		a.repo = strdup(path);
	}
	if (!a.repo) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = a;
	return 0;
fail:
	addr_done(&a);
	return r;
}

void addr_done(struct addr *a)
{
	if (!a)
		return;
	free(a->host);
	free(a->hostname);
	free(a->repo);
	*a = (struct addr){0};
}

bool addr_is_loopback(const struct addr *a)
{
	struct in_addr v4;
	struct in6_addr v6;

	if (!a || !a->hostname)
		return false;
	if (strcmp(a->hostname, "localhost") == 0)
		return true;
	/* Only real addresses: "127.example.com" is a remote host. */
	if (inet_pton(AF_INET, a->hostname, &v4) == 1)
		return (ntohl(v4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, a->hostname, &v6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&v6);
	return false;
}
