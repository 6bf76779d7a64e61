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
#define MANIFEST_CAP (4 * 1024 * 1024)
#define META_VERSION 2
#ifndef MT_OCI_LAYER_ZSTD
#define MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"
#endif

enum img_state { EXPORTING, READY, FAILED };

struct image {
	char id[DIGEST_LEN];		/* Docker's image ID (config, manifest or index digest) */
	char config_digest[DIGEST_LEN]; /* the stage's identity */
	char manifest_digest[DIGEST_LEN];
	char *manifest; /* the manifest as stored (containerd image store), or NULL: made */
	size_t manifest_len;
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
	free(im->manifest);
	im->manifest = NULL;
	im->manifest_len = 0;
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

	if (!docker_api_at_least(ds->d, "1.25")) /* no reference filter: tags checked below */
		r = asprintf(&filters, "{\"label\":[\"werf-cache-version=1.1\"]}");
	else if (ds->project)
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

/* What a layer's first bytes say it is. */
enum blob_kind { KIND_TAR, KIND_GZIP, KIND_ZSTD };

struct exported_file {
	char *name; /* normalized archive path */
	char digest[DIGEST_LEN];
	uint64_t size;
	enum blob_kind kind;
};

/* A link entry: name -> target, both normalized archive paths. */
struct exported_link {
	char *name;
	char *target;
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
	unsigned char head[4];
	size_t head_len;
	struct digest_ctx *dg;
	struct buf manifest;
	/* done entries */
	size_t nfiles, nlinks;
	struct exported_file *files;
	struct exported_link *links;
};

/* "a/./b/../c" -> "a/c" (a new string); NULL when it leaves the archive's root or is
 * absolute. base: the folder a relative symlink target starts from, or NULL. */
static char *norm_path(const char *base, const char *path)
{
	char *joined = NULL, *out, *o;
	const char *p;

	if (!path || path[0] == '/')
		return NULL;
	if (asprintf(&joined, "%s%s%s", base ? base : "", base && *base ? "/" : "", path) < 0)
		return NULL;
	out = calloc(1, strlen(joined) + 1);
	if (!out) {
		free(joined);
		return NULL;
	}
	o = out;
	for (p = joined; *p;) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (o == out) {
				free(out);
				free(joined);
				return NULL;
			}
			while (o > out && o[-1] != '/')
				o--;
			if (o > out)
				o--;
			*o = '\0';
		} else {
			if (o > out)
				*o++ = '/';
			memcpy(o, p, n);
			o += n;
			*o = '\0';
		}
		p = *e ? e + 1 : e;
	}
	free(joined);
	return out;
}

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
	ex->name = norm_path(NULL, name);
	ex->mode = SKIP;
	ex->written = 0;
	ex->head_len = 0;
	if (!ex->name)
		return 0; /* outside the archive's root: not ours */
	if (strcmp(ex->name, "manifest.json") == 0) {
		if (size > MANIFEST_JSON_CAP)
			return err_set(ex->err, -EFBIG, "export: manifest.json too large");
		buf_done(&ex->manifest);
		ex->manifest.cap = MANIFEST_JSON_CAP;
		ex->mode = COLLECT;
		return 0;
	}
	if (!wanted_blob(ex->name))
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
	if (ex->head_len < sizeof(ex->head)) {
		size_t n =
		    sizeof(ex->head) - ex->head_len < len ? sizeof(ex->head) - ex->head_len : len;
		memcpy(ex->head + ex->head_len, data, n);
		ex->head_len += n;
	}
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

