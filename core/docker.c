#include "docker.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The API versions whose answers stagefs reads (docker.h lists what differs between them). */
#define MAX_API "1.52"
#define MIN_API "1.24"
#define LIST_CAP (64 * 1024 * 1024)
#define INSPECT_CAP (4 * 1024 * 1024)

struct docker {
	struct http_client *http;
	char *host_url;	   /* as given, for messages */
	char *socket_path; /* unix socket, or NULL */
	char *base;	   /* "http://localhost" or "http://host:port" */
	char version[16];
};

const char *docker_api_version(const struct docker *d)
{
	return d->version;
}

int docker_version_cmp(const char *a, const char *b)
{
	unsigned long amaj = strtoul(a, (char **)&a, 10), bmaj = strtoul(b, (char **)&b, 10);
	unsigned long amin = *a == '.' ? strtoul(a + 1, NULL, 10) : 0;
	unsigned long bmin = *b == '.' ? strtoul(b + 1, NULL, 10) : 0;

	if (amaj != bmaj)
		return amaj < bmaj ? -1 : 1;
	if (amin != bmin)
		return amin < bmin ? -1 : 1;
	return 0;
}

/* "1.41": digits, a dot, digits (what Docker writes). */
static bool version_valid(const char *v)
{
	size_t a = v ? strspn(v, "0123456789") : 0;

	return a > 0 && a < 6 && v[a] == '.' && strspn(v + a + 1, "0123456789") > 0 &&
	       strspn(v + a + 1, "0123456789") < 6 &&
	       v[a + 1 + strspn(v + a + 1, "0123456789")] == '\0';
}

int docker_choose_version(const char *api, const char *min_api, char *ret, size_t size,
			  struct sf_err *err)
{
	const char *use, *low = MIN_API;

	if (!version_valid(api))
		return err_set(err, -EPROTO,
			       "Docker's /version gives no API version (ApiVersion '%s')",
			       api ? api : "");
	/* Daemons before API 1.25 do not say their minimum: they accept every older version. */
	if (min_api && *min_api) {
		if (!version_valid(min_api))
			return err_set(err, -EPROTO,
				       "Docker's /version gives a bad MinAPIVersion '%s'", min_api);
		if (docker_version_cmp(min_api, low) > 0)
			low = min_api;
	}
	use = docker_version_cmp(api, MAX_API) > 0 ? MAX_API : api;
	if (docker_version_cmp(use, low) < 0) {
		if (docker_version_cmp(api, MIN_API) < 0)
			return err_set(err, -EPROTO,
				       "Docker API %s is too old (stagefs needs %s..%s)", api,
				       MIN_API, MAX_API);
		return err_set(err, -EPROTO,
			       "Docker speaks API %s..%s and stagefs %s..%s: no version in common "
			       "(a newer stagefs is needed)",
			       min_api, api, MIN_API, MAX_API);
	}
	if (strlen(use) >= size)
		return -ENOBUFS;
	memcpy(ret, use, strlen(use) + 1);
	return 0;
}

bool docker_api_at_least(const struct docker *d, const char *v)
{
	return docker_version_cmp(d->version, v) >= 0;
}

/* Map a transport failure to a sentence about the daemon. */
static int unreachable(struct docker *d, int r, struct sf_err *err)
{
	if (d->socket_path && access(d->socket_path, F_OK) < 0 && errno != EACCES)
		return err_set(err, -EIO, "no Docker daemon socket at %s (is dockerd running?)",
			       d->host_url);
	if (d->socket_path && access(d->socket_path, R_OK | W_OK) < 0 && errno == EACCES)
		return err_set(err, -EACCES,
			       "permission denied on the Docker socket %s (run as root or join "
			       "the docker group)",
			       d->host_url);
	err_prefix(err, "cannot talk to the Docker daemon at %s", d->host_url);
	return r;
}

/* Wraps a caller's sink to tell its failures from the daemon's. */
struct sink_guard {
	http_sink_fn sink;
	void *userdata;
	bool failed;
};

static int guarded_sink(void *ud, const void *data, size_t len)
{
	struct sink_guard *g = ud;
	int r = g->sink(g->userdata, data, len);

	if (r < 0)
		g->failed = true;
	return r;
}

/* GET path; with a sink, ud must be a struct sink_guard around it. */
static int get(struct docker *d, const char *path, size_t cap, http_sink_fn sink, void *ud,
	       struct http_response *resp, struct sf_err *err)
{
	struct http_request req = {.max_body = cap, .sink = sink, .sink_userdata = ud};
	char *url = NULL;
	int r;

