#include "registry.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "oci.h"
#include "name.h"

#define TAG_PAGE_CAP (4 * 1024 * 1024)

static const char *const manifest_accept[] = {
    "Accept: " MT_DOCKER_MANIFEST ", " MT_OCI_MANIFEST ", " MT_OCI_INDEX ", " MT_DOCKER_LIST, NULL};

enum action { ACT_PULL, ACT_PUSH, ACT_DELETE, ACT_N };
static const char *const action_scope[ACT_N] = {"pull", "pull,push", "delete"};

struct token {
	char *header; /* "Bearer ..." or "Basic ..." */
	time_t expires;
};

struct registry {
	struct http_client *http;
	char *base; /* scheme://host[:port] */
	char *repo;
	char *host;
	bool insecure;
	bool have_cred;
	struct auth_cred cred;
	pthread_mutex_t lock;
	struct token tokens[ACT_N];
	int page_size;
};

void strv_done(struct strv *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

static int strv_push(struct strv *s, const char *str)
{
	char **v;

	if (s->n % 256 == 0) {
		v = realloc(s->v, (s->n + 256) * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
	}
	s->v[s->n] = strdup(str);
	if (!s->v[s->n])
		return -ENOMEM;
	s->n++;
	return 0;
}

void registry_manifest_done(struct registry_manifest *m)
{
	if (!m)
		return;
	free(m->data);
	free(m->media_type);
	*m = (struct registry_manifest){0};
}

const char *registry_base_url(const struct registry *r)
{
	return r->base;
}

/* The Authorization value to send for this action, or NULL (unknown yet / anonymous). */
static char *cached_auth(struct registry *r, enum action act)
{
	char *h = NULL;

	pthread_mutex_lock(&r->lock);
	if (r->tokens[act].header && r->tokens[act].expires > auth_now())
		h = strdup(r->tokens[act].header);
	pthread_mutex_unlock(&r->lock);
	return h;
}

static void store_auth(struct registry *r, enum action act, const char *header, time_t expires)
{
	char *h = strdup(header);

	if (!h)
		return;
	pthread_mutex_lock(&r->lock);
	free(r->tokens[act].header);
	r->tokens[act].header = h;
	r->tokens[act].expires = expires;
	pthread_mutex_unlock(&r->lock);
}

/* Answer a 401: compute an Authorization for act from the challenge. */
static int authorize(struct registry *r, const char *challenge, enum action act, char **ret_header,
		     struct sf_err *err)
{
	struct auth_challenge ch = {0};
	char *scope = NULL, *hdr = NULL;
	time_t expires;
	int rc;

	/* Every challenge of every WWW-Authenticate line (http.h combines them). */
	if (!challenge || auth_parse_challenge(challenge, &ch) < 0)
		return err_set(err, -EACCES,
			       "%s: access denied, and no Basic or Bearer challenge to answer "
			       "(WWW-Authenticate: %.200s)",
			       r->host, challenge ? challenge : "absent");
	if (ch.scheme == AUTH_BASIC) {
		if (!r->have_cred || !r->cred.username) {
			rc = err_set(err, -EACCES,
				     "%s: registry wants a login and no credentials were found in "
				     "the Docker config (docker login %s)",
				     r->host, r->host);
			goto out;
		}
		hdr = auth_basic_header(&r->cred);
		expires = auth_now() + 24 * 3600;
	} else {
		if (asprintf(&scope, "repository:%s:%s", r->repo, action_scope[act]) < 0) {
			rc = -ENOMEM;
			goto out;
		}
		rc = auth_fetch_token(r->http, &ch, scope, r->have_cred ? &r->cred : NULL, &hdr,
				      &expires, err);
		if (rc < 0)
			goto out;
	}
	if (!hdr) {
		rc = -ENOMEM;
		goto out;
	}
	store_auth(r, act, hdr, expires);
	*ret_header = hdr;
	hdr = NULL;
	rc = 0;
out:
	free(hdr);
	free(scope);
	auth_challenge_done(&ch);
	return rc;
}

/* One request with authentication: cached credentials first, then one answer to a 401. */
static int request(struct registry *r, struct http_request *req, enum action act,
		   struct http_response *resp, struct sf_err *err)
{
	char *auth = cached_auth(r, act);
	int rc;

	req->authorization = auth;
	rc = http_do(r->http, req, resp, err);
	if (rc == 0 && resp->status == 401) {
		char *fresh = NULL;
		rc = authorize(r, resp->www_authenticate, act, &fresh, err);
		if (rc == 0) {
			free(auth);
			auth = fresh;
			req->authorization = auth;
			http_response_done(resp);
			rc = http_do(r->http, req, resp, err);
			if (rc == 0 && resp->status == 401)
				rc = err_set(err, -EACCES,
					     "%s: credentials refused (check the Docker config or "
					     "docker login)",
					     r->host);
		}
		if (rc < 0)
			http_response_done(resp);
	}
	req->authorization = NULL;
	free(auth);
	return rc;
}

/* Turn an answer that is not the expected success into -errno with a message naming the request
 * (method and URL) and what the server said: its status and a safe summary of its body (every
 * entry of a registry's errors array). A web page is called what it is: not the registry API. */
static int status_error(struct registry *r, const char *method, const char *url,
			const struct http_response *resp, struct sf_err *err)
{
	char sum[ERR_SUMMARY_MAX];
	enum err_body kind =
	    err_http_body(resp->content_type, resp->body.data, resp->body.len, sum, sizeof(sum));
	int code = err_from_http_answer(resp->status, kind);

	(void)r;
	if (code == 0)
		code = -EIO;
	if (kind == ERR_BODY_HTML && code == -EIO)
		return err_set(err, code, "%s %s: HTTP %ld, " ERR_NOT_REGISTRY_API, method, url,
			       resp->status);
	return err_set(err, code, "%s %s: HTTP %ld%s%s%s", method, url, resp->status,
		       sum[0] ? " (" : "", sum, sum[0] ? ")" : "");
}

/* -EIO when a successful answer is a web page instead of the registry's JSON, else 0. */
static int html_instead(struct registry *r, const char *method, const char *url,
			const struct http_response *resp, struct sf_err *err)
{
	char sum[ERR_SUMMARY_MAX];

	if (err_http_body(resp->content_type, resp->body.data, resp->body.len, sum, sizeof(sum)) !=
	    ERR_BODY_HTML)
		return 0;
	return status_error(r, method, url, resp, err);
}

/* GET /v2/: 0 when a registry answered. *ret_answered tells an HTTP answer (of any kind) from
 * a transport failure. A web page is refused even with 200: a repository manager's web UI
 * answers every path so. A 401 asks for a login: a registry (maybe behind a proxy's login
 * page), judged by the requests that follow. */
static int ping(struct registry *r, bool *ret_answered, struct sf_err *err)
{
	struct http_request req = {0};
	struct http_response resp = {0};
	char *url = NULL;
	int rc;

	*ret_answered = false;
	if (asprintf(&url, "%s/v2/", r->base) < 0)
		return -ENOMEM;
	req.url = url;
	rc = http_do(r->http, &req, &resp, err);
	if (rc < 0)
		goto out;
	*ret_answered = true;
	if (resp.status == 200)
		rc = html_instead(r, "GET", url, &resp, err);
	else if (resp.status != 401)
		rc = status_error(r, "GET", url, &resp, err);
out:
	http_response_done(&resp);
	free(url);
	return rc;
}

int registry_new(const struct addr *a, const struct registry_opts *opts, struct registry **ret,
		 struct sf_err *err)
{
	struct registry *r;
	struct http_client_opts hopts = opts ? opts->http : (struct http_client_opts){0};
	bool loopback = addr_is_loopback(a), answered = false;
	int rc;

	if (a->local)
		return err_set(err, -EINVAL, ":local is not a registry");
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	r->insecure = opts && opts->insecure;
	r->page_size = opts && opts->page_size > 0 ? opts->page_size : 1000;
	r->repo = strdup(a->repo);
	r->host = strdup(a->host);
	if (!r->repo || !r->host) {
		rc = -ENOMEM;
		goto fail;
	}
	/* Unverified TLS where plain HTTP would be allowed anyway. */
	hopts.insecure = r->insecure || loopback;
	rc = http_client_new(&hopts, &r->http);
	if (rc < 0)
		goto fail;
	if (opts && opts->docker_config_dir) {
		struct sf_err cerr = {0};
		rc = auth_lookup(opts->docker_config_dir, a->host, &r->cred, &cerr);
		if (rc == 0)
			r->have_cred = true;
		else if (rc != -ENOENT) {
			rc = err_set(err, rc, "%s", cerr.msg);
			goto fail;
		}
	}
	if (asprintf(&r->base, "https://%s", a->host) < 0) {
		r->base = NULL;
		rc = -ENOMEM;
		goto fail;
	}
	rc = ping(r, &answered, err);
	if (rc < 0 && rc != -ENOMEM && (r->insecure || loopback)) {
		/* As Docker does for insecure registries: fall back to plain HTTP. */
		struct sf_err herr = {0};
		bool h_answered;
		int hrc;
		free(r->base);
		if (asprintf(&r->base, "http://%s", a->host) < 0) {
			r->base = NULL;
			rc = -ENOMEM;
			goto fail;
		}
		hrc = ping(r, &h_answered, &herr);
		/* Report the attempt that reached a server: what it answered says more than the
		 * other attempt's transport failure. */
		if (hrc == 0 || h_answered || !answered) {
			rc = hrc;
			answered = h_answered;
			if (rc < 0)
				err_set(err, rc, "%s", herr.msg);
		}
	}
	if (rc < 0) {
		if (answered)
			err_prefix(err, "registry %s", a->host);
		else
			err_prefix(err, "registry %s unreachable", a->host);
		goto fail;
	}
	*ret = r;
	return 0;
fail:
	registry_free(r);
	return rc;
}

void registry_cancel(struct registry *r)
{
	http_client_cancel(r->http);
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	http_client_free(r->http);
	auth_cred_done(&r->cred);
	for (int i = 0; i < ACT_N; i++)
		free(r->tokens[i].header);
	pthread_mutex_destroy(&r->lock);
	free(r->base);
	free(r->repo);
	free(r->host);
	free(r);
}

/* A relation-types value ("next", "prev next", unquoted already) holds "next". */
static bool rel_has_next(const char *v, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && v[j] != ' ' && v[j] != '\t')
			j++;
		if (j - i == 4 && strncasecmp(v + i, "next", 4) == 0)
			return true;
		for (i = j; i < n && (v[i] == ' ' || v[i] == '\t'); i++)
			;
	}
	return false;
}

