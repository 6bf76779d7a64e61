/* Unit tests of core/oci: manifest and index parsing from data/manifests/ and data/index/
 * (valid-*.json with a .expect rendering of the result, invalid-*.json with an optional .expect
 * giving the Content-Type and the errno), generated hostile documents, and index.json bytes. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "buf.h"
#include "oci.h"
#include "testutil.h"

#define D1 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D2 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SIG "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"
#define STAGE SIG "-1589786063772"

/* The .expect file of a data file: "content-type: X" and "error: ERRNO" lines are inputs and
 * outcome; the rest is the expected rendering. */
struct expect {
	char *content_type;
	int error;
	char *render;
};

static void expect_load(const char *json_path, struct expect *ret)
{
	char *path =
	    tu_strdupf("%.*s.expect", (int)(strlen(json_path) - strlen(".json")), json_path);
	char *data, *line, *next;
	struct buf rest = BUF_INIT(0);
	FILE *f;

	*ret = (struct expect){.error = -EINVAL};
	f = fopen(path, "re");
	if (!f) {
		free(path);
		ret->render = tu_strdup("");
		return;
	}
	fclose(f);
	data = tu_read_file(path, NULL);
	for (line = data; *line; line = next) {
		char *nl = strchr(line, '\n');
		next = nl ? nl + 1 : line + strlen(line);
		if (nl)
			*nl = '\0';
		if (strncmp(line, "content-type: ", 14) == 0) {
			ret->content_type = tu_strdup(line + 14);
		} else if (strncmp(line, "error: ", 7) == 0) {
			ret->error = tu_errno_parse(line + 7);
		} else {
			assert_int_equal(buf_append(&rest, line, strlen(line)), 0);
			assert_int_equal(buf_append(&rest, "\n", 1), 0);
		}
	}
	ret->render = buf_steal(&rest, NULL);
	free(data);
	free(path);
}

static void expect_done(struct expect *e)
{
	free(e->content_type);
	free(e->render);
}

static void render_desc(struct buf *b, const char *what, const struct oci_desc *d)
{
	char *s =
	    tu_strdupf("%s: %s %s %" PRIu64 "\n", what,
		       d->media_type && *d->media_type ? d->media_type : "-", d->digest, d->size);
	assert_int_equal(buf_append(b, s, strlen(s)), 0);
	free(s);
}

static char *render_manifest(const struct oci_manifest *m)
{
	struct buf b = BUF_INIT(0);
	char *s =
	    tu_strdupf("media-type: %s\nindex: %s\n", m->media_type, m->is_index ? "yes" : "no");

	assert_int_equal(buf_append(&b, s, strlen(s)), 0);
	free(s);
	if (!m->is_index)
		render_desc(&b, "config", &m->config);
	for (size_t i = 0; i < m->n; i++)
		render_desc(&b, "desc", &m->descs[i]);
	return buf_steal(&b, NULL);
}

static void manifest_file(struct tu_case *c, void *userdata)
{
	struct oci_manifest m = {.media_type = (char *)"sentinel"};
	struct sf_err err = {0};
	struct expect e;
	size_t len;
	char *data = tu_read_file(c->path, &len);
	int r;

	expect_load(c->path, &e);
	r = oci_manifest_parse(data, len, e.content_type, &m, &err);
	if (strcmp(c->kind, "valid") == 0) {
		if (tu_check_rc(c, "oci_manifest_parse", r, 0)) {
			char *got = render_manifest(&m);
			tu_check_str(c, "parsed", got, e.render);
			tu_check(c, oci_media_type_is_index(m.media_type) == m.is_index,
				 "is_index does not match the media type");
			free(got);
			oci_manifest_done(&m);
			tu_check(c, !m.media_type && !m.descs && m.n == 0,
				 "oci_manifest_done does not reset");
		} else {
			tu_check(c, false, "error: %s", err.msg);
		}
	} else {
		tu_check_rc(c, "oci_manifest_parse", r, e.error);
		tu_check_rc(c, "err.code", err.code, e.error);
		tu_check(c, err.msg[0] != '\0', "no error message");
		if (r == 0)
			oci_manifest_done(&m);
		else
			tu_check(c, m.media_type && strcmp(m.media_type, "sentinel") == 0,
				 "ret written on failure");
	}
	expect_done(&e);
	free(data);
}

static void test_manifest_files(void **state)
{
	assert_true(tu_each_file("manifests", ".json", manifest_file, NULL) >= 100);
	tu_assert_all_passed();
}

