/* docker: a client of the Docker Engine API (the daemon that holds werf's :local stages).
 *
 * Connects to unix:///path (default /var/run/docker.sock) or tcp://host:port (plain HTTP),
 * negotiates the API version once (GET /version; at most 1.41 is used) and speaks JSON.
 * Errors say what a user can fix: no daemon at the socket, permission denied on the socket,
 * image not found. Thread-safe (the HTTP client's pool is shared).
 */
#pragma once

#include <jansson.h>

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

/* Compare API versions "1.41" and "1.24": <0, 0, >0. Exposed for tests. */
int docker_version_cmp(const char *a, const char *b);
