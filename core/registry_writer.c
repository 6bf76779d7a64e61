#include "registry_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gzip.h"
#include "buf.h"
#include "name.h"
#include "oci.h"



struct job {
	struct registry_writer *w;
	pthread_t thread;
	char digest[DIGEST_LEN];
	uint64_t size;
	char *path;
	enum oci_blob_format kind;
	/* What went up: the blob itself, or its gzip-compressed form. */
	char up_digest[DIGEST_LEN];
	uint64_t up_size;
	int result;
	struct sf_err err;
};

struct memo_entry {
	char diff_id[DIGEST_LEN];
	char gz[DIGEST_LEN];
	uint64_t gz_size;
};

struct registry_writer_memo {
	pthread_mutex_t lock;
	struct memo_entry *v;
	size_t n;
	/* Blobs being uploaded by some writer of this mount: another waits for that upload and
	 * then finds the blob there (a registry takes two concurrent uploads of one blob badly:
	 * distribution 2.8 then refuses a manifest with MANIFEST_BLOB_UNKNOWN). */
	pthread_cond_t landed;
	char (*flying)[DIGEST_LEN];
	size_t nflying, aflying;
};

int registry_writer_memo_new(struct registry_writer_memo **ret)
{
	struct registry_writer_memo *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->landed, NULL);
	*ret = m;
	return 0;
}

/* Wait while another writer uploads digest, then own it. -ENOMEM only. */
static int flight_enter(struct registry_writer_memo *m, const char *digest)
{
	int r = 0;

	if (!m)
		return 0;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nflying;)
		if (strcmp(m->flying[i], digest) == 0) {
			pthread_cond_wait(&m->landed, &m->lock);
			i = 0; /* the table changed: look again */
		} else {
			i++;
		}
	if (m->nflying == m->aflying) {
		size_t na = m->aflying ? 2 * m->aflying : 16;
		char(*nv)[DIGEST_LEN] = realloc(m->flying, na * sizeof(*nv));
		if (nv) {
			m->flying = nv;
			m->aflying = na;
		}
	}
	if (m->nflying < m->aflying)
		memcpy(m->flying[m->nflying++], digest, DIGEST_LEN);
	else
		r = -ENOMEM;
	pthread_mutex_unlock(&m->lock);
	return r;
}

static void flight_leave(struct registry_writer_memo *m, const char *digest)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nflying; i++)
		if (strcmp(m->flying[i], digest) == 0) {
			memcpy(m->flying[i], m->flying[--m->nflying], DIGEST_LEN);
			break;
		}
	pthread_cond_broadcast(&m->landed);
	pthread_mutex_unlock(&m->lock);
}

void registry_writer_memo_free(struct registry_writer_memo *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->landed);
	free(m->flying);
	free(m->v);
	free(m);
}

static bool memo_find(struct registry_writer_memo *m, const char *diff_id, struct memo_entry *ret)
{
	bool hit = false;

	if (!m)
		return false;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n && !hit; i++)
		if (strcmp(m->v[i].diff_id, diff_id) == 0) {
			*ret = m->v[i];
			hit = true;
		}
	pthread_mutex_unlock(&m->lock);
	return hit;
}

static void memo_add(struct registry_writer_memo *m, const struct memo_entry *e)
{
	struct memo_entry tmp, *nv;

	if (!m || memo_find(m, e->diff_id, &tmp))
		return;
	pthread_mutex_lock(&m->lock);
	nv = realloc(m->v, (m->n + 1) * sizeof(*nv));
	if (nv) { /* only an optimisation: no memory, no memo */
		m->v = nv;
		nv[m->n++] = *e;
	}
	pthread_mutex_unlock(&m->lock);
}

struct registry_writer {
	struct stage_writer base;
	struct registry *reg;
	struct registry_writer_memo *memo;
	char stage[NAME_STAGE_MAX + 1];
	pthread_mutex_t lock;
	struct job **jobs;
	size_t njobs;
	sem_t slots; /* compressions and uploads running at once */
	bool aborting; /* freed without a commit, or after a failed one: jobs not begun skip */
};


/* Upload the file at path as blob digest unless the repository has it. */
static int upload(struct registry_writer *w, const char *digest, const char *path, uint64_t size,
		  struct sf_err *err)
{
	int fd, r = flight_enter(w->memo, digest);

