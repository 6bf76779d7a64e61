#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "name.h"

bool oci_media_type_is_index(const char *mt)
{
	return mt && (strcmp(mt, MT_OCI_INDEX) == 0 || strcmp(mt, MT_DOCKER_LIST) == 0);
}

bool oci_media_type_is_manifest(const char *mt)
{
	return mt && (strcmp(mt, MT_OCI_MANIFEST) == 0 || strcmp(mt, MT_DOCKER_MANIFEST) == 0);
}

static void desc_done(struct oci_desc *d)
{
	free(d->media_type);
	d->media_type = NULL;
}

void oci_manifest_done(struct oci_manifest *m)
{
	if (!m)
		return;
	free(m->media_type);
	desc_done(&m->config);
	for (size_t i = 0; i < m->n; i++)
		desc_done(&m->descs[i]);
	free(m->descs);
	*m = (struct oci_manifest){0};
}

/* Borrowed json -> owned desc. */
static int desc_parse(json_t *j, const char *what, struct oci_desc *ret, struct sf_err *err)
{
	json_t *mtj = json_object_get(j, "mediaType");
	const char *mt = json_string_value(mtj);
	const char *dg = json_string_value(json_object_get(j, "digest"));
	json_t *size = json_object_get(j, "size");

	if (!json_is_object(j))
		return err_set(err, -EINVAL, "%s is not an object", what);
	if (mtj && !mt)
		return err_set(err, -EINVAL, "%s: mediaType is not a string", what);
	if (!name_digest_valid(dg))
		return err_set(err, -EINVAL, "%s has no valid sha256 digest", what);
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return err_set(err, -EINVAL, "%s has no valid size", what);
	ret->media_type = strdup(mt ? mt : "");
	if (!ret->media_type)
		return -ENOMEM;
	memcpy(ret->digest, dg, DIGEST_LEN);
	ret->size = (uint64_t)json_integer_value(size);
	return 0;
}

/* The canonical name of one of the four manifest types, for a normalized type; or NULL. */
static const char *known_type(const char *t)
{
	static const char *const known[] = {MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST,
					    MT_DOCKER_LIST};

	for (size_t i = 0; t && i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(t, known[i]) == 0)
			return known[i];
	return NULL;
}

/* Types that say "some bytes" or "some JSON" rather than which document: proxies, static file
 * servers and some registries answer with them. */
static bool generic_type(const char *t)
{
	return strcmp(t, "application/json") == 0 || strcmp(t, "text/plain") == 0 ||
	       strcmp(t, "application/octet-stream") == 0 || strcmp(t, "binary/octet-stream") == 0;
}

/* A descriptor's mediaType, normalized, equals want. */
static bool desc_type_is(json_t *desc, const char *want)
{
	char *t = NULL;
	bool eq;

	if (http_parse_media_type(json_string_value(json_object_get(desc, "mediaType")), &t) < 0)
		return false;
	eq = strcmp(t, want) == 0;
	free(t);
	return eq;
}

/* Which of the four a document is by its fields alone (schemaVersion 2 already checked): an
 * index has "manifests", a Docker manifest list's children are all Docker schema 2
 * manifests; an image manifest has "config", a Docker one a Docker config. */
static const char *type_from_fields(json_t *root)
{
	json_t *arr = json_object_get(root, "manifests");
	size_t i;

	if (arr) {
		for (i = 0; i < json_array_size(arr); i++)
			if (!desc_type_is(json_array_get(arr, i), MT_DOCKER_MANIFEST))
				return MT_OCI_INDEX;
		return i ? MT_DOCKER_LIST : MT_OCI_INDEX;
	}
	return desc_type_is(json_object_get(root, "config"), MT_DOCKER_CONFIG) ? MT_DOCKER_MANIFEST
									       : MT_OCI_MANIFEST;
}

/* The document's type: its own mediaType field (parameters and case ignored) when it has one;
 * else the Content-Type it came with when that names one of the four; else, when that is
 * absent, malformed or generic, its fields. */
static int resolve_type(json_t *root, const char *content_type, const char **ret,
			struct sf_err *err)
{
	const char *doc = json_string_value(json_object_get(root, "mediaType"));
	char *t = NULL;
	int r;

	if (doc && *doc) {
		r = http_parse_media_type(doc, &t);
		if (r == -ENOMEM)
			return r;
		*ret = known_type(t);
		free(t);
		if (!*ret)
			return err_set(err, -EINVAL, "unsupported manifest media type '%s'", doc);
		return 0;
	}
	r = http_parse_media_type(content_type, &t);
	if (r == -ENOMEM)
		return r;
	*ret = known_type(t);
	if (!*ret && t && !generic_type(t)) {
		r = err_set(err, -EINVAL, "unsupported manifest media type '%s'", content_type);
		free(t);
		return r;
	}
	free(t);
	if (!*ret)
		*ret = type_from_fields(root);
	return 0;
}

