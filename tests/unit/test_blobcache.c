/* Unit tests of core/blobcache: blobs fetched once to DIR/sha256/HEX and shared by readers.
 *
 * An in-test storage serves blobs from memory through read_blob (in chunks, optionally slowly,
 * held after the first chunk, failing once mid-way, failing always, or with wrong bytes) and
 * optionally through local_file. Asserts bytes, return codes, read_blob call counts and
 * offsets, and what is left on disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
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

#include "blobcache.h"
#include "digest.h"
#include "storage.h"
#include "testutil.h"

#define STAGE "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7-1589786063772"
#define MAX_ITEMS 4
#define MAX_OFFSETS 32

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0)
		;
}

/* ---- the in-test storage ---------------------------------------------------------------- */

struct item {
	struct layout_blob blob;
	unsigned char *data; /* what read_blob sends: the blob, or wrong bytes */
	size_t len;
};

struct src {
	struct storage base;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct item items[MAX_ITEMS];
	size_t nitems;
	size_t chunk;	   /* bytes per sink call */
	unsigned delay_ms; /* between chunks */
	uint64_t fail_at;  /* once: cut the answer with -EIO at this offset (0 = never) */
	int fail_code;	   /* the code of that cut */
	bool failed_once;
	int error; /* every call fails at once with this (0 = none) */
	bool hold; /* after the first chunk, wait until released */
	int read_calls;
	uint64_t offsets[MAX_OFFSETS];
	char last_project[64], last_stage[128];
	/* local_file: served when local_ops are used */
	char local_path[4096];
	int local_error, local_calls;
};

static struct src *src_of(struct storage *st)
{
	return (struct src *)st;
}

static struct item *src_item(struct src *s, const char *digest)
{
	for (size_t i = 0; i < s->nitems; i++)
		if (strcmp(s->items[i].blob.digest, digest) == 0)
			return &s->items[i];
	return NULL;
}

static int src_read_blob(struct storage *st, const char *project, const char *stage,
			 const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
			 void *userdata, struct sf_err *err)
{
	struct src *s = src_of(st);
	struct item *it;
	uint64_t pos = offset;
	bool first = true;
	int r;

	pthread_mutex_lock(&s->lock);
	if (s->read_calls < MAX_OFFSETS)
		s->offsets[s->read_calls] = offset;
	s->read_calls++;
	snprintf(s->last_project, sizeof(s->last_project), "%s", project ? project : "(null)");
	snprintf(s->last_stage, sizeof(s->last_stage), "%s", stage);
	it = src_item(s, blob->digest);
	r = s->error;
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		return err_set(err, r, "fake storage: %s", tu_errno_name(r));
	if (!it)
		return err_set(err, -ENOENT, "fake storage: no blob %s", blob->digest);
	while (pos < it->len) {
		size_t n = it->len - pos < s->chunk ? (size_t)(it->len - pos) : s->chunk;
		bool cut = false;

		pthread_mutex_lock(&s->lock);
		if (s->fail_at && !s->failed_once && pos + n >= s->fail_at) {
			n = (size_t)(s->fail_at - pos);
			s->failed_once = true;
			cut = true;
		}
		pthread_mutex_unlock(&s->lock);
		if (n > 0) {
			r = sink(userdata, it->data + pos, n);
			if (r < 0)
				return r;
			pos += n;
		}
		if (cut)
			return err_set(err, s->fail_code, "fake storage: connection cut");
		pthread_mutex_lock(&s->lock);
		while (first && s->hold)
			pthread_cond_wait(&s->cond, &s->lock);
		pthread_mutex_unlock(&s->lock);
		first = false;
		if (s->delay_ms)
			sleep_ms(s->delay_ms);
	}
	return 0;
}

static int src_list(struct storage *st, struct stage_list *ret, struct sf_err *err)
{
	return -ENOTSUP;
}

static int src_describe(struct storage *st, const char *project, const char *stage,
			struct stage_layout **ret, struct sf_err *err)
{
	return -ENOTSUP;
}

