/* The write side of the tree (DESIGN.md section 4): stage folders written into the mount become
 * pending stages (core/pending.h) and are committed through the storage's writer; rm -r
 * removes a stage; werf's switch block refuses changes to a :local project. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "name.h"
#include "stagefs.h"
#include "werf.h"

/* EROFS while werf's switch block names the project (DESIGN.md section 5). */
static int blocked(const char *project)
{
	struct stagefs *f = stagefs_ctx();

	if (!f->st->switch_block || !project[0])
		return 0;
	return werf_block_active(f->werf_home, project) ? -EROFS : 0;
}

static bool list_has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

static int list_add(char ***v, size_t *n, const char *s)
{
	char **nv;

	if (list_has(*v, *n, s))
		return 0;
	nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	if (!(nv[*n] = strdup(s)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

static bool list_take(char **v, size_t *n, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(v[i], s) == 0) {
			free(v[i]);
			v[i] = v[--*n];
			return true;
		}
	return false;
}

/* The kernel keeps no entries (entry_timeout 0, fs/ops.c), but it keeps attributes for a
 * second: a stage folder committed, dropped or removed, and its index.json (which another
 * commit under the same name may change), are refreshed now. Inode invalidation takes no
 * folder lock, so it is safe from inside any request. */
void stagefs_forget_stage(void *ud, const char *project, const char *stage)
{
	struct stagefs *f = ud;
	char path[NAME_PROJECT_MAX + NAME_STAGE_MAX + 16];
	int n;

	if (!f->fuse)
		return;
	if (f->by_project && !f->project)
		n = snprintf(path, sizeof(path), "/%s/%s", project, stage);
	else
		n = snprintf(path, sizeof(path), "/%s", stage);
	fuse_invalidate_path(f->fuse, path);
	snprintf(path + n, sizeof(path) - (size_t)n, "/index.json");
	fuse_invalidate_path(f->fuse, path);
}

bool stagefs_made_project(const char *project)
{
	struct stagefs *f = stagefs_ctx();
	bool r;

	pthread_mutex_lock(&f->lock);
	r = list_has(f->made_projects, f->n_made, project);
	pthread_mutex_unlock(&f->lock);
	return r;
}

/* The pending stage a path inside an existing stage folder writes into: over a committed
 * stage, a check-mode one is started (DESIGN.md section 4.6). */
static int target_stage(const char *path, const struct where *w, struct pending_stage **ret,
			struct sf_err *err)
{
	struct stagefs *f = stagefs_ctx();
	struct stage_layout *layout = NULL;
	struct stage_info info;
	int r;

	for (int tries = 0; tries < 2; tries++) {
		*ret = pending_stage_find(f->pending, w->project, w->stage);
		if (*ret)
			return 0;
		r = storage_find(f->st, w->project, w->stage, &info, err);
		if (r == 0)
			r = storage_describe(f->st, w->project, w->stage, &layout, err);
		if (r < 0)
			return r;
		r = pending_stage_start(f->pending, w->project, w->stage, NULL, layout, ret, err);
		stage_layout_unref(layout);
		if (r != -EEXIST)
			return r;
	}
	return -EBUSY;
}

/* A new stage folder: a pending stage with the storage's writer. */
static int make_stage(const struct where *w, struct sf_err *err)
{
	struct stagefs *f = stagefs_ctx();
	struct stage_writer *writer = NULL;
	struct pending_stage *ps = NULL;
	struct stage_info info;
	int r;

	if (!name_is_stage(w->stage))
		return err_set(err, -EINVAL,
			       "%s: a stage folder is named SIGNATURE-UNIQUEID (56 lowercase hex, "
			       "'-', creation time in ms)",
			       w->stage);
	r = storage_find(f->st, w->project, w->stage, &info, err);
	if (r == 0)
		return -EEXIST;
	if (r != -ENOENT)
		return r;
	r = storage_write_begin(f->st, w->project, w->stage, &writer, err);
	if (r < 0)
		return r;
	r = pending_stage_start(f->pending, w->project, w->stage, writer, NULL, &ps, err);
	pending_stage_unref(ps);
	return r;
}

int stagefs_op_mkdir(const char *path, mode_t mode)
{
	struct stagefs *f = stagefs_ctx();
	struct sf_err err = {0};
	struct pending_stage *ps = NULL;
	struct where w;
	struct node n;
	int r = stagefs_where(path, &w);

	if (r < 0)
		return r == -EPERM ? -EEXIST : r;
	if ((r = blocked(w.project)) < 0)
		return r;
	if (w.project_level) {
		if (!name_project_valid(w.project))
			return stagefs_fail(path, err_set(&err, -EINVAL,
							  "%s: not a werf project name",
							  w.project),
					    &err);
		r = stagefs_resolve(path, &n, &err);
		stagefs_node_done(&n);
		if (r == 0)
			return -EEXIST;
		if (!f->st->ops->write_begin)
			return -EROFS;
		pthread_mutex_lock(&f->lock);
		r = list_add(&f->made_projects, &f->n_made, w.project);
		pthread_mutex_unlock(&f->lock);
		return r;
	}
	if (!w.rel[0]) {
		r = make_stage(&w, &err);
		return r < 0 && r != -EEXIST ? stagefs_fail(path, r, &err) : r;
	}
	r = stagefs_resolve(path, &n, &err);
	if (r == 0 && n.kind == N_PENDING) {
		r = pending_mkdir(n.ps, n.rel, mode);
		stagefs_node_done(&n);
		return r;
	}
	stagefs_node_done(&n);
	if (r == 0)
		return -EEXIST;
	r = target_stage(path, &w, &ps, &err);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	r = pending_mkdir(ps, w.rel, mode);
	pending_stage_unref(ps);
	return r;
}

static int open_in_stage(const char *path, const struct where *w, int flags, mode_t mode,
			 struct fuse_file_info *fi)
{
	struct sf_err err = {0};
	struct pending_stage *ps = NULL;
	struct open_file *of;
	int r;

	if (!w->rel[0])
		return -EISDIR;
	of = calloc(1, sizeof(*of));
	if (!of)
		return -ENOMEM;
	/* A check over an existing stage that just ended answers -EAGAIN: start another. */
	for (int tries = 0; tries < 3; tries++) {
		r = target_stage(path, w, &ps, &err);
		if (r < 0) {
			free(of);
			return stagefs_fail(path, r, &err);
		}
		r = pending_open(ps, w->rel, flags, mode, &of->pf);
		pending_stage_unref(ps);
		if (r != -EAGAIN)
			break;
	}
	if (r < 0) {
		free(of);
		return r;
	}
	fi->fh = (uint64_t)(uintptr_t)of;
	fi->direct_io = 1; /* pending files change size: no stale pages or sizes */
	return 0;
}

int stagefs_open_write(const char *path, struct node *n, struct fuse_file_info *fi)
{
	struct where w;
	int flags = fi->flags, r = stagefs_where(path, &w);
	bool write = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);

	if (r < 0)
		return -EISDIR;
	if (write && (r = blocked(w.project)) < 0)
		return r;
	/* A committed file opened for writing: the copy's own version is checked, not kept. */
	if (n->kind != N_PENDING && write)
		flags |= O_CREAT | O_TRUNC;
	return open_in_stage(path, &w, flags, 0644, fi);
}

int stagefs_op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct sf_err err = {0};
	struct where w;
	int r = stagefs_where(path, &w);

	if (r == 0 && (w.project_level || !w.rel[0]))
		r = err_set(&err, -EINVAL, "only stage folders (SIGNATURE-UNIQUEID) can be made here");
	if (r < 0)
		return stagefs_fail(path, r, &err);
	if ((r = blocked(w.project)) < 0)
		return r;
	return open_in_stage(path, &w, fi->flags | O_CREAT, mode, fi);
}

