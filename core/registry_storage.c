#include "registry_storage.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci.h"
#include "registry_writer.h"

/* Child manifests of one image index kept in memory: platforms of one stage, a handful in
 * practice; this bounds a stage's layout to 64 x 4 MiB. */
#define INDEX_CHILDREN_MAX 64

struct registry_storage {
	struct storage base;
	struct registry *reg;
	struct registry_writer_memo *memo; /* layers compressed by this mount */
};

static struct registry *reg_of(struct storage *st)
{
	return ((struct registry_storage *)st)->reg;
}

static int rs_list(struct storage *st, struct stage_list *ret, struct sf_err *err)
{
	struct strv tags = {0};
	struct stage_list l = {0};
	int r;

	r = registry_list_tags(reg_of(st), &tags, err);
	if (r < 0)
		return r;
	l.v = calloc(tags.n + 1, sizeof(*l.v));
	if (!l.v) {
		strv_done(&tags);
		return -ENOMEM;
	}
	for (size_t i = 0; i < tags.n; i++) {
		if (!name_is_stage(tags.v[i]))
			continue;
		memcpy(l.v[l.n].name, tags.v[i], strlen(tags.v[i]) + 1);
		l.n++;
	}
	strv_done(&tags);
	stage_list_finish(&l);
	*ret = l;
	return 0;
}

/* Something a stage's own documents list went missing (a registry's garbage collection, a
 * broken storage backend): code (not -ENOENT, which is for names nobody lists) with the
 * message "WHAT: what the registry said". */
static int gone(struct sf_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int gone(struct sf_err *err, int code, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	err->code = code;
	err_prefix(err, "%s", what);
	return code;
}

/* Add an image manifest's config and layers to the layout. */
static int add_image(struct stage_layout *l, const struct oci_manifest *m)
{
	int r = stage_layout_add_blob(l, m->config.digest, m->config.size, NULL);

	for (size_t i = 0; r == 0 && i < m->n; i++)
		r = stage_layout_add_blob(l, m->descs[i].digest, m->descs[i].size, NULL);
	return r;
}

static int rs_describe(struct storage *st, const char *project, const char *stage,
		       struct stage_layout **ret, struct sf_err *err)
{
	struct registry *reg = reg_of(st);
	struct registry_manifest top = {0};
	struct oci_manifest m = {0};
	struct stage_layout *l = NULL;
	struct oci_desc d = {0};
	int r;

	if (!name_is_stage(stage))
		return -ENOENT;
	r = registry_get_manifest(reg, stage, &top, err);
	if (r < 0)
		return r;
	r = oci_manifest_parse(top.data, top.len, top.media_type, &m, err);
	if (r < 0) {
		err_prefix(err, "stage %s", stage);
		goto out;
	}
	l = stage_layout_new();
	if (!l) {
		r = -ENOMEM;
		goto out;
	}
	r = stage_layout_add_blob(l, top.digest, top.len, top.data);
	if (r == 0 && !m.is_index) {
		memcpy(l->image_id, m.config.digest, DIGEST_LEN);
		r = add_image(l, &m);
	}
	if (r == 0 && m.is_index && m.n > INDEX_CHILDREN_MAX)
		r = err_set(err, -E2BIG, "stage %s: an index of %zu images (at most %d)", stage,
			    m.n, INDEX_CHILDREN_MAX);
	for (size_t i = 0; r == 0 && m.is_index && i < m.n; i++) {
		struct registry_manifest child = {0};
		struct oci_manifest cm = {0};
		r = registry_get_manifest(reg, m.descs[i].digest, &child, err);
		if (r == -ENOENT)
			r = gone(err, -EIO,
				 "stage %s: manifest %s listed in its image index is missing",
				 stage, m.descs[i].digest);
		if (r == 0)
			r = oci_manifest_parse(child.data, child.len, child.media_type, &cm, err);
		if (r == 0 && cm.is_index)
			r = err_set(err, -EINVAL, "stage %s: nested image indexes", stage);
		if (r == 0 && child.len != m.descs[i].size)
			r = err_set(err, -EBADMSG,
				    "stage %s: manifest %.19s is not the size its index says",
				    stage, m.descs[i].digest);
		if (r == 0)
			r = stage_layout_add_blob(l, child.digest, child.len, child.data);
		if (r == 0)
			r = add_image(l, &cm);
		oci_manifest_done(&cm);
		registry_manifest_done(&child);
	}
	if (r < 0)
		goto out;
	d.media_type = m.media_type;
	memcpy(d.digest, top.digest, DIGEST_LEN);
	d.size = top.len;
	r = oci_index_json(&d, stage, &l->index_json, &l->index_len);
	if (r < 0)
		goto out;
	stage_layout_seal(l);
	*ret = l;
	l = NULL;
out:
	stage_layout_unref(l);
	oci_manifest_done(&m);
	registry_manifest_done(&top);
	return r;
}

static int rs_read_blob(struct storage *st, const char *project, const char *stage,
			const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
			void *userdata, struct sf_err *err)
{
	if (blob->data) {
		if (offset > blob->size)
			return -EINVAL;
		return sink(userdata, blob->data + offset, (size_t)(blob->size - offset));
	}
	int r = registry_get_blob(reg_of(st), blob->digest, offset, sink, userdata, err);
	if (r == -ENOENT)
		r = gone(err, -EIO, "stage %s: blob %s listed in its manifest is missing", stage,
			 blob->digest);
	return r;
}

static void rs_cancel(struct storage *st)
{
	registry_cancel(reg_of(st));
}

static void rs_free(struct storage *st)
{
	struct registry_storage *rs = (struct registry_storage *)st;

	registry_free(rs->reg);
	registry_writer_memo_free(rs->memo);
	free(rs);
}

static int rs_write_begin(struct storage *st, const char *project, const char *stage,
			  struct stage_writer **ret, struct sf_err *err)
{
	return registry_writer_new(reg_of(st), ((struct registry_storage *)st)->memo, stage, ret,
				   err);
}

static int rs_remove(struct storage *st, const char *project, const char *stage,
		     struct sf_err *err)
{
	return registry_delete_tag(reg_of(st), stage, err);
}

static const struct storage_ops registry_storage_ops = {
    .list = rs_list,
    .describe = rs_describe,
    .read_blob = rs_read_blob,
    .free = rs_free,
    .cancel = rs_cancel,
    .write_begin = rs_write_begin,
    .remove = rs_remove,
};

int registry_storage_new(struct registry *reg, struct storage **ret)
{
	struct registry_storage *rs = calloc(1, sizeof(*rs));

	if (!rs || registry_writer_memo_new(&rs->memo) < 0) {
		free(rs);
		return -ENOMEM;
	}
	rs->base.ops = &registry_storage_ops;
	rs->reg = reg;
	*ret = &rs->base;
	return 0;
}
