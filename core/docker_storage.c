#include "docker_storage.h"
#include "docker_writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "oci.h"
#include "tar.h"
#include "werf.h"

#define STAGES_REPO WERF_LOCAL_REPO_PREFIX
#define MANIFEST_JSON_CAP (1024 * 1024)
#define CONFIG_CAP (4 * 1024 * 1024)
#define META_CAP (1024 * 1024)

enum img_state { EXPORTING, READY, FAILED };

struct image {
	char id[DIGEST_LEN];
	enum img_state state;
	int error;
	char errmsg[sizeof(((struct sf_err *)0)->msg)];
	char *config;
	size_t config_len;
	size_t nlayers;
	struct oci_desc *layers;
	bool has_files; /* its layer files are (believed) on disk */
	uint64_t last_used;
	pthread_cond_t cond;
	struct image *next;
};

struct docker_storage {
	struct storage base;
	struct docker *d;
	char *project; /* one project at the root, or NULL */
	char *dir;     /* CACHE/docker */
	uint64_t max_bytes;
	uint64_t total;
	uint64_t clock;
	pthread_mutex_t lock;
	struct image *images;
};

static struct docker_storage *ds_of(struct storage *st)
{
	return (struct docker_storage *)st;
}

static const char *project_of(struct docker_storage *ds, const char *project)
{
	return ds->project ? ds->project : project;
}

/* Drop what is known of the image's content (before exporting it again). */
static void image_forget(struct image *im)
{
	for (size_t i = 0; i < im->nlayers; i++)
		free(im->layers[i].media_type);
	free(im->layers);
	free(im->config);
	im->layers = NULL;
	im->config = NULL;
	im->config_len = 0;
	im->nlayers = 0;
	im->has_files = false;
}

static void image_free(struct image *im)
{
	if (!im)
		return;
	image_forget(im);
	pthread_cond_destroy(&im->cond);
	free(im);
}

/* ---- listing ---- */

static int ds_list(struct storage *st, struct stage_list *ret, struct sf_err *err)
{
	struct docker_storage *ds = ds_of(st);
	struct stage_list l = {0};
	json_t *arr = NULL, *img;
	char *filters = NULL;
	size_t i, cap = 0;
	int r;

	if (ds->project)
		r = asprintf(&filters,
			     "{\"reference\":[\"" STAGES_REPO "%s\"],"
			     "\"label\":[\"" WERF_LABEL_PROJECT "=%s\","
			     "\"" WERF_LABEL_CACHE_VERSION "=" WERF_CACHE_VERSION "\"]}",
			     ds->project, ds->project);
	else
		r = asprintf(&filters, "{\"reference\":[\"" STAGES_REPO "*\"],"
				       "\"label\":[\"" WERF_LABEL_CACHE_VERSION
				       "=" WERF_CACHE_VERSION "\"]}");
	if (r < 0)
		return -ENOMEM;
	r = docker_list_images(ds->d, filters, &arr, err);
	free(filters);
	if (r < 0)
		return r;
	json_array_foreach(arr, i, img)
	{
		json_t *labels = json_object_get(img, "Labels"), *tag;
		const char *owner = json_string_value(json_object_get(labels, WERF_LABEL_PROJECT));
		size_t j;
		json_array_foreach(json_object_get(img, "RepoTags"), j, tag)
		{
			const char *t = json_string_value(tag), *colon;
			char project[NAME_PROJECT_MAX + 1];
			size_t plen;
			if (!t || strncmp(t, STAGES_REPO, strlen(STAGES_REPO)) != 0)
				continue;
			t += strlen(STAGES_REPO);
			colon = strchr(t, ':');
			if (!colon || (plen = (size_t)(colon - t)) > NAME_PROJECT_MAX)
				continue;
			memcpy(project, t, plen);
			project[plen] = '\0';
			/* werf sees a stage only with its project's label on it. */
			if (!name_project_valid(project) || !owner || strcmp(owner, project) != 0 ||
			    !name_is_stage(colon + 1) ||
			    (ds->project && strcmp(project, ds->project)))
				continue;
			if (l.n == cap) {
				struct stage_info *v;
				cap = cap ? cap * 2 : 64;
				v = realloc(l.v, cap * sizeof(*v));
				if (!v) {
					r = -ENOMEM;
					goto out;
				}
				l.v = v;
			}
			memset(&l.v[l.n], 0, sizeof(l.v[l.n]));
			snprintf(l.v[l.n].name, sizeof(l.v[l.n].name), "%s", colon + 1);
			if (!ds->project)
				memcpy(l.v[l.n].project, project, plen + 1);
			l.n++;
		}
	}
	stage_list_finish(&l);
	*ret = l;
	l = (struct stage_list){0};
out:
	stage_list_done(&l);
	json_decref(arr);
	return r;
}

