#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "oci.h"
#include "stagefs.h"

enum kind { N_ROOT, N_PROJECT, N_STAGE, N_LAYOUT, N_INDEX, N_BLOBS, N_SHA256, N_BLOB };

struct node {
	enum kind kind;
	char project[NAME_PROJECT_MAX + 1];
	struct stage_info info;	     /* N_STAGE and below */
	uint64_t newest_ms;	     /* N_PROJECT: its newest stage */
	struct stage_layout *layout; /* N_INDEX, N_SHA256, N_BLOB */
	const struct layout_blob *blob;
};

struct open_file {
	struct stage_layout *layout; /* keeps the bytes of index.json and inline blobs alive */
	const char *bytes;	     /* in-memory content, or NULL when read from the cache */
	uint64_t size;
	struct blob_reader *reader;
};

static struct stagefs *fs(void)
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

/* Log a core failure once, at the edge, and pass its errno on. */
static int fail(const char *path, int r, const struct sf_err *err)
{
	if (r != -ENOENT)
		stagefs_log("%s: %s", path, err_msg(err, r));
	return r;
}

static void node_done(struct node *n)
{
	stage_layout_unref(n->layout);
	n->layout = NULL;
}

/* Newest stage time of project; -ENOENT when it has none. */
static int find_project(const char *project, uint64_t *ret_newest, struct sf_err *err)
{
	struct stage_list l = {0};
	uint64_t newest = 0;
	bool found = false;
	int r;

	if (!name_project_valid(project))
		return -ENOENT;
	r = storage_list(fs()->st, &l, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < l.n; i++)
		if (strcmp(l.v[i].project, project) == 0) {
			found = true;
			if (l.v[i].unique_ms > newest)
				newest = l.v[i].unique_ms;
		}
	stage_list_done(&l);
	*ret_newest = newest;
	return found ? 0 : -ENOENT;
}

/* Map a path to a node: only what exists resolves; stage contents need the layout. */
static int resolve(const char *path, struct node *n, struct sf_err *err)
{
	struct stagefs *f = fs();
	char comp[5][80];
	size_t nc = 0, base = 0;
	int r;

	*n = (struct node){0};
	for (const char *p = path; *p;) {
		const char *s;
		size_t len;
		while (*p == '/')
			p++;
		if (!*p)
			break;
		s = p;
		while (*p && *p != '/')
			p++;
		len = (size_t)(p - s);
		if (nc == 5 || len >= sizeof(comp[0]))
			return -ENOENT;
		memcpy(comp[nc], s, len);
		comp[nc][len] = '\0';
		nc++;
	}
	if (f->project)
		snprintf(n->project, sizeof(n->project), "%s", f->project);
	if (nc == 0) {
		n->kind = N_ROOT;
		return 0;
	}
	if (f->by_project && !f->project) {
		r = find_project(comp[0], &n->newest_ms, err);
		if (r < 0)
			return r;
		memcpy(n->project, comp[0], strlen(comp[0]) + 1); /* valid: <= 50 chars */
		if (nc == 1) {
			n->kind = N_PROJECT;
			return 0;
		}
		base = 1;
	}
	r = storage_find(f->st, n->project, comp[base], &n->info, err);
	if (r < 0)
		return r;
	if (nc == base + 1) {
		n->kind = N_STAGE;
		return 0;
	}
	const char *leaf = comp[base + 1];
	if (nc == base + 2 && strcmp(leaf, "oci-layout") == 0) {
		n->kind = N_LAYOUT;
		return 0;
	}
	if (nc == base + 2 && strcmp(leaf, "blobs") == 0) {
		n->kind = N_BLOBS;
		return 0;
	}
	if (strcmp(leaf, "index.json") == 0 && nc == base + 2)
		n->kind = N_INDEX;
	else if (strcmp(leaf, "blobs") == 0 && strcmp(comp[base + 2], "sha256") == 0)
		n->kind = nc == base + 3 ? N_SHA256 : N_BLOB;
	else
		return -ENOENT;
	if (n->kind == N_BLOB && (nc != base + 4 || !name_hex64_valid(comp[base + 3])))
		return -ENOENT;
	r = storage_describe(f->st, n->project, n->info.name, &n->layout, err);
	if (r < 0)
		return r;
	if (n->kind == N_BLOB) {
		char digest[DIGEST_LEN];
		snprintf(digest, sizeof(digest), "sha256:%s", comp[base + 3]);
		n->blob = stage_layout_find(n->layout, digest);
		if (!n->blob) {
			node_done(n);
			return -ENOENT;
		}
	}
	return 0;
}