/* One link-param value at p (token or quoted-string, unescaped into *ret); the position after
 * it, or NULL when malformed or out of memory. */
static const char *link_param_value(const char *p, char **ret)
{
	struct buf b = BUF_INIT(64 * 1024);
	const char *s = p;

	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			if (buf_append(&b, p, 1) < 0)
				goto bad;
		}
		if (*p++ != '"')
			goto bad;
	} else {
		/* A token, leniently up to the next separator. */
		while (*p && *p != ';' && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		if (buf_append(&b, s, (size_t)(p - s)) < 0)
			goto bad;
	}
	if (buf_append(&b, "", 1) < 0)
		goto bad;
	*ret = buf_steal(&b, NULL);
	return *ret ? p : NULL;
bad:
	buf_done(&b);
	return NULL;
}

char *registry_parse_link_next(const char *link)
{
	const char *p = link;

	/* Link = #link-value (RFC 8288 section 3; several Link lines arrive combined with ", "),
	 * link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param ),
	 * link-param = token BWS [ "=" BWS ( token / quoted-string ) ]. The first rel parameter
	 * of a link counts (section 3.3); its value is a space-separated list of types. */
	if (!p)
		return NULL;
	for (;;) {
		const char *url, *gt;
		bool rel_seen = false, next = false;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p != '<')
			return NULL; /* the end, or not a link-value */
		url = p + 1;
		gt = strchr(url, '>');
		if (!gt)
			return NULL;
		p = http_skip_ows(gt + 1);
		while (*p == ';') {
			const char *name;
			size_t nlen;
			char *val = NULL;

			p = http_skip_ows(p + 1);
			name = p;
			while (http_is_tchar((unsigned char)*p))
				p++;
			nlen = (size_t)(p - name);
			p = http_skip_ows(p);
			if (*p == '=') {
				p = link_param_value(http_skip_ows(p + 1), &val);
				if (!p)
					return NULL;
				p = http_skip_ows(p);
			}
			if (nlen == 3 && strncasecmp(name, "rel", 3) == 0 && !rel_seen) {
				rel_seen = true;
				next = val && rel_has_next(val, strlen(val));
			} else if (nlen == 0 && *p != ';' && *p != ',' && *p) {
				free(val);
				return NULL;
			}
			free(val);
		}
		if (*p && *p != ',')
			return NULL;
		if (next)
			return strndup(url, (size_t)(gt - url));
	}
}