static int src_local_file(struct storage *st, const char *project, const char *stage,
			  const struct layout_blob *blob, char *ret_path, size_t path_size,
			  struct sf_err *err)
{
	struct src *s = src_of(st);
	int r;

	pthread_mutex_lock(&s->lock);
	s->local_calls++;
	r = s->local_error;
	if (r == 0)
		snprintf(ret_path, path_size, "%s", s->local_path);
	pthread_mutex_unlock(&s->lock);
	return r < 0 ? err_set(err, r, "fake storage: cannot export the blob") : 0;
}

static void src_free(struct storage *st)
{
	struct src *s = src_of(st);

	for (size_t i = 0; i < s->nitems; i++)
		free(s->items[i].data);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

static const struct storage_ops src_ops = {
    .list = src_list,
    .describe = src_describe,
    .read_blob = src_read_blob,
    .free = src_free,
};

static const struct storage_ops src_local_ops = {
    .list = src_list,
    .describe = src_describe,
    .read_blob = src_read_blob,
    .free = src_free,
    .local_file = src_local_file,
};

static struct src *src_new(const struct storage_ops *ops)
{
	struct src *s = tu_calloc(1, sizeof(*s));

	s->base.ops = ops;
	s->chunk = 4096;
	s->fail_code = -EIO;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	return s;
}

/* n deterministic bytes. */
static unsigned char *content(size_t n, unsigned seed)
{
	unsigned char *p = tu_malloc(n);
	uint32_t x = seed * 2654435761u + 1;

	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (unsigned char)(x >> 16);
	}
	return p;
}

/* Add a blob of n bytes; returns it (the layout entry readers open). */
static const struct layout_blob *src_add(struct src *s, size_t n, unsigned seed)
{
	struct item *it = &s->items[s->nitems++];

	assert_true(s->nitems <= MAX_ITEMS);
	it->data = content(n, seed);
	it->len = n;
	it->blob.size = n;
	assert_int_equal(digest_buffer(it->data, n, it->blob.digest), 0);
	return &it->blob;
}

