#include "err.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int err_set(struct sf_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

void err_prefix(struct sf_err *err, const char *fmt, ...)
{
	char head[256], old[sizeof(err->msg)];
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	size_t n = strlen(head);
	if (n > sizeof(err->msg) - 3)
		n = sizeof(err->msg) - 3;
	memcpy(err->msg, head, n);
	memcpy(err->msg + n, ": ", 2);
	n += 2;
	const char *rest = old[0] ? old : "failed";
	size_t m = strlen(rest);
	if (m > sizeof(err->msg) - 1 - n)
		m = sizeof(err->msg) - 1 - n;
	memcpy(err->msg + n, rest, m);
	err->msg[n + m] = '\0';
}

int err_from_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_WRITE_ERROR:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

int err_from_http(long status)
{
	if (status < 400)
		return 0;
	switch (status) {
	case 400:
		return -EINVAL;
	case 405: /* e.g. deletes disabled (distribution's UNSUPPORTED) */
	case 501:
		return -EOPNOTSUPP;
	case 408:
	case 504:
		return -ETIMEDOUT;
	case 507:
		return -ENOSPC;
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 409:
		return -EEXIST;
	case 413:
		return -EFBIG;
	case 416:
		return -ERANGE;
	case 429:
	case 503:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

const char *err_msg(const struct sf_err *err, int code)
{
	if (err && err->msg[0])
		return err->msg;
	return strerror(code < 0 ? -code : code);
}

/* ---- answers: body classification and summaries ---------------------------------------- */

#define PIECE_MAX 120 /* bytes of one message, one text line */
#define CODE_MAX 40   /* bytes of one error code */

struct sbuf {
	char *p;
	size_t size, len; /* len < size always; p[len] == '\0' */
	bool full;	  /* something was cut: nothing more may follow */
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->size == 0 || b->full)
		return;
	if (n > b->size - 1 - b->len) {
		b->full = true;
		n = b->size - 1 - b->len;
		/* Never half a UTF-8 character. */
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 character at s (n bytes available), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t want;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		want = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		want = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		want = 4;
	else
		return 0;
	if (want > n)
		return 0;
	for (size_t i = 1; i < want; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong 3- and 4-byte forms, surrogates, beyond U+10FFFF. */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return want;
}

/* Append s[0..n) made safe for one log line: control characters and runs of white space become
 * one space, invalid UTF-8 bytes become '?', leading and trailing space dropped; at most limit
 * bytes of it, cut at a character boundary and marked with "...". */
static void sb_clean(struct sbuf *b, const char *s, size_t n, size_t limit)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, out = 0;
	bool space = false;

	while (i < n && (u[i] <= ' ' || u[i] == 0x7f))
		i++;
	while (i < n) {
		const char *piece = s + i;
		size_t step = 1, plen = 1;

		if (u[i] <= ' ' || u[i] == 0x7f) {
			space = true;
			i++;
			continue;
		}
		if (u[i] >= 0x80) {
			plen = step = utf8_len(u + i, n - i);
			if (!step) {
				piece = "?";
				step = plen = 1;
			}
		}
		if (out + space + plen > limit) {
			sb_str(b, "...");
			return;
		}
		if (space)
			sb_put(b, " ", 1);
		sb_put(b, piece, plen);
		out += space + plen;
		space = false;
		i += step;
	}
}

/* The media type of a Content-Type value, lowercased, without parameters ("" when none). */
static void media_type_of(const char *ct, char *out, size_t size)
{
	size_t n = 0;

	while (ct && (*ct == ' ' || *ct == '\t'))
		ct++;
	for (; ct && *ct && *ct != ';' && *ct != ' ' && *ct != '\t' && n + 1 < size; ct++)
		out[n++] = (char)((*ct >= 'A' && *ct <= 'Z') ? *ct + 32 : *ct);
	out[n] = '\0';
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool starts_nocase(const char *s, size_t n, const char *prefix)
{
	size_t m = strlen(prefix);
	return n >= m && strncasecmp(s, prefix, m) == 0;
}

/* The text between <tag> and </tag> in s[0..n), or NULL. */
static const char *xml_element(const char *s, size_t n, const char *tag, size_t *ret_len)
{
	char open[32], close[32];
	const char *a, *z;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	a = memmem(s, n, open, strlen(open));
	if (!a)
		return NULL;
	a += strlen(open);
	z = memmem(a, n - (size_t)(a - s), close, strlen(close));
	if (!z)
		return NULL;
	*ret_len = (size_t)(z - a);
	return a;
}

/* "CODE: message" of one entry of a registry's errors array. */
static void registry_entry(struct sbuf *b, json_t *e)
{
	const char *c = json_string_value(json_object_get(e, "code"));
	const char *m = json_string_value(json_object_get(e, "message"));

	if (c)
		sb_clean(b, c, strlen(c), CODE_MAX);
	if (c && m)
		sb_str(b, ": ");
	if (m)
		sb_clean(b, m, strlen(m), PIECE_MAX);
	if (!c && !m)
		sb_str(b, "(an error without code or message)");
}

static void registry_summary(struct sbuf *b, json_t *errors)
{
	size_t n = json_array_size(errors), i;

	if (b->size == 0)
		return;
	for (i = 0; i < n; i++) {
		char one[CODE_MAX + PIECE_MAX + 16];
		struct sbuf e = {one, sizeof(one), 0, false};
		char more[32];

		one[0] = '\0';
		registry_entry(&e, json_array_get(errors, i));
		/* Room for this entry, its separator and a " (+N more)" after it. */
		int ml = snprintf(more, sizeof(more), " (+%zu more)", n - i - 1);
		size_t need = (i ? 2 : 0) + e.len + (i + 1 < n ? (size_t)ml : 0);
		/* The first entry always (cut by the room if need be), the others when whole. */
		if (i > 0 && b->len + need > b->size - 1)
			break;
		if (i)
			sb_str(b, "; ");
		sb_str(b, one);
	}
	if (i < n) {
		char more[32];
		snprintf(more, sizeof(more), " (+%zu more)", n - i);
		sb_str(b, more);
	}
}

static bool looks_binary(const unsigned char *u, size_t n)
{
	size_t odd = 0, look = n < 512 ? n : 512;

	for (size_t i = 0; i < look; i++) {
		if (u[i] == 0)
			return true;
		if ((u[i] < ' ' && u[i] != '\t' && u[i] != '\n' && u[i] != '\r') || u[i] == 0x7f)
			odd++;
	}
	return odd * 10 > look;
}

enum err_body err_http_body(const char *content_type, const void *body, size_t len, char *summary,
			    size_t summary_size)
{
	struct sbuf b = {summary, summary_size, 0, false};
	const char *s = body, *t;
	char mt[128];
	size_t n = len;

	if (summary_size)
		summary[0] = '\0';
	if (!body || len == 0)
		return ERR_BODY_EMPTY;
	media_type_of(content_type, mt, sizeof(mt));
	/* Sniff past white space and a UTF-8 byte order mark. */
	if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
		s += 3;
		n -= 3;
	}
	while (n && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
		s++;
		n--;
	}
	if (strcmp(mt, "text/html") == 0 || strcmp(mt, "application/xhtml+xml") == 0 ||
	    starts_nocase(s, n, "<!doctype html") || starts_nocase(s, n, "<html")) {
		sb_str(&b, "HTML answer");
		return ERR_BODY_HTML;
	}
	if (n && (*s == '{' || *s == '[')) {
		json_t *root = json_loadb(s, n, 0, NULL);
		if (root) {
			json_t *errors = json_object_get(root, "errors");
			enum err_body k = ERR_BODY_JSON;
			if (json_is_array(errors) && json_array_size(errors) > 0) {
				registry_summary(&b, errors);
				k = ERR_BODY_REGISTRY;
			} else {
				const char *m = NULL;
				static const char *const keys[] = {"message", "error", "detail"};
				for (size_t i = 0; !m && i < 3; i++)
					m = json_string_value(json_object_get(root, keys[i]));
				if (m && *m)
					sb_clean(&b, m, strlen(m), PIECE_MAX);
				else
					sb_str(&b, "JSON answer");
			}
			json_decref(root);
			return k;
		}
	}
	if ((n && *s == '<') || strcmp(mt, "application/xml") == 0 || strcmp(mt, "text/xml") == 0 ||
	    ends_with(mt, "+xml")) {
		size_t cl = 0, ml = 0;
		const char *c = xml_element(s, n, "Code", &cl);
		const char *m = xml_element(s, n, "Message", &ml);
		if (c)
			sb_clean(&b, c, cl, CODE_MAX);
		if (c && m)
			sb_str(&b, ": ");
		if (m)
			sb_clean(&b, m, ml, PIECE_MAX);
		if (!c && !m)
			sb_str(&b, "XML answer");
		return ERR_BODY_XML;
	}
	if (looks_binary((const unsigned char *)s, n)) {
		char tmp[64];
		snprintf(tmp, sizeof(tmp), "%zu bytes of binary data", len);
		sb_str(&b, tmp);
		return ERR_BODY_BINARY;
	}
	t = memchr(s, '\n', n);
	sb_str(&b, "\"");
	sb_clean(&b, s, t ? (size_t)(t - s) : n, PIECE_MAX);
	sb_str(&b, "\"");
	return ERR_BODY_TEXT;
}

int err_from_http_answer(long status, enum err_body body)
{
	if (body == ERR_BODY_HTML && ((status >= 200 && status < 300) || status == 404))
		return -EIO;
	return err_from_http(status);
}
