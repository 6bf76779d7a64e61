/* Unit tests of core/cache: the caching storage wrapper, over a tiny in-test storage that
 * counts its calls. Asserts call counts, never durations: the list is served from memory
 * within ttl and refreshed after it, errors are never cached, described layouts are kept per
 * stage until a refresh drops the stage, find answers from the cached list, invalidate forces a
 * refresh, and concurrent callers during a refresh cause one inner list.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <cmocka.h>

#include "cache.h"
#include "storage.h"
#include "testutil.h"

#define SIG1 "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"
#define SIG2 "62e9cc7775595e19583def7302d030490871a0e4e53aa8d1f61c6999"
#define SIG3 "00000000000000000000000000000000000000000000000000000000"
/* In list order: S1 < S2 < S3. */
#define S1 SIG3 "-1589786063772"
#define S2 SIG2 "-1589786063773"
#define S3 SIG1 "-1589786063774"
#define DIG "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

/* ttl of the timed tests, and a sleep safely past it. */
#define TTL_MS 150
#define PAST_TTL_MS 200

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0)
		;
}

/* ---- the in-test storage ---------------------------------------------------------------- */

struct fake {
	struct storage base;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* The listing it answers with (sorted), or list_error. */
	struct stage_info stages[8];
	size_t nstages;
	int list_error;
	/* A held list waits (after taking its snapshot) until released. */
	bool hold;
	int in_list;
	/* Describe fails for this stage name. */
	const char *describe_fail;
	int list_calls, describe_calls, find_calls, read_calls, local_calls;
	int *freed; /* the test's counter: the fake is freed by its owner (the cache) */
};

static struct fake *fake_of(struct storage *st)
{
	return (struct fake *)st;
}

static int fake_list(struct storage *st, struct stage_list *ret, struct sf_err *err)
{
	struct fake *f = fake_of(st);
	struct stage_list l = {0};
	int r;

	pthread_mutex_lock(&f->lock);
	f->list_calls++;
	r = f->list_error;
	if (r == 0) {
		l.n = f->nstages;
		/* Like the real backends, an empty listing has no array (NULL). */
		if (l.n) {
			l.v = tu_calloc(f->nstages, sizeof(*l.v));
			memcpy(l.v, f->stages, f->nstages * sizeof(*l.v));
		}
	}
	f->in_list++;
	pthread_cond_broadcast(&f->cond);
	while (f->hold)
		pthread_cond_wait(&f->cond, &f->lock);
	f->in_list--;
	pthread_mutex_unlock(&f->lock);
	if (r < 0)
		return err_set(err, r, "fake storage: list failed (%s)", tu_errno_name(r));
	*ret = l;
	return 0;
}

static int fake_describe(struct storage *st, const char *project, const char *stage,
			 struct stage_layout **ret, struct sf_err *err)
{
	struct fake *f = fake_of(st);
	struct stage_layout *l;
	bool fail;

	pthread_mutex_lock(&f->lock);
	f->describe_calls++;
	fail = f->describe_fail && strcmp(stage, f->describe_fail) == 0;
	pthread_mutex_unlock(&f->lock);
	if (fail)
		return err_set(err, -ENOENT, "fake storage: no stage %s", stage);
	l = stage_layout_new();
	assert_non_null(l);
	l->index_json =
	    tu_strdupf("{\"project\":\"%s\",\"stage\":\"%s\"}", project ? project : "", stage);
	l->index_len = strlen(l->index_json);
	assert_int_equal(stage_layout_add_blob(l, DIG, 3, "abc"), 0);
	stage_layout_seal(l);
	*ret = l;
	return 0;
}

static int fake_read_blob(struct storage *st, const char *project, const char *stage,
			  const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
			  void *userdata, struct sf_err *err)
{
	struct fake *f = fake_of(st);
	static const char bytes[] = "0123456789";
	int r;

	pthread_mutex_lock(&f->lock);
	f->read_calls++;
	pthread_mutex_unlock(&f->lock);
	if (strcmp(stage, S2) == 0)
		return err_set(err, -EAGAIN, "fake storage: busy");
	if (offset > 10)
		return -ERANGE;
	r = sink(userdata, bytes + offset, 10 - offset);
	return r < 0 ? r : 0;
}

