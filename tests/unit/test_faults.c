/* Fault tests of core/http, core/registry and core/blobcache against a scripted fake server.
 *
 * A real registry does not fail on demand: these cases make the network misbehave (5xx, 429
 * with Retry-After, resets, stalls, redirect loops, oversized bodies, servers that ignore Range,
 * bodies cut mid-way, wrong bytes, token servers, paginated and looping tag lists) and assert
 * exact outcomes: return codes, statuses, byte counts, how many requests the server saw and
 * which headers they carried. Everything that is not a fault is tested against a real registry.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <cmocka.h>

#include "addr.h"
#include "blobcache.h"
#include "digest.h"
#include "err.h"
#include "fakeserver.h"
#include "http.h"
#include "registry.h"
#include "registry_storage.h"
#include "storage.h"

#define REPO "test/stages"
#define BLOBS_PREFIX "/v2/" REPO "/blobs/"
#define TAGS_PREFIX "/v2/" REPO "/tags/list"

/* ---- helpers ---------------------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A sink that keeps everything and counts its calls. */
struct collect {
	char *data;
	size_t len, alloc;
	size_t calls;
};

static int collect_sink(void *userdata, const void *data, size_t len)
{
	struct collect *c = userdata;

	if (c->len + len > c->alloc) {
		size_t n = c->alloc ? c->alloc : 4096;
		while (n < c->len + len)
			n *= 2;
		char *p = realloc(c->data, n);
		if (!p)
			return -ENOMEM;
		c->data = p;
		c->alloc = n;
	}
	memcpy(c->data + c->len, data, len);
	c->len += len;
	c->calls++;
	return 0;
}

/* len bytes of a pattern that does not repeat at short periods. Caller frees. */
static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len ? len : 1);
	uint32_t x = seed * 2654435761u + 1;

	assert_non_null(p);
	for (size_t i = 0; i < len; i++) {
		x = x * 1664525u + 1013904223u;
		p[i] = (unsigned char)(x >> 24);
	}
	return p;
}

static const char *hdr(struct fakeserver *fs, size_t i, const char *name)
{
	const struct fake_request *q = fakeserver_request(fs, i);
	assert_non_null(q);
	return fake_request_header(q, name);
}

static const char *target(struct fakeserver *fs, size_t i)
{
	const struct fake_request *q = fakeserver_request(fs, i);
	assert_non_null(q);
	return q->target;
}