/* ---- export ---- */

struct exported_file {
	char *name;
	char digest[DIGEST_LEN];
	uint64_t size;
};

struct export
{
	struct docker_storage *ds;
	struct tar_reader *tar;
	struct sf_err *err;
	int tar_error;
	/* current entry */
	enum { SKIP, COLLECT, STORE } mode;
	char *name;
	int fd;
	char tmp[4096];
	uint64_t written;
	struct digest_ctx *dg;
	struct buf manifest;
	/* done entries */
	size_t nfiles;
	struct exported_file *files;
};

static bool wanted_blob(const char *name)
{
	size_t n = strlen(name);

	/* docker save: HEX.json (config), DIR/layer.tar; OCI-style saves: blobs/sha256/HEX */
	if (strncmp(name, "blobs/sha256/", 13) == 0)
		return true;
	if (n > 10 && strcmp(name + n - 10, "/layer.tar") == 0)
		return true;
	return n == 69 && strcmp(name + 64, ".json") == 0 && strspn(name, "0123456789abcdef") == 64;
}

static int ex_begin(void *ud, const char *name, uint64_t size)
{
	struct export *ex = ud;

	free(ex->name);
	ex->name = strdup(name);
	if (!ex->name)
		return -ENOMEM;
	ex->mode = SKIP;
	ex->written = 0;
	if (strcmp(name, "manifest.json") == 0) {
		if (size > MANIFEST_JSON_CAP)
			return err_set(ex->err, -EFBIG, "export: manifest.json too large");
		buf_done(&ex->manifest);
		ex->manifest.cap = MANIFEST_JSON_CAP;
		ex->mode = COLLECT;
		return 0;
	}
	if (!wanted_blob(name))
		return 0;
	snprintf(ex->tmp, sizeof(ex->tmp), "%s/tmp/export.XXXXXX", ex->ds->dir);
	ex->fd = mkostemp(ex->tmp, O_CLOEXEC);
	if (ex->fd < 0)
		return err_set(ex->err, -errno, "cache %s: %s", ex->ds->dir, strerror(errno));
	ex->mode = STORE;
	return 0;
}

static int ex_data(void *ud, const void *data, size_t len)
{
	struct export *ex = ud;
	const char *p = data;
	size_t left = len;

	if (ex->mode == COLLECT)
		return buf_append(&ex->manifest, data, len);
	if (ex->mode != STORE)
		return 0;
	digest_update(ex->dg, data, len);
	while (left) {
		ssize_t n = write(ex->fd, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_set(ex->err, -errno, "cache %s: %s", ex->ds->dir,
				       strerror(errno));
		}
		p += n;
		left -= (size_t)n;
	}
	ex->written += len;
	return 0;
}

static int ex_end(void *ud)
{
	struct export *ex = ud;
	struct exported_file *f;
	char path[4096];

	if (ex->mode != STORE)
		return 0;
	f = realloc(ex->files, (ex->nfiles + 1) * sizeof(*f));
	if (!f)
		return -ENOMEM;
	ex->files = f;
	f = &ex->files[ex->nfiles];
	digest_final(ex->dg, f->digest);
	f->size = ex->written;
	f->name = ex->name;
	ex->name = NULL;
	ex->nfiles++;
	close(ex->fd);
	ex->fd = -1;
	snprintf(path, sizeof(path), "%s/blobs/%s", ex->ds->dir, f->digest + 7);
	bool existed = access(path, F_OK) == 0;
	if (rename(ex->tmp, path) < 0) {
		int r = err_set(ex->err, -errno, "cache %s: %s", path, strerror(errno));
		unlink(ex->tmp);
		return r;
	}
	if (!existed) {
		pthread_mutex_lock(&ex->ds->lock);
		ex->ds->total += f->size;
		pthread_mutex_unlock(&ex->ds->lock);
	}
	ex->mode = SKIP;
	return 0;
}