static int fake_find(struct storage *st, const char *project, const char *stage,
		     struct stage_info *ret, struct sf_err *err)
{
	struct fake *f = fake_of(st);

	pthread_mutex_lock(&f->lock);
	f->find_calls++;
	pthread_mutex_unlock(&f->lock);
	return -EIO; /* the cache must answer from its list, never from here */
}

static int fake_local_file(struct storage *st, const char *project, const char *stage,
			   const struct layout_blob *blob, char *ret_path, size_t path_size,
			   struct sf_err *err)
{
	struct fake *f = fake_of(st);

	pthread_mutex_lock(&f->lock);
	f->local_calls++;
	pthread_mutex_unlock(&f->lock);
	snprintf(ret_path, path_size, "/fake/%s/%s", stage, blob->digest + 7);
	return 0;
}

static void fake_free(struct storage *st)
{
	struct fake *f = fake_of(st);

	(*f->freed)++;
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f);
}

static const struct storage_ops fake_ops = {
    .list = fake_list,
    .describe = fake_describe,
    .read_blob = fake_read_blob,
    .free = fake_free,
    .find = fake_find,
    .local_file = fake_local_file,
};

static const struct storage_ops fake_ops_minimal = {
    .list = fake_list,
    .describe = fake_describe,
    .read_blob = fake_read_blob,
    .free = fake_free,
};

static void fake_set(struct fake *f, const char *const *names, const char *const *projects,
		     size_t n)
{
	pthread_mutex_lock(&f->lock);
	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		f->stages[i] = (struct stage_info){0};
		snprintf(f->stages[i].name, sizeof(f->stages[i].name), "%s", names[i]);
		snprintf(f->stages[i].project, sizeof(f->stages[i].project), "%s",
			 projects ? projects[i] : "");
		f->stages[i].unique_ms = 1589786063772ULL + i;
	}
	f->nstages = n;
	qsort(f->stages, n, sizeof(f->stages[0]), stage_info_cmp); /* as storage.h promises */
	pthread_mutex_unlock(&f->lock);
}

static struct fake *fake_new(const struct storage_ops *ops, bool by_project, int *freed)
{
	struct fake *f = tu_calloc(1, sizeof(*f));
	static const char *const names[] = {S1, S2, S3};

	f->base.ops = ops;
	f->base.by_project = by_project;
	f->freed = freed;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	fake_set(f, names, NULL, 3);
	return f;
}

static int fake_get(struct fake *f, const int *counter)
{
	int v;

	pthread_mutex_lock(&f->lock);
	v = *counter;
	pthread_mutex_unlock(&f->lock);
	return v;
}

static void fake_update(struct fake *f, int *field, int value)
{
	pthread_mutex_lock(&f->lock);
	*field = value;
	pthread_mutex_unlock(&f->lock);
}

static void fake_hold(struct fake *f, bool hold)
{
	pthread_mutex_lock(&f->lock);
	f->hold = hold;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* Wait (bounded) until n threads are inside the inner list. */
static void fake_wait_in_list(struct fake *f, int n)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&f->lock);
	while (f->in_list < n)
		if (pthread_cond_timedwait(&f->cond, &f->lock, &deadline) == ETIMEDOUT)
			fail_msg("no inner list started within 10 s");
	pthread_mutex_unlock(&f->lock);
}

static struct storage *cache_over(struct fake *f, uint64_t ttl_ms)
{
	struct storage *c = NULL;

	assert_int_equal(cache_storage_new(&f->base, ttl_ms, &c), 0);
	assert_non_null(c);
	return c;
}

/* A list with exactly these names, in this order. */
static void assert_names(const struct stage_list *l, const char *const *names, size_t n)
{
	assert_int_equal(l->n, n);
	assert_non_null(l->v);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(l->v[i].name, names[i]);
}

/* ---- list ------------------------------------------------------------------------------- */