static char *url_of(struct fakeserver *fs, const char *path)
{
	char *u = NULL;
	assert_true(asprintf(&u, "%s%s", fakeserver_url(fs), path) > 0);
	return u;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static size_t dir_entries(const char *dir, const char *sub)
{
	char path[4096];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* ---- fixture ---------------------------------------------------------------------------- */

struct fx {
	struct fakeserver *a, *b; /* b: a second origin (another port) */
	struct http_client *http;
	char dir[64]; /* cache dir, "" when none */
	struct blobcache *bc;
	struct storage *st;   /* owns the registry */
	struct registry *reg; /* borrowed from st */
};

static const struct http_client_opts fast_opts = {.max_tries = 4, .backoff_ms = 10};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	if (!fx || fakeserver_new(&fx->a) < 0 || fakeserver_new(&fx->b) < 0 ||
	    http_client_new(&fast_opts, &fx->http) < 0)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (!fx)
		return 0;
	blobcache_free(fx->bc);
	storage_free(fx->st);
	http_client_free(fx->http);
	fakeserver_free(fx->a);
	fakeserver_free(fx->b);
	if (fx->dir[0])
		nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

/* GET path on server a with the fixture's client. */
static int get(struct fx *fx, const char *path, struct http_response *resp, struct sf_err *err)
{
	char *u = url_of(fx->a, path);
	struct http_request req = {.url = u};
	int r = http_do(fx->http, &req, resp, err);
	free(u);
	return r;
}

/* Connect a registry client (and a storage over it) to server a; the script must already
 * hold the answer to the /v2/ ping. */
static void open_registry(struct fx *fx, int page_size)
{
	struct registry_opts o = {.http = fast_opts, .page_size = page_size};
	struct sf_err err = {0};
	struct addr a = {0};
	char text[128];

	snprintf(text, sizeof(text), "127.0.0.1:%d/%s", fakeserver_port(fx->a), REPO);
	assert_int_equal(addr_parse(text, &a, &err), 0);
	int r = registry_new(&a, &o, &fx->reg, &err);
	addr_done(&a);
	if (r < 0)
		fail_msg("registry_new: %d %s", r, err.msg);
	assert_int_equal(registry_storage_new(fx->reg, &fx->st), 0);
	/* The https attempt was refused (plain server), then the ping went over http. */
	assert_int_equal(fakeserver_rejected(fx->a), 1);
	assert_string_equal(target(fx->a, 0), "/v2/");
}

static void open_cache(struct fx *fx)
{
	struct sf_err err = {0};

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_faults.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	assert_int_equal(blobcache_new(fx->dir, 1 << 30, &fx->bc, &err), 0);
}

/* ---- 1. retries on 5xx ------------------------------------------------------------------- */

static void test_500_then_200(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push(fx->a, &(struct fake_response){.status = 500, .body = "oops"});
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "fine"});
	assert_int_equal(get(fx, "/x", &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body.len, 4);
	assert_memory_equal(resp.body.data, "fine", 4);
	assert_int_equal(fakeserver_count(fx->a), 2);
	assert_string_equal(target(fx->a, 1), "/x");
	http_response_done(&resp);
}

static void test_503_gives_up_after_max_tries(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};

	/* A fifth request would get the script-exhausted 418. */
	fakeserver_push_n(fx->a, &(struct fake_response){.status = 503, .body = "busy"}, 4);
	assert_int_equal(get(fx, "/x", &resp, &err), 0);
	assert_int_equal(resp.status, 503);
	assert_int_equal(fakeserver_count(fx->a), 4);
	assert_int_equal(fakeserver_pending(fx->a), 0);
	assert_int_equal(err_from_http(resp.status), -EAGAIN);
	assert_int_equal(resp.body.len, 4);
	assert_memory_equal(resp.body.data, "busy", 4);
	http_response_done(&resp);
}

/* ---- 2. 429 with Retry-After ------------------------------------------------------------- */

static void test_429_retry_after(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};
	double t0, dt;

	fakeserver_push(fx->a,
			&(struct fake_response){.status = 429, .headers = "Retry-After: 1\r\n"});
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "ok"});
	t0 = now_s();
	assert_int_equal(get(fx, "/x", &resp, &err), 0);
	dt = now_s() - t0;
	assert_int_equal(resp.status, 200);
	assert_int_equal(fakeserver_count(fx->a), 2);
	/* Honoured the server's 1 s, not the 10 ms backoff. */
	assert_true(dt >= 1.0);
	http_response_done(&resp);
}

/* ---- 3. connections closed or reset before any byte -------------------------------------- */

static void test_reset_then_200(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_RESET});
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "ok"});
	assert_int_equal(get(fx, "/x", &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(fakeserver_count(fx->a), 2);
	http_response_done(&resp);
}

static void test_closed_then_200(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_CLOSE});
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "ok"});
	assert_int_equal(get(fx, "/x", &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body.len, 2);
	assert_int_equal(fakeserver_count(fx->a), 2);
	http_response_done(&resp);
}

/* An upload from a read_at source (upload_read_at): each retry sends it again from offset 0. */
struct upload_src {
	const char *data;
	size_t len;
	size_t bytes, starts, calls; /* bytes handed out; reads at offset 0; all reads */
	int fail_code;		     /* returned from the first read when set */
};

static ssize_t upload_src_read_at(void *ud, uint64_t off, void *buf, size_t len)
{
	struct upload_src *s = ud;

	s->calls++;
	if (s->fail_code)
		return s->fail_code;
	if (off == 0)
		s->starts++;
	if (off >= s->len)
		return 0;
	if (len > s->len - off)
		len = s->len - (size_t)off;
	memcpy(buf, s->data + off, len);
	s->bytes += len;
	return (ssize_t)len;
}

