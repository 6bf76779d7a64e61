/* The registry client's write half against a real registry (started by registry_push.sh):
 * blob uploads (monolithic and chunked), HEAD of blobs, manifests, tag deletion that keeps a
 * sibling tag, a pull-only credential, and (MODE=nodelete) a registry that forbids deletes.
 * Environment: REGISTRY (host:port), REPO, DOCKER_CONFIG (push rights), RO_CONFIG (pull only),
 * LAYER_TAR (a small tar to gzip into a layer), OUT (where to write what the script checks:
 * MANIFEST=, CONFIG=, LAYER=), MODE (full | nodelete). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "buf.h"
#include "digest.h"
#include "gzip.h"
#include "oci.h"
#include "registry.h"

static const char *env(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		fail_msg("%s is not set (run through registry_push.sh)", name);
	return v;
}

static struct registry *open_registry(const char *config)
{
	char text[512];
	struct addr a = {0};
	struct sf_err err = {0};
	struct registry_opts o = {.docker_config_dir = config};
	struct registry *r = NULL;
	int rc;

	snprintf(text, sizeof(text), "%s/%s", env("REGISTRY"), env("REPO"));
	assert_int_equal(addr_parse(text, &a, &err), 0);
	rc = registry_new(&a, &o, &r, &err);
	if (rc < 0)
		fail_msg("registry_new: %s", err.msg);
	addr_done(&a);
	return r;
}

/* A file of len pseudo-random bytes after a 100-byte prefix that is not part of the blob. */
static int make_blob(uint64_t len, uint64_t seed, char ret_digest[DIGEST_LEN])
{
	int fd = memfd_create("blob", MFD_CLOEXEC);
	struct digest_ctx *d = digest_new();
	unsigned char *buf = malloc(1 << 20);
	uint64_t x = seed * 2654435761u + 1, done = 0;

	assert_true(fd >= 0);
	memset(buf, 'p', 100);
	assert_int_equal(write(fd, buf, 100), 100);
	while (done < len) {
		size_t n = len - done < (1 << 20) ? (size_t)(len - done) : (1 << 20);
		for (size_t i = 0; i < n; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			buf[i] = (unsigned char)x;
		}
		assert_int_equal(write(fd, buf, n), (ssize_t)n);
		digest_update(d, buf, n);
		done += n;
	}
	digest_final(d, ret_digest);
	digest_free(d);
	free(buf);
	return fd;
}

static int hash_sink(void *ud, const void *data, size_t len)
{
	digest_update(ud, data, len);
	return 0;
}

/* GET the blob back and check its sha256. */
static void check_stored(struct registry *r, const char *digest)
{
	struct digest_ctx *d = digest_new();
	struct sf_err err = {0};
	char got[DIGEST_LEN];

	if (registry_get_blob(r, digest, 0, hash_sink, d, &err) < 0)
		fail_msg("GET %s: %s", digest, err.msg);
	digest_final(d, got);
	digest_free(d);
	assert_string_equal(got, digest);
}

static void put_and_check(uint64_t len, uint64_t seed)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct sf_err err = {0};
	char digest[DIGEST_LEN];
	uint64_t size = 0;
	int fd = make_blob(len, seed, digest);

	assert_int_equal(registry_has_blob(r, digest, &size, &err), -ENOENT);
	if (registry_put_blob(r, digest, fd, 100, len, &err) < 0)
		fail_msg("put_blob of %llu bytes: %s", (unsigned long long)len, err.msg);
	assert_int_equal(registry_has_blob(r, digest, &size, &err), 0);
	assert_int_equal(size, len);
	check_stored(r, digest);
	/* Again: an existing blob may be uploaded again, harmlessly. */
	assert_int_equal(registry_put_blob(r, digest, fd, 100, len, &err), 0);
	close(fd);
	registry_free(r);
}

static void test_small_blob(void **state)
{
	put_and_check(1000, 1);
	put_and_check(0, 2); /* the empty blob */
}

static void test_large_blob(void **state)
{
	/* PATCH chunks: two full ones and a short tail. */
	put_and_check(2 * REGISTRY_CHUNK + 12345, 3);
}

