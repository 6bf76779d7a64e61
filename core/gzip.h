/* gzip: compress layers the way the write path stores them (issue 7: "uncompressed layers
 * gzip-compressed, as docker push does").
 *
 * Output is a standard gzip file (RFC 1952) made of members of GZIP_MEMBER input bytes each
 * (the last shorter), every member with a fixed 10-byte header: no name, mtime 0, XFL 0,
 * OS 255 ("unknown"), as Go's compress/gzip writes it. Every gzip reader takes concatenated
 * members as one stream (Go's gzip.Reader and pgzip by default, zlib's gzip/unpigz, Python).
 * DEFLATE comes from libdeflate at level GZIP_LEVEL: libdeflate's API is whole-buffer, so the
 * members bound memory. The bytes depend only on the input and the libdeflate version (not on
 * how the input was split into gzip_write calls, nor on the CPU): copying a layer twice gives
 * the same digest.
 *
 * Why libdeflate 6 (tests/bench/gzip_bench.c; one thread of a shared 2-core Xeon; MB/s of
 * input; size relative to what `docker push` (Go's gzip default) stored for the same layer):
 *                 text-heavy layer, 315 MB   binaries layer, 887 MB   random, 315 MB
 *   zlib 6         46 MB/s  0.996x            28 MB/s  0.975x           50 MB/s
 *   libdeflate 6   99 MB/s  0.993x            76 MB/s  0.969x           89 MB/s
 *   libdeflate 4  135 MB/s  1.011x           119 MB/s  0.997x           98 MB/s
 *   ISA-L 3       351 MB/s  1.070x           352 MB/s  1.083x          422 MB/s
 * libdeflate 6 stores no more than docker push at 2-3x zlib's speed; ISA-L igzip is 4x
 * faster still but stores 7-8% more than docker push, over the 1.05x issue 7 allows.
 *
 * Memory: about 2.7 MiB per stream (1 MiB of input, its 1 MiB output bound, libdeflate's
 * 0.65 MiB level-6 state), whatever the input size. The sha256 of the output (the blob's
 * digest) and, on request, of the input (the layer's DiffID) are computed on the way.
 * Streams are independent: thread-safe as long as one stream is used by one thread at a time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "digest.h"
#include "err.h"

#define GZIP_LEVEL 6		  /* libdeflate level (1-12) */
#define GZIP_MEMBER (1024 * 1024) /* input bytes per gzip member */

struct gzip;

/* A compressor writing to out_fd (write(2) at its current position; a regular file, a pipe
 * or a socket; borrowed, never closed). with_input_digest: also hash the input.
 * -ENOMEM only. */
int gzip_new(int out_fd, bool with_input_digest, struct gzip **ret);

/* Compress len bytes of data. Output is written as it is produced. After a failure the
 * stream is dead: every later call fails with the same code.
 * -EIO/-ENOSPC/-EDQUOT/-EPIPE/-EBADF: writing out_fd failed (errno as write(2) gave it). */
int gzip_write(struct gzip *g, const void *data, size_t len, struct sf_err *err);

/* End the stream and write its tail. ret_digest: "sha256:HEX" of every byte written to out_fd;
 * ret_size: their number. ret_in_digest (NULL to skip; needs with_input_digest) and
 * ret_in_size (may be NULL): the same for the input. Errors as gzip_write. */
int gzip_finish(struct gzip *g, char ret_digest[DIGEST_LEN], uint64_t *ret_size,
		char ret_in_digest[DIGEST_LEN], uint64_t *ret_in_size, struct sf_err *err);

void gzip_free(struct gzip *g);

/* Compress the whole of in_fd (a file read with pread from offset 0 to its end; its position
 * is untouched) into out_fd (written at its current position). Returns the digest and size of
 * the output, and the digest of the input when ret_in_digest is not NULL.
 * -errno of a failed read (-EIO ...) or write (-ENOSPC, -EIO ...), with the reason in err;
 * out_fd then holds a partial stream that the caller discards. */
int gzip_file(int in_fd, int out_fd, char ret_digest[DIGEST_LEN], uint64_t *ret_size,
	      char ret_in_digest[DIGEST_LEN], struct sf_err *err);