static struct pending_file *pf_of(struct fuse_file_info *fi)
{
	return fi ? ((struct open_file *)(uintptr_t)fi->fh)->pf : NULL;
}

int stagefs_op_write(const char *path, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct pending_file *pf = pf_of(fi);
	ssize_t n;

	struct where w;
	int r;

	if (!pf)
		return -EBADF;
	if (stagefs_where(path, &w) == 0 && (r = blocked(w.project)) < 0)
		return r;
	n = pending_file_pwrite(pf, buf, size, off);
	return (int)n;
}

int stagefs_op_flush(const char *path, struct fuse_file_info *fi)
{
	struct pending_file *pf = pf_of(fi);
	struct sf_err err = {0};
	int r;

	struct where w;

	if (!pf)
		return 0;
	/* The close that would commit is a change too (DESIGN.md section 5). */
	if (stagefs_where(path, &w) == 0 && (r = blocked(w.project)) < 0)
		return r;
	r = pending_file_flush(pf, &err);
	return r < 0 ? stagefs_fail(path, r, &err) : 0;
}

/* Reports what an earlier check found; the check itself waits for close(), when the file is
 * whole (an fsync of a blob being written is not the end of it). */
int stagefs_op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct pending_file *pf = pf_of(fi);
	return pf ? pending_file_error(pf, NULL) : 0;
}