static void test_upload_read_at_retried_from_start(void **state)
{
	struct fx *fx = *state;
	const size_t len = 300000;
	char *data = calloc(1, len), *u = url_of(fx->a, "/load");
	struct upload_src src = {.data = data, .len = len};
	struct http_request req = {.method = "POST",
				   .url = u,
				   .upload_read_at = upload_src_read_at,
				   .upload_ud = &src,
				   .upload_len = len};
	struct http_response resp;
	struct sf_err err = {0};

	assert_non_null(data);
	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_RESET});
	fakeserver_push(fx->a, &(struct fake_response){.status = 500, .body = "oops"});
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "ok"});
	assert_int_equal(http_do(fx->http, &req, &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(fakeserver_count(fx->a), 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(fakeserver_request(fx->a, i)->method, "POST");
		assert_int_equal(fakeserver_request(fx->a, i)->body_len, len);
	}
	assert_int_equal(src.starts, 3);
	assert_int_equal(src.bytes, 3 * len);
	http_response_done(&resp);

	/* A failing source fails the request with its own errno, without a retry. */
	src = (struct upload_src){.data = data, .len = len, .fail_code = -ENOSPC};
	assert_int_equal(http_do(fx->http, &req, &resp, &err), -ENOSPC);
	assert_int_equal(src.calls, 1);
	free(data);
	free(u);
}

static void test_always_closed(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_CLOSE});
	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_RESET});
	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_CLOSE});
	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_RESET});
	assert_int_equal(get(fx, "/x", &resp, &err), -EIO);
	assert_int_equal(err.code, -EIO);
	assert_int_equal(fakeserver_count(fx->a), 4);
	assert_int_equal(fakeserver_pending(fx->a), 0);
	assert_int_equal(resp.status, 0); /* cleared on failure */
	assert_null(resp.body.data);
}

/* ---- 4. stalled answer -------------------------------------------------------------------- */

static void test_stall_timeout(void **state)
{
	struct fx *fx = *state;
	struct http_client_opts o = {.stall_timeout_s = 1, .max_tries = 1};
	struct http_response resp;
	struct sf_err err = {0};
	double t0;

	http_client_free(fx->http);
	fx->http = NULL;
	assert_int_equal(http_client_new(&o, &fx->http), 0);
	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_STALL, .status = 200});
	t0 = now_s();
	assert_int_equal(get(fx, "/slow", &resp, &err), -ETIMEDOUT);
	assert_true(now_s() - t0 >= 1.0);
	assert_int_equal(err.code, -ETIMEDOUT);
	assert_int_equal(fakeserver_count(fx->a), 1);
}

/* Unmounting while a transfer stalls: http_client_cancel stops it (-ECANCELED) long before
 * the stall timeout, and every later request fails at once without reaching the server. */
struct cancel_run {
	struct fx *fx;
	int rc;
	struct sf_err err;
};

static void *stalled_get(void *arg)
{
	struct cancel_run *c = arg;
	struct http_response resp;

	c->rc = get(c->fx, "/stalls", &resp, &c->err);
	if (c->rc == 0)
		http_response_done(&resp);
	return NULL;
}

static void test_cancel_stalled(void **state)
{
	struct fx *fx = *state;
	struct http_client_opts o = {.stall_timeout_s = 60, .max_tries = 1};
	struct cancel_run run = {.fx = fx};
	struct http_response resp;
	struct sf_err err = {0};
	pthread_t tid;
	double t0;

	http_client_free(fx->http);
	fx->http = NULL;
	assert_int_equal(http_client_new(&o, &fx->http), 0);
	fakeserver_push(fx->a, &(struct fake_response){.action = FAKE_STALL, .status = 200});
	assert_int_equal(pthread_create(&tid, NULL, stalled_get, &run), 0);
	while (fakeserver_count(fx->a) == 0)
		usleep(10000);
	t0 = now_s();
	http_client_cancel(fx->http);
	assert_int_equal(pthread_join(tid, NULL), 0);
	assert_int_equal(run.rc, -ECANCELED);
	assert_int_equal(run.err.code, -ECANCELED);
	/* Bounded by the stall timeout (60 s) otherwise; curl checks about once a second. */
	assert_true(now_s() - t0 < 30.0);
	assert_int_equal(get(fx, "/after", &resp, &err), -ECANCELED);
	assert_int_equal(fakeserver_count(fx->a), 1);
}

/* ---- 5. redirects ------------------------------------------------------------------------- */