	if (asprintf(&url, "%s%s%s%s", d->base, d->version[0] ? "/v" : "", d->version, path) < 0)
		return -ENOMEM;
	req.url = url;
	r = http_do(d->http, &req, resp, err);
	free(url);
	if (r < 0 && !(sink && ((struct sink_guard *)ud)->failed) && r != -EFBIG)
		return unreachable(d, r, err);
	return r;
}

/* The daemon's {"message": ...} of an error answer, as -errno with a sentence. */
static int answer_error(const char *what, const struct http_response *resp, struct sf_err *err)
{
	json_t *root =
	    resp->body.data ? json_loadb(resp->body.data, resp->body.len, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(root, "message"));
	int code = err_from_http(resp->status);

	err_set(err, code ? code : -EIO, "%s: Docker answered %ld%s%s", what, resp->status,
		msg ? ": " : "", msg ? msg : "");
	json_decref(root);
	return code ? code : -EIO;
}

int docker_new(const char *host_url, struct docker **ret, struct sf_err *err)
{
	struct http_client_opts hopts = {.max_tries = 3, .backoff_ms = 100};
	struct http_response resp = {0};
	struct docker *d;
	json_t *root = NULL;
	const char *v;
	int r;

	if (!host_url || !*host_url)
		host_url = getenv("DOCKER_HOST");
	if (!host_url || !*host_url)
		host_url = "unix:///var/run/docker.sock";
	d = calloc(1, sizeof(*d));
	if (!d || !(d->host_url = strdup(host_url))) {
		free(d);
		return -ENOMEM;
	}
	if (strncmp(host_url, "unix://", 7) == 0 && host_url[7] == '/') {
		d->socket_path = strdup(host_url + 7);
		d->base = strdup("http://localhost");
	} else if (strncmp(host_url, "tcp://", 6) == 0 && host_url[6]) {
		if (asprintf(&d->base, "http://%s", host_url + 6) < 0)
			d->base = NULL;
	} else {
		r = err_set(err, -EINVAL,
			    "docker_host '%s': use unix:///path/to/docker.sock or tcp://host:port",
			    host_url);
		goto fail;
	}
	if (!d->base || (strncmp(host_url, "unix://", 7) == 0 && !d->socket_path)) {
		r = -ENOMEM;
		goto fail;
	}
	hopts.unix_socket = d->socket_path;
	r = http_client_new(&hopts, &d->http);
	if (r < 0)
		goto fail;
	r = get(d, "/version", 1 << 20, NULL, NULL, &resp, err);
	if (r < 0)
		goto fail;
	if (resp.status != 200) {
		r = answer_error("GET /version", &resp, err);
		goto fail;
	}
	root = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
	v = json_string_value(json_object_get(root, "ApiVersion"));
	r = docker_choose_version(v, json_string_value(json_object_get(root, "MinAPIVersion")),
				  d->version, sizeof(d->version), err);
	if (r < 0) {
		err_prefix(err, "%s", host_url);
		goto fail;
	}
	json_decref(root);
	http_response_done(&resp);
	*ret = d;
	return 0;
fail:
	json_decref(root);
	http_response_done(&resp);
	docker_free(d);
	return r;
}

void docker_cancel(struct docker *d)
{
	http_client_cancel(d->http);
}

void docker_free(struct docker *d)
{
	if (!d)
		return;
	http_client_free(d->http);
	free(d->host_url);
	free(d->socket_path);
	free(d->base);
	free(d);
}

static char *escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == ':') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

static int get_json(struct docker *d, const char *what, const char *path, size_t cap, json_t **ret,
		    struct sf_err *err)
{
	struct http_response resp = {0};
	json_error_t jerr;
	int r;

	r = get(d, path, cap, NULL, NULL, &resp, err);
	if (r < 0)
		goto out;
	if (resp.status != 200) {
		r = answer_error(what, &resp, err);
		goto out;
	}
	*ret = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, &jerr);
	if (!*ret)
		r = err_set(err, -EPROTO, "%s: Docker's answer is not JSON: %s", what, jerr.text);
out:
	http_response_done(&resp);
	return r;
}

int docker_list_images(struct docker *d, const char *filters, json_t **ret, struct sf_err *err)
{
	char *q = filters ? escape(filters) : NULL, *path = NULL;
	int r;

	if ((filters && !q) ||
	    asprintf(&path, "/images/json%s%s", q ? "?filters=" : "", q ? q : "") < 0) {
		free(q);
		return -ENOMEM;
	}
	json_t *arr = NULL;
	r = get_json(d, "listing images", path, LIST_CAP, &arr, err);
	if (r == 0 && !json_is_array(arr)) {
		json_decref(arr);
		r = err_set(err, -EPROTO, "listing images: Docker's answer is not a list");
	} else if (r == 0) {
		*ret = arr;
	}
	free(q);
	free(path);
	return r;
}

