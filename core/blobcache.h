/* blobcache: blobs on local disk, fetched once, shared by every reader.
 *
 * Files live in DIR/sha256/HEX (content-addressed, so several daemons may share DIR); a blob
 * being fetched lives under DIR/tmp/ with a unique name and is renamed into place only after
 * its size and sha256 were checked. Opening a blob that is not on disk starts one background
 * fetch (storage_read_blob) that streams to disk at full speed; readers wait only until the
 * bytes they asked for have arrived, so a sequential reader costs one HTTP request in all and a
 * second read costs no network. A fetch interrupted mid-way resumes from the bytes it has.
 * The cache keeps at most max_bytes of finished blobs, evicting the least recently used ones
 * that nobody has open. Thread-safe; blobcache_free waits for running fetches.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "storage.h"

struct blobcache;
struct blob_reader;

int blobcache_new(const char *dir, uint64_t max_bytes, struct blobcache **ret, struct sf_err *err);
void blobcache_free(struct blobcache *bc);

/* Open blob (of stage, in st) for reading. Never blocks on the network. */
int blobcache_open(struct blobcache *bc, struct storage *st, const char *project, const char *stage,
		   const struct layout_blob *blob, struct blob_reader **ret, struct sf_err *err);
/* Read up to len bytes at off; waits for the fetch to get there. Bytes read, or -errno. */
ssize_t blobcache_pread(struct blob_reader *rd, void *buf, size_t len, uint64_t off,
			struct sf_err *err);
void blobcache_close(struct blob_reader *rd);

/* Bytes of finished blobs this process accounts for. For tests and stats. */
uint64_t blobcache_size(struct blobcache *bc);
