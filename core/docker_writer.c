#include "docker_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "name.h"
#include "oci.h"
#include "tar_writer.h"
#include "werf.h"


struct added {
	char digest[DIGEST_LEN];
	uint64_t size;
	char *path;
};

struct docker_writer {
	struct stage_writer base;
	struct docker *d;
	char project[NAME_PROJECT_MAX + 1];
	char ref[sizeof(WERF_LOCAL_REPO_PREFIX) + NAME_PROJECT_MAX + 1 + NAME_STAGE_MAX + 1];
	pthread_mutex_t lock;
	struct added *v;
	size_t n;
};

static int dw_add_blob(struct stage_writer *w, const char *digest, uint64_t size, const char *path,
		       struct sf_err *err)
{
	struct docker_writer *dw = (struct docker_writer *)w;
	struct added *nv;
	int r = 0;

	pthread_mutex_lock(&dw->lock);
	nv = realloc(dw->v, (dw->n + 1) * sizeof(*nv));
	if (!nv || !(nv[dw->n].path = strdup(path))) {
		if (nv)
			dw->v = nv;
		r = -ENOMEM;
	} else {
		dw->v = nv;
		memcpy(nv[dw->n].digest, digest, DIGEST_LEN);
		nv[dw->n].size = size;
		dw->n++;
	}
	pthread_mutex_unlock(&dw->lock);
	return r;
}

static const struct added *find(struct docker_writer *dw, const char *digest)
{
	for (size_t i = 0; i < dw->n; i++)
		if (strcmp(dw->v[i].digest, digest) == 0)
			return &dw->v[i];
	return NULL;
}

static int read_doc(const struct added *a, char **ret, size_t *ret_len)
{
	return buf_read_file_at(AT_FDCWD, a->path, OCI_DOC_CAP, ret, ret_len);
}

/* The image ID Docker has under the stage's tag: 0 and ret_id, or -ENOENT. ret_store_id
 * (may be NULL) tells whether that ID is the engine's own (the containerd image store names an
 * image by its manifest digest, and says so in Descriptor), not a config digest. */
static int tagged_id(struct docker_writer *dw, char ret_id[DIGEST_LEN], bool *ret_store_id,
		     struct sf_err *err)
{
	json_t *img = NULL;
	const char *id, *desc;
	int r = docker_inspect_image(dw->d, dw->ref, &img, err);

	if (r < 0)
		return r;
	id = json_string_value(json_object_get(img, "Id"));
	desc = json_string_value(json_object_get(json_object_get(img, "Descriptor"), "digest"));
	snprintf(ret_id, DIGEST_LEN, "%s", id ?: "");
	if (ret_store_id)
		*ret_store_id = id && desc && strcmp(id, desc) == 0;
	json_decref(img);
	return 0;
}

/* manifest.json of a classic `docker save` archive for one image. */
static int save_manifest(struct docker_writer *dw, const struct oci_manifest *m, char **ret,
			 size_t *ret_len)
{
	json_t *layers = json_array(), *root;
	char name[DIGEST_LEN + 32];
	char *text;

	for (size_t i = 0; layers && i < m->n; i++) {
		snprintf(name, sizeof(name), "%s/layer.tar", m->descs[i].digest + 7);
		json_array_append_new(layers, json_string(name));
	}
	snprintf(name, sizeof(name), "%s.json", m->config.digest + 7);
	root = json_pack("[{s:s,s:[s],s:o}]", "Config", name, "RepoTags", dw->ref, "Layers", layers);
	if (!root)
		return -ENOMEM;
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		return -ENOMEM;
	*ret = text;
	*ret_len = strlen(text);
	return 0;
}


static int dw_commit(struct stage_writer *w, const char *index_json, size_t index_len,
		     struct sf_err *err)
{
	struct docker_writer *dw = (struct docker_writer *)w;
	struct oci_manifest m = {0};
	struct oci_desc top = {0};
	struct tar_plan *plan = NULL;
	struct docker_load_result res = {0};
	const struct added *a;
	char *ref_name = NULL, *doc = NULL, *config = NULL, *mj = NULL;
	char have[DIGEST_LEN], name[DIGEST_LEN + 32];
	bool store_id = false;
	size_t doc_len, config_len, mj_len;
	int r;

