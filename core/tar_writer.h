/* tar_writer: a tar archive planned from entries of known size, read at any offset.
 *
 * The archive is never written anywhere: tar_plan_add_*() records entries (a name, a size and
 * where the bytes come from: memory or a file read with pread), tar_plan_size() gives the exact
 * archive length, and tar_plan_read_at() produces any byte range of it on demand (headers,
 * data, padding, the two zero end blocks). That makes a rewindable upload source for
 * `POST /images/load` (http_read_at_fn) without a temporary tar on disk.
 *
 * Format: POSIX ustar (IEEE Std 1003.1-2001 "ustar Interchange Format"). A name longer than
 * 100 bytes, or a size of 8 GiB or more, gets a pax extended header ('x') with a "path" or
 * "size" record before the entry; the ustar fields then hold a truncated name / the size in
 * base-256 (GNU). Bytes are deterministic: mtime as given to tar_plan_new(), uid/gid 0, no
 * user/group names, mode 0644 for files and 0755 for folders.
 *
 * Memory: the plan holds one header block (two or more with a pax header) per entry and copies
 * of in-memory entries; file data is read from the file at read time. A file source must keep
 * exactly its planned size while the plan is read: a file that shrank reads as -EIO.
 *
 * Thread safety: building a plan is not thread-safe; once built, tar_plan_read_at() may be
 * called from several threads at once (it only reads the plan and uses pread).
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct tar_plan;

/* A new empty plan. mtime: seconds since the epoch written into every header (0 is fine).
 * Returns 0 or -ENOMEM. */
int tar_plan_new(uint64_t mtime, struct tar_plan **ret);
/* Frees the plan, its copies of memory entries, and closes the fds it opened. NULL is fine. */
void tar_plan_free(struct tar_plan *p);

/* Add a regular file whose bytes are data[0..len) (copied: the caller keeps data).
 * name: the path inside the archive, relative, '/'-separated, no NUL, 1..4096 bytes.
 * -EINVAL for a bad name (reason in err), -ENOMEM. */
int tar_plan_add_mem(struct tar_plan *p, const char *name, const void *data, size_t len,
		     struct sf_err *err);

/* Add a regular file of size bytes read from fd at offsets off..off+size (pread). The fd is
 * borrowed: it must stay open, and the file at least off+size bytes long, while the plan is
 * read. -EINVAL for a bad name, -ENOMEM. */
int tar_plan_add_fd(struct tar_plan *p, const char *name, int fd, uint64_t off, uint64_t size,
		    struct sf_err *err);

/* Add the whole file at path (relative to dirfd, or AT_FDCWD): it is opened now (O_RDONLY |
 * O_CLOEXEC, owned and closed by the plan) and its current size is planned. -errno of open or
 * fstat (reason with the path in err), -EINVAL for a bad name or a path that is not a regular
 * file, -ENOMEM. */
int tar_plan_add_file_at(struct tar_plan *p, const char *name, int dirfd, const char *path,
			 struct sf_err *err);

/* Add a folder entry (mode 0755, no data; a '/' is appended to name). Not needed for readers that
 * make parent folders (GNU tar, Docker), but tidy. -EINVAL for a bad name, -ENOMEM. */
int tar_plan_add_dir(struct tar_plan *p, const char *name, struct sf_err *err);

/* The exact archive length in bytes (a multiple of 512; 1024 for an empty plan). */
uint64_t tar_plan_size(const struct tar_plan *p);

/* Copy up to len bytes of the archive starting at offset off into buf. Returns the number of
 * bytes copied: len, or fewer only at the end of the archive (0 at or past it); or -EIO when a
 * file source fails or is shorter than planned (-errno of pread passed on otherwise).
 * Deterministic: the same range always gives the same bytes. */
ssize_t tar_plan_read_at(const struct tar_plan *p, uint64_t off, void *buf, size_t len);

/* The same with an untyped plan, for callback slots such as http_read_at_fn:
 * `req.upload_read_at = tar_plan_read_at_cb; req.upload_ud = plan`. */
ssize_t tar_plan_read_at_cb(void *plan, uint64_t off, void *buf, size_t len);
