/* fakeserver: a scripted HTTP/1.1 server on 127.0.0.1 for fault tests only.
 *
 * It does what a real registry will not do on demand: fail, reset, stall, redirect in loops,
 * send too much or too little. Everything else is tested against a real registry.
 *
 * One thread listens on an ephemeral port and serves one connection at a time. Each request
 * takes the next answer of the script (fakeserver_push), in order; when the script is used up
 * the server answers 418 with "X-Fake: script exhausted", so an extra request is visible both
 * as a count and as a status. Every answer carries "Connection: close" and the connection is
 * closed after it, so each request is one connection (no client-side reuse to reason about).
 * A connection that starts with a TLS record (the https attempt of a loopback registry client)
 * is closed at once, counted by fakeserver_rejected(), and takes no answer from the script.
 *
 * Each request is recorded (method, target, headers) before its answer is sent, so a client
 * call that has returned may assert on every request it made. Records stay valid until
 * fakeserver_free. Script entries are copied, but the strings and bodies they point to are
 * borrowed: keep them alive until the server has answered.
 * Thread-safe: push and read records from any thread while the server runs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fake_action {
	FAKE_REPLY, /* status line, headers, body (maybe cut short), close */
	FAKE_CLOSE, /* read the request, close without sending a byte (clean FIN) */
	FAKE_RESET, /* read the request, reset the connection (RST, no byte sent) */
	FAKE_STALL, /* status line and headers, then nothing until the client gives up */
};

struct fake_response {
	enum fake_action action;
	int status;	     /* FAKE_REPLY / FAKE_STALL; 0 = 200 */
	const char *headers; /* more header lines, each ending in "\r\n", or NULL */
	const void *body;
	size_t body_len;  /* 0 with a body: strlen(body) */
	bool honor_range; /* answer "Range: bytes=N-" with 206, Content-Range, body from N */
	bool cut;	  /* send only cut_at body bytes (Content-Length stays whole), close */
	size_t cut_at;
};

#define FAKE_MAX_HEADERS 64

struct fake_request {
	char method[16];
	char *target; /* as sent: "/v2/x/tags/list?n=2" */
	size_t nheaders;
	char *names[FAKE_MAX_HEADERS];
	char *values[FAKE_MAX_HEADERS];
	size_t body_len; /* bytes of request body read (Content-Length) */
};

struct fakeserver;

/* Listen on 127.0.0.1:0 and start serving. 0 or -errno. */
int fakeserver_new(struct fakeserver **ret);
/* Stop the thread (also when stalled), close everything, free the records. NULL is fine. */
void fakeserver_free(struct fakeserver *fs);

int fakeserver_port(const struct fakeserver *fs);
/* "http://127.0.0.1:PORT" (borrowed). */
const char *fakeserver_url(const struct fakeserver *fs);

/* Append one answer / n answers to the script. */
void fakeserver_push(struct fakeserver *fs, const struct fake_response *r);
void fakeserver_push_n(struct fakeserver *fs, const struct fake_response *r, size_t times);

/* Requests recorded so far. */
size_t fakeserver_count(struct fakeserver *fs);
/* Requests whose target starts with prefix. */
size_t fakeserver_count_prefix(struct fakeserver *fs, const char *prefix);
/* Request i (0-based) or NULL. */
const struct fake_request *fakeserver_request(struct fakeserver *fs, size_t i);
/* Connections closed at once because they began with a TLS handshake. */
size_t fakeserver_rejected(struct fakeserver *fs);
/* Script answers not yet used. */
size_t fakeserver_pending(struct fakeserver *fs);

/* Value of the first header called name (case-insensitive), or NULL. */
const char *fake_request_header(const struct fake_request *r, const char *name);
