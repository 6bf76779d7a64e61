#include "pending.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "digest.h"
#include "name.h"
#include "oci.h"

#define REL_MAX 1024

struct hint {
	ino_t ino;
	off_t size;
	struct timespec mtim;
	char digest[DIGEST_LEN];
};

enum ps_state { PS_OPEN, PS_COMMITTING, PS_DONE };

struct pending_stage {
	struct pending *p;
	int refs; /* under p->lock */
	bool listed;
	char project[NAME_PROJECT_MAX + 1];
	char stage[NAME_STAGE_MAX + 1];
	char dirname[32];
	int dirfd, treefd, vfd;
	struct stage_writer *writer; /* NULL in check mode */
	struct stage_layout *existing;
	uint64_t created_ms;
	pthread_mutex_t lock;
	enum ps_state state;
	int result;
	struct sf_err result_err;
	struct hint *hints;
	size_t nhints;
	struct writers {
		ino_t ino;
		int n;
	} *writers; /* writable handles per inode: a hint counts only from a sole writer */
	size_t nwriters;
	int opens; /* open handles; a check-mode stage goes with the last */
	char **whiteouts;
	size_t nwhiteouts;
};

struct pending {
	char *path; /* this daemon's directory */
	int dirfd;
	int lockfd;
	pthread_mutex_t lock;
	struct pending_stage **v;
	size_t n, alloc;
	unsigned seq;
	pending_retired_fn retired;
	void *retired_ud;
};

struct pending_file {
	struct pending_stage *ps;
	int fd;
	bool writable;
	char rel[REL_MAX];
	ino_t ino;
	pthread_mutex_t lock;
	struct digest_ctx *dg; /* hash of bytes written in order from 0 */
	uint64_t next_off;
	bool seq;
	bool wrote;
	int sticky;
	struct sf_err sticky_err;
};

enum fname { F_OTHER, F_INDEX, F_LAYOUT, F_BLOB };

static const char *at(const char *rel)
{
	return *rel ? rel : ".";
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static enum fname classify(const char *rel, char ret_digest[DIGEST_LEN])
{
	if (strcmp(rel, "index.json") == 0)
		return F_INDEX;
	if (strcmp(rel, "oci-layout") == 0)
		return F_LAYOUT;
	if (strncmp(rel, "blobs/sha256/", 13) == 0 && name_hex64_valid(rel + 13)) {
		snprintf(ret_digest, DIGEST_LEN, "sha256:%s", rel + 13);
		return F_BLOB;
	}
	return F_OTHER;
}

/* Remove name under dirfd, recursively; ENOENT is not an error. */
static int rm_rf_at(int dirfd, const char *name)
{
	struct dirent *de;
	DIR *d;
	int fd, r = 0;

	if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int q = rm_rf_at(fd, de->d_name);
		if (q < 0 && r == 0)
			r = q;
	}
	closedir(d);
	if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	return r;
}


/* sha256 of an open file, from offset 0. */
static int digest_fd(int fd, char out[DIGEST_LEN])
{
	struct digest_ctx *ctx = digest_new();
	char *chunk = malloc(1 << 20);
	off_t off = 0;
	int r = 0;

	if (!ctx || !chunk) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = pread(fd, chunk, 1 << 20, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		digest_update(ctx, chunk, (size_t)n);
		off += n;
	}
	digest_final(ctx, out);
out:
	free(chunk);
	digest_free(ctx);
	return r;
}

/* ---- the pending area ---- */

static int mkdir_p(const char *path)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *s = tmp + 1; *s; s++)
		if (*s == '/') {
			*s = '\0';
			if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
				return -errno;
			*s = '/';
		}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Count the stage folders in a dead daemon's directory, then remove it. */
