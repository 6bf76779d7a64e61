#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBUCKETS 4096

struct described {
	char key[NAME_PROJECT_MAX + 1 + NAME_STAGE_MAX + 1];
	struct stage_layout *layout;
	struct described *next;
};

struct cache_storage {
	struct storage base;
	struct storage *inner;
	uint64_t ttl_ms;
	pthread_mutex_t lock;
	pthread_cond_t refreshed;
	bool refreshing;
	uint64_t refreshes;  /* refreshes finished */
	uint64_t generation; /* bumped by cache_storage_invalidate */
	int last_error;	     /* of the last refresh, shared with its waiters */
	char last_msg[sizeof(((struct sf_err *)0)->msg)];
	bool have_list;
	uint64_t list_at_ms;
	struct stage_list list;
	struct described *buckets[NBUCKETS];
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static unsigned hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % NBUCKETS;
}

static void make_key(char *key, size_t n, const char *project, const char *stage)
{
	snprintf(key, n, "%s/%s", project ? project : "", stage);
}

static int copy_list(const struct stage_list *src, struct stage_list *dst)
{
	dst->v = malloc((src->n + 1) * sizeof(*dst->v));
	if (!dst->v)
		return -ENOMEM;
	if (src->n) /* an empty list may have no array at all */
		memcpy(dst->v, src->v, src->n * sizeof(*dst->v));
	dst->n = src->n;
	return 0;
}

/* Drop described layouts of stages the new list no longer has. Lock held. */
static void prune(struct cache_storage *c)
{
	for (size_t i = 0; i < NBUCKETS; i++) {
		struct described **pp = &c->buckets[i];
		while (*pp) {
			struct described *d = *pp;
			struct stage_info key = {0};
			const char *slash = strchr(d->key, '/');
			snprintf(key.project, sizeof(key.project), "%.*s", (int)(slash - d->key),
				 d->key);
			snprintf(key.name, sizeof(key.name), "%s", slash + 1);
			if (c->list.n &&
			    bsearch(&key, c->list.v, c->list.n, sizeof(key), stage_info_cmp)) {
				pp = &d->next;
				continue;
			}
			*pp = d->next;
			stage_layout_unref(d->layout);
			free(d);
		}
	}
}

static int cs_list(struct storage *st, struct stage_list *ret, struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	struct stage_list fresh = {0};
	uint64_t gen, waited_for;
	int r;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		if (c->have_list && now_ms() - c->list_at_ms < c->ttl_ms) {
			r = copy_list(&c->list, ret);
			pthread_mutex_unlock(&c->lock);
			return r;
		}
		if (!c->refreshing)
			break;
		/* One refresh at a time: wait for it and share its answer, good or bad. */
		waited_for = c->refreshes;
		while (c->refreshing && c->refreshes == waited_for)
			pthread_cond_wait(&c->refreshed, &c->lock);
		if (c->refreshes != waited_for && c->last_error) {
			r = err_set(err, c->last_error, "%s", c->last_msg);
			pthread_mutex_unlock(&c->lock);
			return r;
		}
	}
	c->refreshing = true;
	gen = c->generation;
	pthread_mutex_unlock(&c->lock);

	r = storage_list(c->inner, &fresh, err);

	pthread_mutex_lock(&c->lock);
	c->refreshing = false;
	c->refreshes++;
	c->last_error = r < 0 ? r : 0;
	snprintf(c->last_msg, sizeof(c->last_msg), "%s", r < 0 ? err_msg(err, r) : "");
	if (r == 0) {
		stage_list_done(&c->list);
		c->list = fresh;
		c->have_list = true;
		/* Invalidated while we listed: the answer may predate the change, use it once. */
		c->list_at_ms = gen == c->generation ? now_ms() : 0;
		prune(c);
		r = copy_list(&c->list, ret);
	} else {
		c->have_list = false;
	}
	pthread_cond_broadcast(&c->refreshed);
	pthread_mutex_unlock(&c->lock);
	return r;
}