static int ex_sink(void *ud, const void *data, size_t len)
{
	struct export *ex = ud;
	int r = tar_feed(ex->tar, data, len, ex->err);

	if (r < 0)
		ex->tar_error = r;
	return r;
}

static const struct exported_file *ex_find(const struct export *ex, const char *name)
{
	for (size_t i = 0; i < ex->nfiles; i++)
		if (strcmp(ex->files[i].name, name) == 0)
			return &ex->files[i];
	return NULL;
}

static int read_small_file(const char *path, size_t cap, char **ret, size_t *ret_len)
{
	struct buf b = BUF_INIT(cap);
	char chunk[65536];
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		r = buf_append(&b, chunk, (size_t)n);
		if (r < 0)
			break;
	}
	close(fd);
	if (r < 0) {
		buf_done(&b);
		return r;
	}
	*ret = buf_steal(&b, ret_len);
	return *ret ? 0 : -ENOMEM;
}

/* Write DIR/meta/HEX: the layer list, so sizes are known without another export. */
static void write_meta(struct docker_storage *ds, const struct image *im)
{
	json_t *root = json_array();
	char path[4096], tmp[4096];

	for (size_t i = 0; root && i < im->nlayers; i++)
		json_array_append_new(root, json_pack("{s:s,s:I}", "digest", im->layers[i].digest,
						      "size", (json_int_t)im->layers[i].size));
	int fd;

	snprintf(path, sizeof(path), "%s/meta/%s", ds->dir, im->id + 7);
	snprintf(tmp, sizeof(tmp), "%s/tmp/meta.XXXXXX", ds->dir);
	fd = root ? mkostemp(tmp, O_CLOEXEC) : -1;
	if (fd >= 0) {
		/* Best effort: without it the next mount exports again to learn the sizes. */
		bool ok = json_dumpfd(root, fd, JSON_COMPACT) == 0;
		if (close(fd) < 0)
			ok = false;
		if (!ok || rename(tmp, path) < 0)
			unlink(tmp);
	}
	json_decref(root);
}

/* Fill im from its meta file and config blob; -ENOENT when either is missing. */
static int load_meta(struct docker_storage *ds, struct image *im)
{
	char path[4096];
	json_t *root, *e;
	size_t i;
	int r;

	snprintf(path, sizeof(path), "%s/blobs/%s", ds->dir, im->id + 7);
	r = read_small_file(path, CONFIG_CAP, &im->config, &im->config_len);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/meta/%s", ds->dir, im->id + 7);
	root = json_load_file(path, 0, NULL);
	if (!json_is_array(root) || json_array_size(root) > OCI_MAX_DESCRIPTORS) {
		json_decref(root);
		return -ENOENT;
	}
	im->layers = calloc(json_array_size(root) + 1, sizeof(*im->layers));
	if (!im->layers) {
		json_decref(root);
		return -ENOMEM;
	}
	json_array_foreach(root, i, e)
	{
		const char *dg = json_string_value(json_object_get(e, "digest"));
		json_int_t size = json_integer_value(json_object_get(e, "size"));
		if (!name_digest_valid(dg) || size < 0) {
			json_decref(root);
			return -ENOENT;
		}
		im->layers[i].media_type = strdup(MT_OCI_LAYER_TAR);
		memcpy(im->layers[i].digest, dg, DIGEST_LEN);
		im->layers[i].size = (uint64_t)size;
		im->nlayers = i + 1;
	}
	json_decref(root);
	return 0;
}

