/* stage: one stage folder seen through a stagefs mount (DESIGN.md sections 3-4).
 *
 * Listing reads a directory only (readdir: no per-stage reads); the image ID reads index.json
 * and the manifest it names; a copy writes the folder the way DESIGN.md section 4 describes:
 * mkdir, every file written sequentially, blobs/ first and index.json last, so the close of
 * index.json is the commit and reports its errno. Thread-safe (no shared state).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define STAGE_ID_SIZE 72 /* "sha256:" + 64 hex + NUL */

struct stage_names {
	size_t n;
	char **v; /* sorted (strcmp) */
};

/* The stage names (SIGNATURE-UNIQUEID; other entries skipped) in dir, sorted. Returns 0;
 * -ENOENT when dir does not exist (callers may treat it as empty); -errno of opendir/readdir. */
int stage_list(const char *dir, struct stage_names *ret, struct sf_err *err);

/* The stages of project in the mount at root (the folder stage_dir names, listed with
 * stage_list); on :local (local true) a project with no folder has none. Same returns, and
 * -ENAMETOOLONG. */
int stage_list_in(const char *root, bool local, const char *project, struct stage_names *ret,
		  struct sf_err *err);

/* The sub-directories of dir that are werf project names, sorted. Same returns. */
int stage_list_projects(const char *dir, struct stage_names *ret, struct sf_err *err);

bool stage_names_has(const struct stage_names *l, const char *name);
void stage_names_done(struct stage_names *l);

struct stage_meta {
	char image_id[STAGE_ID_SIZE]; /* config digest */
	uint64_t size;		      /* manifest + config + layers, bytes as stored */
};

/* Image ID and size of the stage folder `dir`: the mount's user.stagefs.image_id and
 * user.stagefs.size when it has them (no blob read; an image index's ID is its digest), else
 * index.json (at most 1 MiB) -> its first
 * manifest (an image index is followed one level) -> config.digest. Returns 0; -EBADMSG for
 * JSON that is not an OCI layout of one image; -errno of open/read (EIO from the mount when
 * the storage failed, ENOENT when the stage is gone). */
int stage_read_meta(const char *dir, struct stage_meta *ret, struct sf_err *err);

/* Called with the bytes written so far in this call's copy, from the copying thread. */
typedef void stage_bytes_fn(uint64_t bytes, void *userdata);

/* Copy the stage folder src into dst (created; an existing one is written into, which the
 * mount checks), in 1 MiB reads. Stops between chunks with -ECANCELED once interrupt_requested.
 * Returns 0; -errno of the first failing call with the path and call in err (for the commit:
 * "close DST/index.json: <strerror>"). */
int stage_copy(const char *src, const char *dst, stage_bytes_fn *on_bytes, void *userdata,
	       struct sf_err *err);

/* Remove a committed stage through its mount the way `rm -r` does it (every file unlinked, the
 * folders removed depth first; the rmdir of the stage folder removes it from the storage).
 * Returns 0; -errno of the call that failed (EROFS under werf's block). */
int stage_remove(const char *dir, struct sf_err *err);

/* "dir/name" into buf (n bytes); "dir" alone when name is "". 0 or -ENAMETOOLONG. */
int stage_path(char *buf, size_t n, const char *dir, const char *name);

/* A stage's folder in a mount, into buf (n bytes): ROOT/PROJECT/STAGE for :local (local true),
 * ROOT/STAGE for a registry mount (one project per repository); stage "" gives the folder that
 * holds the project's stages. 0 or -ENAMETOOLONG. */
int stage_dir(char *buf, size_t n, const char *root, bool local, const char *project,
	      const char *stage);