static void test_list_ttl(void **state)
{
	static const char *const three[] = {S1, S2, S3};
	static const char *const two[] = {S1, S3};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, TTL_MS);
	struct stage_list l = {0};

	assert_false(c->by_project);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_names(&l, three, 3);
	assert_int_equal(l.v[0].unique_ms, 1589786063772ULL);
	assert_int_equal(fake_get(f, &f->list_calls), 1);
	/* The caller owns its copy: scribbling on it changes nothing. */
	memset(l.v, 'x', l.n * sizeof(*l.v));
	stage_list_done(&l);

	/* Within ttl: from memory, even though the storage changed meanwhile. */
	fake_set(f, two, NULL, 2);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(storage_list(c, &l, NULL), 0);
		assert_names(&l, three, 3);
		stage_list_done(&l);
	}
	assert_int_equal(fake_get(f, &f->list_calls), 1);

	/* Past ttl: one refresh, then from memory again. */
	sleep_ms(PAST_TTL_MS);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_names(&l, two, 2);
	stage_list_done(&l);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_names(&l, two, 2);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 2);

	/* An empty listing is a listing too: cached like any other. */
	fake_set(f, NULL, NULL, 0);
	sleep_ms(PAST_TTL_MS);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_int_equal(l.n, 0);
	stage_list_done(&l);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_int_equal(l.n, 0);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 3);

	/* The cache owns the inner storage. */
	storage_free(c);
	assert_int_equal(freed, 1);

	/* ttl 0: nothing is kept. */
	f = fake_new(&fake_ops, true, &freed);
	c = cache_over(f, 0);
	assert_true(c->by_project);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(storage_list(c, &l, NULL), 0);
		assert_names(&l, three, 3);
		stage_list_done(&l);
	}
	assert_int_equal(fake_get(f, &f->list_calls), 3);
	storage_free(c);
	assert_int_equal(freed, 2);
}

static void test_list_errors_not_cached(void **state)
{
	static const char *const three[] = {S1, S2, S3};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, TTL_MS);
	struct stage_info sentinel_v[1];
	struct stage_list l = {.n = 12345, .v = sentinel_v};
	struct stage_info info;
	struct sf_err err = {0};

	/* A storage that is down answers with its error every time; ret is left alone. */
	fake_update(f, &f->list_error, -EIO);
	for (int i = 1; i <= 3; i++) {
		err = (struct sf_err){0};
		assert_int_equal(storage_list(c, &l, &err), -EIO);
		assert_int_equal(err.code, -EIO);
		assert_string_equal(err.msg, "fake storage: list failed (-EIO)");
		assert_int_equal(l.n, 12345);
		assert_ptr_equal(l.v, sentinel_v);
		assert_int_equal(fake_get(f, &f->list_calls), i);
	}
	/* find does not turn "down" into "no such stage". */
	assert_int_equal(storage_find(c, "", S1, &info, NULL), -EIO);
	assert_int_equal(fake_get(f, &f->list_calls), 4);

	/* The codes pass through as they are. */
	fake_update(f, &f->list_error, -EACCES);
	assert_int_equal(storage_list(c, &l, NULL), -EACCES);
	fake_update(f, &f->list_error, -EAGAIN);
	assert_int_equal(storage_list(c, &l, NULL), -EAGAIN);
	assert_int_equal(fake_get(f, &f->list_calls), 6);

	/* Back up: the next call lists. */
	fake_update(f, &f->list_error, 0);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_names(&l, three, 3);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 7);

	/* Down again within ttl: the good listing is served (the error is not seen yet). */
	fake_update(f, &f->list_error, -EIO);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_names(&l, three, 3);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 7);

	/* Past ttl: the error, never the stale listing. */
	sleep_ms(PAST_TTL_MS);
	l = (struct stage_list){.n = 12345, .v = sentinel_v};
	for (int i = 0; i < 2; i++) {
		err = (struct sf_err){0};
		assert_int_equal(storage_list(c, &l, &err), -EIO);
		assert_int_equal(err.code, -EIO);
		assert_int_equal(l.n, 12345);
		assert_ptr_equal(l.v, sentinel_v);
		assert_int_equal(storage_find(c, "", S1, &info, NULL), -EIO);
	}
	assert_int_equal(fake_get(f, &f->list_calls), 11);

	fake_update(f, &f->list_error, 0);
	assert_int_equal(storage_find(c, "", S2, &info, NULL), 0);
	assert_string_equal(info.name, S2);
	assert_int_equal(fake_get(f, &f->list_calls), 12);
	storage_free(c);
	assert_int_equal(freed, 1);
}