static int cs_describe(struct storage *st, const char *project, const char *stage,
		       struct stage_layout **ret, struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	char key[sizeof(((struct described *)0)->key)];
	struct stage_layout *l = NULL;
	struct described *d;
	uint64_t gen;
	unsigned h;
	int r;

	make_key(key, sizeof(key), project, stage);
	h = hash(key);
	pthread_mutex_lock(&c->lock);
	for (d = c->buckets[h]; d; d = d->next)
		if (strcmp(d->key, key) == 0) {
			*ret = stage_layout_ref(d->layout);
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
	gen = c->generation;
	pthread_mutex_unlock(&c->lock);

	r = storage_describe(c->inner, project, stage, &l, err);
	if (r == -ENOENT)
		/* Deleted since it was listed: the next listing must not show it again. */
		cache_storage_invalidate(st);
	if (r < 0)
		return r;

	pthread_mutex_lock(&c->lock);
	for (d = c->buckets[h]; d; d = d->next)
		if (strcmp(d->key, key) == 0)
			break; /* another thread described it meanwhile */
	/* A commit or removal meanwhile may have made this answer stale: use it once, keep it
	 * not. */
	if (!d && gen == c->generation) {
		d = calloc(1, sizeof(*d));
		if (d) {
			memcpy(d->key, key, sizeof(key));
			d->layout = stage_layout_ref(l);
			d->next = c->buckets[h];
			c->buckets[h] = d;
		}
	}
	pthread_mutex_unlock(&c->lock);
	*ret = l;
	return 0;
}

static int cs_read_blob(struct storage *st, const char *project, const char *stage,
			const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
			void *userdata, struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	return storage_read_blob(c->inner, project, stage, blob, offset, sink, userdata, err);
}

static int cs_find(struct storage *st, const char *project, const char *stage,
		   struct stage_info *ret, struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	struct stage_list l = {0};
	int r;

	pthread_mutex_lock(&c->lock);
	if (c->have_list && now_ms() - c->list_at_ms < c->ttl_ms) {
		r = stage_list_find(&c->list, project, stage, ret);
		pthread_mutex_unlock(&c->lock);
		return r;
	}
	pthread_mutex_unlock(&c->lock);
	/* Stale: refresh through the list path (single flight), then search the copy. */
	r = cs_list(st, &l, err);
	if (r < 0)
		return r;
	r = stage_list_find(&l, project, stage, ret);
	stage_list_done(&l);
	return r;
}

static int cs_local_file(struct storage *st, const char *project, const char *stage,
			 const struct layout_blob *blob, char *ret_path, size_t path_size,
			 struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	return storage_local_file(c->inner, project, stage, blob, ret_path, path_size, err);
}

/* Drop what is known of one stage (its layout) and the listing: the storage changed. */
static void forget(struct cache_storage *c, const char *project, const char *stage)
{
	char key[sizeof(((struct described *)0)->key)];
	struct described **pp, *d;

	make_key(key, sizeof(key), project, stage);
	pthread_mutex_lock(&c->lock);
	for (pp = &c->buckets[hash(key)]; (d = *pp); pp = &d->next)
		if (strcmp(d->key, key) == 0) {
			*pp = d->next;
			stage_layout_unref(d->layout);
			free(d);
			break;
		}
	c->have_list = false;
	c->generation++;
	pthread_mutex_unlock(&c->lock);
}

struct cache_writer {
	struct stage_writer base;
	struct stage_writer *inner;
	struct cache_storage *c;
	char project[NAME_PROJECT_MAX + 1];
	char stage[NAME_STAGE_MAX + 1];
};

static int cw_add_blob(struct stage_writer *w, const char *digest, uint64_t size, const char *path,
		       struct sf_err *err)
{
	return stage_writer_add_blob(((struct cache_writer *)w)->inner, digest, size, path, err);
}

static int cw_commit(struct stage_writer *w, const char *index_json, size_t index_len,
		     struct sf_err *err)
{
	struct cache_writer *cw = (struct cache_writer *)w;
	int r = stage_writer_commit(cw->inner, index_json, index_len, err);

	/* Also on failure: a commit that failed half-way may have changed what is listed. */
	forget(cw->c, cw->project, cw->stage);
	return r;
}

static void cw_free(struct stage_writer *w)
{
	struct cache_writer *cw = (struct cache_writer *)w;

	stage_writer_free(cw->inner);
	free(cw);
}

static const struct stage_writer_ops cache_writer_ops = {
    .add_blob = cw_add_blob,
    .commit = cw_commit,
    .free = cw_free,
};

static int cs_write_begin(struct storage *st, const char *project, const char *stage,
			  struct stage_writer **ret, struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	struct cache_writer *cw = calloc(1, sizeof(*cw));
	int r;

	if (!cw)
		return -ENOMEM;
	r = storage_write_begin(c->inner, project, stage, &cw->inner, err);
	if (r < 0) {
		free(cw);
		return r;
	}
	cw->base.ops = &cache_writer_ops;
	cw->c = c;
	snprintf(cw->project, sizeof(cw->project), "%s", project ? project : "");
	snprintf(cw->stage, sizeof(cw->stage), "%s", stage);
	*ret = &cw->base;
	return 0;
}

static int cs_remove(struct storage *st, const char *project, const char *stage,
		     struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	int r = storage_remove(c->inner, project, stage, err);

	forget(c, project, stage);
	return r;
}

static int cs_summary(struct storage *st, const char *project, const char *stage,
		      struct stage_summary *ret, struct sf_err *err)
{
	struct cache_storage *c = (struct cache_storage *)st;
	struct stage_layout *l = NULL;
	int r;

	if (c->inner->ops->summary)
		return storage_summary(c->inner, project, stage, ret, err);
	r = cs_describe(st, project, stage, &l, err); /* cached */
	if (r < 0)
		return r;
	r = stage_layout_summary(l, ret);
	stage_layout_unref(l);
	return r;
}

static void cs_cancel(struct storage *st)
{
	storage_cancel(((struct cache_storage *)st)->inner);
}

static void cs_free(struct storage *st)
{
	struct cache_storage *c = (struct cache_storage *)st;

	for (size_t i = 0; i < NBUCKETS; i++)
		while (c->buckets[i]) {
			struct described *d = c->buckets[i];
			c->buckets[i] = d->next;
			stage_layout_unref(d->layout);
			free(d);
		}
	stage_list_done(&c->list);
	storage_free(c->inner);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->refreshed);
	free(c);
}

static const struct storage_ops cache_ops = {
    .list = cs_list,
    .describe = cs_describe,
    .read_blob = cs_read_blob,
    .free = cs_free,
    .find = cs_find,
    .local_file = cs_local_file,
    .cancel = cs_cancel,
    .write_begin = cs_write_begin,
    .remove = cs_remove,
    .summary = cs_summary,
};

int cache_storage_new(struct storage *inner, uint64_t ttl_ms, struct storage **ret)
{
	struct cache_storage *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->base.ops = &cache_ops;
	c->base.by_project = inner->by_project;
	c->base.switch_block = inner->switch_block;
	c->inner = inner;
	c->ttl_ms = ttl_ms;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->refreshed, NULL);
	*ret = &c->base;
	return 0;
}

void cache_storage_invalidate(struct storage *st)
{
	struct cache_storage *c = (struct cache_storage *)st;

	pthread_mutex_lock(&c->lock);
	c->have_list = false;
	c->generation++;
	pthread_mutex_unlock(&c->lock);
}
