/* oci: the OCI image layout model and manifest parsing.
 *
 * Parses Docker schema 2 and OCI image manifests and image indexes into descriptors, and writes
 * the two layout files (oci-layout, index.json) as stable bytes: the same input always gives
 * the same output, so digests of generated files never drift across mounts.
 * Parsed structs own their strings; oci_manifest_done() frees. Thread-safe.
 * Limits: at most OCI_MAX_DESCRIPTORS layers or child manifests per document.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

#define OCI_MAX_DESCRIPTORS 4096

#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MT_DOCKER_LAYER_TAR "application/vnd.docker.image.rootfs.diff.tar"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_OCI_LAYER_TAR "application/vnd.oci.image.layer.v1.tar"

#define OCI_LAYOUT_FILE "{\"imageLayoutVersion\":\"1.0.0\"}"
#define OCI_REF_NAME "org.opencontainers.image.ref.name"

/* Cap of a document read from disk on the write path (index.json, manifests, configs): the
 * registry client's manifest cap. */
#define OCI_DOC_CAP (4 * 1024 * 1024)

enum oci_blob_format { OCI_BLOB_TAR, OCI_BLOB_GZIP, OCI_BLOB_ZSTD, OCI_BLOB_JSON };

/* What a blob's first bytes (head, len of them; 512 or more wanted) say it is: gzip or zstd by
 * their magic, tar by "ustar" at offset 257, JSON by a leading '{'; anything else (an empty or
 * old-style tar) is taken as tar. Pure, thread-safe. */
enum oci_blob_format oci_blob_format(const void *head, size_t len);
/* The same for a file's first bytes; a file that cannot be read is taken as tar. */
enum oci_blob_format oci_blob_format_file(const char *path);

struct oci_desc {
	char *media_type;
	char digest[DIGEST_LEN];
	uint64_t size;
};

struct oci_manifest {
	char *media_type; /* resolved (see oci_manifest_parse): one of the four MT_* names */
	bool is_index;
	struct oci_desc config; /* image manifests */
	size_t n;		/* layers, or child manifests of an index */
	struct oci_desc *descs;
};

/* Parse a manifest or index. media_type is the Content-Type the bytes came with (may be NULL).
 * The type is resolved as: the document's own mediaType field when present and not empty
 * (parameters dropped, compared case-insensitively; anything but the four types -EINVAL); else
 * the Content-Type when it names one of the four (same rules); else, when the Content-Type is
 * absent, malformed or generic (application/json, text/plain, application/octet-stream,
 * binary/octet-stream), the fields: "manifests" makes an index (a Docker manifest list when every
 * child is a Docker schema 2 manifest, else OCI), otherwise an image manifest (Docker schema 2
 * when its config is a Docker config, else OCI), as containers/image guesses. Any other
 * Content-Type is -EINVAL. ret->media_type is then the canonical MT_* name.
 * -EINVAL (with reason) for anything malformed, -E2BIG for more than OCI_MAX_DESCRIPTORS
 * entries. */
int oci_manifest_parse(const void *data, size_t len, const char *media_type,
		       struct oci_manifest *ret, struct sf_err *err);
void oci_manifest_done(struct oci_manifest *m);

bool oci_media_type_is_index(const char *mt);
bool oci_media_type_is_manifest(const char *mt);

/* index.json of a one-image layout: one descriptor annotated with ref_name. Caller frees. */
int oci_index_json(const struct oci_desc *manifest, const char *ref_name, char **ret,
		   size_t *ret_len);

/* An image manifest with the given media types, as stable compact bytes. Caller frees. */
int oci_manifest_json(const char *media_type, const struct oci_desc *config,
		      const struct oci_desc *layers, size_t nlayers, char **ret, size_t *ret_len);

/* Parse a layout's index.json: exactly one manifest descriptor. ret_ref_name gets the ref name
 * annotation or NULL. For the write path. */
int oci_index_parse(const void *data, size_t len, struct oci_desc *ret_manifest,
		    char **ret_ref_name, struct sf_err *err);
