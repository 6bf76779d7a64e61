/* docker: a client of the Docker Engine API (the daemon that holds werf's :local stages).
 *
 * Connects to unix:///path (default /var/run/docker.sock) or tcp://host:port (plain HTTP),
 * negotiates the API version once and speaks JSON.
 *
 * Versions: GET /version (unversioned) gives the daemon's ApiVersion and MinAPIVersion; the
 * version used is the newest both sides speak, in [max(MinAPIVersion, 1.24), min(ApiVersion,
 * 1.52)] (Docker 29: Min 1.44, Max 1.52 -> 1.52; Docker 20.10: 1.41). No overlap refuses the
 * connection with both ranges in the message. What differs across 1.24..1.52 in what we read
 * (Docker Engine API version history): images/json takes the `reference` filter from 1.25 on
 * (docker_api_at_least tells); VirtualSize (1.44) and Container/ContainerConfig (1.45) went,
 * unused here; Config.Labels may be absent (1.50: empty fields omitted) = no labels; RepoTags
 * may be null or [] for untagged images; with the containerd image store (Docker 29 default)
 * Id is the manifest or index digest and images/{}/get gives an OCI archive of the blobs as
 * stored (docker_storage.h). Docker 25+ (1.44) exports OCI-style archives in any store.
 * Errors say what a user can fix: no daemon at the socket, permission denied on the socket,
 * image not found. Thread-safe (the HTTP client's pool is shared).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "http.h"

struct docker;

/* Connect and negotiate. host_url NULL = $DOCKER_HOST, else unix:///var/run/docker.sock. */
int docker_new(const char *host_url, struct docker **ret, struct sf_err *err);
void docker_free(struct docker *d);
/* Stop every request, running or to come (-ECANCELED): an export under way ends now. */
void docker_cancel(struct docker *d);

/* "1.41": the API version in use. Borrowed. */
const char *docker_api_version(const struct docker *d);

/* GET /images/json with filters (a JSON object text, or NULL). Returns a new JSON array. */
int docker_list_images(struct docker *d, const char *filters, json_t **ret, struct sf_err *err);

/* GET /images/{ref}/json. Returns a new JSON object; -ENOENT when there is no such image. */
int docker_inspect_image(struct docker *d, const char *ref, json_t **ret, struct sf_err *err);

/* GET /images/{ref}/get: stream the `docker save` tar into sink. */
int docker_export_image(struct docker *d, const char *ref, http_sink_fn sink, void *userdata,
			struct sf_err *err);

/* Choose the API version to use from /version's ApiVersion and MinAPIVersion (NULL or "" for
 * daemons before 1.25): writes "1.NN" into ret (size bytes). -EPROTO with the reason when
 * api is missing or malformed, or no version is in both ranges. Pure; exposed for tests. */
int docker_choose_version(const char *api, const char *min_api, char *ret, size_t size,
			  struct sf_err *err);

/* True when the version in use is v or newer. */
bool docker_api_at_least(const struct docker *d, const char *v);

/* Compare API versions "1.41" and "1.24": <0, 0, >0. Exposed for tests. */
int docker_version_cmp(const char *a, const char *b);

/* ---- writing: load and untag ------------------------------------------------------------- */

/* What Docker said a load did (the "stream" lines of its answer). Owned by the caller: free
 * with docker_load_result_done(). */
struct docker_load_result {
	char **loaded; /* in order: REF of each "Loaded image: REF" line, or the ID of each
			  "Loaded image ID: sha256:..." line (an archive without RepoTags) */
	size_t n_loaded;
	char **untagged; /* IDs of images that LOST a tag to this load: Docker moves an existing
			    tag silently ("The image REF already exists, renaming the old one with
			    ID ID to empty string"), in order */
	size_t n_untagged;
};
void docker_load_result_done(struct docker_load_result *r);

/* POST /images/load?quiet=1 (Content-Type: application/x-tar) of an archive of len bytes read
 * from read_at(ud, off, buf, n) while it is sent (e.g. tar_plan_read_at_cb; nothing is written
 * to disk). read_at must give the same bytes when called again from offset 0: a request that
 * fails in transport is sent again. The archive is what `docker save` makes (manifest.json,
 * config, one file per layer; Docker 20.10 also takes gzip layer files, and a layer listed
 * twice); Docker tags the image with the manifest's RepoTags, moving a tag that names another
 * image (see ret: check beforehand if that must not happen).
 * Docker answers 200 and then reports failure inside its JSON message stream; the first
 * error line fails the call with Docker's text in err:
 *   -EBADMSG  a layer does not match the config's diff ID ("invalid diffID for layer N...")
 *   -ENOSPC   the daemon's disk is full
 *   -EINVAL   Docker refused the archive (truncated or corrupt layer: "ApplyLayer exit status
 *             1 stdout:  stderr: unexpected EOF"; not a tar; bad manifest.json; a file named
 *             by manifest.json missing; an invalid reference in RepoTags)
 *   -EIO      any other error line, or a stream that names no loaded image
 * Before the stream: -errno of read_at (passed on unchanged), -ECANCELED (docker_cancel),
 * the daemon's error status as answer_error maps it, -EIO/-EACCES when the daemon is
 * unreachable. Note: Docker skips reading a layer file whose layer it already has (same chain
 * of diff IDs), so a corrupt copy of a known layer loads fine: verify blobs before.
 * ret (optional) is filled on success only. Thread-safe. */
int docker_load_image(struct docker *d, http_read_at_fn read_at, void *ud, uint64_t len,
		      struct docker_load_result *ret, struct sf_err *err);

/* DELETE /images/{ref}?noprune=1, never forced: with ref a NAME:TAG this removes that tag only;
 * the image itself goes only when this was its last tag (and no container uses it); untagged
 * parent images are kept (noprune). ret_deleted (optional): true when the image went too.
 *   -ENOENT  no such image or tag
 *   -EBUSY   Docker refused (409): a container uses the image, or ref is an image ID that
 *            several tags hold (Docker's reason in err)
 *   other daemon errors as answer_error maps them; -EIO/-EACCES when unreachable.
 * Thread-safe. */
int docker_remove_image(struct docker *d, const char *ref, bool *ret_deleted, struct sf_err *err);
