/* registry_writer: the write side of a registry storage (DESIGN.md section 4.3): a stage pushed
 * as `docker push` would, and a stage's tag removed.
 *
 * Each blob handed over starts its own job at once (at most one per core run together): a
 * gzip or zstd blob is uploaded as it is; an uncompressed layer is gzip-compressed (gzip.h)
 * into a file beside it (PATH.gz) and that is uploaded; JSON documents (config, manifests) wait
 * for the commit. Blobs the repository has already are not uploaded (HEAD).
 * Commit: an image whose layers were all compressed, and an image index (children first), are
 * put unchanged, so registry-to-registry copies keep every digest; otherwise the manifest is
 * rewritten as Docker schema 2 over the compressed layers with the config byte-identical (and,
 * where the registry refuses schema 2, as an OCI manifest over the same blobs). The manifest is
 * put last, under the tag: before that nothing of the stage is visible.
 * An existing tag is never overwritten: the same image ID (config digest; for an index, the
 * index digest) is success without a change, another is -EEXIST.
 * Thread-safe: the registry may be shared by many writers.
 */
#pragma once

#include "registry.h"
#include "storage.h"

/* What this process compressed: an uncompressed layer's digest (its diff ID) -> the digest and
 * size of the gzip blob made from it. A layer seen again (stages sharing a base) whose gzip
 * blob the repository has is neither compressed nor uploaded again, as Docker's push does
 * with its own record. Thread-safe; kept in memory for the mount's life. */
struct registry_writer_memo;
int registry_writer_memo_new(struct registry_writer_memo **ret);
void registry_writer_memo_free(struct registry_writer_memo *m);

/* A writer for stage; reg and memo (may be NULL) are borrowed and must outlive it.
 * -ENOMEM only. */
int registry_writer_new(struct registry *reg, struct registry_writer_memo *memo,
			const char *stage, struct stage_writer **ret, struct sf_err *err);