int oci_manifest_parse(const void *data, size_t len, const char *media_type,
		       struct oci_manifest *ret, struct sf_err *err)
{
	struct oci_manifest m = {0};
	json_t *root, *arr, *sv;
	json_error_t jerr;
	const char *mt;
	int r;

	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return err_set(err, -EINVAL, "manifest is not JSON: %s", jerr.text);
	if (!json_is_object(root)) {
		r = err_set(err, -EINVAL, "manifest is not a JSON object");
		goto out;
	}
	sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		r = err_set(err, -EINVAL, "manifest schemaVersion is not 2");
		goto out;
	}
	if (json_object_get(root, "mediaType") &&
	    !json_is_string(json_object_get(root, "mediaType"))) {
		r = err_set(err, -EINVAL, "manifest mediaType is not a string");
		goto out;
	}
	r = resolve_type(root, media_type, &mt, err);
	if (r < 0)
		goto out;
	m.media_type = strdup(mt);
	if (!m.media_type) {
		r = -ENOMEM;
		goto out;
	}
	m.is_index = oci_media_type_is_index(mt);
	if (!m.is_index) {
		r = desc_parse(json_object_get(root, "config"), "config", &m.config, err);
		if (r < 0)
			goto out;
	}
	arr = json_object_get(root, m.is_index ? "manifests" : "layers");
	if (!json_is_array(arr)) {
		r = err_set(err, -EINVAL, "manifest has no %s array",
			    m.is_index ? "manifests" : "layers");
		goto out;
	}
	if (json_array_size(arr) > OCI_MAX_DESCRIPTORS) {
		r = err_set(err, -E2BIG, "manifest lists more than %d entries",
			    OCI_MAX_DESCRIPTORS);
		goto out;
	}
	m.descs = calloc(json_array_size(arr) + 1, sizeof(*m.descs));
	if (!m.descs) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		r = desc_parse(json_array_get(arr, i), m.is_index ? "manifests[]" : "layers[]",
			       &m.descs[i], err);
		if (r < 0)
			goto out;
		m.n = i + 1;
	}
	*ret = m;
	m = (struct oci_manifest){0};
	r = 0;
out:
	oci_manifest_done(&m);
	json_decref(root);
	return r;
}

/* Compact bytes with keys in insertion order: the same input, the same bytes. Steals root. */
static int dump_stable(json_t *root, char **ret, size_t *ret_len)
{
	char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);

	json_decref(root);
	if (!s)
		return -ENOMEM;
	*ret = s;
	*ret_len = strlen(s);
	return 0;
}

int oci_index_json(const struct oci_desc *manifest, const char *ref_name, char **ret,
		   size_t *ret_len)
{
	json_t *root;

	if (!manifest->media_type || !ref_name)
		return -EINVAL;
	/* json_pack fails only for bad UTF-8 (or no memory): the caller's strings are bad. */
	root = json_pack("{s:i,s:[{s:s,s:s,s:I,s:{s:s}}]}", "schemaVersion", 2, "manifests",
			 "mediaType", manifest->media_type, "digest", manifest->digest, "size",
			 (json_int_t)manifest->size, "annotations", OCI_REF_NAME, ref_name);
	if (!root)
		return -EINVAL;
	return dump_stable(root, ret, ret_len);
}

int oci_index_parse(const void *data, size_t len, struct oci_desc *ret_manifest,
		    char **ret_ref_name, struct sf_err *err)
{
	json_t *root, *arr, *ref;
	json_error_t jerr;
	struct oci_desc d = {0};
	int r;

	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return err_set(err, -EINVAL, "index.json is not JSON: %s", jerr.text);
	arr = json_object_get(root, "manifests");
	if (!json_is_array(arr) || json_array_size(arr) != 1) {
		r = err_set(err, -EINVAL, "index.json must list exactly one manifest");
		goto out;
	}
	r = desc_parse(json_array_get(arr, 0), "index.json manifests[0]", &d, err);
	if (r < 0)
		goto out;
	ref = json_object_get(json_object_get(json_array_get(arr, 0), "annotations"), OCI_REF_NAME);
	if (ref && !json_is_string(ref)) {
		r = err_set(err, -EINVAL, "index.json ref name is not a string");
		goto out;
	}
	*ret_ref_name = ref ? strdup(json_string_value(ref)) : NULL;
	*ret_manifest = d;
	d = (struct oci_desc){0};
	r = 0;
out:
	desc_done(&d);
	json_decref(root);
	return r;
}

static json_t *desc_json(const struct oci_desc *d)
{
	if (!d->media_type)
		return NULL;
	return json_pack("{s:s,s:s,s:I}", "mediaType", d->media_type, "digest", d->digest, "size",
			 (json_int_t)d->size);
}

int oci_manifest_json(const char *media_type, const struct oci_desc *config,
		      const struct oci_desc *layers, size_t nlayers, char **ret, size_t *ret_len)
{
	json_t *root, *arr = json_array();

	if (!arr)
		return -ENOMEM;
	if (!media_type) {
		json_decref(arr);
		return -EINVAL;
	}
	for (size_t i = 0; i < nlayers; i++)
		if (json_array_append_new(arr, desc_json(&layers[i])) < 0) {
			json_decref(arr);
			return -EINVAL;
		}
	/* "o" steals arr and the config object even when packing fails. */
	root = json_pack("{s:i,s:s,s:o,s:o}", "schemaVersion", 2, "mediaType", media_type, "config",
			 desc_json(config), "layers", arr);
	if (!root)
		return -EINVAL;
	return dump_stable(root, ret, ret_len);
}

enum oci_blob_format oci_blob_format(const void *head, size_t len)
{
	const unsigned char *b = head;

	if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b)
		return OCI_BLOB_GZIP;
	if (len >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd)
		return OCI_BLOB_ZSTD;
	if (len >= 262 && memcmp(b + 257, "ustar", 5) == 0)
		return OCI_BLOB_TAR;
	if (len >= 1 && b[0] == '{')
		return OCI_BLOB_JSON;
	return OCI_BLOB_TAR;
}

enum oci_blob_format oci_blob_format_file(const char *path)
{
	unsigned char head[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, head, sizeof(head), 0) : -1;

	if (fd >= 0)
		close(fd);
	return oci_blob_format(head, n > 0 ? (size_t)n : 0);
}