int registry_parse_tags(const char *body, size_t len, struct strv *out, struct sf_err *err)
{
	json_t *root, *tags;
	json_error_t jerr;
	int rc = 0;

	root = json_loadb(body, len, 0, &jerr);
	if (!root || !json_is_object(root)) {
		rc = err_set(err, -EINVAL, "tag list is not a JSON object");
		goto out;
	}
	tags = json_object_get(root, "tags");
	if (json_is_null(tags) || !tags)
		goto out; /* an empty repository */
	if (!json_is_array(tags)) {
		rc = err_set(err, -EINVAL, "tag list: \"tags\" is not an array");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(tags); i++) {
		const char *t = json_string_value(json_array_get(tags, i));
		if (!t) {
			rc = err_set(err, -EINVAL, "tag list: tag %zu is not a string", i);
			goto out;
		}
		if (out->n >= REGISTRY_TAGS_MAX) {
			rc = err_set(err, -E2BIG, "more than %d tags", REGISTRY_TAGS_MAX);
			goto out;
		}
		rc = strv_push(out, t);
		if (rc < 0)
			goto out;
	}
out:
	json_decref(root);
	return rc;
}

int registry_list_tags(struct registry *r, struct strv *ret, struct sf_err *err)
{
	struct strv tags = {0};
	char *url = NULL, *next;
	int rc = 0, pages = 0;

	if (asprintf(&url, "%s/v2/%s/tags/list?n=%d", r->base, r->repo, r->page_size) < 0)
		return -ENOMEM;
	while (url) {
		struct http_request req = {.url = url, .max_body = TAG_PAGE_CAP};
		struct http_response resp = {0};

		if (++pages > REGISTRY_TAGS_MAX) {
			rc = err_set(err, -E2BIG, "tag list of %s: too many pages", r->repo);
			break;
		}
		rc = request(r, &req, ACT_PULL, &resp, err);
		if (rc < 0) {
			err_prefix(err, "listing tags of %s", r->repo);
			break;
		}
		if (resp.status == 404 && pages == 1 &&
		    err_from_http_answer(404, err_http_body(resp.content_type, resp.body.data,
							    resp.body.len, NULL, 0)) == -ENOENT) {
			/* NAME_UNKNOWN: nothing pushed yet, an empty storage. */
			http_response_done(&resp);
			free(url);
			url = NULL;
			break;
		}
		if (resp.status != 200)
			rc = status_error(r, "GET", url, &resp, err);
		else
			rc = html_instead(r, "GET", url, &resp, err);
		/* A listing is never "no such file": a later page gone is a failure. */
		if (rc == -ENOENT) {
			char was[sizeof(err->msg)];
			snprintf(was, sizeof(was), "%s", err_msg(err, rc));
			rc = err_set(err, -EIO, "%s (a page of the tag list went missing)", was);
		}
		if (rc < 0) {
			http_response_done(&resp);
			break;
		}
		size_t before = tags.n;
		rc = registry_parse_tags(resp.body.data, resp.body.len, &tags, err);
		if (rc == -EINVAL) {
			/* The registry's answer is malformed, not our request. */
			if (err)
				err->code = -EPROTO;
			err_prefix(err, "GET %s", url);
			rc = -EPROTO;
		}
		next = NULL;
		if (rc == 0 && resp.link) {
			char *rel = registry_parse_link_next(resp.link);
			if (rel) {
				next = http_resolve_url(url, rel);
				free(rel);
				if (!next)
					rc = err_set(err, -EIO, "tag list: bad Link header");
				/* Credentials go with the request: never to another origin. */
				else if (!http_same_origin(r->base, next))
					rc = err_set(
					    err, -EPROTO,
					    "tag list: the next page is on another host (%s)",
					    next);
				/* Every page must make progress: a page without tags that points
				 * on, or a page pointing at itself, would loop forever. */
				else if (tags.n == before || strcmp(next, url) == 0)
					rc = err_set(err, -ELOOP,
						     "tag list of %s: the registry's pages loop",
						     r->repo);
			}
		}
		http_response_done(&resp);
		free(url);
		url = next;
		if (rc < 0)
			break;
	}
	free(url);
	if (rc < 0) {
		strv_done(&tags);
		return rc;
	}
	*ret = tags;
	return 0;
}