static void test_redirect_same_origin_keeps_auth(void **state)
{
	struct fx *fx = *state;
	char *u = url_of(fx->a, "/first");
	struct http_request req = {.url = u, .authorization = "Bearer secret"};
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push(fx->a,
			&(struct fake_response){.status = 307, .headers = "Location: /second\r\n"});
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "here"});
	assert_int_equal(http_do(fx->http, &req, &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_memory_equal(resp.body.data, "here", 4);
	assert_int_equal(fakeserver_count(fx->a), 2);
	assert_string_equal(target(fx->a, 0), "/first");
	assert_string_equal(target(fx->a, 1), "/second");
	assert_non_null(hdr(fx->a, 0, "Authorization"));
	assert_string_equal(hdr(fx->a, 0, "Authorization"), "Bearer secret");
	assert_non_null(hdr(fx->a, 1, "Authorization"));
	assert_string_equal(hdr(fx->a, 1, "Authorization"), "Bearer secret");
	http_response_done(&resp);
	free(u);
}

static void test_redirect_cross_origin_drops_auth(void **state)
{
	struct fx *fx = *state;
	char *u = url_of(fx->a, "/v2/x/blobs/y"), loc[128];
	struct http_request req = {.url = u, .authorization = "Bearer secret"};
	struct http_response resp;
	struct sf_err err = {0};

	snprintf(loc, sizeof(loc), "Location: %s/storage/y?sig=1\r\n", fakeserver_url(fx->b));
	fakeserver_push(fx->a, &(struct fake_response){.status = 302, .headers = loc});
	fakeserver_push(fx->b, &(struct fake_response){.status = 200, .body = "far away"});
	assert_int_equal(http_do(fx->http, &req, &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body.len, 8);
	assert_memory_equal(resp.body.data, "far away", 8);
	assert_int_equal(fakeserver_count(fx->a), 1);
	assert_int_equal(fakeserver_count(fx->b), 1);
	assert_string_equal(hdr(fx->a, 0, "Authorization"), "Bearer secret");
	assert_string_equal(target(fx->b, 0), "/storage/y?sig=1");
	assert_null(hdr(fx->b, 0, "Authorization"));
	http_response_done(&resp);
	free(u);
}

static void test_redirect_loop(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push_n(
	    fx->a, &(struct fake_response){.status = 302, .headers = "Location: /loop\r\n"}, 10);
	assert_int_equal(get(fx, "/loop", &resp, &err), -ELOOP);
	assert_int_equal(err.code, -ELOOP);
	/* The first answer and 5 followed redirects: the sixth redirect is refused. */
	assert_int_equal(fakeserver_count(fx->a), 6);
}

static void test_redirect_five_is_fine(void **state)
{
	struct fx *fx = *state;
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push_n(
	    fx->a, &(struct fake_response){.status = 302, .headers = "Location: /hop\r\n"}, 5);
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "end"});
	assert_int_equal(get(fx, "/start", &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(fakeserver_count(fx->a), 6);
	http_response_done(&resp);
}

/* ---- 6. body caps ------------------------------------------------------------------------- */

static void test_body_cap(void **state)
{
	struct fx *fx = *state;
	unsigned char *body = pattern(1001, 1);
	char *u = url_of(fx->a, "/big");
	struct http_request req = {.url = u, .max_body = 1000};
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push(fx->a, &(struct fake_response){.body = body, .body_len = 1001});
	fakeserver_push(fx->a, &(struct fake_response){.body = body, .body_len = 1000});
	assert_int_equal(http_do(fx->http, &req, &resp, &err), -EFBIG);
	assert_int_equal(err.code, -EFBIG);
	assert_null(resp.body.data);
	/* Exactly at the cap is fine. */
	assert_int_equal(http_do(fx->http, &req, &resp, &err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body.len, 1000);
	assert_memory_equal(resp.body.data, body, 1000);
	assert_int_equal(fakeserver_count(fx->a), 2); /* a cap is not retried */
	http_response_done(&resp);
	free(u);
	free(body);
}

/* http.h: error bodies are cut at 64 KiB and the status kept (a proxy's big 404 page is still a
 * 404, a big 503 is still retried); they are never streamed to a sink. */
static void test_error_body_cap(void **state)
{
	struct fx *fx = *state;
	const size_t cap = 64 * 1024;
	unsigned char *body = pattern(cap + 1, 2);
	char *u = url_of(fx->a, "/missing");
	struct collect got = {0};
	struct http_request req = {.url = u};
	struct http_request sreq = {.url = u, .sink = collect_sink, .sink_userdata = &got};
	struct http_response resp;
	struct sf_err err = {0};

	fakeserver_push(fx->a,
			&(struct fake_response){.status = 404, .body = body, .body_len = cap + 1});
	fakeserver_push(fx->a,
			&(struct fake_response){.status = 404, .body = body, .body_len = cap});
	fakeserver_push(fx->a,
			&(struct fake_response){.status = 404, .body = body, .body_len = cap + 1});
	for (int i = 0; i < 2; i++) {
		assert_int_equal(http_do(fx->http, &req, &resp, &err), 0);
		assert_int_equal(resp.status, 404);
		assert_int_equal(resp.body.len, cap);
		assert_memory_equal(resp.body.data, body, cap);
		http_response_done(&resp);
	}
	assert_int_equal(http_do(fx->http, &sreq, &resp, &err), 0);
	assert_int_equal(resp.status, 404);
	assert_int_equal(resp.body.len, cap);
	http_response_done(&resp);
	assert_int_equal(got.len, 0);
	assert_int_equal(fakeserver_count(fx->a), 3);
	free(u);
	free(body);
}

/* ---- 7. a server that ignores Range ------------------------------------------------------- */

static void range_case(struct fx *fx, const unsigned char *body, size_t len, uint64_t from,
		       bool server_honors, size_t nth)
{
	char *u = url_of(fx->a, "/blob");
	struct collect got = {0};
	struct http_request req = {.url = u,
				   .has_range = true,
				   .range_start = from,
				   .sink = collect_sink,
				   .sink_userdata = &got};
	struct http_response resp;
	struct sf_err err = {0};
	char want_range[64];

	fakeserver_push(fx->a, &(struct fake_response){
				   .body = body, .body_len = len, .honor_range = server_honors});
	assert_int_equal(http_do(fx->http, &req, &resp, &err), 0);
	assert_int_equal(resp.status, server_honors ? 206 : 200);
	assert_true(resp.streamed);
	assert_int_equal(got.len, len - from);
	assert_memory_equal(got.data, body + from, len - from);
	snprintf(want_range, sizeof(want_range), "bytes=%llu-", (unsigned long long)from);
	assert_int_equal(fakeserver_count(fx->a), nth + 1);
	assert_non_null(hdr(fx->a, nth, "Range"));
	assert_string_equal(hdr(fx->a, nth, "Range"), want_range);
	http_response_done(&resp);
	free(got.data);
	free(u);
}

static void test_range_ignored(void **state)
{
	struct fx *fx = *state;
	const size_t len = 1024 * 1024;
	unsigned char *body = pattern(len, 3);

	range_case(fx, body, 100, 5, false, 0);
	/* Past curl's 256 KiB buffer: the skipped prefix spans several write callbacks. */
	range_case(fx, body, len, 300001, false, 1);
	/* Control: a server that honours Range. */
	range_case(fx, body, len, 300001, true, 2);
	free(body);
}

/* ---- 8. blobs through blobcache: resume, wrong bytes ------------------------------------- */

static void make_blob(struct layout_blob *b, const void *data, size_t len)
{
	*b = (struct layout_blob){.size = len};
	assert_int_equal(digest_buffer(data, len, b->digest), 0);
}

/* resume_honored: the second answer is a 206 from N; else a 200 with the whole blob again
 * (a server that ignores Range), of which http drops the first N bytes. */
static void blob_resume(struct fx *fx, bool resume_honored)
{
	const size_t len = 100000, half = 50000;
	unsigned char *body = pattern(len, 4), *out = malloc(len);
	struct layout_blob blob;
	struct blob_reader *rd = NULL;
	struct sf_err err = {0};
	char path[4096], want_target[128];
	ssize_t n;

	assert_non_null(out);
	make_blob(&blob, body, len);
	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "{}"});
	open_registry(fx, 0);
	open_cache(fx);
	/* First answer: the whole Content-Length announced, half the bytes sent, then close. */
	fakeserver_push(
	    fx->a,
	    &(struct fake_response){
		.body = body, .body_len = len, .honor_range = true, .cut = true, .cut_at = half});
	fakeserver_push(fx->a, &(struct fake_response){
				   .body = body, .body_len = len, .honor_range = resume_honored});
	assert_int_equal(blobcache_open(fx->bc, fx->st, "", "abc-1700000000000", &blob, &rd, &err),
			 0);
	n = blobcache_pread(rd, out, len, 0, &err);
	if (n < 0)
		fail_msg("blobcache_pread: %zd %s", n, err.msg);
	assert_int_equal(n, len);
	assert_memory_equal(out, body, len);
	blobcache_close(rd);
	blobcache_free(fx->bc); /* waits for the fetch: verified and renamed by now */
	fx->bc = NULL;

	assert_int_equal(fakeserver_count_prefix(fx->a, BLOBS_PREFIX), 2);
	assert_int_equal(fakeserver_count(fx->a), 3);
	snprintf(want_target, sizeof(want_target), BLOBS_PREFIX "%s", blob.digest);
	assert_string_equal(target(fx->a, 1), want_target);
	assert_string_equal(target(fx->a, 2), want_target);
	assert_null(hdr(fx->a, 1, "Range"));
	assert_non_null(hdr(fx->a, 2, "Range"));
	assert_string_equal(hdr(fx->a, 2, "Range"), "bytes=50000-");

	snprintf(path, sizeof(path), "%s/sha256/%s", fx->dir, blob.digest + 7);
	{
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat sb;
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &sb), 0);
		assert_int_equal(sb.st_size, len);
		memset(out, 0, len);
		assert_int_equal(pread(fd, out, len, 0), len);
		assert_memory_equal(out, body, len);
		close(fd);
	}
	assert_int_equal(dir_entries(fx->dir, "sha256"), 1);
	assert_int_equal(dir_entries(fx->dir, "tmp"), 0);
	free(out);
	free(body);
}