/* {"schemaVersion":2,"mediaType":MT,"config":{..},"layers":[n descriptors]} */
static char *manifest_with_layers(size_t n, size_t *ret_len)
{
	struct buf b = BUF_INIT(64 << 20);
	static const char head[] = "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST
				   "\",\"config\":{\"mediaType\":\"" MT_DOCKER_CONFIG
				   "\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":[";
	static const char layer[] =
	    "{\"mediaType\":\"" MT_DOCKER_LAYER_GZIP "\",\"digest\":\"" D2 "\",\"size\":7}";

	assert_int_equal(buf_append(&b, head, strlen(head)), 0);
	for (size_t i = 0; i < n; i++) {
		if (i)
			assert_int_equal(buf_append(&b, ",", 1), 0);
		assert_int_equal(buf_append(&b, layer, strlen(layer)), 0);
	}
	assert_int_equal(buf_append(&b, "]}", 2), 0);
	return buf_steal(&b, ret_len);
}

static void test_manifest_descriptor_limit(void **state)
{
	struct oci_manifest m;
	struct sf_err err = {0};
	size_t len;
	char *doc;

	doc = manifest_with_layers(OCI_MAX_DESCRIPTORS, &len);
	assert_int_equal(oci_manifest_parse(doc, len, NULL, &m, &err), 0);
	assert_int_equal(m.n, OCI_MAX_DESCRIPTORS);
	assert_string_equal(m.descs[OCI_MAX_DESCRIPTORS - 1].digest, D2);
	assert_int_equal(m.descs[OCI_MAX_DESCRIPTORS - 1].size, 7);
	oci_manifest_done(&m);
	free(doc);

	doc = manifest_with_layers(OCI_MAX_DESCRIPTORS + 1, &len);
	assert_int_equal(oci_manifest_parse(doc, len, NULL, &m, &err), -E2BIG);
	assert_int_equal(err.code, -E2BIG);
	assert_string_equal(err.msg, "manifest lists more than 4096 entries");
	free(doc);

	doc = manifest_with_layers(20000, &len);
	assert_int_equal(oci_manifest_parse(doc, len, NULL, &m, NULL), -E2BIG);
	free(doc);

	/* The same limit for the children of an index. */
	{
		struct buf b = BUF_INIT(16 << 20);
		static const char child[] =
		    "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"digest\":\"" D2 "\",\"size\":7}";
		const char *head = "{\"schemaVersion\":2,\"manifests\":[";
		assert_int_equal(buf_append(&b, head, strlen(head)), 0);
		for (size_t i = 0; i <= OCI_MAX_DESCRIPTORS; i++) {
			if (i)
				assert_int_equal(buf_append(&b, ",", 1), 0);
			assert_int_equal(buf_append(&b, child, strlen(child)), 0);
		}
		assert_int_equal(buf_append(&b, "]}", 2), 0);
		assert_int_equal(oci_manifest_parse(b.data, b.len, NULL, &m, NULL), -E2BIG);
		buf_done(&b);
	}
}

static void test_manifest_hostile(void **state)
{
	struct oci_manifest m;
	struct sf_err err = {0};
	size_t n = 200000;
	char *doc = tu_malloc(2 * n + 256), *big;
	int len;

	/* Deeply nested JSON inside an ignored field: refused, no stack overflow. */
	assert_non_null(doc);
	len = snprintf(doc, 256,
		       "{\"schemaVersion\":2,\"layers\":[],\"config\":{\"digest\":\"" D1
		       "\",\"size\":1},\"x\":");
	memset(doc + len, '[', n);
	memset(doc + len + n, ']', n);
	memcpy(doc + len + 2 * n, "}", 2);
	assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), -EINVAL);
	/* Same with objects. */
	len = snprintf(doc, 256, "{\"schemaVersion\":2,\"x\":");
	for (size_t i = 0; i < n / 8; i++)
		memcpy(doc + len + 5 * i, "{\"a\":", 5);
	memset(doc + len + 5 * (n / 8), '}', n / 8 + 1);
	doc[len + 5 * (n / 8) + n / 8 + 1] = '\0';
	assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), -EINVAL);
	free(doc);

	/* A length that stops short of the document. */
	doc = manifest_with_layers(3, NULL);
	for (size_t cut = 0; cut < strlen(doc); cut += 7)
		assert_int_equal(oci_manifest_parse(doc, cut, NULL, &m, NULL), -EINVAL);
	assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, NULL), 0);
	oci_manifest_done(&m);
	/* A NUL inside the given length. */
	{
		size_t l = strlen(doc);
		char *copy = tu_malloc(l + 2);
		memcpy(copy, doc, l);
		copy[l] = '\0';
		copy[l + 1] = ' ';
		assert_int_equal(oci_manifest_parse(copy, l + 2, NULL, &m, NULL), -EINVAL);
		free(copy);
	}
	free(doc);

	/* A megabyte-long unknown media type, and a megabyte annotation that is fine. */
	big = tu_repeat('m', 1 << 20);
	doc = tu_strdupf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"layers\":[]}", big);
	assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), -EINVAL);
	assert_true(strlen(err.msg) < sizeof(err.msg));
	free(doc);
	doc = tu_strdupf("{\"schemaVersion\":2,\"annotations\":{\"a\":\"%s\"},\"config\":{"
			 "\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]}",
			 big);
	assert_int_equal(oci_manifest_parse(doc, strlen(doc), NULL, &m, &err), 0);
	assert_string_equal(m.media_type, MT_OCI_MANIFEST);
	oci_manifest_done(&m);
	free(doc);
	free(big);

	/* err is optional; done takes NULL and a zeroed struct. */
	assert_int_equal(oci_manifest_parse("{", 1, NULL, &m, NULL), -EINVAL);
	assert_int_equal(oci_manifest_parse("", 0, NULL, &m, NULL), -EINVAL);
	oci_manifest_done(NULL);
	m = (struct oci_manifest){0};
	oci_manifest_done(&m);
}