static void test_invalidate(void **state)
{
	static const char *const one[] = {S2};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, 60000);
	struct stage_list l = {0};

	/* Invalidating an empty cache is harmless. */
	cache_storage_invalidate(c);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_int_equal(l.n, 3);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 1);

	/* A writer changed the storage: the next list refreshes, once. */
	fake_set(f, one, NULL, 1);
	cache_storage_invalidate(c);
	cache_storage_invalidate(c);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(storage_list(c, &l, NULL), 0);
		assert_names(&l, one, 1);
		stage_list_done(&l);
	}
	assert_int_equal(fake_get(f, &f->list_calls), 2);
	storage_free(c);
}

/* ---- concurrency ------------------------------------------------------------------------ */

struct lister {
	struct storage *c;
	int rc;
	size_t n;
	struct sf_err err;
};

static void *lister_main(void *arg)
{
	struct lister *a = arg;
	struct stage_list l = {0};

	a->rc = storage_list(a->c, &l, &a->err);
	a->n = l.n;
	if (a->rc == 0)
		stage_list_done(&l);
	return NULL;
}

#define NTHREADS 8

/* Start NTHREADS listers while the inner list is held; release after they all started. */
static void run_listers(struct fake *f, struct storage *c, struct lister *a)
{
	pthread_t tid[NTHREADS];

	fake_hold(f, true);
	for (int i = 0; i < NTHREADS; i++) {
		a[i] = (struct lister){.c = c};
		assert_int_equal(pthread_create(&tid[i], NULL, lister_main, &a[i]), 0);
	}
	fake_wait_in_list(f, 1);
	sleep_ms(100); /* let the others reach the cache and wait there */
	fake_hold(f, false);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(tid[i], NULL);
}

static void test_concurrent_refresh(void **state)
{
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, 60000);
	struct lister a[NTHREADS];
	struct stage_list l = {0};

	/* Cold cache: the first refresh. */
	run_listers(f, c, a);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(a[i].rc, 0);
		assert_int_equal(a[i].n, 3);
	}
	assert_int_equal(fake_get(f, &f->list_calls), 1);

	/* A refresh of a stale cache: still one inner list. */
	cache_storage_invalidate(c);
	run_listers(f, c, a);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(a[i].rc, 0);
		assert_int_equal(a[i].n, 3);
	}
	assert_int_equal(fake_get(f, &f->list_calls), 2);

	/* A failing refresh: one inner list, and every caller gets its error (shared with the
	 * waiters, not retried by each of them); no one an empty listing. */
	cache_storage_invalidate(c);
	fake_update(f, &f->list_error, -ETIMEDOUT);
	run_listers(f, c, a);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(a[i].rc, -ETIMEDOUT);
		assert_int_equal(a[i].err.code, -ETIMEDOUT);
		assert_int_equal(a[i].n, 0);
	}
	assert_int_equal(fake_get(f, &f->list_calls), 3);

	/* And it recovers. */
	fake_update(f, &f->list_error, 0);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_int_equal(l.n, 3);
	stage_list_done(&l);
	storage_free(c);
	assert_int_equal(freed, 1);
}

struct held_list {
	struct storage *c;
	struct stage_list l;
	int rc;
};

static void *held_list_main(void *arg)
{
	struct held_list *h = arg;

	h->rc = storage_list(h->c, &h->l, NULL);
	return NULL;
}

/* A writer changes the storage and invalidates while a refresh that began before the change is
 * running: that refresh's (old) answer must not be kept as fresh. */
static void test_invalidate_during_refresh(void **state)
{
	static const char *const two[] = {S1, S2};
	static const char *const three[] = {S1, S2, S3};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, 60000);
	struct held_list h = {.c = c};
	struct stage_list l = {0};
	struct tu_case tc;
	pthread_t tid;

	fake_set(f, two, NULL, 2);
	fake_hold(f, true);
	assert_int_equal(pthread_create(&tid, NULL, held_list_main, &h), 0);
	fake_wait_in_list(f, 1);     /* the inner list took its snapshot: S1, S2 */
	fake_set(f, three, NULL, 3); /* the writer adds S3 ... */
	cache_storage_invalidate(c); /* ... and says so */
	fake_hold(f, false);
	pthread_join(tid, NULL);
	assert_int_equal(h.rc, 0);
	assert_names(&h.l, two, 2); /* began before the change: the old answer is fine here */
	stage_list_done(&h.l);

	tu_case_begin(&tc, false, "test_cache.c: list after invalidate during a refresh");
	assert_int_equal(storage_list(c, &l, NULL), 0);
	tu_check_int(&tc, "entries listed after the invalidate", (long long)l.n, 3);
	tu_check_int(&tc, "inner lists", fake_get(f, &f->list_calls), 2);
	stage_list_done(&l);
	tu_case_end(&tc);
	storage_free(c);
	tu_assert_all_passed();
}