static int src_get(struct src *s, const int *counter)
{
	int v;

	pthread_mutex_lock(&s->lock);
	v = *counter;
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void src_hold(struct src *s, bool hold)
{
	pthread_mutex_lock(&s->lock);
	s->hold = hold;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static char *blob_path(const char *dir, const struct layout_blob *b)
{
	return tu_strdupf("%s/sha256/%s", dir, b->digest + 7);
}

static bool exists(const char *dir, const struct layout_blob *b)
{
	char *p = blob_path(dir, b);
	bool e = access(p, F_OK) == 0;

	free(p);
	return e;
}

static size_t count_entries(const char *dir, const char *sub)
{
	char *p = tu_strdupf("%s/%s", dir, sub);
	DIR *d = opendir(p);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	free(p);
	return n;
}

static struct blobcache *bc_new(const char *dir, uint64_t max)
{
	struct blobcache *bc = NULL;
	struct sf_err err = {0};

	if (blobcache_new(dir, max, &bc, &err) != 0)
		fail_msg("blobcache_new %s: %s", dir, err.msg);
	assert_non_null(bc);
	return bc;
}

static struct blob_reader *open_blob(struct blobcache *bc, struct src *s,
				     const struct layout_blob *b)
{
	struct blob_reader *rd = NULL;
	struct sf_err err = {0};

	if (blobcache_open(bc, &s->base, "proj", STAGE, b, &rd, &err) != 0)
		fail_msg("blobcache_open: %s", err.msg);
	assert_non_null(rd);
	return rd;
}

/* Read the whole blob in reads of step bytes; -errno of the first failing read, else bytes. */
static ssize_t read_all(struct blob_reader *rd, unsigned char *out, uint64_t size, size_t step,
			struct sf_err *err)
{
	uint64_t off = 0;

	while (off < size) {
		size_t n = size - off < step ? (size_t)(size - off) : step;
		ssize_t r = blobcache_pread(rd, out + off, n, off, err);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		off += (uint64_t)r;
	}
	return (ssize_t)off;
}

/* Open, read whole, compare with the source's bytes, close. */
static void read_and_check(struct blobcache *bc, struct src *s, const struct layout_blob *b,
			   size_t step)
{
	struct blob_reader *rd = open_blob(bc, s, b);
	unsigned char *buf = tu_malloc(b->size + 1);
	const struct item *it = src_item(s, b->digest);
	struct sf_err err = {0};
	ssize_t n = read_all(rd, buf, b->size, step, &err);

	if (n < 0)
		fail_msg("read %s: %s (%s)", b->digest, tu_errno_name((int)n), err.msg);
	assert_int_equal(n, b->size);
	assert_memory_equal(buf, it->data, b->size);
	/* Nothing past the end. */
	assert_int_equal(blobcache_pread(rd, buf, 1, b->size, NULL), 0);
	blobcache_close(rd);
	free(buf);
}

static void assert_file_is(const char *dir, const struct layout_blob *b, const void *data)
{
	char *p = blob_path(dir, b);
	size_t len;
	char *got = tu_read_file(p, &len);

	assert_int_equal(len, b->size);
	assert_memory_equal(got, data, len);
	free(got);
	free(p);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_open_read(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *b = src_add(s, 100000, 1);
	const unsigned char *want = s->items[0].data;
	struct blob_reader *rd, *rd2;
	unsigned char buf[4096];

	assert_int_equal(blobcache_size(bc), 0);
	read_and_check(bc, s, b, 100000);
	assert_int_equal(src_get(s, &s->read_calls), 1);
	assert_int_equal(s->offsets[0], 0);
	assert_string_equal(s->last_project, "proj");
	assert_string_equal(s->last_stage, STAGE);
	/* DIR/sha256/HEX holds the bytes; nothing is left in DIR/tmp. */
	assert_file_is(dir, b, want);
	assert_int_equal(count_entries(dir, "sha256"), 1);
	assert_int_equal(count_entries(dir, "tmp"), 0);
	assert_int_equal(blobcache_size(bc), 100000);

	/* Opened again, and twice at once: no second fetch. Reads at any offset. */
	rd = open_blob(bc, s, b);
	rd2 = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rd, buf, 10, 0, NULL), 10);
	assert_memory_equal(buf, want, 10);
	assert_int_equal(blobcache_pread(rd2, buf, 4096, 99999, NULL), 1);
	assert_int_equal(buf[0], want[99999]);
	assert_int_equal(blobcache_pread(rd, buf, 4096, 50000, NULL), 4096);
	assert_memory_equal(buf, want + 50000, 4096);
	assert_int_equal(blobcache_pread(rd, buf, 4096, 100000, NULL), 0);
	assert_int_equal(blobcache_pread(rd, buf, 4096, UINT64_MAX, NULL), 0);
	assert_int_equal(blobcache_pread(rd, buf, 0, 5, NULL), 0);
	blobcache_close(rd);
	assert_int_equal(blobcache_pread(rd2, buf, 3, 99997, NULL), 3);
	assert_memory_equal(buf, want + 99997, 3);
	blobcache_close(rd2);
	read_and_check(bc, s, b, 777);
	assert_int_equal(src_get(s, &s->read_calls), 1);
	assert_int_equal(blobcache_size(bc), 100000);
	blobcache_close(NULL);

	blobcache_free(bc);
	assert_int_equal(src_get(s, &s->read_calls), 1);
	storage_free(&s->base);
	blobcache_free(NULL);
	tu_rm_rf(dir);
	free(dir);
}

static void test_empty_blob(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *b = src_add(s, 0, 2);
	struct blob_reader *rd;
	unsigned char buf[8];

	assert_string_equal(b->digest, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49"
				       "5991b7852b855");
	rd = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rd, buf, sizeof(buf), 0, NULL), 0);
	blobcache_close(rd);
	blobcache_free(bc); /* waits for the fetch */
	assert_int_equal(src_get(s, &s->read_calls), 1);
	assert_true(exists(dir, b));
	assert_int_equal(count_entries(dir, "tmp"), 0);
	storage_free(&s->base);
	tu_rm_rf(dir);
	free(dir);
}