	pthread_mutex_lock(&dw->lock);
	r = oci_index_parse(index_json, index_len, &top, &ref_name, err);
	if (r < 0)
		goto out;
	a = find(dw, top.digest);
	if (!a) {
		r = err_set(err, -EINVAL, "the manifest %s was not written", top.digest);
		goto out;
	}
	r = read_doc(a, &doc, &doc_len);
	if (r == 0)
		r = oci_manifest_parse(doc, doc_len, top.media_type, &m, err);
	if (r < 0)
		goto out;
	if (m.is_index) {
		r = err_set(err, -EINVAL,
			    "an image index cannot be loaded into the Docker daemon (Docker 20.10 "
			    "has no image indexes): copy one platform's image");
		goto out;
	}
	a = find(dw, m.config.digest);
	if (!a) {
		r = err_set(err, -EINVAL, "the config %s was not written", m.config.digest);
		goto out;
	}
	r = read_doc(a, &config, &config_len);
	if (r < 0) {
		err_set(err, r, "config %s: %s", m.config.digest, strerror(-r));
		goto out;
	}
	r = werf_check_stage_config(config, config_len, dw->project, err);
	if (r < 0) {
		err_prefix(err, "werf would not see this image as a stage of %s: ", dw->project);
		goto out;
	}
	/* Stages are never overwritten: Docker's load would move the tag silently. */
	r = tagged_id(dw, have, NULL, err);
	if (r == 0) {
		r = strcmp(have, m.config.digest) == 0
			? 0
			: err_set(err, -EEXIST, "%s exists with image ID %s, not %s", dw->ref, have,
				  m.config.digest);
		goto out;
	}
	if (r != -ENOENT)
		goto out;

	r = tar_plan_new(0, &plan);
	if (r == 0)
		r = save_manifest(dw, &m, &mj, &mj_len);
	if (r == 0)
		r = tar_plan_add_mem(plan, "manifest.json", mj, mj_len, err);
	snprintf(name, sizeof(name), "%s.json", m.config.digest + 7);
	if (r == 0)
		r = tar_plan_add_mem(plan, name, config, config_len, err);
	for (size_t i = 0; r == 0 && i < m.n; i++) {
		bool dup = false;
		for (size_t j = 0; j < i; j++)
			dup |= strcmp(m.descs[j].digest, m.descs[i].digest) == 0;
		if (dup)
			continue; /* one file for a layer listed twice */
		a = find(dw, m.descs[i].digest);
		if (!a) {
			r = err_set(err, -EINVAL, "the layer %s was not written", m.descs[i].digest);
			break;
		}
		if (oci_blob_format_file(a->path) == OCI_BLOB_ZSTD) {
			r = err_set(err, -EINVAL,
				    "layer %s is zstd-compressed: Docker before 23 cannot load it",
				    a->digest);
			break;
		}
		snprintf(name, sizeof(name), "%s/layer.tar", a->digest + 7);
		r = tar_plan_add_file_at(plan, name, AT_FDCWD, a->path, err);
	}
	if (r < 0)
		goto out;
	r = docker_load_image(dw->d, tar_plan_read_at_cb, plan, tar_plan_size(plan), &res, err);
	if (r < 0)
		goto out;
	r = tagged_id(dw, have, &store_id, err);
	if (r == 0 && strcmp(have, m.config.digest) != 0) {
		if (store_id) {
			/* The containerd image store names our image otherwise and cannot show its
			 * config digest without an export: take our tag back, nothing changed. */
			docker_remove_image(dw->d, dw->ref, NULL, NULL);
			r = err_set(err, -EIO,
				    "Docker loaded %s as image %s, an ID that is not the config digest %s "
				    "(containerd image store); the tag was removed again",
				    dw->ref, have, m.config.digest);
		} else {
			/* Another copy committed another image under this name meanwhile: it stays. */
			r = err_set(err, -EEXIST, "%s was taken by image %s meanwhile, not %s",
				    dw->ref, have, m.config.digest);
		}
	}
out:
	pthread_mutex_unlock(&dw->lock);
	docker_load_result_done(&res);
	tar_plan_free(plan);
	oci_manifest_done(&m);
	free(top.media_type);
	free(ref_name);
	free(doc);
	free(config);
	free(mj);
	return r;
}

static void dw_free(struct stage_writer *w)
{
	struct docker_writer *dw = (struct docker_writer *)w;

	for (size_t i = 0; i < dw->n; i++)
		free(dw->v[i].path);
	free(dw->v);
	pthread_mutex_destroy(&dw->lock);
	free(dw);
}

static const struct stage_writer_ops docker_writer_ops = {
    .add_blob = dw_add_blob,
    .commit = dw_commit,
    .free = dw_free,
};

int docker_writer_new(struct docker *d, const char *project, const char *stage,
		      struct stage_writer **ret, struct sf_err *err)
{
	struct docker_writer *dw = calloc(1, sizeof(*dw));

	if (!dw)
		return -ENOMEM;
	dw->base.ops = &docker_writer_ops;
	dw->d = d;
	pthread_mutex_init(&dw->lock, NULL);
	snprintf(dw->project, sizeof(dw->project), "%s", project);
	snprintf(dw->ref, sizeof(dw->ref), WERF_LOCAL_REPO_PREFIX "%s:%s", project, stage);
	*ret = &dw->base;
	return 0;
}

int docker_writer_remove(struct docker *d, const char *project, const char *stage,
			 struct sf_err *err)
{
	char ref[sizeof(WERF_LOCAL_REPO_PREFIX) + NAME_PROJECT_MAX + 1 + NAME_STAGE_MAX + 1];

	snprintf(ref, sizeof(ref), WERF_LOCAL_REPO_PREFIX "%s:%s", project, stage);
	return docker_remove_image(d, ref, NULL, err);
}
