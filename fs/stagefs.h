/* stagefs: the FUSE glue. Paths map to nodes of the tree of DESIGN.md section 3; every answer
 * comes from the storage interface (core/storage.h) and the blob cache. */
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse.h>
#include <stdbool.h>
#include <stdint.h>

#include "blobcache.h"
#include "storage.h"

struct stagefs {
	struct storage *st; /* the cache wrapper over the backend */
	struct blobcache *blobs;
	const char *project; /* -o project=P on a by-project storage: P's stages at the root */
	bool by_project;     /* the tree has a PROJECT level */
	uid_t uid;
	gid_t gid;
	struct timespec mounted;
};

extern const struct fuse_operations stagefs_ops;

/* Log once per distinct reason (identical messages within 10 s are folded). */
void stagefs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
