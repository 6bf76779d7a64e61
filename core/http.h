/* http: one HTTP/1.1 client over libcurl for the registry and the Docker Engine API.
 *
 * A client owns a libcurl share handle: DNS cache, TLS sessions and the connection pool are
 * shared by every request on every thread, so sequential requests reuse connections. Requests
 * are synchronous and may run concurrently from many threads.
 *
 * Redirects are followed here, not by curl: at most 5, and the Authorization value is dropped
 * whenever the redirect leaves the original scheme://host:port (blob storage backends).
 * Transport errors and 429/5xx answers are retried with exponential backoff (honouring
 * Retry-After up to 10 s) as long as no body byte was handed to the caller's sink.
 * Every collected body is capped (default 4 MiB, errors 64 KiB); headers 64 KiB in all.
 *
 * http_do returns 0 when a response arrived, whatever its status: the caller judges the status
 * (err_from_http). It returns -errno only for transport failures (err_from_curl) or a cap.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"

struct http_client_opts {
	bool insecure;		 /* skip TLS verification */
	const char *unix_socket; /* connect to this socket instead of TCP (Docker Engine API) */
	long connect_timeout_s;	 /* default 10 */
	long stall_timeout_s;	 /* abort when under 1 byte/s for this long; default 60 */
	int max_tries;		 /* attempts per request, default 4 */
	long backoff_ms;	 /* first backoff, doubled each time; default 200 */
};

struct http_client;

int http_client_new(const struct http_client_opts *opts, struct http_client **ret);
void http_client_free(struct http_client *c);

/* Stop every transfer of this client, running or to come, within about a second: they fail
 * with -ECANCELED. For unmounting while a fetch or an export is under way. Irreversible. */
void http_client_cancel(struct http_client *c);

/* Receives body bytes of a 2xx answer. Return 0 to go on, -errno to abort the transfer. */
typedef int (*http_sink_fn)(void *userdata, const void *data, size_t len);

/* A rewindable upload source: copy up to len bytes at offset off into buf. Returns the count
 * (> 0 while off < the declared length) or -errno, which fails the request with that code.
 * Called again from offset 0 (or any earlier offset) when a request is retried, so it must
 * give the same bytes every time. Called from the thread running http_do. */
typedef ssize_t (*http_read_at_fn)(void *userdata, uint64_t off, void *buf, size_t len);

struct http_request {
	const char *method; /* NULL = GET; "HEAD", "PUT", "POST", "PATCH", "DELETE" */
	const char *url;
	const char *authorization;  /* value of the Authorization header, or NULL */
	const char *const *headers; /* more "Name: value" lines, NULL-terminated, or NULL */
	const void *body;	    /* request body in memory ... */
	size_t body_len;
	int upload_fd; /* ... or from this fd (pread, so retries work); -1/0 = none */
	uint64_t upload_off;
	uint64_t upload_len;
	bool has_upload_fd;
	http_read_at_fn upload_read_at; /* ... or from this source: upload_len bytes from 0 */
	void *upload_ud;
	size_t max_body;   /* cap for a collected 2xx body; 0 = 4 MiB */
	http_sink_fn sink; /* stream a 2xx body here instead of collecting it */
	void *sink_userdata;
	bool has_range; /* send "Range: bytes=range_start-" */
	uint64_t range_start;
	bool no_redirect; /* return 3xx answers as they are */
};

struct http_response {
	long status;
	struct buf body; /* 2xx body when no sink; error body (capped) otherwise */
	char *content_type;
	char *www_authenticate;
	char *link;
	char *location;
	char *docker_content_digest;
	char *content_range;
	char *docker_upload_uuid;
	int64_t content_length; /* -1 when absent */
	long retry_after;	/* seconds, -1 when absent */
	bool streamed;		/* body bytes were passed to the sink */
};

int http_do(struct http_client *c, const struct http_request *req, struct http_response *ret,
	    struct sf_err *err);
void http_response_done(struct http_response *r);

/* Parse a Retry-After header value in seconds (integer form only); -1 if not. */
long http_parse_retry_after(const char *value);

/* True when two absolute URLs have the same scheme, host and port. */
bool http_same_origin(const char *a, const char *b);

/* Resolve a (possibly relative) reference against an absolute base URL. Caller frees. */
char *http_resolve_url(const char *base, const char *ref);
