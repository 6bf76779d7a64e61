#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oci.h"
#include "stagefs.h"

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct sf_err err = {0};
	struct node n;
	int r = stagefs_resolve(path, &n, &err);

	if (r < 0)
		return stagefs_fail(path, r, &err);
	if (n.kind == N_PENDING && (r = pending_stat(n.ps, n.rel, st)) < 0) {
		stagefs_node_done(&n);
		return r;
	}
	stagefs_fill_stat(&n, st);
	stagefs_node_done(&n);
	return 0;
}

static int add_dir(void *buf, fuse_fill_dir_t filler, const char *name, const struct node *n)
{
	struct stat st;

	stagefs_fill_stat(n, &st);
	return filler(buf, name, &st, 0, FUSE_FILL_DIR_PLUS);
}

struct pending_dirents {
	void *buf;
	fuse_fill_dir_t filler;
	const struct node *parent;
	const struct stage_list *listed;
	bool by_project_root;
	bool full;
};

/* A pending stage's folder entry, unless the storage lists the stage already. */
static int add_pending_stage(void *ud, const char *project, const char *stage)
{
	struct pending_dirents *d = ud;
	struct stage_info have;
	const char *name = d->by_project_root ? project : stage;
	struct node child = {.kind = d->by_project_root ? N_PROJECT : N_STAGE};

	if (stage_list_find(d->listed, project, d->by_project_root ? NULL : stage, &have) == 0)
		return 0;
	if (d->by_project_root) {
		for (size_t i = 0; i < d->listed->n; i++)
			if (strcmp(d->listed->v[i].project, project) == 0)
				return 0;
	}
	child.info.unique_ms = child.newest_ms = (uint64_t)stagefs_ctx()->mounted.tv_sec * 1000;
	d->full = add_dir(d->buf, d->filler, name, &child) != 0;
	return d->full;
}

static int add_pending_entry(void *ud, const char *name, const struct stat *st)
{
	struct pending_dirents *d = ud;
	struct stat s = *st;

	s.st_uid = stagefs_ctx()->uid;
	s.st_gid = stagefs_ctx()->gid;
	return d->filler(d->buf, name, &s, 0, FUSE_FILL_DIR_PLUS);
}