int stagefs_op_rename(const char *from, const char *to, unsigned int flags)
{
	struct sf_err err = {0};
	struct pending_stage *ps = NULL;
	struct where a, b;
	int r;

	if (stagefs_where(from, &a) < 0 || stagefs_where(to, &b) < 0 || a.project_level ||
	    b.project_level || !a.rel[0] || !b.rel[0] || strcmp(a.project, b.project) != 0 ||
	    strcmp(a.stage, b.stage) != 0)
		return -EXDEV; /* a stage is one folder: tools copy across folders instead */
	if ((r = blocked(a.project)) < 0)
		return r;
	r = target_stage(from, &a, &ps, &err);
	if (r < 0)
		return stagefs_fail(from, r, &err);
	r = pending_rename(ps, a.rel, b.rel, flags, &err);
	pending_stage_unref(ps);
	return r < 0 && r != -ENOENT && r != -EEXIST ? stagefs_fail(to, r, &err) : r;
}

int stagefs_op_unlink(const char *path)
{
	struct sf_err err = {0};
	struct where w;
	struct node n;
	int r = stagefs_where(path, &w);

	if (r == 0 && (r = blocked(w.project)) < 0)
		return r;
	r = stagefs_resolve(path, &n, &err);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	if (w.project_level || !w.rel[0] || (n.kind != N_PENDING && n.depth <= 0)) {
		stagefs_node_done(&n);
		return -EISDIR;
	}
	if (n.kind == N_PENDING) {
		r = pending_unlink(n.ps, n.rel);
	} else if (n.kind == N_LAYOUT || n.kind == N_BLOB || n.kind == N_INDEX) {
		/* Gone from this view so tools may write it again (tar -x unlinks first); the
		 * storage keeps it. */
		struct pending_stage *ps = NULL;
		r = target_stage(path, &w, &ps, &err);
		if (r == 0)
			r = pending_whiteout(ps, w.rel);
		pending_stage_unref(ps);
	} else {
		r = -EISDIR;
	}
	stagefs_node_done(&n);
	return r;
}

/* rmdir of blobs/sha256 or blobs of a stored stage (rm -r on its way to the stage folder):
 * once everything in it was unlinked, it looks gone too; nothing stored changes. */
static int remove_folder(const char *path, const struct where *w, const struct node *n)
{
	struct sf_err err = {0};
	struct pending_stage *ps = NULL;
	char rel[DIGEST_LEN + 32];
	int r = target_stage(path, w, &ps, &err);

	if (r < 0)
		return stagefs_fail(path, r, &err);
	if (n->kind == N_BLOBS) {
		if (!pending_is_whiteout(ps, "blobs/sha256"))
			r = -ENOTEMPTY;
	} else {
		for (size_t i = 0; i < n->layout->nblobs && r == 0; i++) {
			snprintf(rel, sizeof(rel), "blobs/sha256/%s", n->layout->blobs[i].digest + 7);
			if (!pending_is_whiteout(ps, rel))
				r = -ENOTEMPTY;
		}
	}
	if (r == 0)
		r = pending_whiteout(ps, n->kind == N_BLOBS ? "blobs" : "blobs/sha256");
	pending_stage_unref(ps);
	return r;
}

