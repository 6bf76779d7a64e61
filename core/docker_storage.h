/* docker_storage: the storage interface (storage.h) over the Docker daemon (werf's :local).
 *
 * Stages are images tagged werf-stages-storage/PROJECT:SIGNATURE-UNIQUEID whose config carries
 * werf=PROJECT and werf-cache-version=1.1 (what werf itself lists); nothing else appears.
 * The storage is by_project, or shows one project when project is set.
 * A stage's layout: the config exactly as Docker has it (sha256 = image ID), the layers as the
 * daemon's export gives them, and an OCI manifest made from them (stable bytes).
 * Exports: at most one per image at a time (single flight), unpacked while streaming into
 * DIR/docker/blobs/HEX (content-addressed, hashed on the way), with the image's layer list
 * kept in DIR/docker/meta/IMAGEID so sizes are known without exporting again. At most
 * max_bytes of layers are kept; whole images are evicted least recently used first.
 * Takes ownership of the docker client. Thread-safe.
 */
#pragma once

#include <stdint.h>

#include "docker.h"
#include "storage.h"

int docker_storage_new(struct docker *d, const char *project, const char *cache_dir,
		       uint64_t max_bytes, struct storage **ret, struct sf_err *err);