static void test_media_types(void **state)
{
	assert_true(oci_media_type_is_index(MT_OCI_INDEX));
	assert_true(oci_media_type_is_index(MT_DOCKER_LIST));
	assert_false(oci_media_type_is_index(MT_OCI_MANIFEST));
	assert_false(oci_media_type_is_index(MT_DOCKER_MANIFEST));
	assert_false(oci_media_type_is_index(NULL));
	assert_false(oci_media_type_is_index(""));
	assert_false(oci_media_type_is_index(MT_OCI_INDEX " "));
	assert_true(oci_media_type_is_manifest(MT_OCI_MANIFEST));
	assert_true(oci_media_type_is_manifest(MT_DOCKER_MANIFEST));
	assert_false(oci_media_type_is_manifest(MT_DOCKER_LIST));
	assert_false(oci_media_type_is_manifest(MT_DOCKER_CONFIG));
	assert_false(oci_media_type_is_manifest(NULL));
	assert_false(
	    oci_media_type_is_manifest("application/vnd.docker.distribution.manifest.v1+json"));
}

/* ---- index.json ----------------------------------------------------------------------- */

static void test_index_json_bytes(void **state)
{
	struct oci_desc d = {.media_type = (char *)MT_DOCKER_MANIFEST, .digest = D1, .size = 528};
	static const char want[] =
	    "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":"
	    "\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":"
	    "\"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
	    "\"size\":528,\"annotations\":{\"org.opencontainers.image.ref.name\":"
	    "\"" STAGE "\"}}]}";
	char *s = NULL, *s2 = NULL;
	size_t len = 0, len2 = 0;

	assert_int_equal(oci_index_json(&d, STAGE, &s, &len), 0);
	assert_string_equal(s, want);
	assert_int_equal(len, sizeof(want) - 1);
	assert_int_equal(strlen(s), len);

	/* Stable: the same input gives the same bytes, every time. */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(oci_index_json(&d, STAGE, &s2, &len2), 0);
		assert_int_equal(len2, len);
		assert_memory_equal(s2, s, len);
		free(s2);
	}
	free(s);
}

static void test_index_json_values(void **state)
{
	struct oci_desc d = {.media_type = (char *)MT_OCI_MANIFEST, .digest = D2, .size = 0};
	char *s, want[1024];
	size_t len;

	/* Escaping: quotes, backslashes, control characters; UTF-8 stays as it is; '/' too. */
	assert_int_equal(oci_index_json(&d, "a\"b\\c/d\n\x01\xc3\xa9", &s, &len), 0);
	snprintf(want, sizeof(want),
		 "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
		 "\"size\":0,\"annotations\":{\"%s\":\"a\\\"b\\\\c/d\\n\\u0001\xc3\xa9\"}}]}",
		 MT_OCI_MANIFEST, D2, OCI_REF_NAME);
	assert_string_equal(s, want);
	assert_int_equal(len, strlen(want));
	free(s);

	/* The largest size a parsed descriptor can have. */
	d.size = INT64_MAX;
	assert_int_equal(oci_index_json(&d, "", &s, &len), 0);
	snprintf(want, sizeof(want),
		 "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\","
		 "\"size\":9223372036854775807,\"annotations\":{\"%s\":\"\"}}]}",
		 MT_OCI_MANIFEST, D2, OCI_REF_NAME);
	assert_string_equal(s, want);
	free(s);
}

