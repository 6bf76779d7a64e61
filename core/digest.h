/* digest: SHA-256 of blobs, as OCI digests ("sha256:" + 64 lowercase hex).
 *
 * Streaming context over OpenSSL's EVP (uses SHA-NI where the CPU has it). One context per
 * stream, not shared between threads. DIGEST_LEN counts the terminating NUL.
 */
#pragma once

#include <stddef.h>

#define DIGEST_LEN (7 + 64 + 1)

struct digest_ctx;

struct digest_ctx *digest_new(void);
void digest_update(struct digest_ctx *ctx, const void *data, size_t len);
/* Write "sha256:HEX" into out and reset the context for reuse. */
void digest_final(struct digest_ctx *ctx, char out[DIGEST_LEN]);
void digest_free(struct digest_ctx *ctx);

/* One-shot: the digest of a memory buffer. */
int digest_buffer(const void *data, size_t len, char out[DIGEST_LEN]);

/* The digest of a whole file; -errno on I/O failure. */
int digest_file(const char *path, char out[DIGEST_LEN]);