/* A stored file that a copy or rm -r removed from this view (pending.h: whiteouts). */
static bool hidden(const struct node *n, const char *rel)
{
	return n->ps && pending_stage_checks_existing(n->ps) && pending_is_whiteout(n->ps, rel);
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct stagefs *f = stagefs_ctx();
	struct sf_err err = {0};
	struct stage_list l = {0};
	struct node n, child;
	int r = stagefs_resolve(path, &n, &err);

	if (r < 0)
		return stagefs_fail(path, r, &err);
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	switch (n.kind) {
	case N_PENDING: {
		struct pending_dirents d = {.buf = buf, .filler = filler};
		r = pending_readdir(n.ps, n.rel, add_pending_entry, &d);
		break;
	}
	case N_ROOT:
	case N_PROJECT: {
		bool root = n.kind == N_ROOT && f->by_project && !f->project;
		r = storage_list(f->st, &l, &err);
		if (r < 0)
			break;
		struct pending_dirents d = {.buf = buf, .filler = filler, .listed = &l,
					    .by_project_root = root};
		pending_foreach(f->pending, root ? NULL : n.project, add_pending_stage, &d);
		if (root) {
			pthread_mutex_lock(&f->lock);
			for (size_t i = 0; i < f->n_made && !d.full; i++) {
				d.by_project_root = true;
				add_pending_stage(&d, f->made_projects[i], "");
			}
			pthread_mutex_unlock(&f->lock);
		}
		for (size_t i = 0; i < l.n; i++) {
			const struct stage_info *s = &l.v[i];
			child = (struct node){.info = *s};
			if (n.kind == N_ROOT && f->by_project && !f->project) {
				/* One entry per project, with its newest stage time. */
				size_t j = i;
				child.kind = N_PROJECT;
				child.newest_ms = s->unique_ms;
				while (j + 1 < l.n && strcmp(l.v[j + 1].project, s->project) == 0) {
					j++;
					if (l.v[j].unique_ms > child.newest_ms)
						child.newest_ms = l.v[j].unique_ms;
				}
				i = j;
				if (!name_project_valid(s->project))
					continue;
				if (add_dir(buf, filler, s->project, &child))
					break;
				continue;
			}
			if (strcmp(s->project, n.project) != 0)
				continue;
			child.kind = N_STAGE;
			if (add_dir(buf, filler, s->name, &child))
				break;
		}
		break;
	}
	case N_STAGE:
		child = n;
		child.kind = N_LAYOUT;
		if (!hidden(&n, "oci-layout"))
			add_dir(buf, filler, "oci-layout", &child);
		child.kind = N_BLOBS;
		if (!hidden(&n, "blobs"))
			add_dir(buf, filler, "blobs", &child);
		/* index.json's size needs the layout: let getattr fetch it. */
		if (!hidden(&n, "index.json"))
			filler(buf, "index.json", NULL, 0, 0);
		break;
	case N_BLOBS:
		child = n;
		child.kind = N_SHA256;
		if (!hidden(&n, "blobs/sha256"))
			add_dir(buf, filler, "sha256", &child);
		break;
	case N_SHA256:
		for (size_t i = 0; i < n.layout->nblobs; i++) {
			char rel[DIGEST_LEN + 16];
			child = n;
			child.kind = N_BLOB;
			child.blob = &n.layout->blobs[i];
			snprintf(rel, sizeof(rel), "blobs/sha256/%s", child.blob->digest + 7);
			if (hidden(&n, rel))
				continue;
			if (add_dir(buf, filler, n.layout->blobs[i].digest + 7, &child))
				break;
		}
		break;
	default:
		r = -ENOTDIR;
	}
	stage_list_done(&l);
	stagefs_node_done(&n);
	return r < 0 ? stagefs_fail(path, r, &err) : 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct sf_err err = {0};
	struct open_file *of;
	struct node n;
	int r;

	r = stagefs_resolve(path, &n, &err);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	if (n.kind == N_PENDING || (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		r = stagefs_open_write(path, &n, fi);
		stagefs_node_done(&n);
		return r;
	}
	if (n.kind != N_LAYOUT && n.kind != N_INDEX && n.kind != N_BLOB) {
		stagefs_node_done(&n);
		return -EISDIR;
	}
	of = calloc(1, sizeof(*of));
	if (!of) {
		stagefs_node_done(&n);
		return -ENOMEM;
	}
	of->layout = n.layout; /* moved */
	n.layout = NULL;
	if (n.kind == N_LAYOUT) {
		of->bytes = OCI_LAYOUT_FILE;
		of->size = strlen(OCI_LAYOUT_FILE);
	} else if (n.kind == N_INDEX) {
		of->bytes = of->layout->index_json;
		of->size = of->layout->index_len;
	} else if (n.blob->data) {
		of->bytes = n.blob->data;
		of->size = n.blob->size;
	} else {
		of->size = n.blob->size;
		r = blobcache_open(stagefs_ctx()->blobs, stagefs_ctx()->st, n.project, n.info.name, n.blob,
				   &of->reader, &err);
		if (r == -ENOENT)
			r = -EIO; /* the file was just found: its content going missing is I/O */
		if (r < 0) {
			stage_layout_unref(of->layout);
			free(of);
			stagefs_node_done(&n);
			return stagefs_fail(path, r, &err);
		}
	}
	/* A blob's content never changes under its name: let the kernel keep its pages. A stage
	 * removed and committed again may have another index.json. */
	fi->keep_cache = n.kind == N_BLOB;
	fi->fh = (uint64_t)(uintptr_t)of;
	stagefs_node_done(&n); /* the layout moved to the open file; a pending stage's ref goes */
	return 0;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
	struct sf_err err = {0};
	size_t done = 0;

	if (off < 0)
		return -EINVAL;
	if (of->pf) {
		ssize_t n = pending_file_pread(of->pf, buf, size, off);
		return n < 0 ? (int)n : (int)n;
	}
	if ((uint64_t)off >= of->size)
		return 0;
	if (size > of->size - (uint64_t)off)
		size = (size_t)(of->size - (uint64_t)off);
	if (of->bytes) {
		memcpy(buf, of->bytes + off, size);
		return (int)size;
	}
	while (done < size) {
		ssize_t n = blobcache_pread(of->reader, buf + done, size - done,
					    (uint64_t)off + done, &err);
		if (n == -ENOENT)
			n = -EIO; /* the storage lost a blob it listed: not "no such file" */
		if (n < 0)
			return stagefs_fail(path, (int)n, &err);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int)done;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;

	blobcache_close(of->reader);
	pending_file_close(of->pf);
	stage_layout_unref(of->layout);
	free(of);
	return 0;
}

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	return 0;
}