/* Export ref (whose image ID is im->id) into the cache and fill im. */
static int export_image(struct docker_storage *ds, const char *ref, struct image *im,
			struct sf_err *err)
{
	static const struct tar_callbacks cb = {ex_begin, ex_data, ex_end};
	struct export ex = {.ds = ds, .err = err, .fd = -1};
	json_t *root = NULL, *entry = NULL, *layers;
	const struct exported_file *cfg = NULL;
	const char *cfg_name;
	char path[4096];
	size_t i;
	int r;

	ex.tar = tar_reader_new(&cb, &ex);
	ex.dg = digest_new();
	if (!ex.tar || !ex.dg) {
		r = -ENOMEM;
		goto out;
	}
	r = docker_export_image(ds->d, ref, ex_sink, &ex, err);
	if (r == 0)
		r = tar_finish(ex.tar, err);
	if (r < 0) {
		if (ex.tar_error == 0 && r != -ENOENT)
			err_prefix(err, "exporting %s", ref);
		goto out;
	}
	root = json_loadb(ex.manifest.data ? ex.manifest.data : "", ex.manifest.len, 0, NULL);
	json_array_foreach(root, i, entry)
	{
		cfg_name = json_string_value(json_object_get(entry, "Config"));
		cfg = cfg_name ? ex_find(&ex, cfg_name) : NULL;
		if (cfg && strcmp(cfg->digest, im->id) == 0)
			break;
		cfg = NULL;
	}
	if (!cfg) {
		r = err_set(
		    err, -EAGAIN,
		    "exporting %s: the export does not hold image %.19s (retagged meanwhile?)", ref,
		    im->id);
		goto out;
	}
	layers = json_object_get(entry, "Layers");
	if (!json_is_array(layers) || json_array_size(layers) > OCI_MAX_DESCRIPTORS) {
		r = err_set(err, -EPROTO, "exporting %s: manifest.json has no Layers", ref);
		goto out;
	}
	im->layers = calloc(json_array_size(layers) + 1, sizeof(*im->layers));
	if (!im->layers) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < json_array_size(layers); i++) {
		const char *ln = json_string_value(json_array_get(layers, i));
		const struct exported_file *lf = ln ? ex_find(&ex, ln) : NULL;
		if (!lf) {
			r = err_set(err, -EPROTO, "exporting %s: layer %zu missing from the export",
				    ref, i);
			goto out;
		}
		im->layers[i].media_type = strdup(MT_OCI_LAYER_TAR);
		if (!im->layers[i].media_type) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(im->layers[i].digest, lf->digest, DIGEST_LEN);
		im->layers[i].size = lf->size;
		im->nlayers = i + 1;
	}
	snprintf(path, sizeof(path), "%s/blobs/%s", ds->dir, im->id + 7);
	r = read_small_file(path, CONFIG_CAP, &im->config, &im->config_len);
	if (r < 0) {
		r = err_set(err, r, "exporting %s: config: %s", ref, strerror(-r));
		goto out;
	}
	write_meta(ds, im);
out:
	if (ex.fd >= 0) {
		close(ex.fd);
		unlink(ex.tmp);
	}
	for (i = 0; i < ex.nfiles; i++)
		free(ex.files[i].name);
	free(ex.files);
	free(ex.name);
	buf_done(&ex.manifest);
	digest_free(ex.dg);
	tar_reader_free(ex.tar);
	json_decref(root);
	return r;
}

static bool layers_present(struct docker_storage *ds, const struct image *im)
{
	char path[4096];

	for (size_t i = 0; i < im->nlayers; i++) {
		snprintf(path, sizeof(path), "%s/blobs/%s", ds->dir, im->layers[i].digest + 7);
		if (access(path, F_OK) < 0)
			return false;
	}
	return true;
}

/* True when an image other than skip, with its files on disk, has this layer. Lock held. */
static bool layer_in_use(struct docker_storage *ds, const struct image *skip, const char *digest)
{
	for (struct image *im = ds->images; im; im = im->next) {
		if (im == skip || !im->has_files)
			continue;
		for (size_t i = 0; i < im->nlayers; i++)
			if (strcmp(im->layers[i].digest, digest) == 0)
				return true;
	}
	return false;
}

