/* defaults: werf.yaml's project and the repository from werf's environment. */
#include "defaults.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "name.h"

#define DEFAULTS_YAML_MAX (1 << 20)

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The key of a top-level `project:` line [s, e): the offset just past the ':', or 0. */
static size_t project_key(const char *s, const char *e)
{
	static const char *const keys[] = {"project", "\"project\"", "'project'"};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t k = strlen(keys[i]);
		const char *p = s + k;
		if ((size_t)(e - s) < k || memcmp(s, keys[i], k) != 0)
			continue;
		while (p < e && is_blank(*p))
			p++;
		/* "project:x" is a plain scalar in YAML, not a key */
		if (p < e && *p == ':' && (p + 1 == e || is_blank(p[1])))
			return (size_t)(p + 1 - s);
	}
	return 0;
}

/* The value of a key line, from v to e (the line's end, no newline), into ret. */
static int project_value(const char *v, const char *e, char *ret, size_t n)
{
	const char *end;

	while (v < e && is_blank(*v))
		v++;
	if (v < e && (*v == '"' || *v == '\'')) {
		char q = *v++;
		end = memchr(v, q, (size_t)(e - v));
		if (!end)
			return -EINVAL;
		/* after the closing quote: blanks, then nothing or a comment */
		const char *t = end + 1;
		while (t < e && is_blank(*t))
			t++;
		if (t < e && *t != '#')
			return -EINVAL;
	} else {
		/* a plain scalar ends at " #" (a comment) or the line's end */
		end = v;
		while (end < e && !(*end == '#' && end > v && is_blank(end[-1])))
			end++;
		while (end > v && is_blank(end[-1]))
			end--;
		if (v < e && *v == '#')
			end = v; /* "project: # nothing" */
	}
	size_t len = (size_t)(end - v);
	if (len == 0 || len >= n)
		return -EINVAL;
	memcpy(ret, v, len);
	ret[len] = '\0';
	return name_project_valid(ret) ? 0 : -EINVAL;
}

int defaults_project_parse(const char *text, size_t len, char *ret, size_t n)
{
	const char *s = text, *end = text + len;

	if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *e = nl ? nl : end;
		if (e > s && e[-1] == '\r')
			e--;
		/* indented (nested or a block scalar's text), comments, "---" and "..." markers
		 * and blank lines never start with the key */
		size_t k = project_key(s, e);
		if (k)
			return project_value(s + k, e, ret, n);
		s = nl ? nl + 1 : end;
	}
	return -ENOENT;
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0;
	char *buf;

	if (fd < 0)
		return -errno;
	if (!(buf = malloc(DEFAULTS_YAML_MAX + 1))) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t r = read(fd, buf + len, DEFAULTS_YAML_MAX + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;
			free(buf);
			close(fd);
			return e;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > DEFAULTS_YAML_MAX) {
			free(buf);
			close(fd);
			return -EFBIG;
		}
	}
	close(fd);
	*ret = buf;
	*ret_len = len;
	return 0;
}

int defaults_project(const char *dir, char *ret, size_t n)
{
	static const char *const names[] = {"werf.yaml", "werf.yml"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[PATH_MAX], *text = NULL;
		size_t len = 0;
		if (snprintf(path, sizeof(path), "%s/%s", dir ? dir : ".", names[i]) >=
		    (int)sizeof(path))
			return -ENAMETOOLONG;
		int r = read_file(path, &text, &len);
		if (r == -ENOENT)
			continue;
		if (r < 0)
			return r;
		r = defaults_project_parse(text, len, ret, n);
		free(text);
		return r;
	}
	return -ENOENT;
}

const char *defaults_repo(const char *stages_storage, const char *ci_registry_image, char *buf,
			  size_t n)
{
	if (stages_storage && *stages_storage && strcmp(stages_storage, ":local") != 0)
		return stages_storage;
	if (ci_registry_image && *ci_registry_image &&
	    snprintf(buf, n, "%s/stages", ci_registry_image) < (int)n)
		return buf;
	return NULL;
}