/* Readers wait only for the bytes they asked for: with the storage held after its first chunk,
 * the first bytes can be read, and open does not wait at all. */
struct watchdog {
	struct src *s;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done, fired;
};

static void *watchdog_main(void *arg)
{
	struct watchdog *w = arg;
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&w->lock);
	while (!w->done)
		if (pthread_cond_timedwait(&w->cond, &w->lock, &deadline) == ETIMEDOUT) {
			w->fired = true;
			src_hold(w->s, false);
			break;
		}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void test_streaming_read(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *b = src_add(s, 50000, 3);
	struct watchdog w = {.s = s};
	struct blob_reader *rd;
	unsigned char buf[100];
	pthread_t tid;

	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	src_hold(s, true);
	assert_int_equal(pthread_create(&tid, NULL, watchdog_main, &w), 0);
	rd = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rd, buf, 100, 0, NULL), 100);
	assert_memory_equal(buf, s->items[0].data, 100);
	assert_int_equal(blobcache_pread(rd, buf, 100, 3000, NULL), 100);
	assert_memory_equal(buf, s->items[0].data + 3000, 100);
	pthread_mutex_lock(&w.lock);
	w.done = true;
	pthread_cond_signal(&w.cond);
	pthread_mutex_unlock(&w.lock);
	pthread_join(tid, NULL);
	assert_false(w.fired); /* the reads above did not wait for the whole blob */
	src_hold(s, false);
	assert_int_equal(blobcache_pread(rd, buf, 100, 49950, NULL), 50);
	assert_memory_equal(buf, s->items[0].data + 49950, 50);
	blobcache_close(rd);
	assert_int_equal(src_get(s, &s->read_calls), 1);
	blobcache_free(bc);
	storage_free(&s->base);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	tu_rm_rf(dir);
	free(dir);
}

struct reader_arg {
	struct blobcache *bc;
	struct src *s;
	const struct layout_blob *b;
	size_t step;
};

static void *reader_main(void *arg)
{
	struct reader_arg *a = arg;

	read_and_check(a->bc, a->s, a->b, a->step);
	return NULL;
}