static struct timespec ms_to_ts(uint64_t ms)
{
	return (struct timespec){.tv_sec = (time_t)(ms / 1000),
				 .tv_nsec = (long)(ms % 1000) * 1000000};
}

static void fill_stat(const struct node *n, struct stat *st)
{
	struct stagefs *f = fs();
	struct timespec t;

	memset(st, 0, sizeof(*st));
	st->st_uid = f->uid;
	st->st_gid = f->gid;
	switch (n->kind) {
	case N_ROOT:
	case N_PROJECT:
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

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct sf_err err = {0};
	struct node n;
	int r = resolve(path, &n, &err);

	if (r < 0)
		return fail(path, r, &err);
	fill_stat(&n, st);
	node_done(&n);
	return 0;
}

static int add_dir(void *buf, fuse_fill_dir_t filler, const char *name, const struct node *n)
{
	struct stat st;

	fill_stat(n, &st);
	return filler(buf, name, &st, 0, FUSE_FILL_DIR_PLUS);
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct stagefs *f = fs();
	struct sf_err err = {0};
	struct stage_list l = {0};
	struct node n, child;
	int r = resolve(path, &n, &err);

	if (r < 0)
		return fail(path, r, &err);
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	switch (n.kind) {
	case N_ROOT:
	case N_PROJECT:
		r = storage_list(f->st, &l, &err);
		if (r < 0)
			break;
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
	case N_STAGE:
		child = n;
		child.kind = N_LAYOUT;
		add_dir(buf, filler, "oci-layout", &child);
		child.kind = N_BLOBS;
		add_dir(buf, filler, "blobs", &child);
		/* index.json's size needs the layout: let getattr fetch it. */
		filler(buf, "index.json", NULL, 0, 0);
		break;
	case N_BLOBS:
		child = n;
		child.kind = N_SHA256;
		add_dir(buf, filler, "sha256", &child);
		break;
	case N_SHA256:
		for (size_t i = 0; i < n.layout->nblobs; i++) {
			child = n;
			child.kind = N_BLOB;
			child.blob = &n.layout->blobs[i];
			if (add_dir(buf, filler, n.layout->blobs[i].digest + 7, &child))
				break;
		}
		break;
	default:
		r = -ENOTDIR;
	}
	stage_list_done(&l);
	node_done(&n);
	return r < 0 ? fail(path, r, &err) : 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct sf_err err = {0};
	struct open_file *of;
	struct node n;
	int r;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	r = resolve(path, &n, &err);
	if (r < 0)
		return fail(path, r, &err);
	if (n.kind != N_LAYOUT && n.kind != N_INDEX && n.kind != N_BLOB) {
		node_done(&n);
		return -EISDIR;
	}
	of = calloc(1, sizeof(*of));
	if (!of) {
		node_done(&n);
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
		r = blobcache_open(fs()->blobs, fs()->st, n.project, n.info.name, n.blob,
				   &of->reader, &err);
		if (r == -ENOENT)
			r = -EIO; /* the file was just found: its content going missing is I/O */
		if (r < 0) {
			stage_layout_unref(of->layout);
			free(of);
			return fail(path, r, &err);
		}
	}
	/* Content under a name never changes: let the kernel keep its pages. */
	fi->keep_cache = 1;
	fi->fh = (uint64_t)(uintptr_t)of;
	return 0;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
	struct sf_err err = {0};
	size_t done = 0;

	if (off < 0)
		return -EINVAL;
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
			return fail(path, (int)n, &err);
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

/* Writes: the read-only tree refuses every change. */
static int op_mkdir(const char *path, mode_t mode)
{
	return -EROFS;
}

static int op_unlink(const char *path)
{
	return -EROFS;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	return -EROFS;
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return -EROFS;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return -EROFS;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	return -EROFS;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	return -EROFS;
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	return -EROFS;
}

static int op_symlink(const char *target, const char *path)
{
	return -EROFS;
}

static int op_setxattr(const char *path, const char *name, const char *value, size_t size,
		       int flags)
{
	return -EROFS;
}

static int op_getxattr(const char *path, const char *name, char *value, size_t size)
{
	return -ENODATA;
}

static int op_listxattr(const char *path, char *list, size_t size)
{
	return 0;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 0;
	cfg->nullpath_ok = 0;
	cfg->entry_timeout = 1.0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 0;
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
    .mkdir = op_mkdir,
    .rmdir = op_unlink,
    .unlink = op_unlink,
    .rename = op_rename,
    .create = op_create,
    .chmod = op_chmod,
    .chown = op_chown,
    .truncate = op_truncate,
    .utimens = op_utimens,
    .symlink = op_symlink,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
};