/* Evict least recently used images' layer files until under the cap; a layer that another
 * image still has stays (werf stages share their parents' layers). Configs and metas stay:
 * sizes remain known. Lock held. */
static void evict(struct docker_storage *ds, const struct image *keep)
{
	char path[4096];
	struct stat sb;

	while (ds->total > ds->max_bytes) {
		struct image *victim = NULL;
		for (struct image *im = ds->images; im; im = im->next)
			if (im != keep && im->state == READY && im->has_files &&
			    (!victim || im->last_used < victim->last_used))
				victim = im;
		if (!victim)
			break;
		victim->has_files = false;
		for (size_t i = 0; i < victim->nlayers; i++) {
			const char *dg = victim->layers[i].digest;
			if (layer_in_use(ds, victim, dg))
				continue;
			snprintf(path, sizeof(path), "%s/blobs/%s", ds->dir, dg + 7);
			if (stat(path, &sb) == 0 && unlink(path) == 0)
				ds->total = ds->total > (uint64_t)sb.st_size
						? ds->total - (uint64_t)sb.st_size
						: 0;
		}
	}
}

/* The stage's layout from what is known of its image. Lock held (another thread may export
 * the image again and replace its fields once the lock is dropped). */
static int build_layout(const struct image *im, const char *stage, struct stage_layout **ret)
{
	struct oci_desc config = {.media_type = (char *)MT_OCI_CONFIG}, man = {0};
	struct stage_layout *l;
	char *mjson = NULL;
	size_t mlen = 0;
	int r;

	memcpy(config.digest, im->id, DIGEST_LEN);
	config.size = im->config_len;
	r = oci_manifest_json(MT_OCI_MANIFEST, &config, im->layers, im->nlayers, &mjson, &mlen);
	if (r < 0)
		return r;
	l = stage_layout_new();
	if (!l) {
		free(mjson);
		return -ENOMEM;
	}
	man.media_type = (char *)MT_OCI_MANIFEST;
	digest_buffer(mjson, mlen, man.digest);
	man.size = mlen;
	memcpy(l->image_id, im->id, DIGEST_LEN);
	r = stage_layout_add_blob(l, man.digest, mlen, mjson);
	if (r == 0)
		r = stage_layout_add_blob(l, im->id, im->config_len, im->config);
	for (size_t i = 0; r == 0 && i < im->nlayers; i++)
		r = stage_layout_add_blob(l, im->layers[i].digest, im->layers[i].size, NULL);
	if (r == 0)
		r = oci_index_json(&man, stage, &l->index_json, &l->index_len);
	free(mjson);
	if (r < 0) {
		stage_layout_unref(l);
		return r;
	}
	stage_layout_seal(l);
	*ret = l;
	return 0;
}

/* Make sure the image with this ID is exported (or known from disk; with need_files, its
 * layer files on disk too); with ret_layout, build stage's layout from it, under the lock. */