static unsigned remove_dead(int areafd, const char *name)
{
	unsigned n = 0;
	int fd = openat(areafd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;

	if (fd >= 0 && (d = fdopendir(fd))) {
		while ((de = readdir(d)))
			n += strncmp(de->d_name, "s.", 2) == 0;
		closedir(d);
	} else if (fd >= 0) {
		close(fd);
	}
	rm_rf_at(areafd, name);
	return n;
}

/* Remove the directories of daemons that no longer hold their lock. */
static unsigned sweep(int areafd)
{
	int fd = dup(areafd);
	unsigned stale = 0;
	struct dirent *de;
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((de = readdir(d))) {
		char lockname[300];
		int lfd;
		if (strncmp(de->d_name, "D.", 2) != 0)
			continue;
		snprintf(lockname, sizeof(lockname), "%s/lock", de->d_name);
		lfd = openat(areafd, lockname, O_RDWR | O_CLOEXEC);
		if (lfd < 0)
			continue;
		if (flock(lfd, LOCK_EX | LOCK_NB) == 0)
			stale += remove_dead(areafd, de->d_name);
		close(lfd);
	}
	closedir(d);
	return stale;
}

int pending_new(const char *cache_dir, struct pending **ret, unsigned *ret_stale,
		struct sf_err *err)
{
	struct pending *p = calloc(1, sizeof(*p));
	char area[PATH_MAX - 64], tmpl[PATH_MAX - 32], final[PATH_MAX];
	int areafd = -1, r;
	unsigned stale;

	if (!p)
		return -ENOMEM;
	p->dirfd = p->lockfd = -1;
	pthread_mutex_init(&p->lock, NULL);
	if (snprintf(area, sizeof(area), "%s/pending", cache_dir) >= (int)sizeof(area)) {
		r = err_set(err, -ENAMETOOLONG, "%s: cache directory path too long", cache_dir);
		goto fail;
	}
	r = mkdir_p(area);
	if (r < 0) {
		err_set(err, r, "%s: %s", area, strerror(-r));
		goto fail;
	}
	areafd = open(area, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (areafd < 0) {
		r = err_set(err, -errno, "%s: %s", area, strerror(errno));
		goto fail;
	}
	stale = sweep(areafd);
	/* Made under a name the sweep ignores, locked, then given its D. name. */
	snprintf(tmpl, sizeof(tmpl), "%s/new.XXXXXX", area);
	if (!mkdtemp(tmpl)) {
		r = err_set(err, -errno, "%s: %s", area, strerror(errno));
		goto fail;
	}
	snprintf(final, sizeof(final), "%s/lock", tmpl);
	p->lockfd = open(final, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (p->lockfd < 0 || flock(p->lockfd, LOCK_EX) < 0) {
		r = err_set(err, -errno, "%s: %s", final, strerror(errno));
		rmdir(tmpl);
		goto fail;
	}
	snprintf(final, sizeof(final), "%s/D.%s", area, strrchr(tmpl, '.') + 1);
	if (rename(tmpl, final) < 0) {
		r = err_set(err, -errno, "%s: %s", final, strerror(errno));
		goto fail;
	}
	p->path = strdup(final);
	p->dirfd = open(final, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!p->path || p->dirfd < 0) {
		r = p->path ? -errno : -ENOMEM;
		goto fail;
	}
	close(areafd);
	if (ret_stale)
		*ret_stale = stale;
	*ret = p;
	return 0;
fail:
	if (areafd >= 0)
		close(areafd);
	if (p->lockfd >= 0)
		close(p->lockfd);
	if (p->dirfd >= 0)
		close(p->dirfd);
	free(p->path);
	pthread_mutex_destroy(&p->lock);
	free(p);
	return r;
}

/* ---- stages ---- */

static void ps_free(struct pending_stage *ps)
{
	stage_writer_free(ps->writer);
	stage_layout_unref(ps->existing);
	if (ps->treefd >= 0)
		close(ps->treefd);
	if (ps->vfd >= 0)
		close(ps->vfd);
	if (ps->dirfd >= 0)
		close(ps->dirfd);
	free(ps->hints);
	free(ps->writers);
	for (size_t i = 0; i < ps->nwhiteouts; i++)
		free(ps->whiteouts[i]);
	free(ps->whiteouts);
	pthread_mutex_destroy(&ps->lock);
	free(ps);
}

void pending_stage_unref(struct pending_stage *ps)
{
	struct pending *p;
	bool last;

	if (!ps)
		return;
	p = ps->p;
	pthread_mutex_lock(&p->lock);
	last = --ps->refs == 0;
	pthread_mutex_unlock(&p->lock);
	if (last)
		ps_free(ps);
}

/* Take the stage out of the set and remove its files (open handles keep their inodes). */
/* Take ps out of the set (p->lock held); true when it was in it. */
static bool ps_unlist_locked(struct pending *p, struct pending_stage *ps)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i] == ps) {
			p->v[i] = p->v[--p->n];
			ps->listed = false;
			return true;
		}
	return false;
}

/* After ps left the set: free its writer (it may read its blobs until then; outside the lock,
 * it waits for its jobs), remove its files, tell, drop the set's reference. */
static void ps_cleanup(struct pending_stage *ps)
{
	struct pending *p = ps->p;
	struct stage_writer *w;

	pthread_mutex_lock(&ps->lock);
	w = ps->writer;
	ps->writer = NULL;
	pthread_mutex_unlock(&ps->lock);
	stage_writer_free(w);
	rm_rf_at(p->dirfd, ps->dirname);
	if (p->retired)
		p->retired(p->retired_ud, ps->project, ps->stage);
	pending_stage_unref(ps);
}

static void ps_retire(struct pending_stage *ps)
{
	struct pending *p = ps->p;
	bool was;

	/* A commit under way reads the writer and the files: its thread retires the stage when
	 * the commit returns. Otherwise no commit may start any more (one hold for both). */
	pthread_mutex_lock(&ps->lock);
	was = ps->state == PS_COMMITTING;
	if (ps->state == PS_OPEN)
		ps->state = PS_DONE;
	pthread_mutex_unlock(&ps->lock);
	if (was)
		return;
	pthread_mutex_lock(&p->lock);
	was = ps_unlist_locked(p, ps);
	pthread_mutex_unlock(&p->lock);
	if (was)
		ps_cleanup(ps);
}

void pending_on_retire(struct pending *p, pending_retired_fn fn, void *ud)
{
	p->retired = fn;
	p->retired_ud = ud;
}

int pending_stage_start(struct pending *p, const char *project, const char *stage,
			struct stage_writer *writer, const struct stage_layout *existing,
			struct pending_stage **ret, struct sf_err *err)
{
	struct pending_stage *ps, *dup;
	int r;

	dup = pending_stage_find(p, project, stage);
	if (dup) {
		pending_stage_unref(dup);
		stage_writer_free(writer);
		return -EEXIST;
	}
	ps = calloc(1, sizeof(*ps));
	if (!ps) {
		stage_writer_free(writer);
		return -ENOMEM;
	}
	ps->p = p;
	ps->dirfd = ps->treefd = ps->vfd = -1;
	ps->writer = writer;
	ps->existing = existing ? stage_layout_ref((struct stage_layout *)existing) : NULL;
	ps->created_ms = now_ms();
	ps->refs = 1;
	pthread_mutex_init(&ps->lock, NULL);
	snprintf(ps->project, sizeof(ps->project), "%s", project ? project : "");
	snprintf(ps->stage, sizeof(ps->stage), "%s", stage);

