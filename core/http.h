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
#include <time.h>

#include "buf.h"
#include "digest.h"
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

/* Header fields are read as RFC 9110 section 5 says: names case-insensitive, values trimmed
 * of OWS, a folded continuation line (obs-fold) joined with one SP, and a field sent on several
 * lines combined into one value joined with ", " (section 5.3). A repeated line equal to the
 * value so far is dropped: identical duplicates of a singleton field (Content-Length: 5 twice)
 * stay one valid value, while different ones ("a, b") fail that field's own parser. */
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
	int64_t content_length;	    /* -1 when absent */
	long retry_after;	    /* seconds, -1 when absent */
	bool streamed;		    /* body bytes were passed to the sink */
	char *content_length_value; /* the combined raw values behind content_length */
	char *retry_after_value;    /* ... and retry_after */
	int last_field;		    /* internal: 1 + the field an obs-fold line extends; 0 none */
};

int http_do(struct http_client *c, const struct http_request *req, struct http_response *ret,
	    struct sf_err *err);
void http_response_done(struct http_response *r);

/* Take one header line as curl hands it ("Name: value\r\n", a status line, a continuation
 * line or the empty line ending the block) into r, as described above http_response. A status
 * line starts a new response (after 100 Continue) and forgets older fields.
 * 0, or -ENOMEM. For http_do's header callback; exposed for tests. */
int http_response_add_header(struct http_response *r, const char *line, size_t len);

/* Retry-After (RFC 9110 section 10.2.3): delta-seconds, or an HTTP-date taken as seconds from
 * now (0 when past). Capped at 100000 s. -1 when absent or malformed (two different values
 * combined, a sign, a unit). The _at form takes "now" (seconds since the epoch) for tests. */
long http_parse_retry_after(const char *value);
long http_parse_retry_after_at(const char *value, time_t now);

/* HTTP-date (RFC 9110 section 5.6.7) in any of its three forms: IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850 form ("Sunday, 06-Nov-94 08:49:37
 * GMT", two-digit years 70-99 are 19xx, 00-69 20xx) and asctime ("Sun Nov  6 08:49:37 1994").
 * Names are case-sensitive as the RFC says; surrounding OWS is allowed. 0 with *ret (seconds
 * since the epoch), or -EINVAL. */
int http_parse_date(const char *value, time_t *ret);

/* Content-Length (RFC 9110 section 8.6): 1*DIGIT, or a list of identical values ("42, 42", as
 * repeated lines combine). The length, or -1 when absent, malformed, differing or above
 * INT64_MAX. */
int64_t http_parse_content_length(const char *value);

/* Content-Range of a 206 or 416 answer (RFC 9110 section 14.4), unit "bytes" in any case:
 * "bytes FIRST-LAST/COMPLETE", "bytes FIRST-LAST/(star)" (complete = -1), or "bytes
 * (star)/COMPLETE" (unsatisfied; first = last = 0), "(star)" being an asterisk. FIRST <= LAST <
 * COMPLETE is checked. 0 or -EINVAL. */
struct http_content_range {
	uint64_t first, last;
	int64_t complete; /* -1: "*", unknown */
	bool unsatisfied;
};
int http_parse_content_range(const char *value, struct http_content_range *ret);

/* A media type (RFC 9110 section 8.3.1: type "/" subtype *( OWS ";" OWS [ parameter ] ),
 * parameter values a token or a quoted-string) reduced to "type/subtype" in lower case:
 * parameters are dropped, names compare case-insensitively. 0 with *ret (caller frees),
 * -EINVAL when absent or malformed, -ENOMEM. */
int http_parse_media_type(const char *value, char **ret);

/* Docker-Content-Digest (OCI distribution spec: algorithm ":" encoded). 0 with ret for a sha256
 * digest (64 lower-case hex digits); -ENOTSUP for a well-formed digest of another algorithm
 * (sha512...), which the caller cannot check and may ignore; -EINVAL when absent or malformed
 * (two different values combined, upper-case sha256 hex, junk). */
int http_parse_digest(const char *value, char ret[DIGEST_LEN]);

/* RFC 9110 grammar shared by the header parsers (http.c, auth.c, registry.c): whether c is a
 * tchar (section 5.6.2), and p past optional white space (spaces and tabs, section 5.6.3). */
bool http_is_tchar(unsigned char c);
const char *http_skip_ows(const char *p);

/* True when two absolute URLs have the same scheme, host and port. */
bool http_same_origin(const char *a, const char *b);

/* Resolve a (possibly relative) reference against an absolute base URL. Caller frees. */
char *http_resolve_url(const char *base, const char *ref);
