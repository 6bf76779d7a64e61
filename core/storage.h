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
};

struct storage {
	const struct storage_ops *ops;
	bool by_project;
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
