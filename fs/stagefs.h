/* stagefs: the FUSE glue. Paths map to nodes of the tree of DESIGN.md section 3; every answer
 * comes from the storage interface (core/storage.h) and the blob cache. */
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>

#include "blobcache.h"
#include "pending.h"
#include "storage.h"

struct stagefs {
	struct storage *st; /* the cache wrapper over the backend */
	struct blobcache *blobs;
	struct pending *pending; /* stage folders being written */
	struct fuse *fuse;	 /* for cache invalidations */
	const char *werf_home;	 /* for werf's switch block (st->switch_block) */
	pthread_mutex_t lock;	 /* guards made_projects */
	char **made_projects;	 /* mkdir PROJECT on a by-project storage, until it has stages */
	size_t n_made;
	const char *project; /* -o project=P on a by-project storage: P's stages at the root */
	bool by_project;     /* the tree has a PROJECT level */
	uid_t uid;
	gid_t gid;
	struct timespec mounted;
};

extern const struct fuse_operations stagefs_ops;

/* The tree (fs/tree.c): a path maps to a node. */
enum kind { N_ROOT, N_PROJECT, N_STAGE, N_LAYOUT, N_INDEX, N_BLOBS, N_SHA256, N_BLOB, N_PENDING };

struct node {
	enum kind kind;
	char project[NAME_PROJECT_MAX + 1];
	struct stage_info info;	     /* N_STAGE and below; N_PENDING: the stage's name */
	uint64_t newest_ms;	     /* N_PROJECT: its newest stage */
	struct stage_layout *layout; /* N_INDEX, N_SHA256, N_BLOB */
	const struct layout_blob *blob;
	struct pending_stage *ps; /* N_PENDING (referenced) */
	const char *rel;	  /* N_PENDING, and any node under a stage: the path inside it */
	int depth;		  /* components below the stage folder; -1 above it */
};

/* Where a path falls: [PROJECT/]STAGE/REL, whether it exists or not. */
struct where {
	char project[NAME_PROJECT_MAX + 1];
	char stage[NAME_STAGE_MAX + 1]; /* "" above the stage level */
	const char *rel;		/* inside the stage folder (in path); "" for the folder */
	bool project_level;		/* the path is a PROJECT folder */
};
/* 0 and *w; -EPERM for the root itself; -ENAMETOOLONG for a name no project or stage has. */
int stagefs_where(const char *path, struct where *w);

struct stagefs *stagefs_ctx(void);
/* Map a path to a node: only what exists resolves. -ENOENT, or the storage's error. */
int stagefs_resolve(const char *path, struct node *n, struct sf_err *err);
void stagefs_node_done(struct node *n);
void stagefs_fill_stat(const struct node *n, struct stat *st);
/* Log a core failure once, at the edge, and pass its errno on (ENOENT is not logged). */
int stagefs_fail(const char *path, int r, const struct sf_err *err);

/* Write side (fs/write.c). */
struct open_file {
	struct stage_layout *layout; /* keeps the bytes of index.json and inline blobs alive */
	const char *bytes;	     /* in-memory content, or NULL when read from the cache */
	uint64_t size;
	struct blob_reader *reader;
	struct pending_file *pf; /* a file of a pending stage */
};
int stagefs_open_write(const char *path, struct node *n, struct fuse_file_info *fi);
int stagefs_op_mkdir(const char *path, mode_t mode);
int stagefs_op_rmdir(const char *path);
int stagefs_op_unlink(const char *path);
int stagefs_op_rename(const char *from, const char *to, unsigned int flags);
int stagefs_op_create(const char *path, mode_t mode, struct fuse_file_info *fi);
int stagefs_op_write(const char *path, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi);
int stagefs_op_flush(const char *path, struct fuse_file_info *fi);
int stagefs_op_fsync(const char *path, int datasync, struct fuse_file_info *fi);
int stagefs_op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi);
int stagefs_op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi);
int stagefs_op_truncate(const char *path, off_t size, struct fuse_file_info *fi);
int stagefs_op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi);
int stagefs_op_symlink(const char *target, const char *path);
int stagefs_op_link(const char *from, const char *to);
int stagefs_op_setxattr(const char *path, const char *name, const char *value, size_t size,
			int flags);
int stagefs_op_removexattr(const char *path, const char *name);
/* The kernel forgets what it cached of that stage folder (asynchronously: never from inside a
 * request that may hold the directory's lock). */
void stagefs_forget_stage(void *ud, const char *project, const char *stage);
/* The projects made by mkdir (by-project storages), for readdir of the root. */
bool stagefs_made_project(const char *project);

/* Log once per distinct reason (identical messages within 10 s are folded). */
void stagefs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