/* GET or HEAD a manifest; 0 only for a 200 answer (in resp). */
static int manifest_request(struct registry *r, const char *method, const char *ref,
			    struct http_response *resp, struct sf_err *err)
{
	struct http_request req = {
	    .method = method, .headers = manifest_accept, .max_body = REGISTRY_MANIFEST_CAP};
	char *url = NULL;
	int rc;

	if (asprintf(&url, "%s/v2/%s/manifests/%s", r->base, r->repo, ref) < 0)
		return -ENOMEM;
	req.url = url;
	rc = request(r, &req, ACT_PULL, resp, err);
	if (rc < 0)
		err_prefix(err, "manifest %s", ref);
	else if (resp->status != 200)
		rc = status_error(r, method, url, resp, err);
	else
		rc = html_instead(r, method, url, resp, err);
	free(url);
	return rc;
}

int registry_get_manifest(struct registry *r, const char *ref, struct registry_manifest *ret,
			  struct sf_err *err)
{
	struct http_response resp = {0};
	struct registry_manifest m = {0};
	char said[DIGEST_LEN];
	int rc, dr;

	rc = manifest_request(r, "GET", ref, &resp, err);
	if (rc < 0)
		goto out;
	digest_buffer(resp.body.data ? resp.body.data : "", resp.body.len, m.digest);
	/* Docker-Content-Digest: a sha256 one must match; another algorithm cannot be checked
	 * here and is let be; a malformed one (two different values on two lines...) is the
	 * registry contradicting itself. */
	dr = resp.docker_content_digest ? http_parse_digest(resp.docker_content_digest, said)
					: -ENOTSUP;
	if (dr == -EINVAL) {
		rc = err_set(err, -EPROTO,
			     "manifest %s: %s sent a malformed Docker-Content-Digest '%.150s'", ref,
			     r->host, resp.docker_content_digest);
		goto out;
	}
	if ((name_digest_valid(ref) && strcmp(ref, m.digest) != 0) ||
	    (dr == 0 && strcmp(said, m.digest) != 0)) {
		rc = err_set(err, -EBADMSG, "manifest %s: content does not match its digest", ref);
		goto out;
	}
	m.media_type = strdup(resp.content_type ? resp.content_type : "");
	m.data = buf_steal(&resp.body, &m.len);
	if (!m.media_type || !m.data) {
		registry_manifest_done(&m);
		rc = -ENOMEM;
		goto out;
	}
	*ret = m;
out:
	http_response_done(&resp);
	return rc;
}