	pthread_mutex_lock(&p->lock);
	snprintf(ps->dirname, sizeof(ps->dirname), "s.%u", ++p->seq);
	pthread_mutex_unlock(&p->lock);
	if (mkdirat(p->dirfd, ps->dirname, 0700) < 0 ||
	    (ps->dirfd = openat(p->dirfd, ps->dirname, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    mkdirat(ps->dirfd, "tree", 0755) < 0 || mkdirat(ps->dirfd, "v", 0700) < 0 ||
	    (ps->treefd = openat(ps->dirfd, "tree", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (ps->vfd = openat(ps->dirfd, "v", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		r = err_set(err, -errno, "%s/%s: %s", p->path, ps->dirname, strerror(errno));
		goto fail;
	}
	/* Over an existing stage, its folders are there already. */
	if (existing && (mkdirat(ps->treefd, "blobs", 0755) < 0 ||
			 mkdirat(ps->treefd, "blobs/sha256", 0755) < 0)) {
		r = err_set(err, -errno, "%s/%s: %s", p->path, ps->dirname, strerror(errno));
		goto fail;
	}
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i]->stage, ps->stage) == 0 &&
		    strcmp(p->v[i]->project, ps->project) == 0) {
			pthread_mutex_unlock(&p->lock);
			r = -EEXIST; /* another thread started it meanwhile */
			goto fail;
		}
	if (p->n == p->alloc) {
		size_t na = p->alloc ? 2 * p->alloc : 16;
		struct pending_stage **nv = realloc(p->v, na * sizeof(*nv));
		if (!nv) {
			pthread_mutex_unlock(&p->lock);
			r = -ENOMEM;
			goto fail;
		}
		p->v = nv;
		p->alloc = na;
	}
	p->v[p->n++] = ps;
	ps->listed = true;
	ps->refs++; /* the set's reference */
	pthread_mutex_unlock(&p->lock);
	*ret = ps;
	return 0;
fail:
	rm_rf_at(p->dirfd, ps->dirname);
	ps_free(ps);
	return r;
}

struct pending_stage *pending_stage_find(struct pending *p, const char *project, const char *stage)
{
	struct pending_stage *hit = NULL;

	if (!project)
		project = "";
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i]->stage, stage) == 0 && strcmp(p->v[i]->project, project) == 0) {
			hit = p->v[i];
			hit->refs++;
			break;
		}
	pthread_mutex_unlock(&p->lock);
	return hit;
}

bool pending_stage_checks_existing(const struct pending_stage *ps)
{
	return ps->existing != NULL;
}

int pending_whiteout(struct pending_stage *ps, const char *rel)
{
	char **nv, *copy;

	if (pending_is_whiteout(ps, rel))
		return 0;
	copy = strdup(rel);
	pthread_mutex_lock(&ps->lock);
	nv = copy ? realloc(ps->whiteouts, (ps->nwhiteouts + 1) * sizeof(*nv)) : NULL;
	if (nv) {
		ps->whiteouts = nv;
		nv[ps->nwhiteouts++] = copy;
	}
	pthread_mutex_unlock(&ps->lock);
	if (!nv) {
		free(copy);
		return -ENOMEM;
	}
	return 0;
}

bool pending_is_whiteout(struct pending_stage *ps, const char *rel)
{
	bool hit = false;

	pthread_mutex_lock(&ps->lock);
	for (size_t i = 0; i < ps->nwhiteouts && !hit; i++) {
		size_t n = strlen(ps->whiteouts[i]);
		/* rel itself, or something inside a folder that was removed */
		hit = strncmp(ps->whiteouts[i], rel, n) == 0 && (rel[n] == '\0' || rel[n] == '/');
	}
	pthread_mutex_unlock(&ps->lock);
	return hit;
}

void pending_stage_drop(struct pending_stage *ps)
{
	ps_retire(ps);
}

uint64_t pending_stage_created_ms(const struct pending_stage *ps)
{
	return ps->created_ms;
}

void pending_foreach(struct pending *p, const char *project,
		     int (*fn)(void *ud, const char *project, const char *stage), void *ud)
{
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->n; i++) {
		const struct pending_stage *ps = p->v[i];
		if (ps->existing || (project && strcmp(ps->project, project) != 0))
			continue;
		if (fn(ud, ps->project, ps->stage))
			break;
	}
	pthread_mutex_unlock(&p->lock);
}

/* ---- completeness and checks ---- */

/* The manifest digest index.json names; its ref name must be absent or the stage's. */
static int parse_index(struct pending_stage *ps, const char *data, size_t len,
		       struct oci_desc *ret, struct sf_err *err)
{
	char *ref = NULL;
	int r = oci_index_parse(data, len, ret, &ref, err);

	if (r < 0)
		return r;
	if (ref && strcmp(ref, ps->stage) != 0) {
		r = err_set(err, -EINVAL,
			    "index.json names the image %s, but it is written into the stage "
			    "folder %s",
			    ref, ps->stage);
		free(ref);
		free(ret->media_type);
		ret->media_type = NULL;
		return r;
	}
	free(ref);
	return 0;
}

/* Bytes of a verified blob: from v/, or (check mode) from the existing layout. -ENOENT. */
static int blob_bytes(struct pending_stage *ps, const char *digest, char **ret, size_t *ret_len)
{
	int r = buf_read_file_at(ps->vfd, digest + 7, OCI_DOC_CAP, ret, ret_len);

	if (r == -ENOENT && ps->existing) {
		const struct layout_blob *b = stage_layout_find(ps->existing, digest);
		if (b && b->data) {
			*ret = malloc(b->size + 1);
			if (!*ret)
				return -ENOMEM;
			memcpy(*ret, b->data, b->size);
			(*ret)[b->size] = '\0';
			*ret_len = b->size;
			return 0;
		}
	}
	return r;
}

static bool have_blob(struct pending_stage *ps, const char *digest)
{
	return faccessat(ps->vfd, digest + 7, F_OK, 0) == 0;
}

/* Check mode: the image a manifest (of any kind) or index.json leads to must be the stage's. */
static int check_existing(struct pending_stage *ps, const char *what,
			  const struct oci_desc *manifest, const struct oci_manifest *m,
			  struct sf_err *err)
{
	struct oci_desc have = {0};
	char *ref = NULL;
	int r = 0;

	if (ps->existing->image_id[0] == '\0') {
		/* An image index: the same index. */
		if (!manifest)
			return 0;
		if (oci_index_parse(ps->existing->index_json, ps->existing->index_len, &have, &ref,
				    NULL) == 0 &&
		    strcmp(have.digest, manifest->digest) != 0)
			r = err_set(err, -EEXIST,
				    "%s: stage %s exists with the image index %s, not %s", what,
				    ps->stage, have.digest, manifest->digest);
		free(ref);
		free(have.media_type);
		return r;
	}
	if (m->is_index)
		return err_set(err, -EEXIST, "%s: stage %s exists as an image, not an image index",
			       what, ps->stage);
	if (strcmp(m->config.digest, ps->existing->image_id) != 0)
		return err_set(err, -EEXIST, "%s: stage %s exists with image ID %s, not %s", what,
			       ps->stage, ps->existing->image_id, m->config.digest);
	return 0;
}