int docker_inspect_image(struct docker *d, const char *ref, json_t **ret, struct sf_err *err)
{
	char *q = escape(ref), *path = NULL;
	int r;

	if (!q || asprintf(&path, "/images/%s/json", q) < 0) {
		free(q);
		return -ENOMEM;
	}
	r = get_json(d, ref, path, INSPECT_CAP, ret, err);
	free(q);
	free(path);
	return r;
}

int docker_export_image(struct docker *d, const char *ref, http_sink_fn sink, void *userdata,
			struct sf_err *err)
{
	struct http_response resp = {0};
	char *q = escape(ref), *path = NULL;
	int r;

	if (!q || asprintf(&path, "/images/%s/get", q) < 0) {
		free(q);
		return -ENOMEM;
	}
	struct sink_guard g = {.sink = sink, .userdata = userdata};
	r = get(d, path, 0, guarded_sink, &g, &resp, err);
	if (r == 0 && resp.status != 200)
		r = answer_error(ref, &resp, err);
	http_response_done(&resp);
	free(q);
	free(path);
	return r;
}

/* ---- writing: load and untag ------------------------------------------------------------- */

#define LOAD_ANSWER_CAP (1024 * 1024)
#define REMOVE_ANSWER_CAP (1024 * 1024)

/* A request with a method (and maybe an upload) to path under the API version. */
static int send_request(struct docker *d, const char *method, const char *path,
			struct http_request *req, struct http_response *resp, struct sf_err *err)
{
	char *url = NULL;
	int r;

	if (asprintf(&url, "%s%s%s%s", d->base, d->version[0] ? "/v" : "", d->version, path) < 0)
		return -ENOMEM;
	req->method = method;
	req->url = url;
	r = http_do(d->http, req, resp, err);
	free(url);
	return r;
}

/* Wraps a caller's upload source to tell its failures from the daemon's. */
struct source_guard {
	http_read_at_fn read_at;
	void *ud;
	int failed; /* the source's -errno */
};

static ssize_t guarded_read_at(void *ud, uint64_t off, void *buf, size_t len)
{
	struct source_guard *g = ud;
	ssize_t n = g->read_at(g->ud, off, buf, len);

	if (n < 0)
		g->failed = (int)n;
	return n;
}

