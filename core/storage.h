/* storage: the one interface every stages storage implements (registry, Docker, caches).
 *
 * A storage lists stages and describes each as an OCI image layout: the bytes of index.json and
 * the set of blobs (digest, size, and for small documents the bytes themselves). Blob content
 * is streamed by read_blob from an offset, so an interrupted download resumes.
 * Storages that group stages by project (the Docker daemon without project=) say so with
 * by_project; the FS shows a PROJECT level then. Nothing else about the backend is visible.
 *
 * Ownership: stage_list entries and layouts are owned by the caller after return; a layout is
 * reference-counted (stage_layout_ref/unref) so caches can hand out shared copies.
 * Thread safety: every operation may be called concurrently from many threads.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "digest.h"
#include "err.h"
#include "http.h"
#include "name.h"

struct stage_info {
	char name[NAME_STAGE_MAX + 1];
	char project[NAME_PROJECT_MAX + 1]; /* "" when the storage is not by_project */
	uint64_t unique_ms;		    /* creation time, from the name */
};

struct stage_list {
	size_t n;
	struct stage_info *v; /* sorted by (project, name) */
};

struct layout_blob {
	char digest[DIGEST_LEN];
	uint64_t size;
	char *data; /* the bytes when kept in memory (manifests, configs), else NULL */
};

struct stage_layout {
	int refs;
	char *index_json;
	size_t index_len;
	char image_id[DIGEST_LEN]; /* config digest; "" for an image index */
	size_t nblobs;
	struct layout_blob *blobs; /* sorted by digest, unique */
};

struct storage;
struct stage_writer;

/* What a stage is without reading its blobs: its image ID (the config digest; for an image
 * index, the index digest) and its size in bytes as the storage measures it (Docker: the
 * image's size; a registry: manifest, config and layers as stored). */
struct stage_summary {
	char image_id[DIGEST_LEN];
	uint64_t size;
};

/* A stage being committed (DESIGN.md section 4.3): the pending stage hands over each blob once
 * it is complete and verified (add_blob, in any order, from any thread), then the layout's
 * index.json (commit). Backends start work for a blob as soon as it arrives (compression,
 * upload) so the commit waits only for what is left. Until commit returns 0 nothing of the stage
 * is visible in the storage: no tag, no image.
 * Ownership: files named by add_blob belong to the caller and must stay readable (unchanged)
 * until stage_writer_free(); the writer never modifies or removes them. */
struct stage_writer_ops {
	/* Blob digest (verified: its bytes hash to it) of size bytes is at path.
	 * -ENOMEM, or an early failure of the backend that dooms the commit. */
	int (*add_blob)(struct stage_writer *w, const char *digest, uint64_t size,
			const char *path, struct sf_err *err);
	/* Commit the layout whose index.json is given; every blob it leads to was added.
	 * 0 when the stage now exists with this image (also when it already existed with the same
	 * image ID: nothing changed); -EEXIST when the stage exists with another image; -EINVAL
	 * for a layout the backend cannot hold (reason in err); -EACCES, -EIO, -EAGAIN,
	 * -ETIMEDOUT, -ENOSPC from the storage. At most once per writer. */
	int (*commit)(struct stage_writer *w, const char *index_json, size_t index_len,
		      struct sf_err *err);
	/* Abort (when not committed) and free; waits for the writer's background work. */
	void (*free)(struct stage_writer *w);
};

struct stage_writer {
	const struct stage_writer_ops *ops;
};