static void test_blob_resume(void **state)
{
	blob_resume(*state, true);
}

static void test_blob_resume_range_ignored(void **state)
{
	blob_resume(*state, false);
}

/* Serve a blob with the bytes given; read it whole through the cache. */
static ssize_t read_served_blob(struct fx *fx, const struct layout_blob *blob, const void *served,
				size_t served_len, void *out, struct sf_err *err)
{
	struct blob_reader *rd = NULL;
	ssize_t n;

	fakeserver_push(fx->a, &(struct fake_response){.status = 200, .body = "{}"});
	open_registry(fx, 0);
	open_cache(fx);
	fakeserver_push(fx->a, &(struct fake_response){.body = served, .body_len = served_len});
	assert_int_equal(blobcache_open(fx->bc, fx->st, "", "abc-1700000000000", blob, &rd, err),
			 0);
	n = blobcache_pread(rd, out, blob->size, 0, err);
	blobcache_close(rd);
	blobcache_free(fx->bc); /* waits for the fetch to end */
	fx->bc = NULL;
	return n;
}

static void test_blob_wrong_bytes(void **state)
{
	struct fx *fx = *state;
	const size_t len = 1000;
	unsigned char *good = pattern(len, 5), *bad = pattern(len, 6), *out = malloc(len);
	struct layout_blob blob;
	struct sf_err err = {0};
	ssize_t n;

	assert_non_null(out);
	make_blob(&blob, good, len);
	n = read_served_blob(fx, &blob, bad, len, out, &err);
	/* Nothing kept: not in the store, no partial file. */
	assert_int_equal(dir_entries(fx->dir, "sha256"), 0);
	assert_int_equal(dir_entries(fx->dir, "tmp"), 0);
	assert_int_equal(fakeserver_count_prefix(fx->a, BLOBS_PREFIX), 1);
	/* The reader must get -EBADMSG, not the unverified bytes. */
	assert_int_equal(n, -EBADMSG);
	free(out);
	free(good);
	free(bad);
}