static int image_get(struct docker_storage *ds, const char *ref, const char *id, bool need_files,
		     const char *stage, struct stage_layout **ret_layout, struct sf_err *err)
{
	struct image *im;
	int r;

	pthread_mutex_lock(&ds->lock);
	for (im = ds->images; im; im = im->next)
		if (strcmp(im->id, id) == 0)
			break;
	if (!im) {
		im = calloc(1, sizeof(*im));
		if (!im) {
			pthread_mutex_unlock(&ds->lock);
			return -ENOMEM;
		}
		memcpy(im->id, id, DIGEST_LEN);
		pthread_cond_init(&im->cond, NULL);
		im->state = FAILED;
		im->error = -ENOENT;
		im->next = ds->images;
		ds->images = im;
		if (load_meta(ds, im) == 0) {
			im->state = READY;
			im->has_files = layers_present(ds, im); /* counted by the startup scan */
		} else {
			image_forget(im);
		}
	}
	for (;;) {
		while (im->state == EXPORTING)
			pthread_cond_wait(&im->cond, &ds->lock);
		if (im->state == READY && (!need_files || layers_present(ds, im)))
			break;
		/* Export (again): first time, after a failure, or after eviction. */
		im->state = EXPORTING;
		image_forget(im);
		pthread_mutex_unlock(&ds->lock);
		struct sf_err eerr = {0};
		r = export_image(ds, ref, im, &eerr);
		pthread_mutex_lock(&ds->lock);
		if (r < 0) {
			im->state = FAILED;
			im->error = r;
			snprintf(im->errmsg, sizeof(im->errmsg), "%s", err_msg(&eerr, r));
			pthread_cond_broadcast(&im->cond);
			r = err_set(err, r, "%s", im->errmsg);
			pthread_mutex_unlock(&ds->lock);
			return r;
		}
		im->state = READY;
		im->has_files = true;
		pthread_cond_broadcast(&im->cond);
		im->last_used = ++ds->clock;
		evict(ds, im);
		break;
	}
	im->last_used = ++ds->clock;
	r = ret_layout ? build_layout(im, stage, ret_layout) : 0;
	pthread_mutex_unlock(&ds->lock);
	return r;
}

/* Inspect the stage's image: its ID, after checking werf's labels. */
static int inspect_stage(struct docker_storage *ds, const char *project, const char *stage,
			 char *ref, size_t refsize, char ret_id[DIGEST_LEN], struct sf_err *err)
{
	json_t *root = NULL, *labels;
	const char *id, *owner, *cache;
	int r;

	if (!name_is_stage(stage) || !name_project_valid(project))
		return -ENOENT;
	snprintf(ref, refsize, STAGES_REPO "%s:%s", project, stage);
	r = docker_inspect_image(ds->d, ref, &root, err);
	if (r < 0)
		return r;
	id = json_string_value(json_object_get(root, "Id"));
	labels = json_object_get(json_object_get(root, "Config"), "Labels");
	owner = json_string_value(json_object_get(labels, WERF_LABEL_PROJECT));
	cache = json_string_value(json_object_get(labels, WERF_LABEL_CACHE_VERSION));
	if (!name_digest_valid(id))
		r = err_set(err, -EPROTO, "%s: Docker gave no image ID", ref);
	else if (!owner || strcmp(owner, project) != 0 || !cache ||
		 strcmp(cache, WERF_CACHE_VERSION) != 0)
		r = -ENOENT; /* not a stage werf would see */
	else
		memcpy(ret_id, id, DIGEST_LEN);
	json_decref(root);
	return r;
}

static int ds_describe(struct storage *st, const char *project, const char *stage,
		       struct stage_layout **ret, struct sf_err *err)
{
	struct docker_storage *ds = ds_of(st);
	char ref[256], id[DIGEST_LEN];
	int r;

	project = project_of(ds, project);
	r = inspect_stage(ds, project, stage, ref, sizeof(ref), id, err);
	if (r < 0)
		return r;
	return image_get(ds, ref, id, false, stage, ret, err);
}

static int ds_local_file(struct storage *st, const char *project, const char *stage,
			 const struct layout_blob *blob, char *ret_path, size_t path_size,
			 struct sf_err *err)
{
	struct docker_storage *ds = ds_of(st);
	char ref[256], id[DIGEST_LEN];
	int r;

	if (blob->data)
		return -ENOTSUP;
	project = project_of(ds, project);
	r = inspect_stage(ds, project, stage, ref, sizeof(ref), id, err);
	if (r < 0)
		return r;
	r = image_get(ds, ref, id, true, NULL, NULL, err);
	if (r < 0)
		return r;
	snprintf(ret_path, path_size, "%s/blobs/%s", ds->dir, blob->digest + 7);
	return 0;
}

