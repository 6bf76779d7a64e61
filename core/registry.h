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

/* ---- Write half (OCI distribution spec "Push" and "Content Management"). Write requests ask
 * for push rights (Bearer scope "pull,push"; deletes "delete"): a credential without them fails
 * with -EACCES and a message saying which right is missing. ---- */

#define REGISTRY_CHUNK (32ULL * 1024 * 1024) /* blobs larger than this go up in PATCH chunks */
#define REGISTRY_UPLOAD_TRIES 3		     /* upload sessions per registry_put_blob */

/* HEAD a blob. 0 and *ret_size (bytes; ret_size may be NULL) when the repository has it,
 * -ENOENT when not, -EACCES without pull rights, -EINVAL for a malformed digest, -EIO and
 * friends for transport trouble. */
int registry_has_blob(struct registry *r, const char *digest, uint64_t *ret_size,
		      struct sf_err *err);

/* Upload len bytes of fd from offset off (read with pread: fd's position is untouched, and
 * curl may rewind on a retry) as the blob digest. POST an upload session, then one monolithic
 * PUT ?digest= when len <= REGISTRY_CHUNK, else PATCH chunks of REGISTRY_CHUNK bytes
 * (Content-Range) and a final empty PUT. The Location of each answer is followed (relative or
 * absolute, query kept). The final answer must be 201 and any Docker-Content-Digest must be
 * digest. A session that fails on the network or the server side (-EIO, -ETIMEDOUT, -EAGAIN,
 * -ERANGE (416), -EPROTO, -ENOENT (session lost)) is cancelled and the whole upload is retried,
 * at most REGISTRY_UPLOAD_TRIES sessions in all (each request also has http's own retries).
 * Errors: -EACCES no push rights; -EBADMSG the registry computed another digest (the bytes
 * do not match the name); -EINVAL bad digest or off+len past the end of a regular file;
 * -ECANCELED after registry_cancel. The caller checks registry_has_blob first if it wants to
 * skip blobs the repository has. Thread-safe (fd is only pread). */
int registry_put_blob(struct registry *r, const char *digest, int fd, uint64_t off, uint64_t len,
		      struct sf_err *err);

/* PUT a manifest of media_type (its Content-Type) under ref, a tag or a digest. data/len are
 * borrowed (at most REGISTRY_MANIFEST_CAP). On success writes its sha256 ("sha256:HEX") to
 * ret_digest (checked against the registry's Docker-Content-Digest: -EBADMSG if they differ).
 * Every blob it names must already be in the repository.
 * -EPROTONOSUPPORT: this registry does not accept this manifest media type (HTTP 415; 400 with
 *   UNSUPPORTED; or 400 MANIFEST_INVALID for a Docker media type, as Zot answers): the caller
 *   may put the same blobs under an OCI manifest instead. Nothing was stored.
 * -EINVAL: a ref that is a digest other than the data's, a malformed ref or media type, or the
 *   registry refused the manifest (400: MANIFEST_INVALID for an OCI type, MANIFEST_BLOB_UNKNOWN,
 *   TAG_INVALID ...; the registry's code and message are in err).
 * -EACCES: no push rights. -EFBIG: larger than the cap. */
int registry_put_manifest(struct registry *r, const char *ref, const char *media_type,
			  const void *data, size_t len, char ret_digest[DIGEST_LEN],
			  struct sf_err *err);

/* Remove one tag, and only it, even when other tags share its manifest: upload a small unique
 * config blob and put a unique empty manifest naming it, first by digest (untagged), and DELETE
 * that digest to learn whether this registry allows deletes; then put it under tag (moving
 * only this tag) and DELETE its digest, which removes the tag (as regctl does). The throw-away
 * config blob is deleted best effort; the manifests the tag pointed at stay for other tags.
 * -ENOENT: no such tag. -EPERM: the registry forbids deletes (HTTP 405 / UNSUPPORTED; its reason
 * in err): the tag is unchanged (only an untagged throw-away manifest was left).
 * -EACCES: no push or delete rights (nothing changed when push is missing). -EINVAL: bad tag.
 * Not atomic against a concurrent writer of the same tag. */
int registry_delete_tag(struct registry *r, const char *tag, struct sf_err *err);

/* location with "digest=DIGEST" appended after '?' or '&' (a fragment dropped). Caller frees;
 * NULL on out-of-memory. Exposed for tests. */
char *registry_upload_url(const char *location, const char *digest);
