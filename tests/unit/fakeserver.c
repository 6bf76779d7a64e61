/* fakeserver: scripted HTTP/1.1 faults on 127.0.0.1 (see fakeserver.h). */
#include "fakeserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_CAP (64 * 1024)
#define REQ_BODY_CAP (16 * 1024 * 1024)
#define IO_TIMEOUT_MS 5000
#define STALL_MAX_MS 30000

struct fakeserver {
	int lfd;
	int stop[2]; /* readable once fakeserver_free wants the thread gone */
	pthread_t thread;
	bool started;
	int port;
	char url[64];
	pthread_mutex_t lock;
	struct fake_response *script;
	size_t nscript, used, script_cap;
	struct fake_request **reqs;
	size_t nreqs, reqs_cap;
	size_t rejected;
};

/* Wait until fd is readable: 1, 0 on timeout, -1 when stopping or on error. */
static int wait_readable(struct fakeserver *fs, int fd, int timeout_ms)
{
	struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = fs->stop[0], .events = POLLIN}};
	int r;

	do
		r = poll(p, 2, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0 || (p[1].revents & POLLIN))
		return -1;
	if (r == 0)
		return 0;
	return 1;
}

static int send_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void request_free(struct fake_request *q)
{
	if (!q)
		return;
	free(q->target);
	for (size_t i = 0; i < q->nheaders; i++) {
		free(q->names[i]);
		free(q->values[i]);
	}
	free(q);
}

const char *fake_request_header(const struct fake_request *r, const char *name)
{
	for (size_t i = 0; r && i < r->nheaders; i++)
		if (strcasecmp(r->names[i], name) == 0)
			return r->values[i];
	return NULL;
}

static char *dup_trim(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	return strndup(s, n);
}

/* Parse the request head (request line + header lines, no final CRLF CRLF). */
static struct fake_request *parse_head(const char *head, size_t len)
{
	struct fake_request *q = calloc(1, sizeof(*q));
	const char *end = head + len, *eol, *sp1, *sp2;

	if (!q)
		return NULL;
	eol = memmem(head, len, "\r\n", 2);
	if (!eol)
		eol = end;
	sp1 = memchr(head, ' ', (size_t)(eol - head));
	sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || (size_t)(sp1 - head) >= sizeof(q->method))
		goto bad;
	memcpy(q->method, head, (size_t)(sp1 - head));
	q->target = strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	if (!q->target)
		goto bad;
	for (const char *p = eol + 2; p < end && q->nheaders < FAKE_MAX_HEADERS; p = eol + 2) {
		const char *colon;
		eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			eol = end;
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon)
			continue;
		q->names[q->nheaders] = strndup(p, (size_t)(colon - p));
		q->values[q->nheaders] = dup_trim(colon + 1, (size_t)(eol - colon - 1));
		q->nheaders++;
		if (!q->names[q->nheaders - 1] || !q->values[q->nheaders - 1])
			goto bad;
	}
	return q;
bad:
	request_free(q);
	return NULL;
}