static int strs_push(char ***v, size_t *n, const char *s, size_t len)
{
	char **grown = realloc(*v, (*n + 1) * sizeof(**v));

	if (!grown)
		return -ENOMEM;
	*v = grown;
	grown[*n] = strndup(s, len);
	if (!grown[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

void docker_load_result_done(struct docker_load_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_loaded; i++)
		free(r->loaded[i]);
	for (size_t i = 0; i < r->n_untagged; i++)
		free(r->untagged[i]);
	free(r->loaded);
	free(r->untagged);
	memset(r, 0, sizeof(*r));
}

/* -errno for an error line of the load stream (Docker 20.10's texts). */
static int load_error_code(const char *msg)
{
	static const char *const refused[] = {
	    "unexpected EOF", "Error processing tar file", "ApplyLayer",  "invalid",
	    "json:",	      "no such file or directory", "unsupported", "archive/tar",
	    "gzip",	      "not a directory",
	};

	if (strstr(msg, "invalid diffID"))
		return -EBADMSG;
	if (strstr(msg, "no space left on device"))
		return -ENOSPC;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (strstr(msg, refused[i]))
			return -EINVAL;
	return -EIO;
}

/* One "stream" text of the load answer: note what it says was loaded or untagged. */
static int load_stream_line(const char *s, struct docker_load_result *res)
{
	static const char loaded[] = "Loaded image: ", loaded_id[] = "Loaded image ID: ",
			  renaming[] = ", renaming the old one with ID ";
	size_t len = strcspn(s, "\r\n");
	const char *p;

	if (strncmp(s, loaded_id, sizeof(loaded_id) - 1) == 0)
		return strs_push(&res->loaded, &res->n_loaded, s + sizeof(loaded_id) - 1,
				 len - (sizeof(loaded_id) - 1));
	if (strncmp(s, loaded, sizeof(loaded) - 1) == 0)
		return strs_push(&res->loaded, &res->n_loaded, s + sizeof(loaded) - 1,
				 len - (sizeof(loaded) - 1));
	p = strstr(s, renaming);
	if (p && (size_t)(p - s) < len) {
		p += sizeof(renaming) - 1;
		return strs_push(&res->untagged, &res->n_untagged, p, strcspn(p, " \r\n"));
	}
	return 0;
}

/* Parse Docker's JSON message stream (one object per line). */
static int parse_load_answer(const char *body, size_t blen, struct docker_load_result *res,
			     struct sf_err *err)
{
	const char *line = body, *end = body + blen;
	int r = 0;

	while (line < end && r == 0) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
		json_error_t jerr;
		json_t *o;

		if (strspn(line, " \t\r") >= n)
			goto next;
		o = json_loadb(line, n, 0, &jerr);
		if (!json_is_object(o)) {
			json_decref(o);
			r = err_set(err, -EPROTO,
				    "loading an image: Docker's answer is not JSON: %s", jerr.text);
			break;
		}
		const char *msg = json_string_value(
		    json_object_get(json_object_get(o, "errorDetail"), "message"));
		if (!msg)
			msg = json_string_value(json_object_get(o, "error"));
		if (msg) {
			r = err_set(err, load_error_code(msg),
				    "Docker refused to load the image: %s", msg);
		} else {
			const char *s = json_string_value(json_object_get(o, "stream"));
			if (s)
				r = load_stream_line(s, res);
		}
		json_decref(o);
	next:
		line += n + 1;
	}
	if (r == 0 && res->n_loaded == 0)
		r = err_set(err, -EIO,
			    "loading an image: Docker's answer names no loaded image: %.200s",
			    body);
	return r;
}

int docker_load_image(struct docker *d, http_read_at_fn read_at, void *ud, uint64_t len,
		      struct docker_load_result *ret, struct sf_err *err)
{
	static const char *const headers[] = {"Content-Type: application/x-tar", NULL};
	struct source_guard g = {.read_at = read_at, .ud = ud};
	struct http_request req = {.headers = headers,
				   .upload_read_at = guarded_read_at,
				   .upload_ud = &g,
				   .upload_len = len,
				   .max_body = LOAD_ANSWER_CAP};
	struct docker_load_result res = {0};
	struct http_response resp = {0};
	int r;

	r = send_request(d, "POST", "/images/load?quiet=1", &req, &resp, err);
	if (r < 0) {
		if (g.failed) {
			err_prefix(err, "reading the archive to load");
			r = g.failed;
		} else if (r != -EFBIG && r != -ECANCELED) {
			r = unreachable(d, r, err);
		}
		goto out;
	}
	if (resp.status != 200) {
		r = answer_error("loading an image", &resp, err);
		goto out;
	}
	r = parse_load_answer(resp.body.data ? resp.body.data : "", resp.body.len, &res, err);
	if (r < 0)
		goto out;
	if (ret)
		*ret = res;
	else
		docker_load_result_done(&res);
	memset(&res, 0, sizeof(res));
out:
	docker_load_result_done(&res);
	http_response_done(&resp);
	return r;
}

int docker_remove_image(struct docker *d, const char *ref, bool *ret_deleted, struct sf_err *err)
{
	struct http_request req = {.max_body = REMOVE_ANSWER_CAP};
	struct http_response resp = {0};
	char *q = escape(ref), *path = NULL;
	json_t *arr = NULL;
	int r;

	if (!q || asprintf(&path, "/images/%s?noprune=1", q) < 0) {
		free(q);
		return -ENOMEM;
	}
	r = send_request(d, "DELETE", path, &req, &resp, err);
	if (r < 0) {
		if (r != -EFBIG && r != -ECANCELED)
			r = unreachable(d, r, err);
		goto out;
	}
	if (resp.status == 409) {
		answer_error(ref, &resp, err);
		r = -EBUSY;
		if (err)
			err->code = r;
		goto out;
	}
	if (resp.status != 200) {
		r = answer_error(ref, &resp, err);
		goto out;
	}
	if (ret_deleted) {
		/* [{"Untagged": REF}, {"Deleted": ID}, ...] */
		size_t i;
		json_t *item;
		bool deleted = false;
		arr = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
		for (i = 0; i < json_array_size(arr); i++) {
			item = json_array_get(arr, i);
			if (json_object_get(item, "Deleted"))
				deleted = true;
		}
		*ret_deleted = deleted;
	}
out:
	json_decref(arr);
	http_response_done(&resp);
	free(q);
	free(path);
	return r;
}