static void test_wrong_digest(void **state)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct sf_err err = {0};
	char digest[DIGEST_LEN], other[DIGEST_LEN];
	int fd = make_blob(5000, 4, digest);

	close(make_blob(5000, 5, other));
	assert_int_equal(registry_put_blob(r, other, fd, 100, 5000, &err), -EBADMSG);
	assert_int_equal(registry_has_blob(r, other, NULL, &err), -ENOENT);
	/* Past the end of the file: refused before any request. */
	assert_int_equal(registry_put_blob(r, digest, fd, 100, 5001, &err), -EINVAL);
	assert_int_equal(registry_has_blob(r, "sha256:nope", NULL, &err), -EINVAL);
	close(fd);
	registry_free(r);
}

static char manifest_digest[DIGEST_LEN];

/* A real image: a gzip'd layer (gzip_file of LAYER_TAR), its config, a Docker schema 2
 * manifest under tags "one" and "two" (the same digest). */
static void test_manifest(void **state)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct sf_err err = {0};
	char layer[DIGEST_LEN], diff_id[DIGEST_LEN], config_digest[DIGEST_LEN], d2[DIGEST_LEN];
	char *config = NULL, *manifest = NULL;
	uint64_t layer_size;
	int in = open(env("LAYER_TAR"), O_RDONLY | O_CLOEXEC), gz = memfd_create("gz", MFD_CLOEXEC);
	int cfd = memfd_create("config", MFD_CLOEXEC), n;
	struct registry_manifest m = {0};
	FILE *out;

	assert_true(in >= 0 && gz >= 0 && cfd >= 0);
	assert_int_equal(gzip_file(in, gz, layer, &layer_size, diff_id, &err), 0);
	assert_int_equal(registry_put_blob(r, layer, gz, 0, layer_size, &err), 0);
	n = asprintf(&config,
		     "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},"
		     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
		     diff_id);
	assert_true(n > 0);
	assert_int_equal(write(cfd, config, (size_t)n), n);
	digest_buffer(config, (size_t)n, config_digest);
	assert_int_equal(registry_put_blob(r, config_digest, cfd, 0, (uint64_t)n, &err), 0);
	assert_true(asprintf(&manifest,
			     "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST "\","
			     "\"config\":{\"mediaType\":\"" MT_DOCKER_CONFIG "\",\"size\":%d,"
			     "\"digest\":\"%s\"},\"layers\":[{\"mediaType\":\"" MT_DOCKER_LAYER_GZIP
			     "\",\"size\":%llu,\"digest\":\"%s\"}]}",
			     n, config_digest, (unsigned long long)layer_size, layer) > 0);
	if (registry_put_manifest(r, "one", MT_DOCKER_MANIFEST, manifest, strlen(manifest),
				  manifest_digest, &err) < 0)
		fail_msg("put_manifest: %s", err.msg);
	digest_buffer(manifest, strlen(manifest), d2);
	assert_string_equal(manifest_digest, d2);
	assert_int_equal(registry_put_manifest(r, "two", MT_DOCKER_MANIFEST, manifest,
					       strlen(manifest), d2, &err),
			 0);
	/* By digest, too; a digest ref that is not the data's is refused before sending. */
	assert_int_equal(
	    registry_put_manifest(r, d2, MT_DOCKER_MANIFEST, manifest, strlen(manifest), d2, &err),
	    0);
	assert_int_equal(registry_put_manifest(r, layer, MT_DOCKER_MANIFEST, manifest,
					       strlen(manifest), d2, &err),
			 -EINVAL);
	assert_int_equal(registry_get_manifest(r, "one", &m, &err), 0);
	assert_string_equal(m.digest, manifest_digest);
	assert_string_equal(m.media_type, MT_DOCKER_MANIFEST);
	assert_memory_equal(m.data, manifest, m.len);
	registry_manifest_done(&m);
	/* A manifest naming a blob the repository lacks: the registry's reason, EINVAL. */
	char *bad = strdup(manifest);
	memcpy(strstr(bad, layer) + 7, "0000", 4);
	assert_int_equal(
	    registry_put_manifest(r, "bad", MT_DOCKER_MANIFEST, bad, strlen(bad), d2, &err),
	    -EINVAL);
	assert_non_null(strstr(err.msg, "BLOB_UNKNOWN"));
	free(bad);

	out = fopen(env("OUT"), "we");
	assert_non_null(out);
	fprintf(out, "MANIFEST=%s\nCONFIG=%s\nLAYER=%s\nLAYER_SIZE=%llu\n", manifest_digest,
		config_digest, layer, (unsigned long long)layer_size);
	fclose(out);
	free(config);
	free(manifest);
	close(in);
	close(gz);
	close(cfd);
	registry_free(r);
}

