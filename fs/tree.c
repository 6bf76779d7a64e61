/* The tree of DESIGN.md section 3: a path maps to a node, from the storage's listing and
 * layouts, and from the pending stages being written. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oci.h"
#include "stagefs.h"

struct stagefs *stagefs_ctx(void)
{
	return fuse_get_context()->private_data;
}

void stagefs_log(const char *fmt, ...)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char last[600];
	static time_t last_at;
	char msg[600];
	va_list ap;
	time_t now = time(NULL);

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&lock);
	if (strcmp(msg, last) != 0 || now - last_at >= 10) {
		fprintf(stderr, "stagefs: %s\n", msg);
		memcpy(last, msg, sizeof(last));
		last_at = now;
	}
	pthread_mutex_unlock(&lock);
}

int stagefs_fail(const char *path, int r, const struct sf_err *err)
{
	if (r != -ENOENT)
		stagefs_log("%s: %s", path, err_msg(err, r));
	return r;
}

void stagefs_node_done(struct node *n)
{
	stage_layout_unref(n->layout);
	n->layout = NULL;
	pending_stage_unref(n->ps);
	n->ps = NULL;
}

struct newest {
	const char *project;
	bool found;
};

static int saw_pending(void *ud, const char *project, const char *stage)
{
	((struct newest *)ud)->found = true;
	return 1;
}

/* Newest stage time of project; -ENOENT when it has none (and nothing is being written). */
static int find_project(const char *project, uint64_t *ret_newest, struct sf_err *err)
{
	struct stagefs *f = stagefs_ctx();
	struct stage_list l = {0};
	struct newest pend = {project, false};
	uint64_t newest = 0;
	bool found = false;
	int r;

	if (!name_project_valid(project))
		return -ENOENT;
	r = storage_list(f->st, &l, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < l.n; i++)
		if (strcmp(l.v[i].project, project) == 0) {
			found = true;
			if (l.v[i].unique_ms > newest)
				newest = l.v[i].unique_ms;
		}
	stage_list_done(&l);
	if (!found) {
		pending_foreach(f->pending, project, saw_pending, &pend);
		found = pend.found || stagefs_made_project(project);
		newest = (uint64_t)f->mounted.tv_sec * 1000;
	}
	*ret_newest = newest;
	return found ? 0 : -ENOENT;
}

int stagefs_where(const char *path, struct where *w)
{
	struct stagefs *f = stagefs_ctx();
	const char *p = path;
	int need = f->by_project && !f->project ? 2 : 1;

	*w = (struct where){.rel = ""};
	if (f->project)
		snprintf(w->project, sizeof(w->project), "%s", f->project);
	for (int i = 0; i < need; i++) {
		const char *s;
		size_t len;
		while (*p == '/')
			p++;
		if (!*p) {
			w->project_level = i == 1;
			return i == 0 ? -EPERM : 0; /* the root itself */
		}
		s = p;
		while (*p && *p != '/')
			p++;
		len = (size_t)(p - s);
		char *dst = i + 1 < need ? w->project : w->stage;
		size_t cap = i + 1 < need ? sizeof(w->project) : sizeof(w->stage);
		if (len >= cap)
			return -ENAMETOOLONG;
		memcpy(dst, s, len);
		dst[len] = '\0';
	}
	while (*p == '/')
		p++;
	w->rel = p;
	return 0;
}