static void test_concurrent_readers(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *b1 = src_add(s, 200000, 4), *b2 = src_add(s, 30000, 5);
	struct reader_arg a[8];
	pthread_t tid[8];

	s->delay_ms = 2; /* 49 chunks: the readers overlap the fetch */
	for (int i = 0; i < 8; i++) {
		a[i] = (struct reader_arg){bc, s, i % 4 == 3 ? b2 : b1, (size_t)(1000 + 3000 * i)};
		assert_int_equal(pthread_create(&tid[i], NULL, reader_main, &a[i]), 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(tid[i], NULL);
	/* One fetch per blob. */
	assert_int_equal(src_get(s, &s->read_calls), 2);
	assert_int_equal(blobcache_size(bc), 230000);
	assert_file_is(dir, b1, s->items[0].data);
	assert_file_is(dir, b2, s->items[1].data);
	assert_int_equal(count_entries(dir, "tmp"), 0);
	blobcache_free(bc);
	storage_free(&s->base);
	tu_rm_rf(dir);
	free(dir);
}

static void test_resume(void **state)
{
	static const int codes[] = {-EIO, -ETIMEDOUT};
	static const uint64_t cuts[] = {30000, 4096, 1};

	for (size_t ci = 0; ci < 2; ci++) {
		for (size_t k = 0; k < 3; k++) {
			char *dir = tu_mkdtemp();
			struct blobcache *bc = bc_new(dir, 1 << 20);
			struct src *s = src_new(&src_ops);
			const struct layout_blob *b = src_add(s, 70001, 6);

			s->chunk = 3000;
			s->fail_at = cuts[k];
			s->fail_code = codes[ci];
			read_and_check(bc, s, b, 70001);
			/* Two requests: the second from the bytes the first delivered. */
			assert_int_equal(src_get(s, &s->read_calls), 2);
			assert_int_equal(s->offsets[0], 0);
			assert_int_equal(s->offsets[1], cuts[k]);
			assert_file_is(dir, b, s->items[0].data);
			assert_int_equal(count_entries(dir, "tmp"), 0);
			blobcache_free(bc);
			storage_free(&s->base);
			tu_rm_rf(dir);
			free(dir);
		}
	}
}

/* After a failed fetch nothing is kept, and the next open tries again. */
static void assert_failed_then_recovers(const char *dir, struct blobcache *bc, struct src *s,
					const struct layout_blob *b, int want)
{
	struct blob_reader *rd = open_blob(bc, s, b);
	unsigned char *buf = tu_malloc(b->size);
	struct sf_err err = {0};

	/* A read of the whole blob ends on the verdict. */
	assert_int_equal(blobcache_pread(rd, buf, b->size, 0, &err), want);
	assert_int_equal(err.code, want);
	assert_true(err.msg[0] != '\0');
	/* Later reads of the same reader fail the same way. */
	assert_int_equal(blobcache_pread(rd, buf, 1, b->size - 1, NULL), want);
	blobcache_close(rd);
	assert_int_equal(count_entries(dir, "sha256"), 0);
	assert_int_equal(count_entries(dir, "tmp"), 0);
	assert_int_equal(blobcache_size(bc), 0);
	free(buf);
}

static void test_fetch_errors(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *b = src_add(s, 20000, 7);
	struct item *it = &s->items[0];
	unsigned char *good = tu_malloc(it->len);
	struct blob_reader *rd;
	struct sf_err err = {0};
	unsigned char byte;
	int calls;

	memcpy(good, it->data, it->len);

	/* Wrong bytes of the right length: -EBADMSG. */
	it->data[12345] ^= 1;
	assert_failed_then_recovers(dir, bc, s, b, -EBADMSG);
	assert_int_equal(src_get(s, &s->read_calls), 1);
	it->data[12345] ^= 1;
	read_and_check(bc, s, b, 20000);
	assert_int_equal(src_get(s, &s->read_calls), 2);
	assert_file_is(dir, b, good);
	blobcache_free(bc);

	/* More bytes than the blob has: -EBADMSG. */
	tu_rm_rf(dir);
	bc = bc_new(dir, 1 << 20);
	it->data = tu_realloc(it->data, it->len + 10);
	memset(it->data + it->len, 'x', 10);
	it->len += 10;
	assert_failed_then_recovers(dir, bc, s, b, -EBADMSG);

	/* Fewer bytes: resumed, but no progress comes: -EIO after a bounded number of tries. */
	it->len -= 11;
	s->read_calls = 0;
	assert_failed_then_recovers(dir, bc, s, b, -EIO);
	calls = src_get(s, &s->read_calls);
	assert_in_range(calls, 2, 10);
	for (int i = 1; i < calls; i++)
		assert_int_equal(s->offsets[i], 19999);
	it->len += 1;

	/* The storage answers with an error that is not worth a retry: exactly that error, with
	 * the storage's message. */
	s->read_calls = 0;
	s->error = -EACCES;
	rd = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rd, &byte, 1, 0, &err), -EACCES);
	assert_string_equal(err.msg, "fake storage: -EACCES");
	blobcache_close(rd);
	assert_int_equal(src_get(s, &s->read_calls), 1);
	s->error = -ENOENT;
	assert_failed_then_recovers(dir, bc, s, b, -ENOENT);
	assert_int_equal(src_get(s, &s->read_calls), 2);
	/* A storage that keeps failing with a transport error is given up on, too. */
	s->error = -EIO;
	assert_failed_then_recovers(dir, bc, s, b, -EIO);
	assert_in_range(src_get(s, &s->read_calls), 3, 12);

	/* Healthy again: the next open fetches. */
	s->error = 0;
	s->read_calls = 0;
	read_and_check(bc, s, b, 4096);
	assert_int_equal(src_get(s, &s->read_calls), 1);
	assert_file_is(dir, b, good);
	assert_int_equal(blobcache_size(bc), 20000);

	blobcache_free(bc);
	storage_free(&s->base);
	free(good);
	tu_rm_rf(dir);
	free(dir);
}