/* ---- describe and find ------------------------------------------------------------------ */

static void test_describe_cached(void **state)
{
	static const char *const names[] = {S1, S1, S2, S3};
	static const char *const projects[] = {"proj-a", "proj-b", "proj-b", "proj-b"};
	static const char *const names2[] = {S1, S2, S3};
	static const char *const projects2[] = {"proj-b", "proj-b", "proj-b"};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, true, &freed);
	struct storage *c = cache_over(f, TTL_MS);
	struct stage_layout *a1 = NULL, *a2 = NULL, *b1 = NULL, *b2 = NULL, *x = NULL;
	struct stage_list l = {0};
	struct sf_err err = {0};

	fake_set(f, names, projects, 4);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_int_equal(l.n, 4);
	stage_list_done(&l);

	/* Once per (project, stage); later calls share the layout. */
	assert_int_equal(storage_describe(c, "proj-a", S1, &a1, NULL), 0);
	assert_int_equal(fake_get(f, &f->describe_calls), 1);
	assert_string_equal(a1->index_json, "{\"project\":\"proj-a\",\"stage\":\"" S1 "\"}");
	assert_int_equal(storage_describe(c, "proj-a", S1, &a2, NULL), 0);
	assert_ptr_equal(a2, a1);
	assert_int_equal(fake_get(f, &f->describe_calls), 1);
	assert_int_equal(storage_describe(c, "proj-b", S1, &b1, NULL), 0);
	assert_ptr_not_equal(b1, a1);
	assert_string_equal(b1->index_json, "{\"project\":\"proj-b\",\"stage\":\"" S1 "\"}");
	assert_int_equal(storage_describe(c, "proj-b", S1, &b2, NULL), 0);
	assert_ptr_equal(b2, b1);
	assert_int_equal(fake_get(f, &f->describe_calls), 2);
	stage_layout_unref(a2);
	stage_layout_unref(b2);

	/* Errors are not cached. */
	f->describe_fail = S3;
	for (int i = 0; i < 3; i++) {
		err = (struct sf_err){0};
		x = NULL;
		assert_int_equal(storage_describe(c, "proj-b", S3, &x, &err), -ENOENT);
		assert_null(x);
		assert_int_equal(err.code, -ENOENT);
		assert_string_equal(err.msg, "fake storage: no stage " S3);
	}
	assert_int_equal(fake_get(f, &f->describe_calls), 5);
	f->describe_fail = NULL;
	assert_int_equal(storage_describe(c, "proj-b", S3, &x, NULL), 0);
	stage_layout_unref(x);
	assert_int_equal(fake_get(f, &f->describe_calls), 6);

	/* A refresh that still lists them keeps them. */
	sleep_ms(PAST_TTL_MS);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 2);
	assert_int_equal(storage_describe(c, "proj-a", S1, &a2, NULL), 0);
	assert_ptr_equal(a2, a1);
	stage_layout_unref(a2);
	assert_int_equal(fake_get(f, &f->describe_calls), 6);

	/* proj-a/S1 is gone from the storage: after the refresh it is described anew, while
	 * proj-b/S1 (same stage name, other project) stays cached. */
	fake_set(f, names2, projects2, 3);
	sleep_ms(PAST_TTL_MS);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_int_equal(l.n, 3);
	stage_list_done(&l);
	assert_int_equal(storage_describe(c, "proj-a", S1, &a2, NULL), 0);
	assert_ptr_not_equal(a2, a1); /* a1 is still held here, so a new one cannot reuse it */
	assert_string_equal(a2->index_json, a1->index_json);
	assert_int_equal(fake_get(f, &f->describe_calls), 7);
	assert_int_equal(storage_describe(c, "proj-b", S1, &b2, NULL), 0);
	assert_ptr_equal(b2, b1);
	assert_int_equal(fake_get(f, &f->describe_calls), 7);
	stage_layout_unref(b2);

	/* Layouts handed out outlive the cache. */
	storage_free(c);
	assert_int_equal(freed, 1);
	assert_int_equal(a1->refs, 1);
	assert_int_equal(a1->nblobs, 1);
	stage_layout_unref(a1);
	stage_layout_unref(a2);
	stage_layout_unref(b1);
}

