/* registry: a client of one repository in an OCI distribution (Docker registry v2) server.
 *
 * Speaks /v2/ ping, tag listing with pagination (n + Link), manifests (GET/HEAD, Docker schema 2,
 * OCI manifest and index, Docker manifest list) and blobs (GET from an offset). Authentication
 * is negotiated from the registry's 401 challenge: Basic, or the Bearer token flow; tokens are
 * cached per scope until they expire. Credentials come from Docker's config (auth.h).
 * Scheme: HTTPS verified; with insecure, HTTPS unverified then plain HTTP; loopback registries
 * may use plain HTTP without insecure, as Docker allows.
 *
 * Limits: manifests 4 MiB, one tag page 4 MiB, at most 1,000,000 tags.
 * Thread-safe: one registry may serve many threads; the token cache is locked.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "digest.h"
#include "err.h"
#include "http.h"

#define REGISTRY_MANIFEST_CAP (4 * 1024 * 1024)
#define REGISTRY_TAGS_MAX 1000000

struct registry_opts {
	bool insecure;
	const char *docker_config_dir; /* where config.json is; NULL = no credentials */
	struct http_client_opts http;
	int page_size; /* tags per page asked for; default 1000 */
};

struct registry;

/* Create and ping (/v2/): fails when the registry cannot be reached or is not a registry. */
int registry_new(const struct addr *a, const struct registry_opts *opts, struct registry **ret,
		 struct sf_err *err);
void registry_free(struct registry *r);
/* Stop every request, running or to come (-ECANCELED). */
void registry_cancel(struct registry *r);

/* "http://127.0.0.1:5000" or "https://host". Borrowed. */
const char *registry_base_url(const struct registry *r);

struct strv {
	size_t n;
	char **v;
};
void strv_done(struct strv *s);

/* Every tag of the repository (all pages). A missing repository is an empty list. */
int registry_list_tags(struct registry *r, struct strv *ret, struct sf_err *err);

struct registry_manifest {
	char *data;
	size_t len;
	char *media_type;	 /* Content-Type as served */
	char digest[DIGEST_LEN]; /* sha256 of data, checked against Docker-Content-Digest */
};
void registry_manifest_done(struct registry_manifest *m);

/* GET a manifest by tag or digest. -ENOENT when absent, -EBADMSG when bytes do not match the
 * digest asked for or a sha256 Docker-Content-Digest, -EPROTO when that header is malformed. */
int registry_get_manifest(struct registry *r, const char *ref, struct registry_manifest *ret,
			  struct sf_err *err);

/* HEAD a manifest: its digest (Docker-Content-Digest, sha256), media type (Content-Type without
 * parameters, lower case; "" when absent or malformed) and size, without the body.
 * -ENOENT when absent, -EPROTO without a sha256 digest or a valid Content-Length.
 * ret_media_type may be NULL; the caller frees it. */
int registry_head_manifest(struct registry *r, const char *ref, char ret_digest[DIGEST_LEN],
			   char **ret_media_type, uint64_t *ret_size, struct sf_err *err);

/* Stream a blob from offset into sink. -ENOENT when absent. */
int registry_get_blob(struct registry *r, const char *digest, uint64_t offset, http_sink_fn sink,
		      void *userdata, struct sf_err *err);

/* The URL (maybe relative) of the first link whose first rel lists "next" in a Link field value
 * (RFC 8288: several links, several Link lines combined, params in any order, quoted values,
 * rel="next prev"), or NULL (none, a malformed link-value before it, no memory). For tests. */
char *registry_parse_link_next(const char *link);

/* Append the tags of one tags/list page (JSON) to out. -EINVAL for malformed pages. */
int registry_parse_tags(const char *body, size_t len, struct strv *out, struct sf_err *err);
