/* err: the error convention of core.
 *
 * Every fallible core function returns int: >= 0 success, -errno failure. When the caller
 * passes a struct sf_err, the function also fills it with one human sentence (the reason a
 * user can act on). core never prints; fs/ and tools/ log the message once, at the edge.
 * The struct is caller-owned and fixed-size: no allocation, safe on any thread.
 * Foreign codes are translated here once each: curl, HTTP status, jansson.
 */
#pragma once

#include <curl/curl.h>
#include <stdarg.h>

struct sf_err {
	int code; /* the -errno returned alongside, 0 when unset */
	char msg[512];
};

/* Fill err (if non-NULL) and return code (a negative errno). Later calls overwrite. */
int err_set(struct sf_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message already in err with context ("GET /v2/...: " + old message). */
void err_prefix(struct sf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* -errno for a libcurl result: timeouts -> -ETIMEDOUT, out of memory -> -ENOMEM, a transfer
 * stopped by our own callback -> -ECANCELED, everything else (network trouble) -> -EIO. */
int err_from_curl(CURLcode rc);

/* -errno for an HTTP status >= 400: 404 -> ENOENT, 401/403 -> EACCES, 429/503 -> EAGAIN,
 * 408/504 -> ETIMEDOUT, 400 -> EINVAL, 405/501 -> EOPNOTSUPP, 409 -> EEXIST, 413 -> EFBIG,
 * 416 -> ERANGE, 507 -> ENOSPC, other -> EIO. 0 below 400. */
int err_from_http(long status);

/* What the body of an HTTP answer is, judged from its Content-Type and its bytes. */
enum err_body {
	ERR_BODY_EMPTY,	   /* no bytes (HEAD, most 401/404 of real registries) */
	ERR_BODY_REGISTRY, /* JSON {"errors":[{"code":..,"message":..},...]} (distribution spec) */
	ERR_BODY_JSON,	   /* other JSON */
	ERR_BODY_HTML,	   /* a web page: text/html, xhtml, or bytes <!DOCTYPE html, <html */
	ERR_BODY_XML,	   /* XML, e.g. an S3 or GCS error behind a blob redirect */
	ERR_BODY_TEXT,	   /* other printable text ("404 page not found") */
	ERR_BODY_BINARY,   /* anything else */
};

/* What a message says of a web page served where a registry's API belongs. */
#define ERR_NOT_REGISTRY_API "not a Docker registry API (HTML answer)"

/* Room for a summary written by err_http_body (bytes, with the NUL). */
#define ERR_SUMMARY_MAX 320

/* Classify an HTTP answer's body and summarise it in one line for a message, safely: control
 * characters become spaces, each piece is cut at a UTF-8 character boundary.
 * Summaries: REGISTRY "CODE: message; CODE2: message2" (every entry of the errors array in
 * order, codes cut to 40 bytes and messages to 120 with "...", as many as fit in
 * ERR_SUMMARY_MAX, then " (+N more)"); JSON the value of a top-level
 * "message", "error" or "detail" string, else "JSON answer"; HTML "HTML answer"; XML
 * "CODE: message" from <Code> and <Message> when present, else "XML answer"; TEXT its first
 * line in double quotes (at most 120 bytes); BINARY "N bytes of binary data"; EMPTY "".
 * content_type may be NULL; body may be NULL when len is 0. Writes at most summary_size bytes
 * (ERR_SUMMARY_MAX holds every summary) and always NUL-terminates when summary_size > 0.
 * Pure, thread-safe; the body is not modified. */
enum err_body err_http_body(const char *content_type, const void *body, size_t len, char *summary,
			    size_t summary_size);

/* -errno for an HTTP answer that was not the expected success, from its status and body:
 * err_from_http(status), except that a web page where a registry answer belongs (a 2xx or a
 * 404 that is HTML) is -EIO: a 404 means "not found" only when a registry API said it. A 2xx
 * that is not HTML gives 0 (the caller judges the content). Pure, thread-safe. */
int err_from_http_answer(long status, enum err_body body);

/* The message in err, or strerror(-code) when err holds none. Never NULL. */
const char *err_msg(const struct sf_err *err, int code);