static void test_index_json_bad_input(void **state)
{
	struct oci_desc d = {.media_type = (char *)MT_OCI_MANIFEST, .digest = D2, .size = 1};
	struct tu_case c;
	char *s = (char *)"unchanged";
	size_t len = 42;
	int r;

	/* A ref name that is not UTF-8 cannot be written as JSON: the input is bad, not memory. */
	tu_case_begin(&c, false, "%s:%d (oci_index_json with a non-UTF-8 ref name)", __FILE__,
		      __LINE__);
	r = oci_index_json(&d, "\xff\xfe", &s, &len);
	tu_check_rc(&c, "oci_index_json", r, -EINVAL);
	tu_check(&c, len == 42, "ret_len written on failure");
	if (r == 0)
		free(s);
	tu_case_end(&c);

	tu_case_begin(&c, false, "%s:%d (oci_index_json with a NULL ref name)", __FILE__, __LINE__);
	s = (char *)"unchanged";
	r = oci_index_json(&d, NULL, &s, &len);
	tu_check_rc(&c, "oci_index_json", r, -EINVAL);
	if (r == 0)
		free(s);
	tu_case_end(&c);
	tu_assert_all_passed();
}

static void test_manifest_json(void **state)
{
	struct oci_desc config = {.media_type = (char *)MT_OCI_CONFIG, .digest = D1, .size = 1512};
	struct oci_desc layers[2] = {
	    {.media_type = (char *)MT_OCI_LAYER_TAR, .digest = D2, .size = 10240},
	    {.media_type = (char *)MT_OCI_LAYER_GZIP, .digest = D1, .size = 0},
	};
	static const char want[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
	    "\"" D1 "\",\"size\":1512},\"layers\":[{\"mediaType\":"
	    "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" D2 "\",\"size\":10240},"
	    "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D1
	    "\",\"size\":0}]}";
	static const char want_empty[] =
	    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
	    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
	    "\"" D1 "\",\"size\":1512},\"layers\":[]}";
	struct oci_manifest m;
	char *s, *s2;
	size_t len, len2;

	assert_int_equal(oci_manifest_json(MT_OCI_MANIFEST, &config, layers, 2, &s, &len), 0);
	assert_string_equal(s, want);
	assert_int_equal(len, sizeof(want) - 1);
	/* Stable bytes. */
	for (int i = 0; i < 20; i++) {
		assert_int_equal(oci_manifest_json(MT_OCI_MANIFEST, &config, layers, 2, &s2, &len2),
				 0);
		assert_int_equal(len2, len);
		assert_memory_equal(s2, s, len);
		free(s2);
	}
	/* What it writes parses back to the same descriptors. */
	assert_int_equal(oci_manifest_parse(s, len, NULL, &m, NULL), 0);
	assert_string_equal(m.media_type, MT_OCI_MANIFEST);
	assert_false(m.is_index);
	assert_string_equal(m.config.digest, D1);
	assert_int_equal(m.config.size, 1512);
	assert_int_equal(m.n, 2);
	assert_string_equal(m.descs[0].media_type, MT_OCI_LAYER_TAR);
	assert_int_equal(m.descs[0].size, 10240);
	assert_string_equal(m.descs[1].digest, D1);
	oci_manifest_done(&m);
	free(s);

	assert_int_equal(oci_manifest_json(MT_OCI_MANIFEST, &config, NULL, 0, &s, &len), 0);
	assert_string_equal(s, want_empty);
	assert_int_equal(len, sizeof(want_empty) - 1);
	free(s);
}

static void test_manifest_json_bad_input(void **state)
{
	struct oci_desc config = {.media_type = (char *)MT_OCI_CONFIG, .digest = D1, .size = 1};
	struct oci_desc layer = {.media_type = (char *)"\xc3\x28", .digest = D2, .size = 1};
	struct tu_case c;
	char *s = NULL;
	size_t len = 42;
	int r;

	/* A media type that is not UTF-8 cannot be written as JSON: bad input, not memory. */
	tu_case_begin(&c, false, "%s:%d (oci_manifest_json with a non-UTF-8 layer media type)",
		      __FILE__, __LINE__);
	r = oci_manifest_json(MT_OCI_MANIFEST, &config, &layer, 1, &s, &len);
	tu_check_rc(&c, "oci_manifest_json", r, -EINVAL);
	tu_check(&c, len == 42, "ret_len written on failure");
	if (r == 0)
		free(s);
	tu_case_end(&c);
	tu_assert_all_passed();
}

static void test_index_roundtrip(void **state)
{
	struct oci_desc d = {.media_type = (char *)MT_DOCKER_MANIFEST, .digest = D1, .size = 528};
	struct oci_desc got = {0};
	char *s, *ref = NULL;
	size_t len;

	assert_int_equal(oci_index_json(&d, STAGE, &s, &len), 0);
	assert_int_equal(oci_index_parse(s, len, &got, &ref, NULL), 0);
	assert_string_equal(got.media_type, d.media_type);
	assert_string_equal(got.digest, d.digest);
	assert_int_equal(got.size, d.size);
	assert_string_equal(ref, STAGE);
	free(got.media_type);
	free(ref);
	free(s);
}

static void index_file(struct tu_case *c, void *userdata)
{
	struct oci_desc d = {.media_type = (char *)"sentinel"};
	struct sf_err err = {0};
	struct expect e;
	size_t len;
	char *data = tu_read_file(c->path, &len), *ref = (char *)"sentinel";
	int r;

	expect_load(c->path, &e);
	r = oci_index_parse(data, len, &d, &ref, &err);
	if (strcmp(c->kind, "valid") == 0) {
		if (tu_check_rc(c, "oci_index_parse", r, 0)) {
			char *got = tu_strdupf("media-type: %s\ndigest: %s\nsize: %" PRIu64
					       "\nref-name: %s\n",
					       *d.media_type ? d.media_type : "-", d.digest, d.size,
					       ref ? ref : "(none)");
			tu_check_str(c, "parsed", got, e.render);
			free(got);
			free(d.media_type);
			free(ref);
		} else {
			tu_check(c, false, "error: %s", err.msg);
		}
	} else {
		tu_check_rc(c, "oci_index_parse", r, e.error);
		tu_check_rc(c, "err.code", err.code, e.error);
		tu_check(c, err.msg[0] != '\0', "no error message");
		if (r == 0) {
			free(d.media_type);
			free(ref);
		} else {
			tu_check(c,
				 strcmp(d.media_type, "sentinel") == 0 &&
				     strcmp(ref, "sentinel") == 0,
				 "ret written on failure");
		}
	}
	expect_done(&e);
	free(data);
}

static void test_index_files(void **state)
{
	assert_true(tu_each_file("index", ".json", index_file, NULL) >= 25);
	tu_assert_all_passed();
}

/* Blob formats by their first bytes, including a tar whose first file is named "{...}". */
static void test_blob_format(void **state)
{
	unsigned char tar[512] = "{not-json}";
	memcpy(tar + 257, "ustar", 5);
	assert_int_equal(oci_blob_format("\x1f\x8b\x08", 3), OCI_BLOB_GZIP);
	assert_int_equal(oci_blob_format("\x28\xb5\x2f\xfd", 4), OCI_BLOB_ZSTD);
	assert_int_equal(oci_blob_format("\x28\xb5\x2f", 3), OCI_BLOB_TAR);
	assert_int_equal(oci_blob_format(tar, sizeof(tar)), OCI_BLOB_TAR);
	assert_int_equal(oci_blob_format("{\"a\":1}", 7), OCI_BLOB_JSON);
	assert_int_equal(oci_blob_format("", 0), OCI_BLOB_TAR);
	assert_int_equal(oci_blob_format_file("/nonexistent"), OCI_BLOB_TAR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manifest_files),
	    cmocka_unit_test(test_blob_format),
	    cmocka_unit_test(test_manifest_descriptor_limit),
	    cmocka_unit_test(test_manifest_hostile),
	    cmocka_unit_test(test_media_types),
	    cmocka_unit_test(test_index_json_bytes),
	    cmocka_unit_test(test_index_json_values),
	    cmocka_unit_test(test_index_json_bad_input),
	    cmocka_unit_test(test_manifest_json),
	    cmocka_unit_test(test_manifest_json_bad_input),
	    cmocka_unit_test(test_index_roundtrip),
	    cmocka_unit_test(test_index_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