static void test_readonly(void **state)
{
	struct registry *r = open_registry(env("RO_CONFIG"));
	struct sf_err err = {0};
	char digest[DIGEST_LEN], d[DIGEST_LEN];
	int fd = make_blob(100, 6, digest);

	/* Pulling works ... */
	assert_int_equal(registry_head_manifest(r, "one", d, NULL, NULL, &err), 0);
	assert_string_equal(d, manifest_digest);
	assert_int_equal(registry_has_blob(r, digest, NULL, &err), -ENOENT);
	/* ... pushing and deleting do not, and say why. */
	assert_int_equal(registry_put_blob(r, digest, fd, 100, 100, &err), -EACCES);
	assert_non_null(strstr(err.msg, "push access"));
	assert_int_equal(registry_put_manifest(r, "three", MT_DOCKER_MANIFEST, "{}", 2, d, &err),
			 -EACCES);
	assert_non_null(strstr(err.msg, "push access"));
	assert_int_equal(registry_delete_tag(r, "two", &err), -EACCES);
	assert_int_equal(registry_head_manifest(r, "two", d, NULL, NULL, &err), 0);
	close(fd);
	registry_free(r);
}

static void test_delete_tag(void **state)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct sf_err err = {0};
	char d[DIGEST_LEN];
	struct strv tags = {0};

	if (registry_delete_tag(r, "one", &err) < 0)
		fail_msg("delete_tag: %s", err.msg);
	assert_int_equal(registry_head_manifest(r, "one", d, NULL, NULL, &err), -ENOENT);
	/* The sibling tag and the image it names are intact. */
	assert_int_equal(registry_head_manifest(r, "two", d, NULL, NULL, &err), 0);
	assert_string_equal(d, manifest_digest);
	assert_int_equal(registry_head_manifest(r, manifest_digest, d, NULL, NULL, &err), 0);
	assert_int_equal(registry_list_tags(r, &tags, &err), 0);
	assert_int_equal(tags.n, 1);
	assert_string_equal(tags.v[0], "two");
	strv_done(&tags);
	/* Gone: ENOENT. Not a tag: EINVAL. */
	assert_int_equal(registry_delete_tag(r, "one", &err), -ENOENT);
	assert_int_equal(registry_delete_tag(r, "a/b", &err), -EINVAL);
	registry_free(r);
}

/* MODE=nodelete: the registry has deletes disabled; "two" exists. */
static void test_delete_forbidden(void **state)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct sf_err err = {0};
	char before[DIGEST_LEN], after[DIGEST_LEN];
	struct strv tags = {0};

	assert_int_equal(registry_head_manifest(r, "two", before, NULL, NULL, &err), 0);
	assert_int_equal(registry_delete_tag(r, "two", &err), -EPERM);
	print_message("delete refused: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "does not allow deletes"));
	assert_non_null(strstr(err.msg, "UNSUPPORTED"));
	assert_int_equal(registry_head_manifest(r, "two", after, NULL, NULL, &err), 0);
	assert_string_equal(after, before);
	assert_int_equal(registry_list_tags(r, &tags, &err), 0);
	assert_int_equal(tags.n, 1);
	assert_string_equal(tags.v[0], "two");
	strv_done(&tags);
	registry_free(r);
}

int main(void)
{
	const struct CMUnitTest full[] = {
	    cmocka_unit_test(test_small_blob),	 cmocka_unit_test(test_large_blob),
	    cmocka_unit_test(test_wrong_digest), cmocka_unit_test(test_manifest),
	    cmocka_unit_test(test_readonly),	 cmocka_unit_test(test_delete_tag),
	};
	const struct CMUnitTest nodelete[] = {
	    cmocka_unit_test(test_delete_forbidden),
	};
	if (strcmp(env("MODE"), "nodelete") == 0)
		return cmocka_run_group_tests(nodelete, NULL, NULL);
	return cmocka_run_group_tests(full, NULL, NULL);
}
