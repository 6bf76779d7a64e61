/* tar: a streaming reader of tar archives (ustar, GNU long names, pax path/size records).
 *
 * Bytes are pushed in with tar_feed() in chunks of any size; the reader calls back at the start
 * of every regular file (name, size), with its data, and at its end. Used to unpack the Docker
 * Engine's image export without writing the archive to disk first. Headers are checked (checksum,
 * octal fields); names are capped at 4 KiB, pax records at 64 KiB. Not thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct tar_callbacks {
	/* A regular file starts. Return <0 to abort. */
	int (*file_begin)(void *userdata, const char *name, uint64_t size);
	int (*file_data)(void *userdata, const void *data, size_t len);
	int (*file_end)(void *userdata);
};

struct tar_reader;

struct tar_reader *tar_reader_new(const struct tar_callbacks *cb, void *userdata);
void tar_reader_free(struct tar_reader *t);
/* Push archive bytes. -EBADMSG for a malformed archive (reason in err). */
int tar_feed(struct tar_reader *t, const void *data, size_t len, struct sf_err *err);
/* The archive ended: -EBADMSG when it stopped inside an entry. */
int tar_finish(struct tar_reader *t, struct sf_err *err);
