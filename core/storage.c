#include "storage.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "oci.h"

int storage_list(struct storage *st, struct stage_list *ret, struct sf_err *err)
{
	return st->ops->list(st, ret, err);
}

int storage_describe(struct storage *st, const char *project, const char *stage,
		     struct stage_layout **ret, struct sf_err *err)
{
	return st->ops->describe(st, project, stage, ret, err);
}

int storage_read_blob(struct storage *st, const char *project, const char *stage,
		      const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
		      void *userdata, struct sf_err *err)
{
	return st->ops->read_blob(st, project, stage, blob, offset, sink, userdata, err);
}

int storage_local_file(struct storage *st, const char *project, const char *stage,
		       const struct layout_blob *blob, char *ret_path, size_t path_size,
		       struct sf_err *err)
{
	if (!st->ops->local_file)
		return -ENOTSUP;
	return st->ops->local_file(st, project, stage, blob, ret_path, path_size, err);
}

int stage_list_find(const struct stage_list *l, const char *project, const char *stage,
		    struct stage_info *ret)
{
	struct stage_info key = {0};
	const struct stage_info *hit;

	if (snprintf(key.project, sizeof(key.project), "%s", project ? project : "") >=
		(int)sizeof(key.project) ||
	    snprintf(key.name, sizeof(key.name), "%s", stage) >= (int)sizeof(key.name) || !l->n)
		return -ENOENT;
	hit = bsearch(&key, l->v, l->n, sizeof(key), stage_info_cmp);
	if (!hit)
		return -ENOENT;
	*ret = *hit;
	return 0;
}

int storage_find(struct storage *st, const char *project, const char *stage, struct stage_info *ret,
		 struct sf_err *err)
{
	struct stage_list l = {0};
	int r;

	if (st->ops->find)
		return st->ops->find(st, project, stage, ret, err);
	/* Names no stage can have need no listing. */
	if (strlen(stage) > NAME_STAGE_MAX || (project && strlen(project) > NAME_PROJECT_MAX))
		return -ENOENT;
	r = storage_list(st, &l, err);
	if (r < 0)
		return r;
	r = stage_list_find(&l, project, stage, ret);
	stage_list_done(&l);
	return r;
}

int stage_layout_summary(const struct stage_layout *l, struct stage_summary *ret)
{
	struct stage_summary sum = {.size = 0};

	if (l->image_id[0]) {
		memcpy(sum.image_id, l->image_id, DIGEST_LEN);
	} else {
		struct oci_desc top = {0};
		char *ref = NULL;
		int r = oci_index_parse(l->index_json, l->index_len, &top, &ref, NULL);
		if (r < 0)
			return r;
		memcpy(sum.image_id, top.digest, DIGEST_LEN);
		free(top.media_type);
		free(ref);
	}
	for (size_t i = 0; i < l->nblobs; i++)
		sum.size += l->blobs[i].size;
	*ret = sum;
	return 0;
}

int storage_summary(struct storage *st, const char *project, const char *stage,
		    struct stage_summary *ret, struct sf_err *err)
{
	struct stage_layout *l = NULL;
	int r;

	if (st->ops->summary)
		return st->ops->summary(st, project, stage, ret, err);
	r = storage_describe(st, project, stage, &l, err);
	if (r < 0)
		return r;
	r = stage_layout_summary(l, ret);
	stage_layout_unref(l);
	return r;
}

int storage_write_begin(struct storage *st, const char *project, const char *stage,
			struct stage_writer **ret, struct sf_err *err)
{
	if (!st->ops->write_begin)
		return err_set(err, -EROFS, "this storage is read-only");
	return st->ops->write_begin(st, project, stage, ret, err);
}

int storage_remove(struct storage *st, const char *project, const char *stage, struct sf_err *err)
{
	if (!st->ops->remove)
		return err_set(err, -EROFS, "this storage is read-only");
	return st->ops->remove(st, project, stage, err);
}

int stage_writer_add_blob(struct stage_writer *w, const char *digest, uint64_t size,
			  const char *path, struct sf_err *err)
{
	return w->ops->add_blob(w, digest, size, path, err);
}

int stage_writer_commit(struct stage_writer *w, const char *index_json, size_t index_len,
			struct sf_err *err)
{
	return w->ops->commit(w, index_json, index_len, err);
}

void stage_writer_free(struct stage_writer *w)
{
	if (w)
		w->ops->free(w);
}

void storage_cancel(struct storage *st)
{
	if (st && st->ops->cancel)
		st->ops->cancel(st);
}

void storage_free(struct storage *st)
{
	if (st)
		st->ops->free(st);
}

void stage_list_done(struct stage_list *l)
{
	if (!l)
		return;
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

int stage_info_cmp(const void *a, const void *b)
{
	const struct stage_info *x = a, *y = b;
	int c = strcmp(x->project, y->project);
	return c ? c : strcmp(x->name, y->name);
}

void stage_list_finish(struct stage_list *l)
{
	size_t o = 0;

	for (size_t i = 0; i < l->n; i++)
		if (name_stage_parse(l->v[i].name, NULL, &l->v[i].unique_ms) == 0)
			l->v[o++] = l->v[i];
	l->n = o;
	if (l->n)
		qsort(l->v, l->n, sizeof(*l->v), stage_info_cmp);
}

struct stage_layout *stage_layout_new(void)
{
	struct stage_layout *l = calloc(1, sizeof(*l));
	if (l)
		l->refs = 1;
	return l;
}

struct stage_layout *stage_layout_ref(struct stage_layout *l)
{
	if (l)
		__atomic_add_fetch(&l->refs, 1, __ATOMIC_RELAXED);
	return l;
}

void stage_layout_unref(struct stage_layout *l)
{
	if (!l || __atomic_sub_fetch(&l->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return;
	for (size_t i = 0; i < l->nblobs; i++)
		free(l->blobs[i].data);
	free(l->blobs);
	free(l->index_json);
	free(l);
}

int stage_layout_add_blob(struct stage_layout *l, const char *digest, uint64_t size,
			  const void *data)
{
	struct layout_blob *b;

	for (size_t i = 0; i < l->nblobs; i++)
		if (strcmp(l->blobs[i].digest, digest) == 0)
			return l->blobs[i].size == size ? 0 : -EBADMSG;
	if (!name_digest_valid(digest))
		return -EINVAL;
	b = realloc(l->blobs, (l->nblobs + 1) * sizeof(*b));
	if (!b)
		return -ENOMEM;
	l->blobs = b;
	b = &l->blobs[l->nblobs];
	*b = (struct layout_blob){.size = size};
	memcpy(b->digest, digest, DIGEST_LEN);
	if (data) {
		b->data = malloc(size ? size : 1);
		if (!b->data)
			return -ENOMEM;
		memcpy(b->data, data, size);
	}
	l->nblobs++;
	return 0;
}

static int blob_cmp(const void *a, const void *b)
{
	return strcmp(((const struct layout_blob *)a)->digest,
		      ((const struct layout_blob *)b)->digest);
}

void stage_layout_seal(struct stage_layout *l)
{
	if (l->nblobs)
		qsort(l->blobs, l->nblobs, sizeof(*l->blobs), blob_cmp);
}

const struct layout_blob *stage_layout_find(const struct stage_layout *l, const char *digest)
{
	struct layout_blob key;

	if (!name_digest_valid(digest) || l->nblobs == 0)
		return NULL;
	memcpy(key.digest, digest, DIGEST_LEN);
	return bsearch(&key, l->blobs, l->nblobs, sizeof(*l->blobs), blob_cmp);
}
