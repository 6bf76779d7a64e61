/* The registry client against a real registry with the Bearer token flow (started by
 * registry_live.sh): tags, manifests by GET and HEAD, blobs from an offset, errors.
 * Environment: REGISTRY (host:port), REPO (path), STAGE, IMAGE_ID, RECORD_TAG, DOCKER_CONFIG,
 * BAD_CONFIG (a config with a wrong password). */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "buf.h"
#include "oci.h"
#include "registry.h"

static const char *env(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		fail_msg("%s is not set (run through registry_live.sh)", name);
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

static int collect(void *ud, const void *data, size_t len)
{
	return buf_append(ud, data, len);
}

static void test_tags(void **state)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct sf_err err = {0};
	struct strv tags = {0};

	assert_int_equal(registry_list_tags(r, &tags, &err), 0);
	assert_int_equal(tags.n, 2);
	/* In no promised order (distribution 2.8 lists its storage directory). */
	const char *stage = env("STAGE"), *record = env("RECORD_TAG");
	bool in_order = strcmp(tags.v[0], stage) == 0;
	assert_string_equal(tags.v[in_order ? 0 : 1], stage);
	assert_string_equal(tags.v[in_order ? 1 : 0], record);
	strv_done(&tags);
	/* A second listing reuses the cached token (and must give the same). */
	assert_int_equal(registry_list_tags(r, &tags, &err), 0);
	assert_int_equal(tags.n, 2);
	strv_done(&tags);
	registry_free(r);
}

static void test_manifest_get_and_head(void **state)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct registry_manifest m = {0};
	struct oci_manifest om = {0};
	struct sf_err err = {0};
	char digest[DIGEST_LEN];
	char *mt = NULL;
	uint64_t size = 0;

	assert_int_equal(registry_get_manifest(r, env("STAGE"), &m, &err), 0);
	assert_string_equal(m.media_type, MT_DOCKER_MANIFEST);
	assert_int_equal(registry_head_manifest(r, env("STAGE"), digest, &mt, &size, &err), 0);
	assert_string_equal(digest, m.digest);
	assert_string_equal(mt, MT_DOCKER_MANIFEST);
	assert_int_equal(size, m.len);
	assert_int_equal(oci_manifest_parse(m.data, m.len, m.media_type, &om, &err), 0);
	assert_string_equal(om.config.digest, env("IMAGE_ID"));
	/* By digest, too. */
	registry_manifest_done(&m);
	assert_int_equal(registry_get_manifest(r, digest, &m, &err), 0);
	assert_string_equal(m.digest, digest);
	registry_manifest_done(&m);
	oci_manifest_done(&om);
	free(mt);
	/* Absent: ENOENT, with the registry's reason. */
	assert_int_equal(registry_head_manifest(r, "no-such-tag", digest, NULL, NULL, &err),
			 -ENOENT);
	assert_int_equal(registry_get_manifest(r, "no-such-tag", &m, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "MANIFEST_UNKNOWN"));
	registry_free(r);
}

static void test_blob_offsets(void **state)
{
	struct registry *r = open_registry(env("DOCKER_CONFIG"));
	struct buf whole = BUF_INIT(1 << 20), tail = BUF_INIT(1 << 20);
	struct sf_err err = {0};
	char got[DIGEST_LEN];

	assert_int_equal(registry_get_blob(r, env("IMAGE_ID"), 0, collect, &whole, &err), 0);
	digest_buffer(whole.data, whole.len, got);
	assert_string_equal(got, env("IMAGE_ID"));
	assert_int_equal(registry_get_blob(r, env("IMAGE_ID"), 10, collect, &tail, &err), 0);
	assert_int_equal(tail.len, whole.len - 10);
	assert_memory_equal(tail.data, whole.data + 10, tail.len);
	assert_int_equal(
	    registry_get_blob(
		r, "sha256:0000000000000000000000000000000000000000000000000000000000000000", 0,
		collect, &tail, &err),
	    -ENOENT);
	buf_done(&whole);
	buf_done(&tail);
	registry_free(r);
}

static void test_wrong_password(void **state)
{
	struct registry *r = open_registry(env("BAD_CONFIG"));
	struct sf_err err = {0};
	struct strv tags = {0};

	assert_int_equal(registry_list_tags(r, &tags, &err), -EACCES);
	assert_non_null(strstr(err.msg, "token server"));
	registry_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tags),
	    cmocka_unit_test(test_manifest_get_and_head),
	    cmocka_unit_test(test_blob_offsets),
	    cmocka_unit_test(test_wrong_password),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