	if (r < 0)
		return r;
	r = registry_has_blob(w->reg, digest, NULL, err);
	if (r == -ENOENT) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = err_set(err, -errno, "%s: %s", path, strerror(errno));
		} else {
			r = registry_put_blob(w->reg, digest, fd, 0, size, err);
			close(fd);
		}
	}
	flight_leave(w->memo, digest);
	return r;
}

static void *job_run(void *arg)
{
	struct job *j = arg;
	char gz[4096], in_digest[DIGEST_LEN];
	struct memo_entry seen;
	int in = -1, out = -1;

	sem_wait(&j->w->slots);
	memcpy(j->up_digest, j->digest, DIGEST_LEN);
	j->up_size = j->size;
	if (__atomic_load_n(&j->w->aborting, __ATOMIC_ACQUIRE)) {
		j->result = err_set(&j->err, -ECANCELED, "the stage's commit was given up");
	} else if (j->kind == OCI_BLOB_GZIP || j->kind == OCI_BLOB_ZSTD) {
		j->result = upload(j->w, j->digest, j->path, j->size, &j->err);
	} else if (j->kind == OCI_BLOB_TAR && memo_find(j->w->memo, j->digest, &seen) &&
		   registry_has_blob(j->w->reg, seen.gz, NULL, NULL) == 0) {
		/* Compressed here before and the repository has it: nothing to do. */
		memcpy(j->up_digest, seen.gz, DIGEST_LEN);
		j->up_size = seen.gz_size;
	} else if (j->kind == OCI_BLOB_TAR) {
		snprintf(gz, sizeof(gz), "%s.gz", j->path);
		in = open(j->path, O_RDONLY | O_CLOEXEC);
		out = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (in < 0 || out < 0)
			j->result = err_set(&j->err, -errno, "%s: %s", gz, strerror(errno));
		else
			j->result = gzip_file(in, out, j->up_digest, &j->up_size, in_digest, &j->err);
		/* What went in must still be the blob that was checked. */
		if (j->result == 0 && strcmp(in_digest, j->digest) != 0)
			j->result = err_set(&j->err, -EBADMSG, "changed since it was checked (%s)",
					    in_digest);
		if (j->result == 0 && __atomic_load_n(&j->w->aborting, __ATOMIC_ACQUIRE))
			j->result = err_set(&j->err, -ECANCELED, "the stage's commit was given up");
		if (in >= 0)
			close(in);
		if (out >= 0 && close(out) < 0 && j->result == 0)
			j->result = err_set(&j->err, -errno, "%s: %s", gz, strerror(errno));
		if (j->result == 0)
			j->result = upload(j->w, j->up_digest, gz, j->up_size, &j->err);
		if (j->result == 0) {
			struct memo_entry e = {.gz_size = j->up_size};
			memcpy(e.diff_id, j->digest, DIGEST_LEN);
			memcpy(e.gz, j->up_digest, DIGEST_LEN);
			memo_add(j->w->memo, &e);
		}
	}
	if (j->result < 0)
		err_prefix(&j->err, "blob %s: ", j->digest);
	sem_post(&j->w->slots);
	return NULL;
}

static int rw_add_blob(struct stage_writer *sw, const char *digest, uint64_t size,
		       const char *path, struct sf_err *err)
{
	struct registry_writer *w = (struct registry_writer *)sw;
	struct job *j = calloc(1, sizeof(*j)), **nv;

	if (!j || !(j->path = strdup(path))) {
		free(j);
		return -ENOMEM;
	}
	j->w = w;
	memcpy(j->digest, digest, DIGEST_LEN);
	j->size = size;
	j->kind = oci_blob_format_file(path);
	pthread_mutex_lock(&w->lock);
	nv = realloc(w->jobs, (w->njobs + 1) * sizeof(*nv));
	if (!nv) {
		pthread_mutex_unlock(&w->lock);
		free(j->path);
		free(j);
		return -ENOMEM;
	}
	w->jobs = nv;
	if (j->kind != OCI_BLOB_JSON && pthread_create(&j->thread, NULL, job_run, j) != 0) {
		pthread_mutex_unlock(&w->lock);
		free(j->path);
		free(j);
		return -EAGAIN;
	}
	nv[w->njobs++] = j;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

/* The job of a blob, finished; NULL when the blob was never added. */
static struct job *wait_job(struct registry_writer *w, const char *digest)
{
	struct job *j = NULL;

	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < w->njobs && !j; i++)
		if (strcmp(w->jobs[i]->digest, digest) == 0)
			j = w->jobs[i];
	pthread_mutex_unlock(&w->lock);
	if (j && j->kind != OCI_BLOB_JSON && j->thread) {
		pthread_join(j->thread, NULL);
		j->thread = 0;
	}
	return j;
}