int stagefs_resolve(const char *path, struct node *n, struct sf_err *err)
{
	struct stagefs *f = stagefs_ctx();
	char comp[3][80];
	size_t nc = 0;
	struct where w;
	int r = stagefs_where(path, &w);

	*n = (struct node){.depth = -1, .rel = ""};
	snprintf(n->project, sizeof(n->project), "%s", w.project);
	if (r == -EPERM) {
		n->kind = N_ROOT;
		return 0;
	}
	if (r < 0)
		return -ENOENT; /* a name no project or stage can have */
	if (f->by_project && !f->project) {
		r = find_project(w.project, &n->newest_ms, err);
		if (r < 0)
			return r;
		if (w.project_level) {
			n->kind = N_PROJECT;
			return 0;
		}
	}
	n->rel = w.rel;
	n->depth = 0;
	for (const char *p = w.rel; *p; n->depth++) {
		while (*p && *p != '/')
			p++;
		while (*p == '/')
			p++;
	}
	n->ps = pending_stage_find(f->pending, n->project, w.stage);
	if (n->ps) {
		struct stat st;
		snprintf(n->info.name, sizeof(n->info.name), "%s", w.stage);
		n->info.unique_ms = pending_stage_created_ms(n->ps);
		/* A new stage is all pending; over an existing one, only what was written. */
		if (!pending_stage_checks_existing(n->ps) ||
		    (n->depth > 0 && pending_stat(n->ps, n->rel, &st) == 0 && !S_ISDIR(st.st_mode))) {
			n->kind = N_PENDING;
			return 0;
		}
		if (n->depth > 0 && pending_is_whiteout(n->ps, n->rel)) {
			r = -ENOENT;
			goto fail;
		}
	}
	r = storage_find(f->st, n->project, w.stage, &n->info, err);
	if (r < 0)
		goto fail;
	if (n->depth == 0) {
		n->kind = N_STAGE;
		return 0;
	}
	/* The committed layout: oci-layout, index.json, blobs/sha256/HEX. */
	r = -ENOENT;
	for (const char *p = w.rel; *p;) {
		const char *s = p;
		size_t len;
		while (*p && *p != '/')
			p++;
		len = (size_t)(p - s);
		if (nc == 3 || len >= sizeof(comp[0]))
			goto fail;
		memcpy(comp[nc], s, len);
		comp[nc++][len] = '\0';
		while (*p == '/')
			p++;
	}
	if (nc == 1 && strcmp(comp[0], "oci-layout") == 0) {
		n->kind = N_LAYOUT;
		return 0;
	}
	if (nc == 1 && strcmp(comp[0], "blobs") == 0) {
		n->kind = N_BLOBS;
		return 0;
	}
	if (nc == 1 && strcmp(comp[0], "index.json") == 0)
		n->kind = N_INDEX;
	else if (nc >= 2 && strcmp(comp[0], "blobs") == 0 && strcmp(comp[1], "sha256") == 0)
		n->kind = nc == 2 ? N_SHA256 : N_BLOB;
	else
		goto fail;
	if (n->kind == N_BLOB && !name_hex64_valid(comp[2]))
		goto fail;
	r = storage_describe(f->st, n->project, n->info.name, &n->layout, err);
	if (r < 0)
		goto fail;
	if (n->kind == N_BLOB) {
		char digest[DIGEST_LEN];
		snprintf(digest, sizeof(digest), "sha256:%.64s", comp[2]);
		n->blob = stage_layout_find(n->layout, digest);
		if (!n->blob) {
			r = -ENOENT;
			goto fail;
		}
	}
	return 0;
fail:
	stagefs_node_done(n);
	return r;
}

static struct timespec ms_to_ts(uint64_t ms)
{
	return (struct timespec){.tv_sec = (time_t)(ms / 1000),
				 .tv_nsec = (long)(ms % 1000) * 1000000};
}

void stagefs_fill_stat(const struct node *n, struct stat *st)
{
	struct stagefs *f = stagefs_ctx();
	struct timespec t;

	memset(st, 0, sizeof(*st));
	st->st_uid = f->uid;
	st->st_gid = f->gid;
	switch (n->kind) {
	case N_ROOT:
	case N_PROJECT:
		/* Writable where stages can be made. */
		st->st_mode = S_IFDIR | (f->st->ops->write_begin ? 0755 : 0555);
		st->st_nlink = 2;
		break;
	case N_STAGE:
	case N_BLOBS:
	case N_SHA256:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		break;
	case N_LAYOUT:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)strlen(OCI_LAYOUT_FILE);
		break;
	case N_INDEX:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)n->layout->index_len;
		break;
	case N_BLOB:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)n->blob->size;
		break;
	case N_PENDING:
		if (pending_stat(n->ps, n->rel, st) == 0) {
			st->st_uid = f->uid;
			st->st_gid = f->gid;
			st->st_nlink = S_ISDIR(st->st_mode) ? 2 : 1;
			return;
		}
		st->st_mode = S_IFDIR | 0755;
		break;
	}
	if (n->kind == N_ROOT)
		t = f->mounted;
	else if (n->kind == N_PROJECT)
		t = ms_to_ts(n->newest_ms);
	else
		t = ms_to_ts(n->info.unique_ms);
	st->st_atim = st->st_mtim = st->st_ctim = t;
	st->st_blksize = 128 * 1024;
	st->st_blocks = (st->st_size + 511) / 512;
}