static int ds_read_blob(struct storage *st, const char *project, const char *stage,
			const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
			void *userdata, struct sf_err *err)
{
	char path[4096], *chunk;
	ssize_t n;
	int fd, r;

	if (blob->data) {
		if (offset > blob->size)
			return -EINVAL;
		return sink(userdata, blob->data + offset, (size_t)(blob->size - offset));
	}
	r = ds_local_file(st, project, stage, blob, path, sizeof(path), err);
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, -errno, "%s: %s", path, strerror(errno));
	chunk = malloc(1 << 20);
	if (!chunk) {
		close(fd);
		return -ENOMEM;
	}
	while ((n = pread(fd, chunk, 1 << 20, (off_t)offset)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = err_set(err, -errno, "%s: %s", path, strerror(errno));
			break;
		}
		r = sink(userdata, chunk, (size_t)n);
		if (r < 0)
			break;
		offset += (uint64_t)n;
	}
	free(chunk);
	close(fd);
	return r;
}

static void ds_cancel(struct storage *st)
{
	docker_cancel(ds_of(st)->d);
}

static void ds_free(struct storage *st)
{
	struct docker_storage *ds = ds_of(st);

	while (ds->images) {
		struct image *im = ds->images;
		ds->images = im->next;
		image_free(im);
	}
	docker_free(ds->d);
	pthread_mutex_destroy(&ds->lock);
	free(ds->project);
	free(ds->dir);
	free(ds);
}

static int ds_write_begin(struct storage *st, const char *project, const char *stage,
			  struct stage_writer **ret, struct sf_err *err)
{
	struct docker_storage *ds = ds_of(st);
	return docker_writer_new(ds->d, project_of(ds, project), stage, ret, err);
}

static int ds_remove(struct storage *st, const char *project, const char *stage,
		     struct sf_err *err)
{
	struct docker_storage *ds = ds_of(st);
	return docker_writer_remove(ds->d, project_of(ds, project), stage, err);
}

static const struct storage_ops docker_storage_ops = {
    .list = ds_list,
    .describe = ds_describe,
    .read_blob = ds_read_blob,
    .free = ds_free,
    .local_file = ds_local_file,
    .cancel = ds_cancel,
    .write_begin = ds_write_begin,
    .remove = ds_remove,
};

static int make_dirs(const char *dir, struct sf_err *err)
{
	static const char *const subs[] = {"", "/blobs", "/meta", "/tmp"};
	char path[4096];

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s%s", dir, subs[i]);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return err_set(err, -errno, "cache dir %s: %s", path, strerror(errno));
	}
	return 0;
}

/* Bytes of layers left by earlier runs; all of them go when over the cap at start. */
static void scan(struct docker_storage *ds)
{
	char path[4096];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	snprintf(path, sizeof(path), "%s/blobs", ds->dir);
	d = opendir(path);
	while (d && (de = readdir(d)))
		if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0 && S_ISREG(sb.st_mode))
			ds->total += (uint64_t)sb.st_size;
	if (d && ds->total > ds->max_bytes) {
		rewinddir(d);
		while ((de = readdir(d)))
			if (name_hex64_valid(de->d_name))
				unlinkat(dirfd(d), de->d_name, 0);
		ds->total = 0;
	}
	if (d)
		closedir(d);
}

int docker_storage_new(struct docker *d, const char *project, const char *cache_dir,
		       uint64_t max_bytes, struct storage **ret, struct sf_err *err)
{
	struct docker_storage *ds = calloc(1, sizeof(*ds));
	int r;

	if (!ds)
		return -ENOMEM;
	if (asprintf(&ds->dir, "%s/docker", cache_dir) < 0)
		ds->dir = NULL;
	if (project)
		ds->project = strdup(project);
	if (!ds->dir || (project && !ds->project)) {
		free(ds->dir);
		free(ds);
		return -ENOMEM;
	}
	r = make_dirs(ds->dir, err);
	if (r < 0) {
		free(ds->project);
		free(ds->dir);
		free(ds);
		return r;
	}
	ds->base.ops = &docker_storage_ops;
	ds->base.by_project = !project;
	ds->base.switch_block = true;
	ds->d = d;
	ds->max_bytes = max_bytes;
	pthread_mutex_init(&ds->lock, NULL);
	scan(ds);
	*ret = &ds->base;
	return 0;
}