int registry_head_manifest(struct registry *r, const char *ref, char ret_digest[DIGEST_LEN],
			   char **ret_media_type, uint64_t *ret_size, struct sf_err *err)
{
	struct http_response resp = {0};
	char digest[DIGEST_LEN];
	char *mt = NULL;
	int rc;

	rc = manifest_request(r, "HEAD", ref, &resp, err);
	if (rc < 0)
		goto out;
	/* Content-Length: repeated identical values are one (http.h); different ones none. */
	if (http_parse_digest(resp.docker_content_digest, digest) < 0 || resp.content_length < 0) {
		rc = err_set(err, -EPROTO, "manifest %s: %s gave no sha256 digest or no size", ref,
			     r->host);
		goto out;
	}
	if (ret_media_type) {
		/* Parameters and case dropped; "" when absent or malformed. */
		rc = http_parse_media_type(resp.content_type, &mt);
		if (rc == -EINVAL) {
			mt = strdup("");
			rc = mt ? 0 : -ENOMEM;
		}
		if (rc < 0)
			goto out;
		*ret_media_type = mt;
	}
	memcpy(ret_digest, digest, DIGEST_LEN);
	if (ret_size)
		*ret_size = (uint64_t)resp.content_length;
out:
	http_response_done(&resp);
	return rc;
}

/* /v2/REPO/blobs/DIGEST of a well-formed digest. */
static int blob_url(struct registry *r, const char *digest, char **ret, struct sf_err *err)
{
	if (!name_digest_valid(digest))
		return err_set(err, -EINVAL, "bad digest '%s'", digest);
	if (asprintf(ret, "%s/v2/%s/blobs/%s", r->base, r->repo, digest) < 0)
		return -ENOMEM;
	return 0;
}

int registry_get_blob(struct registry *r, const char *digest, uint64_t offset, http_sink_fn sink,
		      void *userdata, struct sf_err *err)
{
	struct http_request req = {.sink = sink, .sink_userdata = userdata};
	struct http_response resp = {0};
	char *url = NULL;
	int rc;

	if ((rc = blob_url(r, digest, &url, err)) < 0)
		return rc;
	req.url = url;
	if (offset) {
		req.has_range = true;
		req.range_start = offset;
	}
	rc = request(r, &req, ACT_PULL, &resp, err);
	if (rc < 0) {
		err_prefix(err, "blob %.19s", digest);
		goto out;
	}
	if (resp.status != 200 && resp.status != 206)
		rc = status_error(r, "GET", url, &resp, err);
out:
	http_response_done(&resp);
	free(url);
	return rc;
}

/* ---- Write half: blobs, manifests, tag deletion (OCI distribution spec, "Push" and
 * "Content Management"; Docker Registry HTTP API v2). ---- */