static void test_eviction(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1500);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *a = src_add(s, 1000, 10), *b = src_add(s, 1000, 11),
				 *c = src_add(s, 1000, 12);
	struct blob_reader *rb, *keep;
	unsigned char buf[1000];
	struct tu_case tc;

	read_and_check(bc, s, a, 1000);
	assert_true(exists(dir, a));
	assert_int_equal(blobcache_size(bc), 1000);

	/* B fetched (still open): A, closed, least recently used, must go. */
	rb = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rb, buf, 1000, 0, NULL), 1000);
	tu_case_begin(&tc, false, "test_blobcache.c: over max_bytes once a fetch finishes");
	tu_check(&tc, !exists(dir, a), "A is still on disk with B finished and 2000 > 1500");
	tu_check_int(&tc, "blobcache_size", (long long)blobcache_size(bc), 1000);
	tu_case_end(&tc);
	blobcache_close(rb);
	assert_false(exists(dir, a));
	assert_true(exists(dir, b));
	assert_int_equal(blobcache_size(bc), 1000);
	assert_int_equal(count_entries(dir, "sha256"), 1);

	/* An open blob is never evicted, even when it is the least recently used. */
	keep = open_blob(bc, s, b);
	read_and_check(bc, s, c, 1000);
	assert_true(exists(dir, b));
	assert_false(exists(dir, c));
	assert_int_equal(blobcache_pread(keep, buf, 1000, 0, NULL), 1000);
	assert_memory_equal(buf, s->items[1].data, 1000);
	blobcache_close(keep);
	assert_true(exists(dir, b));
	assert_int_equal(blobcache_size(bc), 1000);
	assert_int_equal(src_get(s, &s->read_calls), 3); /* A, B, C once each */

	/* An evicted blob is fetched again when opened. */
	read_and_check(bc, s, a, 999);
	assert_int_equal(src_get(s, &s->read_calls), 4);
	assert_true(exists(dir, a));
	assert_false(exists(dir, b));
	blobcache_free(bc);

	/* Least recently used, not least recently fetched: with room for two, A B, A again, C
	 * evicts B. */
	tu_rm_rf(dir);
	bc = bc_new(dir, 2500);
	s->read_calls = 0;
	read_and_check(bc, s, a, 1000);
	read_and_check(bc, s, b, 1000);
	read_and_check(bc, s, a, 1000);
	assert_int_equal(src_get(s, &s->read_calls), 2);
	read_and_check(bc, s, c, 1000);
	assert_true(exists(dir, a));
	assert_false(exists(dir, b));
	assert_true(exists(dir, c));
	assert_int_equal(blobcache_size(bc), 2000);
	assert_int_equal(src_get(s, &s->read_calls), 3);
	blobcache_free(bc);

	storage_free(&s->base);
	tu_rm_rf(dir);
	free(dir);
	tu_assert_all_passed();
}