struct storage_ops {
	int (*list)(struct storage *st, struct stage_list *ret, struct sf_err *err);
	int (*describe)(struct storage *st, const char *project, const char *stage,
			struct stage_layout **ret, struct sf_err *err);
	int (*read_blob)(struct storage *st, const char *project, const char *stage,
			 const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
			 void *userdata, struct sf_err *err);
	void (*free)(struct storage *st);
	/* Optional: one stage's listing entry; -ENOENT when not listed. Default: list + search. */
	int (*find)(struct storage *st, const char *project, const char *stage,
		    struct stage_info *ret, struct sf_err *err);
	/* Optional: the blob as a file on local disk (the backend keeps it there, verified), so a
	 * reader opens it instead of copying it. May block while the backend produces it. */
	int (*local_file)(struct storage *st, const char *project, const char *stage,
			  const struct layout_blob *blob, char *ret_path, size_t path_size,
			  struct sf_err *err);
	/* Optional: stop long operations (downloads, exports) now; they fail with -ECANCELED.
	 * Called when unmounting, before the storage is freed. */
	void (*cancel)(struct storage *st);
	/* Optional (absent: the storage is read-only, -EROFS): start writing stage (project ""
	 * when not by_project). The stage's name was checked by the caller (name_stage_valid). */
	int (*write_begin)(struct storage *st, const char *project, const char *stage,
			   struct stage_writer **ret, struct sf_err *err);
	/* Optional (absent: -EROFS): remove exactly this stage (only its tag; the image stays
	 * when another tag holds it). -ENOENT when absent; -EPERM when the storage forbids it. */
	int (*remove)(struct storage *st, const char *project, const char *stage,
		      struct sf_err *err);
	/* Optional: the stage's summary when the backend has it cheaper than a layout (Docker's
	 * inspect instead of an export). Default: from describe. -ENOENT when absent. */
	int (*summary)(struct storage *st, const char *project, const char *stage,
		       struct stage_summary *ret, struct sf_err *err);
};

struct storage {
	const struct storage_ops *ops;
	bool by_project;
	/* Changes under a project are refused while werf's switch block for it exists
	 * (werf.h): the Docker daemon's :local storage. */
	bool switch_block;
};

int storage_list(struct storage *st, struct stage_list *ret, struct sf_err *err);
int storage_describe(struct storage *st, const char *project, const char *stage,
		     struct stage_layout **ret, struct sf_err *err);
int storage_read_blob(struct storage *st, const char *project, const char *stage,
		      const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
		      void *userdata, struct sf_err *err);
void storage_free(struct storage *st);
void storage_cancel(struct storage *st);
/* -ENOTSUP when the backend keeps no local files. */
int storage_local_file(struct storage *st, const char *project, const char *stage,
		       const struct layout_blob *blob, char *ret_path, size_t path_size,
		       struct sf_err *err);
int storage_find(struct storage *st, const char *project, const char *stage, struct stage_info *ret,
		 struct sf_err *err);
/* The summary: the backend's own, or made from the layout (describe). */
int storage_summary(struct storage *st, const char *project, const char *stage,
		    struct stage_summary *ret, struct sf_err *err);
/* The summary of a layout: image ID (index digest for an image index) and the sum of its
 * blobs' sizes. -EINVAL for an index.json that names no manifest. */
int stage_layout_summary(const struct stage_layout *l, struct stage_summary *ret);
/* write_begin and remove, or -EROFS when the storage has no write side. */
int storage_write_begin(struct storage *st, const char *project, const char *stage,
			struct stage_writer **ret, struct sf_err *err);
int storage_remove(struct storage *st, const char *project, const char *stage,
		   struct sf_err *err);
int stage_writer_add_blob(struct stage_writer *w, const char *digest, uint64_t size,
			  const char *path, struct sf_err *err);
int stage_writer_commit(struct stage_writer *w, const char *index_json, size_t index_len,
			struct sf_err *err);
/* Takes NULL. */
void stage_writer_free(struct stage_writer *w);

/* The entry (project, stage) of a sorted list: 0 and *ret, or -ENOENT. */
int stage_list_find(const struct stage_list *l, const char *project, const char *stage,
		    struct stage_info *ret);

/* Order of stage lists: by project, then name (a qsort/bsearch comparator). */
int stage_info_cmp(const void *a, const void *b);

void stage_list_done(struct stage_list *l);
/* Sort entries and fill unique_ms from the names; drops entries that are not stage names. */
void stage_list_finish(struct stage_list *l);

/* Layouts. */
struct stage_layout *stage_layout_new(void);
struct stage_layout *stage_layout_ref(struct stage_layout *l);
void stage_layout_unref(struct stage_layout *l);
/* Add a blob (deduplicated by digest); data, when given, is copied. */
int stage_layout_add_blob(struct stage_layout *l, const char *digest, uint64_t size,
			  const void *data);
/* Sort blobs; call once after the last add. */
void stage_layout_seal(struct stage_layout *l);
/* The blob with this digest, or NULL. Layout must be sealed. */
const struct layout_blob *stage_layout_find(const struct stage_layout *l, const char *digest);