static void test_blob_too_long(void **state)
{
	struct fx *fx = *state;
	const size_t len = 1000;
	unsigned char *body = pattern(len + 10, 7), *out = malloc(len);
	struct layout_blob blob;
	struct sf_err err = {0};
	ssize_t n;

	assert_non_null(out);
	make_blob(&blob, body, len); /* the registry sends 10 bytes more than the blob has */
	n = read_served_blob(fx, &blob, body, len + 10, out, &err);
	assert_int_equal(n, -EBADMSG);
	assert_int_equal(err.code, -EBADMSG);
	assert_int_equal(dir_entries(fx->dir, "sha256"), 0);
	assert_int_equal(dir_entries(fx->dir, "tmp"), 0);
	assert_int_equal(fakeserver_count_prefix(fx->a, BLOBS_PREFIX), 1);
	free(out);
	free(body);
}

/* ---- 9. Bearer token flow ---------------------------------------------------------------- */

static void push_challenge(struct fx *fx, char *buf, size_t n)
{
	snprintf(buf, n,
		 "WWW-Authenticate: Bearer realm=\"%s/token\",service=\"fake\"\r\n"
		 "Content-Type: application/json\r\n",
		 fakeserver_url(fx->a));
}

static void test_bearer_token(void **state)
{
	struct fx *fx = *state;
	static const char token_path[] =
	    "/token?service=fake&scope=repository%3Atest%2Fstages%3Apull";
	static const char tags1[] = "{\"name\":\"test/stages\",\"tags\":[\"a\",\"b\"]}";
	static const char tags2[] = "{\"name\":\"test/stages\",\"tags\":[\"a\",\"b\",\"c\"]}";
	struct strv tags = {0};
	struct sf_err err = {0};
	char challenge[256];

	push_challenge(fx, challenge, sizeof(challenge));
	fakeserver_push(fx->a, &(struct fake_response){
				   .status = 401, .headers = challenge, .body = "{\"errors\":[]}"});
	open_registry(fx, 0);
	fakeserver_push(fx->a, &(struct fake_response){.status = 401, .headers = challenge});
	fakeserver_push(fx->a,
			&(struct fake_response){.body = "{\"token\":\"abc\",\"expires_in\":300}"});
	fakeserver_push(fx->a, &(struct fake_response){.body = tags1});
	fakeserver_push(fx->a, &(struct fake_response){.body = tags2});

	assert_int_equal(registry_list_tags(fx->reg, &tags, &err), 0);
	assert_int_equal(tags.n, 2);
	assert_string_equal(tags.v[0], "a");
	assert_string_equal(tags.v[1], "b");
	strv_done(&tags);
	assert_int_equal(registry_list_tags(fx->reg, &tags, &err), 0);
	assert_int_equal(tags.n, 3);
	assert_string_equal(tags.v[2], "c");
	strv_done(&tags);

	/* /v2/, tags (401), token, tags (Bearer), tags again (cached Bearer). */
	assert_int_equal(fakeserver_count(fx->a), 5);
	assert_int_equal(fakeserver_count_prefix(fx->a, "/token"), 1);
	assert_string_equal(target(fx->a, 1), TAGS_PREFIX "?n=1000");
	assert_null(hdr(fx->a, 1, "Authorization"));
	assert_string_equal(target(fx->a, 2), token_path);
	assert_null(hdr(fx->a, 2, "Authorization")); /* no credentials: anonymous token */
	assert_string_equal(target(fx->a, 3), TAGS_PREFIX "?n=1000");
	assert_non_null(hdr(fx->a, 3, "Authorization"));
	assert_string_equal(hdr(fx->a, 3, "Authorization"), "Bearer abc");
	assert_string_equal(target(fx->a, 4), TAGS_PREFIX "?n=1000");
	assert_non_null(hdr(fx->a, 4, "Authorization"));
	assert_string_equal(hdr(fx->a, 4, "Authorization"), "Bearer abc");
}

