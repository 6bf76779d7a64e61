/* cache: a storage (storage.h) that wraps another and remembers its answers.
 *
 * The stage list is kept for ttl_ms and refreshed by the first caller after that (one refresh
 * at a time; others wait for it). Described layouts are kept per stage until a refresh no longer
 * lists the stage (stages are immutable while they exist). Errors are never cached: a storage
 * that is down answers with its error on every call, never with an empty or stale listing.
 * read_blob passes through. Takes ownership of inner. Thread-safe.
 */
#pragma once

#include <stdint.h>

#include "storage.h"

int cache_storage_new(struct storage *inner, uint64_t ttl_ms, struct storage **ret);

/* Forget the listing now (next list refreshes); for writers that changed the storage. */
void cache_storage_invalidate(struct storage *st);