static int remove_stage(const char *path, const struct where *w)
{
	struct stagefs *f = stagefs_ctx();
	struct sf_err err = {0};
	struct pending_stage *ps;
	int r;

	ps = pending_stage_find(f->pending, w->project, w->stage);
	if (ps && !pending_stage_checks_existing(ps)) {
		r = pending_rmdir(ps, "");
		pending_stage_unref(ps);
		return r;
	}
	/* rm -r removed the stage's files and folders first (they look gone: whiteouts); an
	 * rmdir of a stage folder that still shows any of them is ENOTEMPTY, as anywhere. */
	if (!ps || !pending_is_whiteout(ps, "index.json") || !pending_is_whiteout(ps, "oci-layout") ||
	    !pending_is_whiteout(ps, "blobs")) {
		pending_stage_unref(ps);
		return -ENOTEMPTY;
	}
	pending_stage_drop(ps);
	pending_stage_unref(ps);
	r = storage_remove(f->st, w->project, w->stage, &err);
	stagefs_forget_stage(f, w->project, w->stage);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	stagefs_log("%s%s%s: stage removed", w->project, w->project[0] ? "/" : "", w->stage);
	return 0;
}

int stagefs_op_rmdir(const char *path)
{
	struct stagefs *f = stagefs_ctx();
	struct sf_err err = {0};
	struct stage_list l = {0};
	struct where w;
	struct node n;
	int r = stagefs_where(path, &w);

	if (r < 0)
		return -EBUSY;
	if ((r = blocked(w.project)) < 0)
		return r;
	if (w.project_level) {
		r = storage_list(f->st, &l, &err);
		if (r < 0)
			return stagefs_fail(path, r, &err);
		for (size_t i = 0; i < l.n && r == 0; i++)
			if (strcmp(l.v[i].project, w.project) == 0)
				r = -ENOTEMPTY;
		stage_list_done(&l);
		if (r < 0)
			return r;
		pthread_mutex_lock(&f->lock);
		list_take(f->made_projects, &f->n_made, w.project);
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	if (!w.rel[0])
		return remove_stage(path, &w);
	r = stagefs_resolve(path, &n, &err);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	if (n.kind == N_PENDING)
		r = pending_rmdir(n.ps, n.rel);
	else if (n.kind == N_BLOBS || n.kind == N_SHA256)
		r = remove_folder(path, &w, &n);
	else
		r = -ENOTDIR;
	stagefs_node_done(&n);
	return r;
}

/* Metadata changes: applied to pending files, accepted (and ignored) on committed ones, so
 * cp -a, rsync -a and tar finish; committed stages stay as the storage has them. */
static int meta_change(const char *path, int (*apply)(struct pending_stage *, const char *,
						       const void *),
		       const void *arg)
{
	struct sf_err err = {0};
	struct where w;
	struct node n;
	int r;

	if (stagefs_where(path, &w) == 0 && (r = blocked(w.project)) < 0)
		return r;
	r = stagefs_resolve(path, &n, &err);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	r = n.kind == N_PENDING && apply ? apply(n.ps, n.rel, arg) : 0;
	stagefs_node_done(&n);
	return r;
}

static int apply_chmod(struct pending_stage *ps, const char *rel, const void *arg)
{
	return pending_chmod(ps, rel, *(const mode_t *)arg);
}

static int apply_utimens(struct pending_stage *ps, const char *rel, const void *arg)
{
	return pending_utimens(ps, rel, arg);
}

int stagefs_op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return meta_change(path, apply_chmod, &mode);
}

int stagefs_op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	return meta_change(path, NULL, NULL);
}

int stagefs_op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	return meta_change(path, apply_utimens, tv);
}

int stagefs_op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct pending_file *pf = pf_of(fi);
	struct sf_err err = {0};
	struct where w;
	struct node n;
	int r;

	if (pf)
		return pending_file_truncate(pf, size);
	if (stagefs_where(path, &w) == 0 && (r = blocked(w.project)) < 0)
		return r;
	r = stagefs_resolve(path, &n, &err);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	r = n.kind == N_PENDING ? pending_truncate(n.ps, n.rel, size) : -EROFS;
	stagefs_node_done(&n);
	return r;
}

int stagefs_op_symlink(const char *target, const char *path)
{
	return -EPERM; /* an OCI layout holds regular files only */
}

int stagefs_op_link(const char *from, const char *to)
{
	return -EPERM;
}

int stagefs_op_setxattr(const char *path, const char *name, const char *value, size_t size,
			int flags)
{
	return -EOPNOTSUPP; /* cp -a and rsync -a go on without ACLs and xattrs */
}

int stagefs_op_removexattr(const char *path, const char *name)
{
	return -EOPNOTSUPP;
}