static enum blob_kind sniff(const unsigned char *head, size_t len)
{
	switch (oci_blob_format(head, len)) {
	case OCI_BLOB_GZIP:
		return KIND_GZIP;
	case OCI_BLOB_ZSTD:
		return KIND_ZSTD;
	default:
		return KIND_TAR; /* a layer: JSON-looking bytes are a tar of a file named "{..." */
	}
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
	f->kind = sniff(ex->head, ex->head_len);
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

/* A link entry: `docker save` writes a repeated layer as a symlink to its first copy
 * (20.10: ID2/layer.tar -> ../ID1/layer.tar); an archive of hard-linked files has hard links.
 * Kept as aliases, resolved when the export is complete (a link may come before its target). */
static int ex_link(void *ud, const char *name, const char *target, bool hard)
{
	struct export *ex = ud;
	struct exported_link *l;
	char *n = norm_path(NULL, name), *dir = n ? strdup(n) : NULL, *slash, *t;

	if (!n || !dir) {
		free(n);
		free(dir);
		return n ? -ENOMEM : 0;
	}
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		dir[0] = '\0';
	t = norm_path(hard ? NULL : dir, target);
	free(dir);
	if (!t || ex->nlinks >= OCI_MAX_DESCRIPTORS * 4) {
		free(n);
		free(t);
		return 0; /* points outside the archive (or too many): never a blob of ours */
	}
	l = realloc(ex->links, (ex->nlinks + 1) * sizeof(*l));
	if (!l) {
		free(n);
		free(t);
		return -ENOMEM;
	}
	ex->links = l;
	ex->links[ex->nlinks].name = n;
	ex->links[ex->nlinks].target = t;
	ex->nlinks++;
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

/* The file an archive path names, following links (at most 16 hops), or NULL. */
static const struct exported_file *ex_find(const struct export *ex, const char *name)
{
	char *n = norm_path(NULL, name);
	const struct exported_file *found = NULL;

	for (int hop = 0; n && hop <= 16 && !found; hop++) {
		const char *next = NULL;
		for (size_t i = 0; i < ex->nfiles && !found; i++)
			if (strcmp(ex->files[i].name, n) == 0)
				found = &ex->files[i];
		for (size_t i = 0; i < ex->nlinks && !found && !next; i++)
			if (strcmp(ex->links[i].name, n) == 0)
				next = ex->links[i].target;
		free(n);
		n = next ? strdup(next) : NULL;
	}
	free(n);
	return found;
}

/* The exported blob with this content digest, or NULL. */
static const struct exported_file *ex_find_digest(const struct export *ex, const char *digest)
{
	for (size_t i = 0; i < ex->nfiles; i++)
		if (strcmp(ex->files[i].digest, digest) == 0)
			return &ex->files[i];
	return NULL;
}


/* A cached blob's bytes, checked against its digest; -ENOENT when absent or not matching. */
static int read_blob_file(struct docker_storage *ds, const char *digest, size_t cap, char **ret,
			  size_t *ret_len)
{
	char path[4096], got[DIGEST_LEN];
	int r;

	snprintf(path, sizeof(path), "%s/blobs/%s", ds->dir, digest + 7);
	r = buf_read_file_at(AT_FDCWD, path, cap, ret, ret_len);
	if (r < 0)
		return r == -ENOBUFS || r == -EFBIG ? -EFBIG : -ENOENT;
	if (digest_buffer(*ret, *ret_len, got) < 0 || strcmp(got, digest) != 0) {
		free(*ret);
		*ret = NULL;
		return -ENOENT;
	}
	return 0;
}

/* The media type a layer of this kind gets in a manifest we make. */
static const char *kind_media_type(enum blob_kind k)
{
	return k == KIND_GZIP	? MT_OCI_LAYER_GZIP
	       : k == KIND_ZSTD ? MT_OCI_LAYER_ZSTD
				: MT_OCI_LAYER_TAR;
}

/* False when a layer media type names a compression its bytes do not have. */
static bool media_type_fits(const char *mt, enum blob_kind k)
{
	size_t n = mt ? strlen(mt) : 0;
	bool gz = n > 5 && (strcmp(mt + n - 5, "+gzip") == 0 || strcmp(mt + n - 5, ".gzip") == 0);
	bool zst = n > 5 && strcmp(mt + n - 5, "+zstd") == 0;

	if (gz)
		return k == KIND_GZIP;
	if (zst)
		return k == KIND_ZSTD;
	return k == KIND_TAR;
}

/* Write DIR/meta/HEX: what the export gave, so the layout is known without another export. */
static void write_meta(struct docker_storage *ds, const struct image *im)
{
	json_t *root = json_object(), *layers = json_array();
	char path[4096], tmp[4096];
	int fd;

	for (size_t i = 0; layers && i < im->nlayers; i++)
		json_array_append_new(layers,
				      json_pack("{s:s,s:I,s:s}", "digest", im->layers[i].digest,
						"size", (json_int_t)im->layers[i].size, "mediaType",
						im->layers[i].media_type));
	if (root && layers) {
		json_object_set_new(root, "version", json_integer(META_VERSION));
		json_object_set_new(root, "config", json_string(im->config_digest));
		json_object_set_new(root, "manifest",
				    im->manifest ? json_string(im->manifest_digest) : json_null());
		json_object_set(root, "layers", layers);
	}
	json_decref(layers);
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

/* Fill im from its meta file and the config (and kept manifest) blobs; -ENOENT when any is
 * missing or the meta is of an older version. */
static int load_meta(struct docker_storage *ds, struct image *im)
{
	char path[4096];
	json_t *root, *arr, *e;
	const char *cfg, *man;
	size_t i;
	int r = -ENOENT;

	snprintf(path, sizeof(path), "%s/meta/%s", ds->dir, im->id + 7);
	root = json_load_file(path, 0, NULL);
	arr = json_object_get(root, "layers");
	cfg = json_string_value(json_object_get(root, "config"));
	man = json_string_value(json_object_get(root, "manifest"));
	if (json_integer_value(json_object_get(root, "version")) != META_VERSION ||
	    !json_is_array(arr) || json_array_size(arr) > OCI_MAX_DESCRIPTORS ||
	    !name_digest_valid(cfg) || (man && !name_digest_valid(man)))
		goto out;
	memcpy(im->config_digest, cfg, DIGEST_LEN);
	r = read_blob_file(ds, cfg, CONFIG_CAP, &im->config, &im->config_len);
	if (r == 0 && man) {
		memcpy(im->manifest_digest, man, DIGEST_LEN);
		r = read_blob_file(ds, man, MANIFEST_CAP, &im->manifest, &im->manifest_len);
	}
	if (r < 0)
		goto out;
	r = -ENOMEM;
	im->layers = calloc(json_array_size(arr) + 1, sizeof(*im->layers));
	if (!im->layers)
		goto out;
	r = -ENOENT;
	json_array_foreach(arr, i, e)
	{
		const char *dg = json_string_value(json_object_get(e, "digest"));
		const char *mt = json_string_value(json_object_get(e, "mediaType"));
		json_int_t size = json_integer_value(json_object_get(e, "size"));
		if (!name_digest_valid(dg) || size < 0 || !mt)
			goto out;
		im->layers[i].media_type = strdup(mt);
		if (!im->layers[i].media_type) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(im->layers[i].digest, dg, DIGEST_LEN);
		im->layers[i].size = (uint64_t)size;
		im->nlayers = i + 1;
	}
	r = 0;
out:
	json_decref(root);
	return r;
}

/* Set im's layers from archive paths (manifest.json "Layers"), typed by their bytes. */
static int layers_from_paths(const struct export *ex, json_t *layers, const char *ref,
			     struct image *im, struct sf_err *err)
{
	if (!json_is_array(layers) || json_array_size(layers) > OCI_MAX_DESCRIPTORS)
		return err_set(err, -EPROTO, "exporting %s: manifest.json has no Layers", ref);
	im->layers = calloc(json_array_size(layers) + 1, sizeof(*im->layers));
	if (!im->layers)
		return -ENOMEM;
	for (size_t i = 0; i < json_array_size(layers); i++) {
		const char *ln = json_string_value(json_array_get(layers, i));
		const struct exported_file *lf = ln ? ex_find(ex, ln) : NULL;
		if (!lf)
			return err_set(err, -EPROTO,
				       "exporting %s: layer %zu (%s) missing from the export", ref,
				       i, ln ? ln : "?");
		im->layers[i].media_type = strdup(kind_media_type(lf->kind));
		if (!im->layers[i].media_type)
			return -ENOMEM;
		memcpy(im->layers[i].digest, lf->digest, DIGEST_LEN);
		im->layers[i].size = lf->size;
		im->nlayers = i + 1;
	}
	return 0;
}

/* An image manifest of the export (by digest) whose config and layers are all in the export;
 * its bytes and parse in *ret. -ENOENT when it is not that. */
static int usable_manifest(struct docker_storage *ds, const struct export *ex, const char *digest,
			   char **ret, size_t *ret_len, struct oci_manifest *m)
{
	struct sf_err ignored = {0};

	if (!ex_find_digest(ex, digest) ||
	    read_blob_file(ds, digest, MANIFEST_CAP, ret, ret_len) < 0)
		return -ENOENT;
	if (oci_manifest_parse(*ret, *ret_len, NULL, m, &ignored) < 0 || m->is_index ||
	    !ex_find_digest(ex, m->config.digest))
		goto no;
	for (size_t i = 0; i < m->n; i++) {
		const struct exported_file *f = ex_find_digest(ex, m->descs[i].digest);
		/* an attestation manifest's "layers" are in-toto statements, not tars */
		if (!f || f->size != m->descs[i].size || strstr(m->descs[i].media_type, "in-toto"))
			goto no;
	}
	return 0;
no:
	oci_manifest_done(m);
	free(*ret);
	*ret = NULL;
	return -ENOENT;
}

/* Docker's containerd image store: the image ID is the digest of a manifest or an index in the
 * export. The stage is that manifest (or the index's first child manifest whose blobs are all
 * exported), kept byte for byte when its layer types fit their bytes. */
static int image_from_stored(struct docker_storage *ds, const struct export *ex, const char *ref,
			     struct image *im, struct sf_err *err)
{
	struct oci_manifest m = {0}, idx = {0};
	char *data = NULL, *chosen = NULL;
	size_t len = 0, chosen_len = 0;
	bool fits = true;
	int r;

	r = read_blob_file(ds, im->id, MANIFEST_CAP, &data, &len);
	if (r < 0 || oci_manifest_parse(data, len, NULL, &idx, err) < 0) {
		r = err_set(err, -EPROTO,
			    "exporting %s: image %.19s is in the export but is not a "
			    "manifest or index",
			    ref, im->id);
		goto out;
	}
	if (!idx.is_index) {
		oci_manifest_done(&idx);
		free(data);
		data = NULL;
		r = usable_manifest(ds, ex, im->id, &chosen, &chosen_len, &m);
		memcpy(im->manifest_digest, im->id, DIGEST_LEN);
	} else {
		r = -ENOENT;
		for (size_t i = 0; i < idx.n && r < 0; i++) {
			r = usable_manifest(ds, ex, idx.descs[i].digest, &chosen, &chosen_len, &m);
			if (r == 0)
				memcpy(im->manifest_digest, idx.descs[i].digest, DIGEST_LEN);
		}
	}
	if (r < 0) {
		r = err_set(err, -EPROTO,
			    "exporting %s: the export holds no complete image manifest of %.19s",
			    ref, im->id);
		goto out;
	}
	memcpy(im->config_digest, m.config.digest, DIGEST_LEN);
	im->layers = calloc(m.n + 1, sizeof(*im->layers));
	if (!im->layers) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < m.n; i++) {
		const struct exported_file *f = ex_find_digest(ex, m.descs[i].digest);
		bool ok = media_type_fits(m.descs[i].media_type, f->kind);
		im->layers[i].media_type =
		    strdup(ok ? m.descs[i].media_type : kind_media_type(f->kind));
		if (!im->layers[i].media_type) {
			r = -ENOMEM;
			goto out;
		}
		fits = fits && ok;
		memcpy(im->layers[i].digest, f->digest, DIGEST_LEN);
		im->layers[i].size = f->size;
		im->nlayers = i + 1;
	}
	if (fits) {
		/* as stored: its own bytes, and a config of its own media type */
		im->manifest = chosen;
		im->manifest_len = chosen_len;
		chosen = NULL;
	}
	r = 0;
out:
	oci_manifest_done(&m);
	oci_manifest_done(&idx);
	free(data);
	free(chosen);
	return r;
}

/* Export ref (whose image ID is im->id) into the cache and fill im. */
static int export_image(struct docker_storage *ds, const char *ref, struct image *im,
			struct sf_err *err)
{
	static const struct tar_callbacks cb = {ex_begin, ex_data, ex_end, ex_link};
	struct export ex = {.ds = ds, .err = err, .fd = -1};
	json_t *root = NULL, *entry = NULL;
	const struct exported_file *cfg = NULL;
	const char *cfg_name;
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
	if (cfg) {
		/* The classic image store: the image ID is the config digest. */
		memcpy(im->config_digest, im->id, DIGEST_LEN);
		r = layers_from_paths(&ex, json_object_get(entry, "Layers"), ref, im, err);
	} else if (ex_find_digest(&ex, im->id)) {
		r = image_from_stored(ds, &ex, ref, im, err);
	} else {
		r = err_set(
		    err, -EAGAIN,
		    "exporting %s: the export does not hold image %.19s (retagged meanwhile?)", ref,
		    im->id);
	}
	if (r < 0)
		goto out;
	r = read_blob_file(ds, im->config_digest, CONFIG_CAP, &im->config, &im->config_len);
	if (r < 0) {
		r = err_set(err, r == -ENOENT ? -EPROTO : r, "exporting %s: config %.19s: %s", ref,
			    im->config_digest,
			    r == -ENOENT ? "missing from the export" : strerror(-r));
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
	for (i = 0; i < ex.nlinks; i++) {
		free(ex.links[i].name);
		free(ex.links[i].target);
	}
	free(ex.files);
	free(ex.links);
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
	struct oci_manifest parsed = {0};
	struct stage_layout *l;
	char *mjson = NULL;
	size_t mlen = 0;
	int r;

	if (im->manifest) {
		/* as stored; its media type from its own bytes */
		struct sf_err ignored = {0};
		r = oci_manifest_parse(im->manifest, im->manifest_len, NULL, &parsed, &ignored);
		if (r < 0)
			return -EPROTO;
		man.media_type = parsed.media_type;
		memcpy(man.digest, im->manifest_digest, DIGEST_LEN);
		man.size = im->manifest_len;
		mjson = im->manifest;
		mlen = im->manifest_len;
	} else {
		memcpy(config.digest, im->config_digest, DIGEST_LEN);
		config.size = im->config_len;
		r = oci_manifest_json(MT_OCI_MANIFEST, &config, im->layers, im->nlayers, &mjson,
				      &mlen);
		if (r < 0)
			return r;
		man.media_type = (char *)MT_OCI_MANIFEST;
		digest_buffer(mjson, mlen, man.digest);
		man.size = mlen;
	}
	l = stage_layout_new();
	if (!l) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(l->image_id, im->config_digest, DIGEST_LEN);
	r = stage_layout_add_blob(l, man.digest, mlen, mjson);
	if (r == 0)
		r = stage_layout_add_blob(l, im->config_digest, im->config_len, im->config);
	for (size_t i = 0; r == 0 && i < im->nlayers; i++)
		r = stage_layout_add_blob(l, im->layers[i].digest, im->layers[i].size, NULL);
	if (r == 0)
		r = oci_index_json(&man, stage, &l->index_json, &l->index_len);
	if (r < 0) {
		stage_layout_unref(l);
		goto out;
	}
	stage_layout_seal(l);
	*ret = l;
out:
	if (mjson != im->manifest)
		free(mjson);
	oci_manifest_done(&parsed);
	return r;
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
/* The stage's image ID after werf's checks (labels of the project); ret_root, when not NULL,
 * gets Docker's answer (the caller decrefs it). */
static int inspect_stage(struct docker_storage *ds, const char *project, const char *stage,
			 char *ref, size_t refsize, char ret_id[DIGEST_LEN], json_t **ret_root,
			 struct sf_err *err)
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
	if (r == 0 && ret_root)
		*ret_root = root;
	else
		json_decref(root);
	return r;
}

/* Docker's inspect: image ID and size without an export. With the containerd image store the
 * ID is a manifest or index digest (inspect's Descriptor says so): then the layout tells. */
static int ds_summary(struct storage *st, const char *project, const char *stage,
		      struct stage_summary *ret, struct sf_err *err)
{
	struct docker_storage *ds = ds_of(st);
	struct stage_layout *l = NULL;
	json_t *root = NULL;
	const char *id, *desc;
	char ref[256], checked[DIGEST_LEN];
	int r;

	project = project_of(ds, project);
	r = inspect_stage(ds, project, stage, ref, sizeof(ref), checked, &root, err);
	if (r < 0)
		return r;
	id = json_string_value(json_object_get(root, "Id"));
	desc = json_string_value(json_object_get(json_object_get(root, "Descriptor"), "digest"));
	if (id && (!desc || strcmp(desc, id) != 0)) {
		json_int_t size = json_integer_value(json_object_get(root, "Size"));
		memcpy(ret->image_id, id, DIGEST_LEN);
		ret->size = size > 0 ? (uint64_t)size : 0;
		json_decref(root);
		return 0;
	}
	json_decref(root);
	r = image_get(ds, ref, checked, false, stage, &l, err);
	if (r < 0)
		return r;
	r = stage_layout_summary(l, ret);
	stage_layout_unref(l);
	return r;
}

static int ds_describe(struct storage *st, const char *project, const char *stage,
		       struct stage_layout **ret, struct sf_err *err)
{
	struct docker_storage *ds = ds_of(st);
	char ref[256], id[DIGEST_LEN];
	int r;

	project = project_of(ds, project);
	r = inspect_stage(ds, project, stage, ref, sizeof(ref), id, NULL, err);
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
	r = inspect_stage(ds, project, stage, ref, sizeof(ref), id, NULL, err);
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
    .summary = ds_summary,
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