static void test_reuse_dir(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *a = src_add(s, 1000, 20), *b = src_add(s, 1000, 21),
				 *c = src_add(s, 1000, 22);
	char *p, *old_tmp = tu_strdupf("%s/tmp/old.partial", dir),
		 *new_tmp = tu_strdupf("%s/tmp/new.partial", dir),
		 *junk = tu_strdupf("%s/sha256/README", dir);
	struct timespec two_days_ago[2];
	struct blob_reader *rd;
	unsigned char buf[1000];
	struct tu_case tc;

	read_and_check(bc, s, a, 1000);
	read_and_check(bc, s, b, 1000);
	blobcache_free(bc);
	assert_int_equal(src_get(s, &s->read_calls), 2);

	/* Partial files of a crashed run: a day old goes, a fresh one (another daemon's running
	 * fetch) stays. A file that is not a blob name is not counted. */
	tu_write_file(old_tmp, "partial", 7, 0600);
	tu_write_file(new_tmp, "partial", 7, 0600);
	tu_write_file(junk, "not a blob", 10, 0600);
	clock_gettime(CLOCK_REALTIME, &two_days_ago[0]);
	two_days_ago[0].tv_sec -= 2 * 86400;
	two_days_ago[1] = two_days_ago[0];
	assert_int_equal(utimensat(AT_FDCWD, old_tmp, two_days_ago, 0), 0);

	/* A new cache on the same dir finds the blobs: no fetch. */
	bc = bc_new(dir, 1 << 20);
	assert_int_equal(blobcache_size(bc), 2000);
	assert_int_equal(access(old_tmp, F_OK), -1);
	assert_int_equal(access(new_tmp, F_OK), 0);
	assert_int_equal(access(junk, F_OK), 0);
	read_and_check(bc, s, b, 1000);
	read_and_check(bc, s, a, 1000);
	assert_int_equal(src_get(s, &s->read_calls), 2);

	/* A blob another daemon stored meanwhile is used as well; one of the wrong size is not. */
	p = blob_path(dir, c);
	tu_write_file(p, s->items[2].data, 1000, 0600);
	read_and_check(bc, s, c, 1000);
	assert_int_equal(src_get(s, &s->read_calls), 2);
	blobcache_free(bc);
	unlink(p);
	bc = bc_new(dir, 1 << 20);
	tu_write_file(p, s->items[2].data, 999, 0600);
	read_and_check(bc, s, c, 1000);
	assert_int_equal(src_get(s, &s->read_calls), 3);
	assert_file_is(dir, c, s->items[2].data);
	blobcache_free(bc);

	/* A smaller cap on the next start evicts down to it. */
	bc = bc_new(dir, 1000);
	assert_int_equal(blobcache_size(bc), 1000);
	assert_int_equal(count_entries(dir, "sha256"), 2); /* one blob and README */
	blobcache_free(bc);

	/* Known bug: a blob file of the wrong size found at start is trusted (the same file found
	 * later is refetched, above). */
	tu_rm_rf(dir);
	bc = bc_new(dir, 1 << 20);
	blobcache_free(bc);
	tu_write_file(p, s->items[2].data, 500, 0600);
	bc = bc_new(dir, 1 << 20);
	s->read_calls = 0;
	rd = open_blob(bc, s, c);
	memset(buf, 0, sizeof(buf));
	tu_case_begin(&tc, false, "test_blobcache.c: truncated blob file left by an earlier run");
	tu_check_int(&tc, "bytes read", blobcache_pread(rd, buf, 1000, 0, NULL), 1000);
	tu_check_mem(&tc, "bytes", buf, 1000, s->items[2].data, 1000);
	tu_check_int(&tc, "read_blob calls", src_get(s, &s->read_calls), 1);
	tu_case_end(&tc);
	blobcache_close(rd);
	blobcache_free(bc);

	free(p);
	free(old_tmp);
	free(new_tmp);
	free(junk);
	storage_free(&s->base);
	tu_rm_rf(dir);
	free(dir);
	tu_assert_all_passed();
}