static void test_token_refused(void **state)
{
	struct fx *fx = *state;
	struct strv tags = {0};
	struct sf_err err = {0};
	char challenge[256];

	push_challenge(fx, challenge, sizeof(challenge));
	fakeserver_push(fx->a, &(struct fake_response){.status = 401, .headers = challenge});
	open_registry(fx, 0);
	fakeserver_push(fx->a, &(struct fake_response){.status = 401, .headers = challenge});
	fakeserver_push(fx->a, &(struct fake_response){.status = 401, .body = "no"});
	assert_int_equal(registry_list_tags(fx->reg, &tags, &err), -EACCES);
	assert_int_equal(err.code, -EACCES);
	assert_int_equal(tags.n, 0);
	assert_null(tags.v);
	assert_int_equal(fakeserver_count(fx->a), 3); /* /v2/, tags, token: no retry */
	assert_int_equal(fakeserver_count_prefix(fx->a, "/token"), 1);
}

/* ---- 10. tag pagination through Link ----------------------------------------------------- */

static void test_tag_pages(void **state)
{
	struct fx *fx = *state;
	static const char *const want[] = {"a", "b", "c", "d", "e"};
	struct strv tags = {0};
	struct sf_err err = {0};

	fakeserver_push(fx->a, &(struct fake_response){.body = "{}"});
	open_registry(fx, 2);
	fakeserver_push(fx->a, &(struct fake_response){
				   .body = "{\"name\":\"test/stages\",\"tags\":[\"a\",\"b\"]}",
				   .headers = "Link: </v2/test/stages/tags/list?n=2&last=b>; "
					      "rel=\"next\"\r\n"});
	fakeserver_push(fx->a, &(struct fake_response){
				   .body = "{\"name\":\"test/stages\",\"tags\":[\"c\",\"d\"]}",
				   .headers = "Link: </v2/test/stages/tags/list?last=d&n=2>; "
					      "rel=\"next\"\r\n"});
	fakeserver_push(
	    fx->a, &(struct fake_response){.body = "{\"name\":\"test/stages\",\"tags\":[\"e\"]}"});
	assert_int_equal(registry_list_tags(fx->reg, &tags, &err), 0);
	assert_int_equal(tags.n, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(tags.v[i], want[i]);
	strv_done(&tags);
	assert_int_equal(fakeserver_count(fx->a), 4);
	assert_string_equal(target(fx->a, 1), TAGS_PREFIX "?n=2");
	assert_string_equal(target(fx->a, 2), TAGS_PREFIX "?n=2&last=b");
	assert_string_equal(target(fx->a, 3), TAGS_PREFIX "?last=d&n=2");
}

/* A registry whose next page links to itself. registry_list_tags bounds the walk only by
 * REGISTRY_TAGS_MAX pages (1,000,000) and by the tag cap: a page with no tags that links to
 * itself makes a million requests. The script holds 20 answers, then the server says 418, so
 * the walk ends here either way; the correct outcome is to stop at the repeated URL. */
static void test_tag_link_loop(void **state)
{
	struct fx *fx = *state;
	static const struct fake_response first = {
	    .body = "{\"name\":\"test/stages\",\"tags\":[\"a\"]}",
	    .headers = "Link: </v2/test/stages/tags/list?n=2&last=a>; rel=\"next\"\r\n"};
	static const struct fake_response self = {
	    .body = "{\"name\":\"test/stages\",\"tags\":[]}",
	    .headers = "Link: </v2/test/stages/tags/list?n=2&last=a>; rel=\"next\"\r\n"};
	struct strv tags = {0};
	struct sf_err err = {0};
	size_t seen;
	int r;

	fakeserver_push(fx->a, &(struct fake_response){.body = "{}"});
	open_registry(fx, 2);
	fakeserver_push(fx->a, &first);
	fakeserver_push_n(fx->a, &self, 20);
	r = registry_list_tags(fx->reg, &tags, &err);
	strv_done(&tags);
	seen = fakeserver_count_prefix(fx->a, TAGS_PREFIX);
	/* Never a success with a truncated list. */
	assert_true(r < 0);
	assert_int_equal(r, -ELOOP);
	assert_int_equal(seen, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_500_then_200, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_503_gives_up_after_max_tries, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_429_retry_after, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_then_200, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_closed_then_200, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_always_closed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stall_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_stalled, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_redirect_same_origin_keeps_auth, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_redirect_cross_origin_drops_auth, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_redirect_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_redirect_five_is_fine, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_body_cap, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_range_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_blob_resume, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_blob_resume_range_ignored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_blob_wrong_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_blob_too_long, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bearer_token, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_token_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tag_pages, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tag_link_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_upload_read_at_retried_from_start, setup,
					    teardown),
	};

	return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