static int read_doc(const struct job *j, char **ret, size_t *ret_len)
{
	return buf_read_file_at(AT_FDCWD, j->path, OCI_DOC_CAP, ret, ret_len);
}

/* What the tag holds now: -ENOENT, or 0 with its image ID (config digest) and digest. */
static int tagged(struct registry_writer *w, char ret_id[DIGEST_LEN], char ret_digest[DIGEST_LEN],
		  struct sf_err *err)
{
	struct registry_manifest rm = {0};
	struct oci_manifest m = {0};
	int r = registry_get_manifest(w->reg, w->stage, &rm, err);

	if (r < 0)
		return r;
	r = oci_manifest_parse(rm.data, rm.len, rm.media_type, &m, err);
	if (r == 0) {
		snprintf(ret_id, DIGEST_LEN, "%s", m.is_index ? "" : m.config.digest);
		memcpy(ret_digest, rm.digest, DIGEST_LEN);
	}
	oci_manifest_done(&m);
	registry_manifest_done(&rm);
	return r;
}

/* Put an image manifest's blobs (config uploaded now, layers by their jobs) and then the
 * manifest under ref: unchanged when every layer went up as it is, else rewritten. */
static int put_image(struct registry_writer *w, const char *ref, const char *doc, size_t len,
		     const char *media_type, const struct oci_manifest *m, struct sf_err *err)
{
	struct oci_desc *layers = NULL, cfg = {0};
	struct job *j;
	bool rewrite = false, zstd = false;
	char *out = NULL, got[DIGEST_LEN];
	size_t out_len;
	int r;

	j = wait_job(w, m->config.digest);
	if (!j)
		return err_set(err, -EINVAL, "the config %s was not written", m->config.digest);
	r = upload(w, j->digest, j->path, j->size, err);
	if (r < 0)
		return r;
	layers = calloc(m->n + 1, sizeof(*layers));
	if (!layers)
		return -ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		j = wait_job(w, m->descs[i].digest);
		if (!j) {
			r = err_set(err, -EINVAL, "the layer %s was not written", m->descs[i].digest);
			goto out;
		}
		if (j->result < 0) {
			*err = j->err;
			r = j->result;
			goto out;
		}
		rewrite |= j->kind == OCI_BLOB_TAR;
		zstd |= j->kind == OCI_BLOB_ZSTD;
		memcpy(layers[i].digest, j->up_digest, DIGEST_LEN);
		layers[i].size = j->up_size;
	}
	if (!rewrite) {
		r = registry_put_manifest(w->reg, ref, media_type, doc, len, got, err);
		goto out;
	}
	if (strncmp(ref, "sha256:", 7) == 0) {
		/* A child of an image index is named by its digest: it cannot be rewritten. */
		r = err_set(err, -EINVAL,
			    "image %s of the index has uncompressed layers: an index is copied "
			    "only as it is",
			    ref);
		goto out;
	}
	/* As `docker push` makes it: Docker schema 2, gzip layers, the config as it is. */
	memcpy(cfg.digest, m->config.digest, DIGEST_LEN);
	cfg.size = m->config.size;
	for (int oci = zstd; oci < 2; oci++) {
		cfg.media_type = oci ? MT_OCI_CONFIG : MT_DOCKER_CONFIG;
		for (size_t i = 0; i < m->n; i++) {
			enum oci_blob_format k = wait_job(w, m->descs[i].digest)->kind;
			layers[i].media_type = k == OCI_BLOB_ZSTD ? "application/vnd.oci.image.layer.v1.tar+zstd"
				: oci ? MT_OCI_LAYER_GZIP
				      : MT_DOCKER_LAYER_GZIP;
		}
		free(out);
		out = NULL;
		r = oci_manifest_json(oci ? MT_OCI_MANIFEST : MT_DOCKER_MANIFEST, &cfg, layers, m->n,
				      &out, &out_len);
		if (r < 0)
			goto out;
		r = registry_put_manifest(w->reg, ref, oci ? MT_OCI_MANIFEST : MT_DOCKER_MANIFEST, out,
					  out_len, got, err);
		if (r != -EPROTONOSUPPORT)
			break;
	}