/* What the layout still lacks, as a phrase; "" when complete. Fills *ret_index when complete.
 * Returns -EINVAL/-EEXIST for a layout that can never be committed. Under ps->lock. */
static int layout_state(struct pending_stage *ps, char *missing, size_t n, char **ret_index,
			size_t *ret_index_len, struct sf_err *err)
{
	struct oci_manifest m = {0};
	struct oci_desc top = {0};
	char *idx = NULL, *doc = NULL;
	size_t idx_len = 0, doc_len;
	int r;

	missing[0] = '\0';
	/* In check mode a checked index.json is kept beside the folder, not in it. */
	r = buf_read_file_at(ps->existing ? ps->dirfd : ps->treefd, "index.json", OCI_DOC_CAP, &idx,
			  &idx_len);
	if (r == -ENOENT) {
		snprintf(missing, n, "no index.json");
		return 0;
	}
	if (r < 0)
		return err_set(err, r, "index.json: %s", strerror(-r));
	r = parse_index(ps, idx, idx_len, &top, err);
	if (r < 0)
		goto out;
	r = blob_bytes(ps, top.digest, &doc, &doc_len);
	if (r == -ENOENT) {
		snprintf(missing, n, "the manifest %s named by index.json", top.digest);
		r = 0;
		goto out;
	}
	if (r < 0) {
		err_set(err, r, "manifest %s: %s", top.digest, strerror(-r));
		goto out;
	}
	r = oci_manifest_parse(doc, doc_len, top.media_type, &m, err);
	if (r < 0) {
		err_prefix(err, "manifest %s: ", top.digest);
		goto out;
	}
	if (ps->existing) {
		r = check_existing(ps, "index.json", &top, &m, err);
		goto out;
	}
	/* Every blob the layout needs: an index's children and, for each image, config and
	 * layers. */
	for (size_t i = 0; m.is_index && i < m.n && !missing[0]; i++) {
		struct oci_manifest child = {0};
		char *cdoc = NULL;
		size_t clen;
		r = blob_bytes(ps, m.descs[i].digest, &cdoc, &clen);
		if (r == -ENOENT) {
			snprintf(missing, n, "the manifest %s named by the image index",
				 m.descs[i].digest);
			r = 0;
			break;
		}
		if (r == 0)
			r = oci_manifest_parse(cdoc, clen, m.descs[i].media_type, &child, err);
		free(cdoc);
		if (r == 0 && child.is_index)
			r = err_set(err, -EINVAL, "nested image indexes are not supported");
		if (r < 0) {
			err_prefix(err, "manifest %s: ", m.descs[i].digest);
			oci_manifest_done(&child);
			goto out;
		}
		if (!have_blob(ps, child.config.digest))
			snprintf(missing, n, "the config %s", child.config.digest);
		for (size_t j = 0; j < child.n && !missing[0]; j++)
			if (!have_blob(ps, child.descs[j].digest))
				snprintf(missing, n, "the layer %s", child.descs[j].digest);
		oci_manifest_done(&child);
	}
	if (!m.is_index) {
		if (!have_blob(ps, m.config.digest))
			snprintf(missing, n, "the config %s", m.config.digest);
		for (size_t j = 0; j < m.n && !missing[0]; j++)
			if (!have_blob(ps, m.descs[j].digest))
				snprintf(missing, n, "the layer %s", m.descs[j].digest);
	}
	if (!missing[0] && ret_index) {
		*ret_index = idx;
		*ret_index_len = idx_len;
		idx = NULL;
	}
	r = 0;
out:
	oci_manifest_done(&m);
	free(top.media_type);
	free(doc);
	free(idx);
	return r;
}

/* After a file settled under a final name: commit when the layout is complete. Returns the
 * commit's result, or the check's failure (then the stage is dropped). */
static int try_complete(struct pending_stage *ps, struct sf_err *err)
{
	char missing[200], *idx = NULL;
	size_t idx_len = 0;
	int r;

	pthread_mutex_lock(&ps->lock);
	if (ps->state != PS_OPEN) {
		r = ps->state == PS_DONE ? ps->result : 0;
		if (r < 0 && err)
			*err = ps->result_err;
		pthread_mutex_unlock(&ps->lock);
		return r;
	}
	r = layout_state(ps, missing, sizeof(missing), &idx, &idx_len, err);
	if (r < 0 && ps->existing) {
		pthread_mutex_unlock(&ps->lock);
		return r; /* a check-mode refusal concerns that file only */
	}
	if (r == 0 && (missing[0] || ps->existing)) {
		pthread_mutex_unlock(&ps->lock);
		return 0;
	}
	ps->state = PS_COMMITTING;
	pthread_mutex_unlock(&ps->lock);

	if (r == 0) {
		/* Long (uploads, docker load): no lock held, other files of other stages go on. */
		r = stage_writer_commit(ps->writer, idx, idx_len, err);
		if (r < 0)
			err_prefix(err, "commit of stage %s: ", ps->stage);
	}
	free(idx);
	pthread_mutex_lock(&ps->lock);
	ps->state = PS_DONE;
	ps->result = r;
	if (err)
		ps->result_err = *err;
	pthread_mutex_unlock(&ps->lock);
	ps_retire(ps);
	return r;
}

static const struct hint *find_hint(struct pending_stage *ps, const struct stat *st)
{
	for (size_t i = 0; i < ps->nhints; i++) {
		const struct hint *h = &ps->hints[i];
		if (h->ino == st->st_ino && h->size == st->st_size &&
		    h->mtim.tv_sec == st->st_mtim.tv_sec && h->mtim.tv_nsec == st->st_mtim.tv_nsec)
			return h;
	}
	return NULL;
}