static void test_describe_no_project(void **state)
{
	static const char *const one[] = {S2};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, 60000);
	struct stage_layout *a = NULL, *b = NULL;
	struct stage_list l = {0};

	/* NULL and "" are the same (no project). */
	assert_int_equal(storage_describe(c, NULL, S1, &a, NULL), 0);
	assert_int_equal(storage_describe(c, "", S1, &b, NULL), 0);
	assert_ptr_equal(a, b);
	assert_int_equal(fake_get(f, &f->describe_calls), 1);
	stage_layout_unref(b);

	/* Dropped by a refresh that no longer lists it. */
	fake_set(f, one, NULL, 1);
	cache_storage_invalidate(c);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	stage_list_done(&l);
	assert_int_equal(storage_describe(c, NULL, S1, &b, NULL), 0);
	assert_ptr_not_equal(a, b);
	assert_int_equal(fake_get(f, &f->describe_calls), 2);
	stage_layout_unref(a);
	stage_layout_unref(b);
	storage_free(c);
}

static void test_find(void **state)
{
	static const char *const names[] = {S1, S2};
	static const char *const projects[] = {"alpha", "beta"};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, true, &freed);
	struct storage *c = cache_over(f, TTL_MS);
	struct stage_info info;
	struct stage_list l = {0};
	char *long_name = tu_repeat('a', 200);

	fake_set(f, names, projects, 2);

	/* A cold cache lists once, then answers every find from that list. */
	memset(&info, 0, sizeof(info));
	assert_int_equal(storage_find(c, "alpha", S1, &info, NULL), 0);
	assert_string_equal(info.name, S1);
	assert_string_equal(info.project, "alpha");
	assert_int_equal(info.unique_ms, 1589786063772ULL);
	assert_int_equal(fake_get(f, &f->list_calls), 1);
	assert_int_equal(storage_find(c, "beta", S2, &info, NULL), 0);
	assert_string_equal(info.project, "beta");
	assert_int_equal(info.unique_ms, 1589786063773ULL);
	memset(&info, 'z', sizeof(info));
	assert_int_equal(storage_find(c, "beta", S1, &info, NULL), -ENOENT);
	assert_int_equal(storage_find(c, "alpha", S2, &info, NULL), -ENOENT);
	assert_int_equal(storage_find(c, NULL, S1, &info, NULL), -ENOENT);
	assert_int_equal(storage_find(c, "alpha", long_name, &info, NULL), -ENOENT);
	assert_int_equal(storage_find(c, long_name, S1, &info, NULL), -ENOENT);
	assert_int_equal(info.name[0], 'z'); /* not written on failure */
	assert_int_equal(fake_get(f, &f->list_calls), 1);
	assert_int_equal(fake_get(f, &f->find_calls), 0);

	/* Same list as storage_list within ttl. */
	assert_int_equal(storage_list(c, &l, NULL), 0);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 1);

	/* Stale or invalidated: one refresh, through the same path as list. */
	sleep_ms(PAST_TTL_MS);
	assert_int_equal(storage_find(c, "alpha", S3, &info, NULL), -ENOENT);
	assert_int_equal(storage_find(c, "alpha", S1, &info, NULL), 0);
	assert_int_equal(fake_get(f, &f->list_calls), 2);
	cache_storage_invalidate(c);
	assert_int_equal(storage_find(c, "beta", S2, &info, NULL), 0);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	stage_list_done(&l);
	assert_int_equal(fake_get(f, &f->list_calls), 3);
	assert_int_equal(fake_get(f, &f->find_calls), 0);
	free(long_name);
	storage_free(c);
}

/* ---- pass-through ----------------------------------------------------------------------- */

struct collected {
	char data[32];
	size_t len;
};