out:
	free(out);
	free(layers);
	return r;
}

static int rw_commit(struct stage_writer *sw, const char *index_json, size_t index_len,
		     struct sf_err *err)
{
	struct registry_writer *w = (struct registry_writer *)sw;
	struct oci_manifest m = {0};
	struct oci_desc top = {0};
	char *ref = NULL, *doc = NULL, have_id[DIGEST_LEN], have_digest[DIGEST_LEN], got[DIGEST_LEN];
	size_t doc_len;
	struct job *j;
	int r;

	r = oci_index_parse(index_json, index_len, &top, &ref, err);
	if (r < 0)
		goto out;
	j = wait_job(w, top.digest);
	if (!j) {
		r = err_set(err, -EINVAL, "the manifest %s was not written", top.digest);
		goto out;
	}
	r = read_doc(j, &doc, &doc_len);
	if (r == 0)
		r = oci_manifest_parse(doc, doc_len, top.media_type, &m, err);
	if (r < 0)
		goto out;
	/* Stages are never overwritten. */
	r = tagged(w, have_id, have_digest, err);
	if (r == 0) {
		bool same = m.is_index ? strcmp(have_digest, top.digest) == 0
				       : strcmp(have_id, m.config.digest) == 0;
		r = same ? 0
			 : err_set(err, -EEXIST, "%s exists with image %s, not %s", w->stage,
				   m.is_index ? have_digest : have_id,
				   m.is_index ? top.digest : m.config.digest);
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	if (!m.is_index) {
		r = put_image(w, w->stage, doc, doc_len, m.media_type, &m, err);
		goto out;
	}
	/* An image index: every child under its digest, then the index under the tag. */
	for (size_t i = 0; i < m.n; i++) {
		struct oci_manifest child = {0};
		char *cdoc = NULL;
		size_t clen;
		j = wait_job(w, m.descs[i].digest);
		r = j ? read_doc(j, &cdoc, &clen) : -EINVAL;
		if (r == 0)
			r = oci_manifest_parse(cdoc, clen, m.descs[i].media_type, &child, err);
		if (r == 0)
			r = put_image(w, m.descs[i].digest, cdoc, clen, child.media_type, &child, err);
		oci_manifest_done(&child);
		free(cdoc);
		if (r < 0)
			goto out;
	}
	r = registry_put_manifest(w->reg, w->stage, m.media_type, doc, doc_len, got, err);
out:
	oci_manifest_done(&m);
	free(top.media_type);
	free(ref);
	free(doc);
	return r;
}

static void rw_free(struct stage_writer *sw)
{
	struct registry_writer *w = (struct registry_writer *)sw;

	__atomic_store_n(&w->aborting, true, __ATOMIC_RELEASE);
	for (size_t i = 0; i < w->njobs; i++) {
		struct job *j = w->jobs[i];
		if (j->kind != OCI_BLOB_JSON && j->thread)
			pthread_join(j->thread, NULL);
		free(j->path);
		free(j);
	}
	free(w->jobs);
	sem_destroy(&w->slots);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static const struct stage_writer_ops registry_writer_ops = {
    .add_blob = rw_add_blob,
    .commit = rw_commit,
    .free = rw_free,
};

int registry_writer_new(struct registry *reg, struct registry_writer_memo *memo,
			const char *stage, struct stage_writer **ret, struct sf_err *err)
{
	struct registry_writer *w = calloc(1, sizeof(*w));
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (!w)
		return -ENOMEM;
	w->base.ops = &registry_writer_ops;
	w->reg = reg;
	w->memo = memo;
	snprintf(w->stage, sizeof(w->stage), "%s", stage);
	pthread_mutex_init(&w->lock, NULL);
	sem_init(&w->slots, 0, cores > 1 ? (unsigned)cores : 2);
	*ret = &w->base;
	return 0;
}
