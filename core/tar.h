/* tar: a streaming reader of tar archives (ustar, GNU long names and long link names, pax
 * path/linkpath/size records).
 *
 * Bytes are pushed in with tar_feed() in chunks of any size; the reader calls back at the start
 * of every regular file (name, size), with its data, and at its end; and once for every
 * symbolic or hard link entry (name, target as written). Used to unpack the Docker
 * Engine's image export without writing the archive to disk first. Headers are checked (checksum,
 * octal fields); names are capped at 4 KiB, pax records at 64 KiB. Not thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct tar_callbacks {
	/* A regular file starts. Return <0 to abort. */
	int (*file_begin)(void *userdata, const char *name, uint64_t size);
	int (*file_data)(void *userdata, const void *data, size_t len);
	int (*file_end)(void *userdata);
	/* Optional (NULL: links are skipped). A link entry: symbolic (hard false; target as
	 * written, usually relative to the entry's folder) or hard (hard true; target is the name
	 * of an earlier entry of the archive). Both strings are borrowed for the call and under
	 * 4 KiB. Return <0 to abort. */
	int (*link)(void *userdata, const char *name, const char *target, bool hard);
};

struct tar_reader;

struct tar_reader *tar_reader_new(const struct tar_callbacks *cb, void *userdata);
void tar_reader_free(struct tar_reader *t);
/* Push archive bytes. -EBADMSG for a malformed archive (reason in err). */
int tar_feed(struct tar_reader *t, const void *data, size_t len, struct sf_err *err);
/* The archive ended: -EBADMSG when it stopped inside an entry. */
int tar_finish(struct tar_reader *t, struct sf_err *err);