/* A tag as the distribution spec allows: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}. */
static bool tag_valid(const char *t)
{
	size_t n = t ? strlen(t) : 0;

	if (n == 0 || n > 128 || t[0] == '.' || t[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
		      (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || t[i] == '.' || t[i] == '-'))
			return false;
	return true;
}

/* True when the registry's error body {"errors":[{"code":...}]} names code. */
static bool has_error_code(const struct http_response *resp, const char *code)
{
	json_t *root, *errs;
	bool found = false;

	if (!resp->body.data)
		return false;
	root = json_loadb(resp->body.data, resp->body.len, 0, NULL);
	errs = json_object_get(root, "errors");
	for (size_t i = 0; i < json_array_size(errs) && !found; i++) {
		const char *c = json_string_value(json_object_get(json_array_get(errs, i), "code"));
		found = c && strcmp(c, code) == 0;
	}
	json_decref(root);
	return found;
}

/* A request that needs push (or delete) rights: a refusal says which right is missing. */
static int write_request(struct registry *r, struct http_request *req, enum action act,
			 struct http_response *resp, struct sf_err *err)
{
	int rc = request(r, req, act, resp, err);

	if (rc == 0 && (resp->status == 401 || resp->status == 403)) {
		rc = status_error(r, req->method, req->url, resp, err);
		http_response_done(resp);
	}
	if (rc == -EACCES)
		err_prefix(err, "%s access to %s/%s denied (is the credential read-only?)",
			   act == ACT_DELETE ? "delete" : "push", r->host, r->repo);
	return rc;
}

int registry_has_blob(struct registry *r, const char *digest, uint64_t *ret_size,
		      struct sf_err *err)
{
	struct http_request req = {.method = "HEAD"};
	struct http_response resp = {0};
	char *url = NULL;
	int rc;

	if ((rc = blob_url(r, digest, &url, err)) < 0)
		return rc;
	req.url = url;
	rc = request(r, &req, ACT_PULL, &resp, err);
	if (rc < 0) {
		err_prefix(err, "blob %.19s", digest);
		goto out;
	}
	if (resp.status == 404) {
		rc = err_set(err, -ENOENT, "blob %.19s: not in %s/%s", digest, r->host, r->repo);
		goto out;
	}
	if (resp.status != 200) {
		rc = status_error(r, "HEAD", url, &resp, err);
		goto out;
	}
	if (resp.content_length < 0) {
		rc = err_set(err, -EPROTO, "blob %.19s: %s gave no size", digest, r->host);
		goto out;
	}
	if (ret_size)
		*ret_size = (uint64_t)resp.content_length;
out:
	http_response_done(&resp);
	free(url);
	return rc;
}

/* The absolute URL of an upload session from a Location header (relative or absolute). */
static int upload_location(struct registry *r, const char *from, const struct http_response *resp,
			   char **ret, struct sf_err *err)
{
	char *next;

	if (!resp->location || !*resp->location)
		return err_set(err, -EPROTO, "blob upload: %s gave no Location", r->host);
	next = http_resolve_url(from, resp->location);
	if (!next)
		return err_set(err, -EPROTO, "blob upload: bad Location '%s'", resp->location);
	*ret = next;
	return 0;
}

/* location + "digest=DIGEST", after '?' or '&' as the URL already has a query or not. */
static char *with_digest(const char *location, const char *digest)
{
	size_t n = strcspn(location, "#"); /* a fragment is never sent: drop it */
	const char *q = memchr(location, '?', n), *sep = "?";
	char *out = NULL;

	if (q)
		sep = location[n - 1] == '?' || location[n - 1] == '&' ? "" : "&";
	if (asprintf(&out, "%.*s%sdigest=%s", (int)n, location, sep, digest) < 0)
		return NULL;
	return out;
}

char *registry_upload_url(const char *location, const char *digest)
{
	return with_digest(location, digest);
}

/* Best effort: cancel an upload session we give up on (DELETE on its URL). */
static void cancel_upload(struct registry *r, const char *location)
{
	struct http_request req = {.method = "DELETE", .url = location};
	struct http_response resp = {0};

	if (request(r, &req, ACT_PUSH, &resp, NULL) == 0)
		http_response_done(&resp);
}

/* One step of an upload session (POST or PATCH): 202 and the session's next Location. */
static int session_step(struct registry *r, struct http_request *req, char **ret_loc,
			struct sf_err *err)
{
	struct http_response resp = {0};
	int rc = write_request(r, req, ACT_PUSH, &resp, err);

	if (rc < 0)
		return rc;
	if (resp.status != 202)
		rc = status_error(r, req->method, req->url, &resp, err);
	else
		rc = upload_location(r, req->url, &resp, ret_loc, err);
	http_response_done(&resp);
	return rc;
}

/* One upload session: POST, then one PUT (small) or PATCH chunks + PUT (large). */
static int put_blob_once(struct registry *r, const char *digest, int fd, uint64_t off, uint64_t len,
			 struct sf_err *err)
{
	static const char *const octet[] = {"Content-Type: application/octet-stream", NULL};
	struct http_request req = {0};
	struct http_response resp = {0};
	char *url = NULL, *loc = NULL, *put_url = NULL;
	int rc;

	if (asprintf(&url, "%s/v2/%s/blobs/uploads/", r->base, r->repo) < 0)
		return -ENOMEM;
	req = (struct http_request){.method = "POST", .url = url, .no_redirect = true};
	rc = session_step(r, &req, &loc, err);
	if (rc < 0)
		goto out;

	if (len > REGISTRY_CHUNK) {
		uint64_t pos = 0;
		while (pos < len) {
			uint64_t n = len - pos < REGISTRY_CHUNK ? len - pos : REGISTRY_CHUNK;
			char range[80], *next = NULL;
			const char *hdrs[] = {octet[0], range, NULL};

			snprintf(range, sizeof(range), "Content-Range: %llu-%llu",
				 (unsigned long long)pos, (unsigned long long)(pos + n - 1));
			req = (struct http_request){.method = "PATCH",
						    .url = loc,
						    .headers = hdrs,
						    .has_upload_fd = true,
						    .upload_fd = fd,
						    .upload_off = off + pos,
						    .upload_len = n,
						    .no_redirect = true};
			rc = session_step(r, &req, &next, err);
			if (rc < 0)
				goto fail;
			free(loc);
			loc = next;
			pos += n;
		}
	}
	put_url = with_digest(loc, digest);
	if (!put_url) {
		rc = -ENOMEM;
		goto fail;
	}
	req = (struct http_request){.method = "PUT",
				    .url = put_url,
				    .headers = octet,
				    .has_upload_fd = true,
				    .upload_fd = fd,
				    .upload_off = off,
				    .upload_len = len > REGISTRY_CHUNK ? 0 : len,
				    .no_redirect = true};
	rc = write_request(r, &req, ACT_PUSH, &resp, err);
	if (rc < 0)
		goto fail;
	if (resp.status == 400 && has_error_code(&resp, "DIGEST_INVALID")) {
		rc = err_set(err, -EBADMSG,
			     "blob %.19s: %s says the uploaded bytes have another digest", digest,
			     r->host);
		goto fail;
	}
	if (resp.status != 201) {
		rc = status_error(r, "PUT", put_url, &resp, err);
		goto fail;
	}
	if (resp.docker_content_digest && strcmp(resp.docker_content_digest, digest) != 0) {
		rc = err_set(err, -EBADMSG, "blob %.19s: %s stored it as %s", digest, r->host,
			     resp.docker_content_digest);
		goto out;
	}
	goto out;
fail:
	http_response_done(&resp);
	cancel_upload(r, loc);
out:
	http_response_done(&resp);
	free(put_url);
	free(loc);
	free(url);
	return rc;
}

/* Failures a new upload session may cure: the network, the server, a lost session. */
static bool upload_retryable(int rc)
{
	return rc == -EIO || rc == -ETIMEDOUT || rc == -EAGAIN || rc == -ERANGE || rc == -EPROTO ||
	       rc == -ENOENT || rc == -ECONNRESET;
}

int registry_put_blob(struct registry *r, const char *digest, int fd, uint64_t off, uint64_t len,
		      struct sf_err *err)
{
	struct stat st;
	int rc = 0;

	if (!name_digest_valid(digest))
		return err_set(err, -EINVAL, "bad digest '%s'", digest);
	if (fstat(fd, &st) < 0)
		return err_set(err, -errno, "blob %.19s: %s", digest, strerror(errno));
	if (S_ISREG(st.st_mode) && off + len > (uint64_t)st.st_size)
		return err_set(err, -EINVAL,
			       "blob %.19s: %llu bytes at %llu pass the end of its file", digest,
			       (unsigned long long)len, (unsigned long long)off);
	for (int attempt = 1; attempt <= REGISTRY_UPLOAD_TRIES; attempt++) {
		rc = put_blob_once(r, digest, fd, off, len, err);
		if (rc == 0 || !upload_retryable(rc))
			break;
	}
	if (rc < 0)
		err_prefix(err, "uploading blob %.19s to %s", digest, r->repo);
	return rc;
}

static bool docker_media_type(const char *mt)
{
	return strncmp(mt, "application/vnd.docker.", 23) == 0;
}

int registry_put_manifest(struct registry *r, const char *ref, const char *media_type,
			  const void *data, size_t len, char ret_digest[DIGEST_LEN],
			  struct sf_err *err)
{
	struct http_request req = {.method = "PUT", .body = data, .body_len = len};
	struct http_response resp = {0};
	char digest[DIGEST_LEN], *url = NULL, *ct = NULL;
	const char *hdrs[2] = {NULL, NULL};
	int rc;

	if (!media_type || !*media_type || strpbrk(media_type, "\r\n"))
		return err_set(err, -EINVAL, "manifest %s: bad media type", ref);
	if (len > REGISTRY_MANIFEST_CAP)
		return err_set(err, -EFBIG, "manifest %s: larger than %d bytes", ref,
			       REGISTRY_MANIFEST_CAP);
	digest_buffer(data ? data : "", len, digest);
	if (name_digest_valid(ref) && strcmp(ref, digest) != 0)
		return err_set(err, -EINVAL, "manifest: put under %s but its digest is %s", ref,
			       digest);
	if (!name_digest_valid(ref) && !tag_valid(ref))
		return err_set(err, -EINVAL, "manifest: '%s' is neither a tag nor a digest", ref);
	if (asprintf(&url, "%s/v2/%s/manifests/%s", r->base, r->repo, ref) < 0 ||
	    asprintf(&ct, "Content-Type: %s", media_type) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	hdrs[0] = ct;
	req.url = url;
	req.headers = hdrs;
	rc = write_request(r, &req, ACT_PUSH, &resp, err);
	if (rc < 0) {
		err_prefix(err, "manifest %s", ref);
		goto out;
	}
	if (resp.status == 415 || (resp.status == 400 && has_error_code(&resp, "UNSUPPORTED")) ||
	    (resp.status == 400 && docker_media_type(media_type) &&
	     has_error_code(&resp, "MANIFEST_INVALID"))) {
		struct sf_err why = {0};
		status_error(r, "PUT", url, &resp, &why);
		rc = err_set(err, -EPROTONOSUPPORT, "%s does not accept %s manifests: %s", r->host,
			     media_type, why.msg);
		goto out;
	}
	if (resp.status != 201 && resp.status != 200 && resp.status != 202) {
		rc = status_error(r, "PUT", url, &resp, err);
		err_prefix(err, "putting manifest");
		goto out;
	}
	if (resp.docker_content_digest && name_digest_valid(resp.docker_content_digest) &&
	    strcmp(resp.docker_content_digest, digest) != 0) {
		rc = err_set(err, -EBADMSG, "manifest %s: %s stored it as %s, not %s", ref, r->host,
			     resp.docker_content_digest, digest);
		goto out;
	}
	memcpy(ret_digest, digest, DIGEST_LEN);
out:
	http_response_done(&resp);
	free(ct);
	free(url);
	return rc;
}

/* DELETE /v2/<repo>/<kind>/<digest>. A registry that forbids deletes gives -EPERM. */
static int delete_digest(struct registry *r, const char *kind, const char *digest,
			 struct sf_err *err)
{
	struct http_request req = {.method = "DELETE"};
	struct http_response resp = {0};
	char *url = NULL;
	int rc;

	if (asprintf(&url, "%s/v2/%s/%s/%s", r->base, r->repo, kind, digest) < 0)
		return -ENOMEM;
	req.url = url;
	rc = write_request(r, &req, ACT_DELETE, &resp, err);
	if (rc < 0)
		goto out;
	if (resp.status == 405 || has_error_code(&resp, "UNSUPPORTED")) {
		struct sf_err why = {0};
		status_error(r, "DELETE", url, &resp, &why);
		rc = err_set(err, -EPERM, "%s/%s does not allow deletes: %s", r->host, r->repo,
			     why.msg);
		goto out;
	}
	if (resp.status != 202 && resp.status != 200 && resp.status != 204)
		rc = status_error(r, "DELETE", url, &resp, err);
out:
	http_response_done(&resp);
	free(url);
	return rc;
}

/* A throw-away image for deleting a tag: a small unique config uploaded, and the text of an
 * empty manifest naming it (OCI, or Docker schema 2 when docker is set). Caller frees. */
static int throwaway_image(struct registry *r, const char *tag, bool docker, char **ret_manifest,
			   char ret_config[DIGEST_LEN], struct sf_err *err)
{
	unsigned char rnd[16];
	char hex[33], *config = NULL, cdigest[DIGEST_LEN];
	struct timespec now;
	int fd = -1, rc, n;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return err_set(err, -EIO, "no random bytes for a unique manifest");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	clock_gettime(CLOCK_REALTIME, &now);
	n = asprintf(&config, "{\"stagefs\":\"deleting tag %s\",\"nonce\":\"%s\",\"time\":%lld}",
		     tag, hex, (long long)now.tv_sec);
	if (n < 0)
		return -ENOMEM;
	digest_buffer(config, (size_t)n, cdigest);
	fd = memfd_create("stagefs-throwaway", MFD_CLOEXEC);
	if (fd < 0 || write(fd, config, (size_t)n) != n) {
		rc = err_set(err, fd < 0 ? -errno : -EIO, "throw-away config: %s", strerror(errno));
		goto out;
	}
	rc = registry_put_blob(r, cdigest, fd, 0, (uint64_t)n, err);
	if (rc < 0)
		goto out;
	if (asprintf(ret_manifest,
		     "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
		     "\"digest\":\"%s\",\"size\":%d},\"layers\":[]}",
		     docker ? MT_DOCKER_MANIFEST : MT_OCI_MANIFEST,
		     docker ? MT_DOCKER_CONFIG : MT_OCI_CONFIG, cdigest, n) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(ret_config, cdigest, DIGEST_LEN);
out:
	if (fd >= 0)
		close(fd);
	free(config);
	return rc;
}

int registry_delete_tag(struct registry *r, const char *tag, struct sf_err *err)
{
	char digest[DIGEST_LEN], mdigest[DIGEST_LEN], cdigest[DIGEST_LEN];
	const char *mt = MT_OCI_MANIFEST;
	char *manifest = NULL;
	size_t len;
	int rc;

	if (!tag_valid(tag))
		return err_set(err, -EINVAL, "'%s' is not a tag", tag);
	rc = registry_head_manifest(r, tag, digest, NULL, NULL, err);
	if (rc < 0)
		goto out;
	/* 1. A unique manifest, untagged (put by digest): deleting it tells whether this
	 *    registry allows deletes before the tag is touched. */
	rc = throwaway_image(r, tag, false, &manifest, cdigest, err);
	if (rc < 0)
		goto out;
	digest_buffer(manifest, strlen(manifest), mdigest);
	rc = registry_put_manifest(r, mdigest, mt, manifest, strlen(manifest), mdigest, err);
	if (rc == -EPROTONOSUPPORT) {
		/* A registry without OCI manifests: the same in Docker schema 2. */
		free(manifest);
		manifest = NULL;
		mt = MT_DOCKER_MANIFEST;
		rc = throwaway_image(r, tag, true, &manifest, cdigest, err);
		if (rc < 0)
			goto out;
		digest_buffer(manifest, strlen(manifest), mdigest);
		rc =
		    registry_put_manifest(r, mdigest, mt, manifest, strlen(manifest), mdigest, err);
	}
	if (rc < 0)
		goto out;
	len = strlen(manifest);
	rc = delete_digest(r, "manifests", mdigest, err);
	if (rc < 0)
		goto out;
	/* 2. The same manifest under the tag moves only this tag onto it; deleting its digest
	 *    then removes the tag, and no other tag can point at that unique manifest. */
	rc = registry_put_manifest(r, tag, mt, manifest, len, mdigest, err);
	if (rc < 0)
		goto out;
	rc = delete_digest(r, "manifests", mdigest, err);
	if (rc < 0)
		goto out;
	/* The config blob is garbage now; a registry that keeps it does no harm. */
	delete_digest(r, "blobs", cdigest, NULL);
out:
	free(manifest);
	if (rc < 0)
		err_prefix(err, "deleting tag %s", tag);
	return rc;
}