/* Read one request. 1 = got it, 0 = TLS or garbage (rejected), -1 = gone / stopping. */
static int read_request(struct fakeserver *fs, int fd, struct fake_request **ret)
{
	char *buf = malloc(HEAD_CAP);
	size_t have = 0, head_len = 0;
	struct fake_request *q = NULL;
	const char *cl;
	int r = -1;

	if (!buf)
		return -1;
	for (;;) {
		char *hit;
		ssize_t n;
		if (wait_readable(fs, fd, IO_TIMEOUT_MS) <= 0)
			goto out;
		n = recv(fd, buf + have, HEAD_CAP - have, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		if (have == 0 && (unsigned char)buf[0] == 0x16) {
			r = 0; /* a TLS ClientHello: this server speaks plain HTTP only */
			goto out;
		}
		have += (size_t)n;
		hit = memmem(buf, have, "\r\n\r\n", 4);
		if (hit) {
			head_len = (size_t)(hit - buf);
			break;
		}
		if (have == HEAD_CAP) {
			r = 0;
			goto out;
		}
	}
	q = parse_head(buf, head_len);
	if (!q) {
		r = 0;
		goto out;
	}
	cl = fake_request_header(q, "Content-Length");
	if (cl) {
		size_t want = strtoul(cl, NULL, 10), got = have - head_len - 4;
		if (want > REQ_BODY_CAP)
			goto out;
		while (got < want) {
			char sink[16384];
			size_t ask = want - got < sizeof(sink) ? want - got : sizeof(sink);
			ssize_t n;
			if (wait_readable(fs, fd, IO_TIMEOUT_MS) <= 0)
				goto out;
			n = recv(fd, sink, ask, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				goto out;
			got += (size_t)n;
		}
		q->body_len = want;
	}
	*ret = q;
	q = NULL;
	r = 1;
out:
	request_free(q);
	free(buf);
	return r;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 206:
		return "Partial Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 416:
		return "Range Not Satisfiable";
	case 418:
		return "I'm a teapot";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 503:
		return "Service Unavailable";
	default:
		return "Whatever";
	}
}

/* "bytes=N-" -> N; -1 when absent or another form. */
static long long range_start(const struct fake_request *q)
{
	const char *v = fake_request_header(q, "Range");
	char *end;
	unsigned long long n;

	if (!v || strncmp(v, "bytes=", 6) != 0 || v[6] < '0' || v[6] > '9')
		return -1;
	n = strtoull(v + 6, &end, 10);
	return strcmp(end, "-") == 0 ? (long long)n : -1;
}

/* Send one scripted answer to request q. */
static void answer(struct fakeserver *fs, int fd, const struct fake_response *a,
		   const struct fake_request *q)
{
	const char *body = a->body;
	size_t len = a->body ? (a->body_len ? a->body_len : strlen(a->body)) : 0;
	int status = a->status ? a->status : 200;
	char extra[160] = "";
	char *msg = NULL;
	size_t head_len, send_len;
	int n;

	if (a->action == FAKE_CLOSE)
		return;
	if (a->action == FAKE_RESET) {
		struct linger l = {.l_onoff = 1, .l_linger = 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		return;
	}
	if (a->honor_range) {
		long long from = range_start(q);
		if (from > (long long)len) {
			status = 416;
			snprintf(extra, sizeof(extra), "Content-Range: bytes */%zu\r\n", len);
			len = 0;
		} else if (from >= 0) {
			status = 206;
			snprintf(extra, sizeof(extra), "Content-Range: bytes %lld-%zu/%zu\r\n",
				 from, len ? len - 1 : 0, len);
			body += from;
			len -= (size_t)from;
		}
	}
	n = asprintf(&msg, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s%s\r\n",
		     status, reason(status), a->action == FAKE_STALL && !len ? (size_t)1000 : len,
		     extra, a->headers ? a->headers : "");
	if (n < 0)
		return;
	head_len = (size_t)n;
	if (a->action == FAKE_STALL) {
		/* Headers, then silence until the client hangs up (or the server stops). */
		if (send_all(fd, msg, head_len) == 0) {
			char drain[512];
			while (wait_readable(fs, fd, STALL_MAX_MS) > 0 &&
			       recv(fd, drain, sizeof(drain), 0) > 0)
				;
		}
		free(msg);
		return;
	}
	send_len = a->cut && a->cut_at < len ? a->cut_at : len;
	/* Headers and body in one buffer: one write, so small answers arrive in one piece. */
	char *all = realloc(msg, head_len + send_len);
	if (!all) {
		free(msg);
		return;
	}
	if (send_len)
		memcpy(all + head_len, body, send_len);
	send_all(fd, all, head_len + send_len);
	free(all);
}

static void serve(struct fakeserver *fs, int fd)
{
	static const struct fake_response exhausted = {
	    .status = 418, .headers = "X-Fake: script exhausted\r\n", .body = "script exhausted\n"};
	struct fake_response a;
	struct fake_request *q = NULL;
	int r = read_request(fs, fd, &q);

	if (r <= 0) {
		if (r == 0) {
			pthread_mutex_lock(&fs->lock);
			fs->rejected++;
			pthread_mutex_unlock(&fs->lock);
		}
		return;
	}
	pthread_mutex_lock(&fs->lock);
	if (fs->nreqs == fs->reqs_cap) {
		size_t cap = fs->reqs_cap ? fs->reqs_cap * 2 : 16;
		struct fake_request **v = realloc(fs->reqs, cap * sizeof(*v));
		if (!v) {
			pthread_mutex_unlock(&fs->lock);
			request_free(q);
			return;
		}
		fs->reqs = v;
		fs->reqs_cap = cap;
	}
	fs->reqs[fs->nreqs++] = q;
	a = fs->used < fs->nscript ? fs->script[fs->used++] : exhausted;
	pthread_mutex_unlock(&fs->lock);
	answer(fs, fd, &a, q);
}

static void *server_main(void *arg)
{
	struct fakeserver *fs = arg;

	for (;;) {
		int fd;
		if (wait_readable(fs, fs->lfd, -1) < 0)
			break;
		fd = accept4(fs->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(fs, fd);
		close(fd);
	}
	return NULL;
}

int fakeserver_new(struct fakeserver **ret)
{
	struct fakeserver *fs = calloc(1, sizeof(*fs));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int r;

	if (!fs)
		return -ENOMEM;
	fs->stop[0] = fs->stop[1] = -1;
	pthread_mutex_init(&fs->lock, NULL);
	fs->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fs->lfd < 0 || bind(fs->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fs->lfd, 16) < 0 || getsockname(fs->lfd, (struct sockaddr *)&sa, &sl) < 0 ||
	    pipe2(fs->stop, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	fs->port = ntohs(sa.sin_port);
	snprintf(fs->url, sizeof(fs->url), "http://127.0.0.1:%d", fs->port);
	r = -pthread_create(&fs->thread, NULL, server_main, fs);
	if (r < 0)
		goto fail;
	fs->started = true;
	*ret = fs;
	return 0;
fail:
	fakeserver_free(fs);
	return r;
}

void fakeserver_free(struct fakeserver *fs)
{
	if (!fs)
		return;
	if (fs->started) {
		char c = 'x';
		while (write(fs->stop[1], &c, 1) < 0 && errno == EINTR)
			;
		pthread_join(fs->thread, NULL);
	}
	if (fs->lfd >= 0)
		close(fs->lfd);
	for (int i = 0; i < 2; i++)
		if (fs->stop[i] >= 0)
			close(fs->stop[i]);
	for (size_t i = 0; i < fs->nreqs; i++)
		request_free(fs->reqs[i]);
	free(fs->reqs);
	free(fs->script);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}

int fakeserver_port(const struct fakeserver *fs)
{
	return fs->port;
}

const char *fakeserver_url(const struct fakeserver *fs)
{
	return fs->url;
}

void fakeserver_push_n(struct fakeserver *fs, const struct fake_response *r, size_t times)
{
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < times; i++) {
		if (fs->nscript == fs->script_cap) {
			size_t cap = fs->script_cap ? fs->script_cap * 2 : 16;
			struct fake_response *v = realloc(fs->script, cap * sizeof(*v));
			if (!v)
				abort();
			fs->script = v;
			fs->script_cap = cap;
		}
		fs->script[fs->nscript++] = *r;
	}
	pthread_mutex_unlock(&fs->lock);
}

void fakeserver_push(struct fakeserver *fs, const struct fake_response *r)
{
	fakeserver_push_n(fs, r, 1);
}

size_t fakeserver_count(struct fakeserver *fs)
{
	size_t n;

	pthread_mutex_lock(&fs->lock);
	n = fs->nreqs;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

size_t fakeserver_count_prefix(struct fakeserver *fs, const char *prefix)
{
	size_t n = 0;

	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nreqs; i++)
		if (strncmp(fs->reqs[i]->target, prefix, strlen(prefix)) == 0)
			n++;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

const struct fake_request *fakeserver_request(struct fakeserver *fs, size_t i)
{
	const struct fake_request *q;

	pthread_mutex_lock(&fs->lock);
	q = i < fs->nreqs ? fs->reqs[i] : NULL;
	pthread_mutex_unlock(&fs->lock);
	return q;
}

size_t fakeserver_rejected(struct fakeserver *fs)
{
	size_t n;

	pthread_mutex_lock(&fs->lock);
	n = fs->rejected;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

size_t fakeserver_pending(struct fakeserver *fs)
{
	size_t n;

	pthread_mutex_lock(&fs->lock);
	n = fs->nscript - fs->used;
	pthread_mutex_unlock(&fs->lock);
	return n;
}