static void add_hint(struct pending_stage *ps, const struct stat *st, const char *digest)
{
	struct hint *nv;

	pthread_mutex_lock(&ps->lock);
	for (size_t i = 0; i < ps->nhints; i++)
		if (ps->hints[i].ino == st->st_ino) {
			nv = &ps->hints[i];
			goto fill;
		}
	nv = realloc(ps->hints, (ps->nhints + 1) * sizeof(*nv));
	if (!nv) {
		pthread_mutex_unlock(&ps->lock);
		return; /* only an optimisation */
	}
	ps->hints = nv;
	nv = &ps->hints[ps->nhints++];
fill:
	nv->ino = st->st_ino;
	nv->size = st->st_size;
	nv->mtim = st->st_mtim;
	memcpy(nv->digest, digest, DIGEST_LEN);
	pthread_mutex_unlock(&ps->lock);
}

static void drop_hints_locked(struct pending_stage *ps, ino_t ino)
{
	for (size_t i = 0; i < ps->nhints;)
		if (ps->hints[i].ino == ino)
			ps->hints[i] = ps->hints[--ps->nhints];
		else
			i++;
}

/* Forget hints of the file at rel (truncated, unlinked or replaced: its inode number may come
 * back for another file). */
static void drop_hints_at(struct pending_stage *ps, const char *rel)
{
	struct stat st;

	if (fstatat(ps->treefd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	pthread_mutex_lock(&ps->lock);
	drop_hints_locked(ps, st.st_ino);
	pthread_mutex_unlock(&ps->lock);
}

/* Count a writable handle of ino in (+1) or out (-1); returns how many there are now. A
 * second writer makes any digest hint of the inode worthless. */
static int count_writer(struct pending_stage *ps, ino_t ino, int delta)
{
	struct writers *w = NULL;
	int n = 0;

	pthread_mutex_lock(&ps->lock);
	for (size_t i = 0; i < ps->nwriters && !w; i++)
		if (ps->writers[i].ino == ino)
			w = &ps->writers[i];
	if (!w && delta > 0) {
		struct writers *nv = realloc(ps->writers, (ps->nwriters + 1) * sizeof(*nv));
		if (nv) {
			ps->writers = nv;
			w = &nv[ps->nwriters++];
			*w = (struct writers){.ino = ino};
		}
	}
	if (w) {
		w->n += delta;
		n = w->n;
		if (delta > 0) /* a new writer may change it: what was hashed before no longer counts */
			drop_hints_locked(ps, ino);
		if (n <= 0)
			*w = ps->writers[--ps->nwriters];
	} else if (delta > 0) {
		n = 2; /* no memory to count: never trust a hint */
	}
	pthread_mutex_unlock(&ps->lock);
	return n;
}

static int copy_out(struct pending_stage *ps, int in_fd, off_t size, mode_t mode, char *ret_name,
		    size_t n);

/* Check a blob under its final name: content = name; keep it under v/ for the writer. */
static int settle_blob(struct pending_stage *ps, const char *rel, const char *digest, int fd,
		       int own_writers, struct sf_err *err)
{
	char have[DIGEST_LEN], path[PATH_MAX], copy[64] = "";
	const struct hint *h;
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0)
		return -errno;
	pthread_mutex_lock(&ps->lock);
	h = find_hint(ps, &st);
	if (h)
		memcpy(have, h->digest, DIGEST_LEN);
	pthread_mutex_unlock(&ps->lock);
	if (!h) {
		r = digest_fd(fd, have);
		if (r < 0)
			return err_set(err, r, "%s: %s", rel, strerror(-r));
	}
	if (strcmp(have, digest) != 0) {
		unlinkat(ps->treefd, rel, 0);
		return err_set(err, -EBADMSG, "%s: the content's digest is %s, not its name",
			       rel, have);
	}
	if (ps->existing) {
		/* A manifest among the blobs must describe the existing image. */
		char *doc = NULL;
		size_t len;
		struct oci_manifest m = {0};
		if ((uint64_t)st.st_size <= OCI_DOC_CAP &&
		    buf_read_file_at(ps->treefd, rel, OCI_DOC_CAP, &doc, &len) == 0 && len && doc[0] == '{' &&
		    oci_manifest_parse(doc, len, NULL, &m, NULL) == 0 && !m.is_index) {
			r = check_existing(ps, rel, NULL, &m, err);
			if (r < 0) {
				unlinkat(ps->treefd, rel, 0);
				oci_manifest_done(&m);
				free(doc);
				return r;
			}
		}
		bool is_doc = doc != NULL && len && doc[0] == '{';
		oci_manifest_done(&m);
		free(doc);
		/* Nothing is committed over an existing stage: keep only what a later check of
		 * index.json may need (its manifest), not layers. */
		if (!is_doc)
			return 0;
	}
	/* Another open handle may still write this file: hand on a copy, checked itself, so
	 * what the writer reads never changes. */
	if (count_writer(ps, st.st_ino, 0) > own_writers) {
		r = copy_out(ps, fd, st.st_size, 0600, copy, sizeof(copy));
		if (r < 0)
			return err_set(err, r, "%s: %s", rel, strerror(-r));
		int cfd = openat(ps->treefd, copy, O_RDONLY | O_CLOEXEC);
		r = cfd < 0 ? -errno : digest_fd(cfd, have);
		if (cfd >= 0)
			close(cfd);
		if (r == 0 && strcmp(have, digest) != 0)
			r = err_set(err, -EBADMSG, "%s: changed while it was checked", rel);
		if (r < 0) {
			unlinkat(ps->treefd, copy, 0);
			return r;
		}
	}
	pthread_mutex_lock(&ps->lock);
	if (copy[0] ? renameat2(ps->treefd, copy, ps->vfd, digest + 7, RENAME_NOREPLACE) == 0
		    : linkat(ps->treefd, rel, ps->vfd, digest + 7, 0) == 0) {
		snprintf(path, sizeof(path), "%s/%s/v/%s", ps->p->path, ps->dirname, digest + 7);
		r = ps->writer && ps->state == PS_OPEN
			? stage_writer_add_blob(ps->writer, digest, (uint64_t)st.st_size, path, err)
			: 0;
		if (r < 0)
			unlinkat(ps->vfd, digest + 7, 0); /* not handed on: a retry must be */
	} else {
		r = errno == EEXIST ? 0 : err_set(err, -errno, "%s: %s", rel, strerror(errno));
		if (copy[0])
			unlinkat(ps->treefd, copy, 0);
	}
	pthread_mutex_unlock(&ps->lock);
	return r;
}

/* A file now sits under rel (closed there or renamed there): check it and go on. */
static int settle(struct pending_stage *ps, const char *rel, int fd, struct sf_err *err)
{
	int own_writers = fd >= 0; /* called from the close of a writable handle */
	char digest[DIGEST_LEN], *doc = NULL;
	enum fname kind = classify(rel, digest);
	struct oci_desc top = {0};
	size_t len;
	int own = -1, r = 0;

	if (kind == F_OTHER)
		return 0;
	if (fd < 0) {
		fd = own = openat(ps->treefd, rel, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	}
	switch (kind) {
	case F_LAYOUT: {
		json_t *root;
		r = buf_read_file_at(ps->treefd, rel, 4096, &doc, &len);
		if (r < 0)
			break;
		root = json_loadb(doc, len, 0, NULL);
		if (!json_is_string(json_object_get(root, "imageLayoutVersion")))
			r = err_set(err, -EINVAL,
				    "oci-layout is not an OCI image layout marker "
				    "({\"imageLayoutVersion\": ...})");
		json_decref(root);
		break;
	}
	case F_INDEX:
		r = buf_read_file_at(ps->treefd, rel, OCI_DOC_CAP, &doc, &len);
		if (r == -EFBIG)
			r = err_set(err, -EINVAL, "index.json is larger than 4 MiB");
		if (r == 0)
			r = parse_index(ps, doc, len, &top, err);
		free(top.media_type);
		break;
	case F_BLOB:
		r = settle_blob(ps, rel, digest, fd, own_writers, err);
		break;
	case F_OTHER:
		break;
	}
	free(doc);
	if (own >= 0)
		close(own);
	if (r < 0) {
		if (kind != F_BLOB)
			unlinkat(ps->treefd, rel, 0); /* nothing of a refused file is kept */
		if (!ps->existing && kind == F_INDEX) {
			/* A stage whose index.json is wrong cannot complete: drop it. */
			ps_retire(ps);
		}
		return r;
	}
	if (ps->existing) {
		pthread_mutex_lock(&ps->lock);
		for (size_t i = 0; i < ps->nwhiteouts; i++)
			if (strcmp(ps->whiteouts[i], rel) == 0) {
				free(ps->whiteouts[i]);
				ps->whiteouts[i] = ps->whiteouts[--ps->nwhiteouts];
				break;
			}
		pthread_mutex_unlock(&ps->lock);
		/* Checked: the stored file shows again in this folder (the copy's own version is
		 * kept out of sight, index.json for the check of a manifest still to come). */
		if (kind == F_INDEX)
			renameat(ps->treefd, rel, ps->dirfd, "index.json");
		else
			unlinkat(ps->treefd, rel, 0);
	}
	return try_complete(ps, err);
}

/* ---- folder operations ---- */

static int sys(int r)
{
	return r < 0 ? -errno : 0;
}

static bool rel_ok(const char *rel)
{
	return strlen(rel) < REL_MAX;
}

int pending_stat(struct pending_stage *ps, const char *rel, struct stat *ret)
{
	return sys(fstatat(ps->treefd, at(rel), ret, AT_SYMLINK_NOFOLLOW));
}

int pending_readdir(struct pending_stage *ps, const char *rel,
		    int (*fn)(void *ud, const char *name, const struct stat *st), void *ud)
{
	int fd = openat(ps->treefd, at(rel), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (fn(ud, de->d_name, &st))
			break;
	}
	closedir(d);
	return 0;
}

int pending_mkdir(struct pending_stage *ps, const char *rel, mode_t mode)
{
	if (!*rel)
		return -EEXIST;
	return sys(mkdirat(ps->treefd, rel, (mode & 07777) | 0700));
}

/* Lock order: a stage's lock, then the set's (pending_file_close); never the reverse. */
static bool dir_empty(int fd)
{
	int dfd = dup(fd);
	struct dirent *de;
	bool empty = true;
	DIR *d;

	if (dfd < 0 || !(d = fdopendir(dfd))) {
		if (dfd >= 0)
			close(dfd);
		return false;
	}
	rewinddir(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			empty = false;
			break;
		}
	closedir(d);
	return empty;
}

int pending_rmdir(struct pending_stage *ps, const char *rel)
{
	bool committing;

	if (*rel)
		return sys(unlinkat(ps->treefd, rel, AT_REMOVEDIR));
	pthread_mutex_lock(&ps->lock);
	committing = ps->state == PS_COMMITTING;
	pthread_mutex_unlock(&ps->lock);
	if (committing)
		return -EBUSY;
	if (!dir_empty(ps->treefd))
		return -ENOTEMPTY;
	ps_retire(ps);
	return 0;
}

int pending_unlink(struct pending_stage *ps, const char *rel)
{
	drop_hints_at(ps, rel);
	return sys(unlinkat(ps->treefd, rel, 0));
}

int pending_chmod(struct pending_stage *ps, const char *rel, mode_t mode)
{
	/* Owner keeps read and write: the daemon must be able to check and hand on the file. */
	return sys(fchmodat(ps->treefd, at(rel), (mode & 07777) | 0600, 0));
}

int pending_utimens(struct pending_stage *ps, const char *rel, const struct timespec tv[2])
{
	return sys(utimensat(ps->treefd, at(rel), tv, AT_SYMLINK_NOFOLLOW));
}

/* Give rel a fresh inode with the same mode, empty: its old content may be a verified blob
 * (hard-linked under v/) that a writer still reads. */
static int fresh_inode(struct pending_stage *ps, const char *rel, int flags, mode_t mode)
{
	struct stat st;

	if (fstatat(ps->treefd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISREG(st.st_mode))
			return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		drop_hints_at(ps, rel);
		mode = st.st_mode & 07777;
		if (unlinkat(ps->treefd, rel, 0) < 0 && errno != ENOENT)
			return -errno;
	}
	int fd = openat(ps->treefd, rel, (flags & ~O_TRUNC) | O_CREAT | O_EXCL | O_CLOEXEC,
			mode | 0600);
	return fd < 0 ? -errno : fd;
}

/* A file whose inode was handed to the writer (hard-linked under v/) must never change: give
 * rel a private copy before it is written in place. */
/* Copy size bytes of in_fd into a new file ../copy.N beside the tree (ps's own folder):
 * copy_file_range, or read and write where the cache dir's file system cannot. *ret_name gets
 * the name relative to the tree. */
static int copy_out(struct pending_stage *ps, int in_fd, off_t size, mode_t mode, char *ret_name,
		    size_t n)
{
	char buf[65536];
	unsigned seq;
	off_t off = 0;
	int out, r = 0;

	pthread_mutex_lock(&ps->p->lock);
	seq = ++ps->p->seq;
	pthread_mutex_unlock(&ps->p->lock);
	snprintf(ret_name, n, "../copy.%u", seq);
	out = openat(ps->treefd, ret_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode | 0600);
	if (out < 0)
		return -errno;
	while (off < size) {
		off_t in_off = off;
		ssize_t k = copy_file_range(in_fd, &in_off, out, NULL, (size_t)(size - off), 0);
		if (k < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL ||
			      errno == ENOSYS)) {
			k = pread(in_fd, buf, sizeof(buf), off);
			if (k > 0 && write(out, buf, (size_t)k) != k)
				k = -1;
		}
		if (k <= 0) {
			r = k < 0 ? -errno : -EIO;
			break;
		}
		off += k;
	}
	if (close(out) < 0 && r == 0)
		r = -errno;
	if (r < 0)
		unlinkat(ps->treefd, ret_name, 0);
	return r;
}

static int private_copy(struct pending_stage *ps, const char *rel)
{
	char tmp[64];
	struct stat st;
	int in, r;

	if (fstatat(ps->treefd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISREG(st.st_mode) || st.st_nlink < 2)
		return 0;
	in = openat(ps->treefd, rel, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -errno;
	r = copy_out(ps, in, st.st_size, st.st_mode & 07777, tmp, sizeof(tmp));
	close(in);
	if (r == 0 && renameat(ps->treefd, tmp, ps->treefd, rel) < 0) {
		r = -errno;
		unlinkat(ps->treefd, tmp, 0);
	}
	return r;
}

/* True when the open file's inode was handed to the writer meanwhile (see private_copy). */
static bool handed_on(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && st.st_nlink > 1;
}

int pending_truncate(struct pending_stage *ps, const char *rel, off_t size)
{
	int fd;

	if (size == 0) {
		fd = fresh_inode(ps, rel, O_WRONLY, 0644);
		if (fd < 0)
			return fd;
		close(fd);
		return 0;
	}
	drop_hints_at(ps, rel);
	int r = private_copy(ps, rel);
	if (r < 0)
		return r;
	fd = openat(ps->treefd, rel, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = sys(ftruncate(fd, size));
	close(fd);
	return r;
}

int pending_rename(struct pending_stage *ps, const char *from, const char *to, unsigned flags,
		   struct sf_err *err)
{
	char digest[DIGEST_LEN];

	if (!*from || !*to)
		return -EBUSY;
	if (renameat2(ps->treefd, from, ps->treefd, to, flags) < 0)
		return -errno;
	if (classify(to, digest) == F_OTHER)
		return 0;
	return settle(ps, to, -1, err);
}

/* ---- files ---- */

static int open_counted(struct pending_stage *ps, const char *rel, int flags, mode_t mode,
			bool writable, struct pending_file **ret);

int pending_open(struct pending_stage *ps, const char *rel, int flags, mode_t mode,
		 struct pending_file **ret)
{
	bool writable = (flags & O_ACCMODE) != O_RDONLY;

	if (!*rel)
		return -EISDIR;
	if (!rel_ok(rel))
		return -ENAMETOOLONG;
	/* Counted before anything is made in the folder: a check-mode stage ends with its last
	 * open file, and one that has ended takes no new file (the caller starts another). */
	pthread_mutex_lock(&ps->lock);
	if (ps->state == PS_DONE && ps->existing) {
		pthread_mutex_unlock(&ps->lock);
		return -EAGAIN;
	}
	ps->opens++;
	pthread_mutex_unlock(&ps->lock);
	int r = open_counted(ps, rel, flags, mode, writable, ret);
	if (r < 0) {
		pthread_mutex_lock(&ps->lock);
		ps->opens--;
		pthread_mutex_unlock(&ps->lock);
	}
	return r;
}

static int open_counted(struct pending_stage *ps, const char *rel, int flags, mode_t mode,
			bool writable, struct pending_file **ret)
{
	struct pending_file *pf;
	struct stat st;
	int fd;

	flags &= O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_NOFOLLOW;
	/* The daemon reads every file back to check it: open read-write underneath. */
	int sysflags = (writable ? O_RDWR : O_RDONLY) | (flags & (O_CREAT | O_EXCL | O_NOFOLLOW)) |
		       O_CLOEXEC;
	if (writable && (flags & O_TRUNC) && !(flags & O_EXCL)) {
		fd = fresh_inode(ps, rel, sysflags & ~O_CREAT, mode & 07777);
		if (fd < 0)
			return fd;
	} else {
		if (writable && (fd = private_copy(ps, rel)) < 0)
			return fd;
		fd = openat(ps->treefd, rel, sysflags, (mode & 07777) | 0600);
		if (fd < 0)
			return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EISDIR; /* O_RDWR on a directory fails before: only odd file types here */
	}
	pf = calloc(1, sizeof(*pf));
	if (!pf || (writable && !(pf->dg = digest_new()))) {
		free(pf);
		close(fd);
		return -ENOMEM;
	}
	pf->fd = fd;
	pf->writable = writable;
	pf->ino = st.st_ino;
	pf->seq = writable && st.st_size == 0;
	pf->wrote = writable; /* a file created empty and closed is checked too */
	snprintf(pf->rel, sizeof(pf->rel), "%s", rel);
	pthread_mutex_init(&pf->lock, NULL);
	pthread_mutex_lock(&ps->p->lock);
	ps->refs++;
	pthread_mutex_unlock(&ps->p->lock);
	if (writable)
		count_writer(ps, st.st_ino, +1);
	pf->ps = ps;
	*ret = pf;
	return 0;
}

ssize_t pending_file_pread(struct pending_file *pf, void *buf, size_t len, off_t off)
{
	ssize_t n = pread(pf->fd, buf, len, off);
	return n < 0 ? -errno : n;
}

ssize_t pending_file_pwrite(struct pending_file *pf, const void *buf, size_t len, off_t off)
{
	ssize_t n;

	if (!pf->writable)
		return -EBADF;
	if (handed_on(pf->fd))
		return -EBUSY; /* checked and handed on: write a new file instead */
	pthread_mutex_lock(&pf->lock);
	n = pwrite(pf->fd, buf, len, off);
	if (n < 0) {
		n = -errno;
	} else {
		pf->wrote = true;
		if (pf->seq && (uint64_t)off == pf->next_off) {
			digest_update(pf->dg, buf, (size_t)n);
			pf->next_off += (uint64_t)n;
		} else {
			pf->seq = false;
		}
	}
	pthread_mutex_unlock(&pf->lock);
	return n;
}

int pending_file_truncate(struct pending_file *pf, off_t size)
{
	int r;

	if (handed_on(pf->fd))
		return -EBUSY;
	pthread_mutex_lock(&pf->lock);
	r = sys(ftruncate(pf->fd, size));
	if (r == 0) {
		pf->wrote = true;
		if ((uint64_t)size != pf->next_off)
			pf->seq = size == 0 && pf->next_off == 0;
	}
	pthread_mutex_unlock(&pf->lock);
	return r;
}

int pending_file_fstat(struct pending_file *pf, struct stat *ret)
{
	return sys(fstat(pf->fd, ret));
}

int pending_file_flush(struct pending_file *pf, struct sf_err *err)
{
	struct pending_stage *ps = pf->ps;
	struct stat st, here;
	char digest[DIGEST_LEN];
	bool settle_it;
	int r;

	pthread_mutex_lock(&pf->lock);
	if (pf->sticky < 0 || !pf->wrote) {
		r = pf->sticky;
		if (r < 0 && err)
			*err = pf->sticky_err;
		pthread_mutex_unlock(&pf->lock);
		return r;
	}
	pf->wrote = false;
	if (fstat(pf->fd, &st) < 0) {
		r = -errno;
		goto sticky;
	}
	/* Written in order from 0 to the end: the digest is known, for a rename later too. */
	if (pf->seq && pf->next_off == (uint64_t)st.st_size && count_writer(ps, st.st_ino, 0) == 1) {
		digest_final(pf->dg, digest);
		add_hint(ps, &st, digest);
	}
	pf->seq = false;
	settle_it = fstatat(ps->treefd, pf->rel, &here, AT_SYMLINK_NOFOLLOW) == 0 &&
		    here.st_ino == st.st_ino;
	r = settle_it ? settle(ps, pf->rel, pf->fd, err) : 0;
sticky:
	if (r < 0) {
		pf->sticky = r;
		if (err)
			pf->sticky_err = *err;
	}
	pthread_mutex_unlock(&pf->lock);
	return r;
}

int pending_file_error(struct pending_file *pf, struct sf_err *err)
{
	int r;

	pthread_mutex_lock(&pf->lock);
	r = pf->sticky;
	if (r < 0 && err)
		*err = pf->sticky_err;
	pthread_mutex_unlock(&pf->lock);
	return r;
}

/* Whether any non-directory is left under the folder dirfd. */
static bool tree_has_files(int dirfd)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	bool found = false;
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return true; /* cannot tell: keep it */
	}
	while (!found && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type != DT_DIR) {
			found = true;
		} else {
			int sub = openat(fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			found = sub < 0 || tree_has_files(sub);
			if (sub >= 0)
				close(sub);
		}
	}
	closedir(d);
	return found;
}

void pending_file_close(struct pending_file *pf)
{
	struct pending_stage *ps;
	bool last;

	if (!pf)
		return;
	ps = pf->ps;
	if (pf->writable)
		count_writer(ps, pf->ino, -1);
	/* A check over an existing stage ends with its last open file once its folder holds no
	 * file (checked files leave it; rsync's temporary files wait there for their rename) and
	 * nothing was unlinked from the stored stage (a running rm -r). One hold decides and
	 * ends it, so an open racing in gets -EAGAIN rather than a file in a folder that goes. */
	pthread_mutex_lock(&ps->lock);
	last = --ps->opens == 0 && ps->existing && ps->state == PS_OPEN && !ps->nwhiteouts &&
	       !tree_has_files(ps->treefd);
	if (last) {
		/* Ended and out of the set in one step: the next lookup starts a new check. */
		ps->state = PS_DONE;
		pthread_mutex_lock(&ps->p->lock);
		last = ps_unlist_locked(ps->p, ps);
		pthread_mutex_unlock(&ps->p->lock);
	}
	pthread_mutex_unlock(&ps->lock);
	if (last)
		ps_cleanup(ps);
	close(pf->fd);
	digest_free(pf->dg);
	pthread_mutex_destroy(&pf->lock);
	pending_stage_unref(pf->ps);
	free(pf);
}

void pending_free(struct pending *p, pending_dropped_fn dropped, void *ud)
{
	if (!p)
		return;
	for (;;) {
		struct pending_stage *ps = NULL;
		char missing[200] = "";
		pthread_mutex_lock(&p->lock);
		if (p->n) {
			ps = p->v[p->n - 1];
			ps->refs++;
		}
		pthread_mutex_unlock(&p->lock);
		if (!ps)
			break;
		if (dropped && !ps->existing) {
			struct sf_err e = {0};
			pthread_mutex_lock(&ps->lock);
			if (layout_state(ps, missing, sizeof(missing), NULL, NULL, &e) < 0)
				snprintf(missing, sizeof(missing), "%s", err_msg(&e, e.code));
			pthread_mutex_unlock(&ps->lock);
			dropped(ud, ps->project, ps->stage, missing[0] ? missing : "its commit");
		}
		ps_retire(ps);
		pending_stage_unref(ps);
	}
	rm_rf_at(AT_FDCWD, p->path);
	close(p->dirfd);
	close(p->lockfd);
	free(p->v);
	free(p->path);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
