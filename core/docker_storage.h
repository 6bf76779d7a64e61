/* docker_storage: the storage interface (storage.h) over the Docker daemon (werf's :local).
 *
 * Stages are images tagged werf-stages-storage/PROJECT:SIGNATURE-UNIQUEID whose config carries
 * werf=PROJECT and werf-cache-version=1.1 (what werf itself lists); nothing else appears.
 * The storage is by_project, or shows one project when project is set.
 * A stage's layout (DESIGN.md section 3), from the daemon's export (GET /images/{ref}/get):
 * - classic image store (any `docker save` form: HEX.json + DIR/layer.tar of Docker <= 24, with
 *   a repeated layer's copy as a symlink or hard link entry; the OCI-style archive of Docker
 *   25+ whose manifest.json points into blobs/): the config exactly as Docker has it (sha256 =
 *   image ID), the layers as exported, and an OCI manifest made from them (stable bytes);
 * - containerd image store (image ID = the digest of a manifest or index in the export): that
 *   manifest (for an index, its first child whose config and layers are all exported, so
 *   attestation manifests are skipped) byte for byte, its config and layers as stored.
 * Every layer's media type matches its bytes (gzip 1f8b, zstd 28b52ffd, else tar); a stored
 * manifest whose types do not is replaced by a made one. The layout's image_id is the config
 * digest in both cases.
 * Exports: at most one per image at a time (single flight), unpacked while streaming into
 * DIR/docker/blobs/HEX (content-addressed, hashed on the way), with what the export gave
 * (config digest, stored manifest digest or none, layers with sizes and media types) kept in
 * DIR/docker/meta/IMAGEID (version 2; older ones mean one export again) so the layout is known
 * without exporting again. At most
 * max_bytes of layers are kept; whole images are evicted least recently used first.
 * Takes ownership of the docker client. Thread-safe.
 */
#pragma once

#include <stdint.h>

#include "docker.h"
#include "storage.h"

int docker_storage_new(struct docker *d, const char *project, const char *cache_dir,
		       uint64_t max_bytes, struct storage **ret, struct sf_err *err);
