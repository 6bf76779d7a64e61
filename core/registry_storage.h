/* registry_storage: the storage interface (storage.h) over one registry repository.
 *
 * Stages are the repository's tags of the form SIGNATURE-UNIQUEID; werf's other records
 * (managed-image-*, image-metadata-by-commit-*, client-id-*) and foreign tags are not stages.
 * A stage's layout holds exactly the registry's bytes: the manifest as pushed (kept in memory),
 * its config and layers (streamed); for an image index, the index and every child manifest.
 * Takes ownership of the registry.
 */
#pragma once

#include "registry.h"
#include "storage.h"

int registry_storage_new(struct registry *reg, struct storage **ret);