static void test_local_file(void **state)
{
	char *dir = tu_mkdtemp(), *other = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_local_ops);
	const struct layout_blob *b = src_add(s, 30000, 30);
	char *path = tu_strdupf("%s/exported-blob", other);
	struct blob_reader *rd;
	unsigned char byte;
	struct sf_err err = {0};

	tu_write_file(path, s->items[0].data, 30000, 0600);
	snprintf(s->local_path, sizeof(s->local_path), "%s", path);

	/* The backend's file is read in place: no read_blob, no copy, not counted. */
	read_and_check(bc, s, b, 30000);
	read_and_check(bc, s, b, 1234);
	assert_int_equal(src_get(s, &s->read_calls), 0);
	assert_in_range(src_get(s, &s->local_calls), 1, 2);
	assert_int_equal(count_entries(dir, "sha256"), 0);
	assert_int_equal(count_entries(dir, "tmp"), 0);
	assert_int_equal(blobcache_size(bc), 0);

	/* A file of the wrong size is not the blob. */
	tu_write_file(path, s->items[0].data, 29999, 0600);
	rd = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rd, &byte, 1, 0, &err), -EBADMSG);
	blobcache_close(rd);

	/* The backend names a file that is gone (asked twice): an I/O error, not ENOENT, and
	 * still no read_blob. */
	unlink(path);
	rd = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rd, &byte, 1, 0, NULL), -EIO);
	blobcache_close(rd);
	s->local_error = -EIO;
	rd = open_blob(bc, s, b);
	err = (struct sf_err){0};
	assert_int_equal(blobcache_pread(rd, &byte, 1, 0, &err), -EIO);
	assert_string_equal(err.msg, "fake storage: cannot export the blob");
	blobcache_close(rd);
	assert_int_equal(src_get(s, &s->read_calls), 0);
	assert_int_equal(count_entries(dir, "sha256"), 0);
	assert_int_equal(count_entries(dir, "tmp"), 0);

	blobcache_free(bc);
	storage_free(&s->base);
	tu_rm_rf(other);
	tu_rm_rf(dir);
	free(path);
	free(other);
	free(dir);
}

static void test_free_cancels_fetch(void **state)
{
	char *dir = tu_mkdtemp();
	struct blobcache *bc = bc_new(dir, 1 << 20);
	struct src *s = src_new(&src_ops);
	const struct layout_blob *b = src_add(s, 400000, 40);
	struct blob_reader *rd;
	unsigned char buf[10];

	s->chunk = 1000;
	s->delay_ms = 5; /* 2 s in all: the free comes first */
	rd = open_blob(bc, s, b);
	assert_int_equal(blobcache_pread(rd, buf, 10, 0, NULL), 10);
	blobcache_close(rd);
	blobcache_free(bc); /* returns once the fetch stopped */
	assert_int_equal(src_get(s, &s->read_calls), 1);
	assert_int_equal(count_entries(dir, "sha256"), 0);
	assert_int_equal(count_entries(dir, "tmp"), 0);
	storage_free(&s->base);
	tu_rm_rf(dir);
	free(dir);
}

static void test_bad_dir(void **state)
{
	char *dir = tu_mkdtemp();
	char *file = tu_strdupf("%s/file", dir), *under = tu_strdupf("%s/file/cache", dir);
	struct blobcache *bc = NULL;
	struct sf_err err = {0};

	/* A cache dir is created as needed, with its parents. */
	char *deep = tu_strdupf("%s/a/b/c", dir);
	bc = bc_new(deep, 1000);
	blobcache_free(bc);
	bc = NULL;
	assert_int_equal(count_entries(deep, "sha256"), 0);

	tu_write_file(file, "x", 1, 0600);
	assert_int_equal(blobcache_new(under, 1000, &bc, &err), -ENOTDIR);
	assert_null(bc);
	assert_int_equal(err.code, -ENOTDIR);
	free(deep);
	free(file);
	free(under);
	tu_rm_rf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_read),	   cmocka_unit_test(test_empty_blob),
	    cmocka_unit_test(test_streaming_read), cmocka_unit_test(test_concurrent_readers),
	    cmocka_unit_test(test_resume),	   cmocka_unit_test(test_fetch_errors),
	    cmocka_unit_test(test_eviction),	   cmocka_unit_test(test_reuse_dir),
	    cmocka_unit_test(test_local_file),	   cmocka_unit_test(test_free_cancels_fetch),
	    cmocka_unit_test(test_bad_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