static int op_statfs(const char *path, struct statvfs *sv)
{
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 4096;
	sv->f_namemax = 255;
	return 0;
}

/* A stage folder says what it is without a read of its blobs: user.stagefs.image_id (the
 * config digest; an image index's digest) and user.stagefs.size (bytes, as the storage
 * measures them). For stagectl's listings and checks, and for `getfattr -d`. */
#define XATTR_IMAGE_ID "user.stagefs.image_id"
#define XATTR_SIZE "user.stagefs.size"

static int op_getxattr(const char *path, const char *name, char *value, size_t size)
{
	struct sf_err err = {0};
	struct stage_summary sum;
	char text[DIGEST_LEN + 24];
	struct node n;
	size_t len;
	int r;

	if (strcmp(name, XATTR_IMAGE_ID) != 0 && strcmp(name, XATTR_SIZE) != 0)
		return -ENODATA;
	r = stagefs_resolve(path, &n, &err);
	if (r < 0)
		return stagefs_fail(path, r, &err);
	if (n.kind != N_STAGE) {
		stagefs_node_done(&n);
		return -ENODATA;
	}
	r = storage_summary(stagefs_ctx()->st, n.project, n.info.name, &sum, &err);
	stagefs_node_done(&n);
	if (r < 0)
		return stagefs_fail(path, r == -ENOENT ? -EIO : r, &err);
	if (strcmp(name, XATTR_IMAGE_ID) == 0)
		len = (size_t)snprintf(text, sizeof(text), "%s", sum.image_id);
	else
		len = (size_t)snprintf(text, sizeof(text), "%llu", (unsigned long long)sum.size);
	if (size == 0)
		return (int)len;
	if (size < len)
		return -ERANGE;
	memcpy(value, text, len);
	return (int)len;
}

static int op_listxattr(const char *path, char *list, size_t size)
{
	static const char names[] = XATTR_IMAGE_ID "\0" XATTR_SIZE "\0";
	struct sf_err err = {0};
	struct node n;
	int r = stagefs_resolve(path, &n, &err);

	if (r < 0)
		return stagefs_fail(path, r, &err);
	r = n.kind == N_STAGE ? (int)sizeof(names) - 1 : 0; /* the literal's own NUL is no name */
	stagefs_node_done(&n);
	if (size == 0 || r == 0)
		return r;
	if (size < (size_t)r)
		return -ERANGE;
	memcpy(list, names, (size_t)r);
	return r;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 0;
	cfg->nullpath_ok = 0;
	/* No cached entries: stage folders come and go by commits, drops and removals here and
	 * in other mounts, and a stale entry would answer for a folder that is gone (EISDIR
	 * from rm). Lookups are cheap: listings are cached in core. */
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 0;
	/* An unlinked open file goes at once; no .fuse_hidden renames into pending stages. */
	cfg->hard_remove = 1;
	struct stagefs *f = stagefs_ctx();
	f->fuse = fuse_get_context()->fuse;
	pending_on_retire(f->pending, stagefs_forget_stage, f);
	/* Larger reads: fewer round trips through the kernel for cp and skopeo. */
	conn->max_read = 0;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	return fuse_get_context()->private_data;
}

const struct fuse_operations stagefs_ops = {
    .init = op_init,
    .getattr = op_getattr,
    .readdir = op_readdir,
    .opendir = op_opendir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
    .mkdir = stagefs_op_mkdir,
    .rmdir = stagefs_op_rmdir,
    .unlink = stagefs_op_unlink,
    .rename = stagefs_op_rename,
    .create = stagefs_op_create,
    .write = stagefs_op_write,
    .flush = stagefs_op_flush,
    .fsync = stagefs_op_fsync,
    .chmod = stagefs_op_chmod,
    .chown = stagefs_op_chown,
    .truncate = stagefs_op_truncate,
    .utimens = stagefs_op_utimens,
    .symlink = stagefs_op_symlink,
    .link = stagefs_op_link,
    .setxattr = stagefs_op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = stagefs_op_removexattr,
};
