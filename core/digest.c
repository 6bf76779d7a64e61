#include "digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct digest_ctx {
	EVP_MD_CTX *md;
};

struct digest_ctx *digest_new(void)
{
	struct digest_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx)
		return NULL;
	ctx->md = EVP_MD_CTX_new();
	if (!ctx->md || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
		digest_free(ctx);
		return NULL;
	}
	return ctx;
}

void digest_update(struct digest_ctx *ctx, const void *data, size_t len)
{
	EVP_DigestUpdate(ctx->md, data, len);
}

void digest_final(struct digest_ctx *ctx, char out[DIGEST_LEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int n = 0;

	EVP_DigestFinal_ex(ctx->md, md, &n);
	memcpy(out, "sha256:", 7);
	for (unsigned int i = 0; i < 32; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[8 + 2 * i] = hex[md[i] & 15];
	}
	out[DIGEST_LEN - 1] = '\0';
	EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL);
}

void digest_free(struct digest_ctx *ctx)
{
	if (!ctx)
		return;
	EVP_MD_CTX_free(ctx->md);
	free(ctx);
}

int digest_buffer(const void *data, size_t len, char out[DIGEST_LEN])
{
	struct digest_ctx *ctx = digest_new();

	if (!ctx)
		return -ENOMEM;
	digest_update(ctx, data, len);
	digest_final(ctx, out);
	digest_free(ctx);
	return 0;
}

int digest_file(const char *path, char out[DIGEST_LEN])
{
	struct digest_ctx *ctx;
	char *chunk;
	int fd, r = 0;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ctx = digest_new();
	chunk = malloc(1 << 20);
	if (!ctx || !chunk) {
		r = -ENOMEM;
		goto out;
	}
	while ((n = read(fd, chunk, 1 << 20)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		digest_update(ctx, chunk, (size_t)n);
	}
	digest_final(ctx, out);
out:
	free(chunk);
	digest_free(ctx);
	close(fd);
	return r;
}
