#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

static int tu_failures;

static void *nonnull(void *p)
{
	if (!p) {
		fputs("out of memory\n", stderr);
		abort();
	}
	return p;
}

void *tu_malloc(size_t n)
{
	return nonnull(malloc(n ? n : 1));
}

void *tu_calloc(size_t n, size_t size)
{
	return nonnull(calloc(n ? n : 1, size ? size : 1));
}

void *tu_realloc(void *p, size_t n)
{
	return nonnull(realloc(p, n ? n : 1));
}

char *tu_strdup(const char *s)
{
	return nonnull(strdup(s));
}
static int tu_known_bugs;

static bool known_bugs_counted(void)
{
	const char *v = getenv("STAGEFS_KNOWN_BUGS");
	return v && *v && strcmp(v, "0") != 0;
}

const char *tu_data_dir(void)
{
	const char *d = getenv("DATA_DIR");

	if (!d || !*d)
		fail_msg("DATA_DIR is not set (tests/meson.build sets it to tests/unit/data)");
	return d;
}

char *tu_strdupf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		s = NULL;
	return nonnull(s);
}

char *tu_data_path(const char *rel)
{
	return tu_strdupf("%s/%s", tu_data_dir(), rel);
}

char *tu_read_file(const char *path, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, alloc = 4096;
	char *data;

	if (fd < 0)
		fail_msg("cannot open %s: %s", path, strerror(errno));
	data = tu_malloc(alloc);
	assert_non_null(data);
	for (;;) {
		ssize_t n;
		if (len + 1 >= alloc) {
			alloc *= 2;
			data = tu_realloc(data, alloc);
			assert_non_null(data);
		}
		n = read(fd, data + len, alloc - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_msg("cannot read %s: %s", path, strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	data[len] = '\0';
	if (ret_len)
		*ret_len = len;
	return data;
}

void tu_write_file(const char *path, const void *data, size_t len, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	const char *p = data;

	if (fd < 0)
		fail_msg("cannot create %s: %s", path, strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("cannot write %s: %s", path, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	if (fchmod(fd, (mode_t)mode) < 0)
		fail_msg("cannot chmod %s: %s", path, strerror(errno));
	close(fd);
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Unescape s[0..n) into a new NUL-terminated string. */
static char *unescape(const char *where, const char *s, size_t n, size_t *ret_len)
{
	char *out = tu_malloc(n + 1);
	size_t o = 0;

	assert_non_null(out);
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\') {
			out[o++] = s[i];
			continue;
		}
		if (i + 1 >= n)
			fail_msg("%s: backslash at end of field", where);
		switch (s[++i]) {
		case 't':
			out[o++] = '\t';
			break;
		case 'n':
			out[o++] = '\n';
			break;
		case 'r':
			out[o++] = '\r';
			break;
		case '\\':
			out[o++] = '\\';
			break;
		case 'x':
			if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				fail_msg("%s: bad \\x escape", where);
			out[o++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
			break;
		default:
			fail_msg("%s: unknown escape \\%c", where, s[i]);
		}
	}
	out[o] = '\0';
	*ret_len = o;
	return out;
}

static void case_finish(struct tu_case *c)
{
	if (c->xfail) {
		if (c->fails == 0) {
			fprintf(stderr,
				"%s: marked as a known core bug ('x') but passes now: drop the "
				"'x'\n",
				c->where);
			tu_failures++;
		} else if (known_bugs_counted()) {
			tu_failures += c->fails;
		} else {
			fprintf(
			    stderr,
			    "%s: known core bug, not counted (STAGEFS_KNOWN_BUGS=1 counts it)\n",
			    c->where);
			tu_known_bugs++;
		}
	} else {
		tu_failures += c->fails;
	}
	c->fails = 0;
}

static void case_set_kind(struct tu_case *c, const char *kind)
{
	c->xfail = kind && kind[0] == 'x';
	c->kind = kind ? kind + (c->xfail ? 1 : 0) : "";
}

size_t tu_each_line(const char *rel, tu_case_fn fn, void *userdata)
{
	char *path = tu_data_path(rel), *data, *line, *next;
	size_t len, count = 0;
	unsigned lineno = 0;

	data = tu_read_file(path, &len);
	for (line = data; line < data + len; line = next) {
		char *nl = memchr(line, '\n', (size_t)(data + len - line));
		struct tu_case c = {0};
		const char *p;
		size_t n;

		next = nl ? nl + 1 : data + len;
		n = (size_t)((nl ? nl : data + len) - line);
		lineno++;
		if (n == 0 || line[0] == '#')
			continue;
		snprintf(c.where, sizeof(c.where), "%s:%u", rel, lineno);
		p = line;
		while (p <= line + n) {
			const char *tab = memchr(p, '\t', (size_t)(line + n - p));
			const char *end = tab ? tab : line + n;
			if (c.nf == TU_MAX_FIELDS)
				fail_msg("%s: too many fields", c.where);
			if (end - p == 1 && *p == '-') {
				c.f[c.nf] = NULL;
				c.len[c.nf] = 0;
			} else {
				c.f[c.nf] = unescape(c.where, p, (size_t)(end - p), &c.len[c.nf]);
			}
			c.nf++;
			p = end + 1;
		}
		case_set_kind(&c, c.f[0]);
		fn(&c, userdata);
		case_finish(&c);
		for (size_t i = 0; i < c.nf; i++)
			free(c.f[i]);
		count++;
	}
	free(data);
	free(path);
	return count;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_kind_prefix(const char *name, const char **ret_kind)
{
	static const char *const kinds[] = {"valid-", "invalid-", "xvalid-", "xinvalid-"};

	for (size_t i = 0; i < 4; i++) {
		if (strncmp(name, kinds[i], strlen(kinds[i])) == 0) {
			*ret_kind = kinds[i];
			return true;
		}
	}
	return false;
}

size_t tu_each_file(const char *reldir, const char *suffix, tu_case_fn fn, void *userdata)
{
	char *dir = tu_data_path(reldir);
	char **names = NULL;
	size_t n = 0, count = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d)
		fail_msg("cannot open %s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		const char *kind;
		size_t l = strlen(de->d_name), sl = strlen(suffix);
		if (!has_kind_prefix(de->d_name, &kind) || l < sl ||
		    strcmp(de->d_name + l - sl, suffix) != 0)
			continue;
		names = tu_realloc(names, (n + 1) * sizeof(*names));
		assert_non_null(names);
		names[n] = tu_strdup(de->d_name);
		assert_non_null(names[n]);
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		struct tu_case c = {0};
		char kind[16] = {0};
		char *path = tu_strdupf("%s/%s", dir, names[i]);
		const char *dash = strchr(names[i], '-');

		memcpy(kind, names[i], (size_t)(dash - names[i]));
		snprintf(c.where, sizeof(c.where), "%s/%s", reldir, names[i]);
		case_set_kind(&c, kind);
		c.path = path;
		c.name = names[i];
		fn(&c, userdata);
		case_finish(&c);
		free(path);
		free(names[i]);
		count++;
	}
	free(names);
	free(dir);
	return count;
}

void tu_case_begin(struct tu_case *c, bool xfail, const char *fmt, ...)
{
	va_list ap;

	*c = (struct tu_case){.xfail = xfail, .kind = ""};
	va_start(ap, fmt);
	vsnprintf(c->where, sizeof(c->where), fmt, ap);
	va_end(ap);
}

void tu_case_end(struct tu_case *c)
{
	case_finish(c);
}

bool tu_check(struct tu_case *c, bool ok, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		return true;
	fprintf(stderr, "%s: %s", c->where, c->xfail ? "(known bug) " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	c->fails++;
	return false;
}

bool tu_check_int(struct tu_case *c, const char *what, long long got, long long want)
{
	return tu_check(c, got == want, "%s: got %lld, want %lld", what, got, want);
}

bool tu_check_str(struct tu_case *c, const char *what, const char *got, const char *want)
{
	if ((!got && !want) || (got && want && strcmp(got, want) == 0))
		return true;
	if (!got || !want) {
		const char *s = got ? got : want;
		char *e = tu_escape(s, strlen(s));
		tu_check(c, false, "%s: got %s%s%s, want %s%s%s", what, got ? "\"" : "",
			 got ? e : "(null)", got ? "\"" : "", want ? "\"" : "", want ? e : "(null)",
			 want ? "\"" : "");
		free(e);
		return false;
	}
	return tu_check_mem(c, what, got, strlen(got), want, strlen(want));
}

bool tu_check_mem(struct tu_case *c, const char *what, const void *got, size_t got_len,
		  const void *want, size_t want_len)
{
	const unsigned char *g = got, *w = want;
	size_t i = 0, from;
	char *ge, *we;

	if (got_len == want_len && (got_len == 0 || memcmp(got, want, got_len) == 0))
		return true;
	if (!got || !want)
		return tu_check(c, false, "%s: got %s, want %s", what, got ? "bytes" : "(null)",
				want ? "bytes" : "(null)");
	while (i < got_len && i < want_len && g[i] == w[i])
		i++;
	/* Show the bytes around the first difference. */
	from = i > 40 ? i - 40 : 0;
	ge = tu_escape(g + from, got_len - from);
	we = tu_escape(w + from, want_len - from);
	tu_check(c, false,
		 "%s: differ at byte %zu (got %zu bytes, want %zu); from byte %zu: got "
		 "\"%s\", want \"%s\"",
		 what, i, got_len, want_len, from, ge, we);
	free(ge);
	free(we);
	return false;
}

bool tu_check_rc(struct tu_case *c, const char *what, int got, int want)
{
	char g[32];

	if (got == want)
		return true;
	snprintf(g, sizeof(g), "%s", tu_errno_name(got));
	return tu_check(c, false, "%s: got %s, want %s", what, g, tu_errno_name(want));
}

void tu_assert_all_passed(void)
{
	int f = tu_failures;

	tu_failures = 0;
	if (tu_known_bugs)
		fprintf(stderr, "(%d known core bug case(s) not counted)\n", tu_known_bugs);
	tu_known_bugs = 0;
	if (f)
		fail_msg("%d check(s) failed, see above", f);
}

static const struct {
	const char *name;
	int code;
} errnos[] = {
    {"EINVAL", EINVAL},	  {"ENOENT", ENOENT}, {"EFBIG", EFBIG},	  {"E2BIG", E2BIG},
    {"EACCES", EACCES},	  {"EAGAIN", EAGAIN}, {"EIO", EIO},	  {"ETIMEDOUT", ETIMEDOUT},
    {"EEXIST", EEXIST},	  {"ERANGE", ERANGE}, {"ENOMEM", ENOMEM}, {"ECANCELED", ECANCELED},
    {"EBADMSG", EBADMSG}, {"EISDIR", EISDIR}, {"EPROTO", EPROTO}, {"EPIPE", EPIPE},
};

int tu_errno_parse(const char *name)
{
	if (!name)
		fail_msg("missing errno name");
	if (strcmp(name, "ok") == 0 || strcmp(name, "0") == 0)
		return 0;
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++)
		if (strcmp(name, errnos[i].name) == 0)
			return -errnos[i].code;
	fail_msg("unknown errno name '%s'", name);
	return 0;
}

const char *tu_errno_name(int code)
{
	static char out[32];

	if (code == 0)
		return "0";
	for (size_t i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (code == -errnos[i].code) {
			snprintf(out, sizeof(out), "-%s", errnos[i].name);
			return out;
		}
	}
	snprintf(out, sizeof(out), "%d", code);
	return out;
}

char *tu_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *t = tu_strdupf("%s/stagefs-unit-XXXXXX", tmp && *tmp ? tmp : "/tmp");

	if (!mkdtemp(t))
		fail_msg("mkdtemp %s: %s", t, strerror(errno));
	return t;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

void tu_rm_rf(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *tu_repeat(char ch, size_t n)
{
	char *s = tu_malloc(n + 1);

	assert_non_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

char *tu_escape(const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t show = len > 200 ? 200 : len, o = 0;
	char *out = tu_malloc(show * 4 + 48);

	assert_non_null(out);
	for (size_t i = 0; i < show; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			out[o++] = (char)p[i];
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", p[i]);
	}
	if (show < len)
		o += (size_t)snprintf(out + o, 40, "...(%zu bytes)", len);
	out[o] = '\0';
	return out;
}
