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
 * 400 -> EINVAL, 409 -> EEXIST, 413 -> EFBIG, 416 -> ERANGE, other -> EIO. 0 below 400. */
int err_from_http(long status);

/* The message in err, or strerror(-code) when err holds none. Never NULL. */
const char *err_msg(const struct sf_err *err, int code);