static int collect(void *userdata, const void *data, size_t len)
{
	struct collected *c = userdata;

	assert_true(c->len + len <= sizeof(c->data));
	memcpy(c->data + c->len, data, len);
	c->len += len;
	return 0;
}

static int refuse(void *userdata, const void *data, size_t len)
{
	return -ECANCELED;
}

static void test_passthrough(void **state)
{
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, 60000);
	struct layout_blob blob = {.digest = DIG, .size = 10};
	struct collected got = {0};
	struct sf_err err = {0};
	char path[256];

	/* read_blob is not cached: every call goes through, with its offset, sink and error. */
	assert_int_equal(storage_read_blob(c, NULL, S1, &blob, 0, collect, &got, NULL), 0);
	assert_int_equal(storage_read_blob(c, NULL, S1, &blob, 4, collect, &got, NULL), 0);
	assert_memory_equal(got.data, "0123456789456789", 16);
	assert_int_equal(got.len, 16);
	assert_int_equal(storage_read_blob(c, NULL, S1, &blob, 11, collect, &got, NULL), -ERANGE);
	assert_int_equal(storage_read_blob(c, NULL, S1, &blob, 0, refuse, NULL, NULL), -ECANCELED);
	assert_int_equal(storage_read_blob(c, NULL, S2, &blob, 0, collect, &got, &err), -EAGAIN);
	assert_string_equal(err.msg, "fake storage: busy");
	assert_int_equal(fake_get(f, &f->read_calls), 5);

	/* local_file goes to the backend that has it. */
	assert_int_equal(storage_local_file(c, NULL, S1, &blob, path, sizeof(path), NULL), 0);
	assert_string_equal(path,
			    "/fake/" S1 "/"
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(fake_get(f, &f->local_calls), 1);
	storage_free(c);
	assert_int_equal(freed, 1);

	/* A backend without local files: -ENOTSUP through the cache too. */
	f = fake_new(&fake_ops_minimal, false, &freed);
	c = cache_over(f, 60000);
	assert_int_equal(storage_local_file(c, NULL, S1, &blob, path, sizeof(path), NULL),
			 -ENOTSUP);
	assert_int_equal(fake_get(f, &f->local_calls), 0);
	storage_free(c);
	assert_int_equal(freed, 2);
}

/* A stage the listing showed and the storage no longer has (deleted since): describe gives
 * ENOENT, and the next listing asks the storage again instead of showing it for the ttl. */
static void test_describe_enoent_drops_listing(void **state)
{
	static const char *const two[] = {S1, S3};
	int freed = 0;
	struct fake *f = fake_new(&fake_ops, false, &freed);
	struct storage *c = cache_over(f, 3600 * 1000);
	struct stage_list l = {0};
	struct stage_layout *lay = NULL;

	(void)state;
	assert_int_equal(storage_list(c, &l, NULL), 0);
	stage_list_done(&l);
	fake_set(f, two, NULL, 2);
	pthread_mutex_lock(&f->lock);
	f->describe_fail = S2;
	pthread_mutex_unlock(&f->lock);
	assert_int_equal(storage_describe(c, "", S2, &lay, NULL), -ENOENT);
	assert_null(lay);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_names(&l, two, 2);
	assert_int_equal(fake_get(f, &f->list_calls), 2);
	stage_list_done(&l);
	/* Other stages stay described from memory. */
	assert_int_equal(storage_describe(c, "", S1, &lay, NULL), 0);
	stage_layout_unref(lay);
	assert_int_equal(storage_list(c, &l, NULL), 0);
	assert_int_equal(fake_get(f, &f->list_calls), 2);
	stage_list_done(&l);
	storage_free(c);
	assert_int_equal(freed, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_list_ttl),
	    cmocka_unit_test(test_list_errors_not_cached),
	    cmocka_unit_test(test_invalidate),
	    cmocka_unit_test(test_concurrent_refresh),
	    cmocka_unit_test(test_invalidate_during_refresh),
	    cmocka_unit_test(test_describe_cached),
	    cmocka_unit_test(test_describe_enoent_drops_listing),
	    cmocka_unit_test(test_describe_no_project),
	    cmocka_unit_test(test_find),
	    cmocka_unit_test(test_passthrough),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
