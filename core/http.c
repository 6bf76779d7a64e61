#include "http.h"

#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

#define HEADERS_CAP (64 * 1024)
#define ERROR_BODY_CAP (64 * 1024)
#define DEFAULT_BODY_CAP (4 * 1024 * 1024)
#define MAX_REDIRECTS 5
#define RETRY_AFTER_MAX_S 10

struct http_client {
	CURLSH *share;
	pthread_mutex_t locks[CURL_LOCK_DATA_LAST];
	struct http_client_opts opts;
	char *unix_socket;
	int cancelled; /* atomic: every transfer stops */
};

void http_client_cancel(struct http_client *c)
{
	__atomic_store_n(&c->cancelled, 1, __ATOMIC_RELEASE);
}

static bool cancelled(struct http_client *c)
{
	return __atomic_load_n(&c->cancelled, __ATOMIC_ACQUIRE) != 0;
}

/* curl calls this about once a second even when no byte moves: a stalled transfer stops too. */
static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	return cancelled(userp) ? 1 : 0;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *userp)
{
	struct http_client *c = userp;
	pthread_mutex_lock(&c->locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *userp)
{
	struct http_client *c = userp;
	pthread_mutex_unlock(&c->locks[data]);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
}

int http_client_new(const struct http_client_opts *opts, struct http_client **ret)
{
	struct http_client *c;

	pthread_once(&global_once, global_init);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (opts)
		c->opts = *opts;
	if (c->opts.connect_timeout_s <= 0)
		c->opts.connect_timeout_s = 10;
	if (c->opts.stall_timeout_s <= 0)
		c->opts.stall_timeout_s = 60;
	if (c->opts.max_tries <= 0)
		c->opts.max_tries = 4;
	if (c->opts.backoff_ms <= 0)
		c->opts.backoff_ms = 200;
	if (c->opts.unix_socket) {
		c->unix_socket = strdup(c->opts.unix_socket);
		if (!c->unix_socket) {
			free(c);
			return -ENOMEM;
		}
		c->opts.unix_socket = c->unix_socket;
	}
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	c->share = curl_share_init();
	if (!c->share) {
		http_client_free(c);
		return -ENOMEM;
	}
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
	*ret = c;
	return 0;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	if (c->share)
		curl_share_cleanup(c->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->locks[i]);
	free(c->unix_socket);
	free(c);
}

void http_response_done(struct http_response *r)
{
	if (!r)
		return;
	buf_done(&r->body);
	free(r->content_type);
	free(r->www_authenticate);
	free(r->link);
	free(r->location);
	free(r->docker_content_digest);
	free(r->content_range);
	free(r->docker_upload_uuid);
	free(r->content_length_value);
	free(r->retry_after_value);
	memset(r, 0, sizeof(*r));
}

static void response_reset(struct http_response *r)
{
	http_response_done(r);
	r->content_length = -1;
	r->retry_after = -1;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

const char *http_skip_ows(const char *p)
{
	while (is_ows(*p))
		p++;
	return p;
}

/* True when only OWS and line ends remain at p (values handed on as curl gives them). */
static bool at_end(const char *p)
{
	while (is_ows(*p) || *p == '\r' || *p == '\n')
		p++;
	return !*p;
}

bool http_is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

#define RETRY_AFTER_CAP 100000

long http_parse_retry_after_at(const char *v, time_t now)
{
	time_t when;
	long n = 0;

	if (!v)
		return -1;
	v = http_skip_ows(v);
	if (!isdigit((unsigned char)*v)) {
		if (http_parse_date(v, &when) < 0)
			return -1;
		if (when <= now)
			return 0;
		return when - now > RETRY_AFTER_CAP ? RETRY_AFTER_CAP : (long)(when - now);
	}
	for (; isdigit((unsigned char)*v); v++)
		if (n <= RETRY_AFTER_CAP)
			n = n * 10 + (*v - '0');
	while (is_ows(*v) || *v == '\r' || *v == '\n')
		v++;
	if (*v)
		return -1;
	return n > RETRY_AFTER_CAP ? RETRY_AFTER_CAP : n;
}

long http_parse_retry_after(const char *v)
{
	return http_parse_retry_after_at(v, time(NULL));
}

static const char *const day_names[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_names_long[7] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
					      "Friday", "Saturday", "Sunday"};
static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Exactly n digits at *p; advances. -1 if not. */
static int digits(const char **p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return v;
}

static bool lit(const char **p, const char *s)
{
	size_t n = strlen(s);

	if (strncmp(*p, s, n) != 0)
		return false;
	*p += n;
	return true;
}

static int name_index(const char **p, const char *const *names, int count)
{
	for (int i = 0; i < count; i++)
		if (lit(p, names[i]))
			return i;
	return -1;
}

/* "HH:MM:SS" */
static bool time_of_day(const char **p, struct tm *tm)
{
	tm->tm_hour = digits(p, 2);
	if (tm->tm_hour < 0 || !lit(p, ":"))
		return false;
	tm->tm_min = digits(p, 2);
	if (tm->tm_min < 0 || !lit(p, ":"))
		return false;
	tm->tm_sec = digits(p, 2);
	return tm->tm_sec >= 0 && tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60;
}

int http_parse_date(const char *v, time_t *ret)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	struct tm tm = {0};
	const char *p;
	int year;
	time_t t;

	if (!v)
		return -EINVAL;
	p = http_skip_ows(v);
	if (name_index(&p, day_names_long, 7) >= 0) {
		/* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
		if (!lit(&p, ", ") || (tm.tm_mday = digits(&p, 2)) < 0 || !lit(&p, "-") ||
		    (tm.tm_mon = name_index(&p, month_names, 12)) < 0 || !lit(&p, "-") ||
		    (year = digits(&p, 2)) < 0 || !lit(&p, " ") || !time_of_day(&p, &tm) ||
		    !lit(&p, " GMT"))
			return -EINVAL;
		year += year < 70 ? 2000 : 1900;
	} else if (name_index(&p, day_names, 7) >= 0) {
		if (lit(&p, ", ")) {
			/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
			if ((tm.tm_mday = digits(&p, 2)) < 0 || !lit(&p, " ") ||
			    (tm.tm_mon = name_index(&p, month_names, 12)) < 0 || !lit(&p, " ") ||
			    (year = digits(&p, 4)) < 0 || !lit(&p, " ") || !time_of_day(&p, &tm) ||
			    !lit(&p, " GMT"))
				return -EINVAL;
		} else {
			/* asctime: "Sun Nov  6 08:49:37 1994" */
			if (!lit(&p, " ") || (tm.tm_mon = name_index(&p, month_names, 12)) < 0 ||
			    !lit(&p, " "))
				return -EINVAL;
			if (*p == ' ') {
				p++;
				tm.tm_mday = digits(&p, 1);
			} else {
				tm.tm_mday = digits(&p, 2);
			}
			if (tm.tm_mday < 0 || !lit(&p, " ") || !time_of_day(&p, &tm) ||
			    !lit(&p, " ") || (year = digits(&p, 4)) < 0)
				return -EINVAL;
		}
	} else {
		return -EINVAL;
	}
	while (is_ows(*p) || *p == '\r' || *p == '\n')
		p++;
	if (*p || tm.tm_mday < 1 || tm.tm_mday > mdays[tm.tm_mon] ||
	    (tm.tm_mon == 1 && tm.tm_mday == 29 &&
	     !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))))
		return -EINVAL;
	tm.tm_year = year - 1900;
	if (tm.tm_sec == 60)
		tm.tm_sec = 59; /* a leap second: no time_t for it */
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*ret = t;
	return 0;
}

int64_t http_parse_content_length(const char *v)
{
	int64_t got = -1;

	if (!v)
		return -1;
	/* 1#( 1*DIGIT ), every element the same; empty list elements are tolerated (5.6.1). */
	for (const char *p = v;;) {
		int64_t n = 0;
		p = http_skip_ows(p);
		if (*p == ',') {
			p++;
			continue;
		}
		if (at_end(p))
			break;
		if (!isdigit((unsigned char)*p))
			return -1;
		for (; isdigit((unsigned char)*p); p++) {
			if (n > (INT64_MAX - (*p - '0')) / 10)
				return -1;
			n = n * 10 + (*p - '0');
		}
		if (got >= 0 && n != got)
			return -1;
		got = n;
		p = http_skip_ows(p);
		if (!at_end(p) && *p != ',')
			return -1;
	}
	return got;
}

/* 1*DIGIT into *ret; advances. false on no digit or beyond INT64_MAX. */
static bool u63(const char **p, uint64_t *ret)
{
	uint64_t n = 0;
	const char *s = *p;

	for (; isdigit((unsigned char)**p); (*p)++) {
		if (n > ((uint64_t)INT64_MAX - (uint64_t)(**p - '0')) / 10)
			return false;
		n = n * 10 + (uint64_t)(**p - '0');
	}
	*ret = n;
	return *p != s;
}

int http_parse_content_range(const char *v, struct http_content_range *ret)
{
	struct http_content_range cr = {.complete = -1};
	uint64_t complete;
	const char *p;

	if (!v)
		return -EINVAL;
	p = http_skip_ows(v);
	if (strncasecmp(p, "bytes", 5) != 0 || p[5] != ' ')
		return -EINVAL;
	p += 6;
	if (*p == '*') {
		cr.unsatisfied = true;
		p++;
	} else if (!u63(&p, &cr.first) || *p++ != '-' || !u63(&p, &cr.last) || cr.last < cr.first) {
		return -EINVAL;
	}
	if (*p++ != '/')
		return -EINVAL;
	if (*p == '*' && !cr.unsatisfied) {
		p++;
	} else {
		if (!u63(&p, &complete) || (!cr.unsatisfied && cr.last >= complete))
			return -EINVAL;
		cr.complete = (int64_t)complete;
	}
	if (!at_end(p))
		return -EINVAL;
	*ret = cr;
	return 0;
}

/* A quoted-string at p (RFC 9110 section 5.6.4); the position after it, or NULL. */
static const char *skip_quoted(const char *p)
{
	if (*p != '"')
		return NULL;
	for (p++; *p != '"'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\\') {
			c = (unsigned char)*++p;
			if (c != '\t' && (c < 0x20 || c == 0x7f))
				return NULL;
		} else if (c != '\t' && (c < 0x20 || c == 0x7f)) {
			return NULL; /* also the end of the string */
		}
	}
	return p + 1;
}

int http_parse_media_type(const char *v, char **ret)
{
	const char *p, *type;
	char *out;

	if (!v)
		return -EINVAL;
	type = p = http_skip_ows(v);
	while (http_is_tchar((unsigned char)*p))
		p++;
	if (p == type || *p != '/')
		return -EINVAL;
	p++;
	if (!http_is_tchar((unsigned char)*p))
		return -EINVAL;
	while (http_is_tchar((unsigned char)*p))
		p++;
	out = strndup(type, (size_t)(p - type));
	if (!out)
		return -ENOMEM;
	/* parameters: *( OWS ";" OWS [ name "=" ( token / quoted-string ) ] ) */
	for (;;) {
		p = http_skip_ows(p);
		if (!*p || *p == '\r' || *p == '\n')
			break;
		if (*p++ != ';')
			goto bad;
		p = http_skip_ows(p);
		if (!*p || *p == ';' || *p == '\r' || *p == '\n')
			continue;
		if (!http_is_tchar((unsigned char)*p))
			goto bad;
		while (http_is_tchar((unsigned char)*p))
			p++;
		if (*p++ != '=')
			goto bad;
		if (*p == '"') {
			p = skip_quoted(p);
			if (!p)
				goto bad;
		} else {
			if (!http_is_tchar((unsigned char)*p))
				goto bad;
			while (http_is_tchar((unsigned char)*p))
				p++;
		}
	}
	while (*p == '\r' || *p == '\n')
		p++;
	if (*p)
		goto bad;
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	*ret = out;
	return 0;
bad:
	free(out);
	return -EINVAL;
}

int http_parse_digest(const char *v, char ret[DIGEST_LEN])
{
	const char *p, *alg, *colon, *end;
	bool sep = true;

	if (!v)
		return -EINVAL;
	/* algorithm = component *( [+._-] component ), component = [a-z0-9]+ */
	alg = p = http_skip_ows(v);
	for (; *p && *p != ':'; p++) {
		if (islower((unsigned char)*p) || isdigit((unsigned char)*p))
			sep = false;
		else if (strchr("+._-", *p) && !sep)
			sep = true;
		else
			return -EINVAL;
	}
	if (p == alg || sep || *p != ':')
		return -EINVAL;
	colon = p++;
	/* encoded = [a-zA-Z0-9=_-]+ */
	for (end = p; isalnum((unsigned char)*end) || (*end && strchr("=_-", *end)); end++)
		;
	if (end == p || !at_end(end))
		return -EINVAL;
	if ((size_t)(colon - alg) != 6 || strncmp(alg, "sha256", 6) != 0)
		return -ENOTSUP;
	if (end - p != 64)
		return -EINVAL;
	for (const char *q = p; q < end; q++)
		if (!isdigit((unsigned char)*q) && !(*q >= 'a' && *q <= 'f'))
			return -EINVAL;
	memcpy(ret, alg, DIGEST_LEN - 1);
	ret[DIGEST_LEN - 1] = '\0';
	return 0;
}

struct transfer {
	const struct http_request *req;
	struct http_response *resp;
	CURL *h;
	size_t header_bytes;
	int sink_error;
	bool too_big;
	char errbuf[CURL_ERROR_SIZE]; /* curl's detailed reason for a failure */
	uint64_t skip; /* bytes to drop: a server that ignored our Range answered 200 */
	bool range_checked;
	bool skip_set;
	uint64_t upload_pos;
};

/* The fields kept, and where. */
static const struct {
	const char *name;
	size_t off;
} kept_fields[] = {
    {"content-type", offsetof(struct http_response, content_type)},
    {"www-authenticate", offsetof(struct http_response, www_authenticate)},
    {"link", offsetof(struct http_response, link)},
    {"location", offsetof(struct http_response, location)},
    {"docker-content-digest", offsetof(struct http_response, docker_content_digest)},
    {"content-range", offsetof(struct http_response, content_range)},
    {"docker-upload-uuid", offsetof(struct http_response, docker_upload_uuid)},
    {"content-length", offsetof(struct http_response, content_length_value)},
    {"retry-after", offsetof(struct http_response, retry_after_value)},
};
#define N_KEPT (int)(sizeof(kept_fields) / sizeof(kept_fields[0]))

/* Append value to the field's combined value (5.3), or to its last line for obs-fold. */
static int field_add(struct http_response *r, int i, const char *v, size_t n, bool fold)
{
	char **slot = (char **)((char *)r + kept_fields[i].off);
	size_t old = *slot ? strlen(*slot) : 0;
	char *s;

	if (*slot && !fold && strlen(*slot) == n && memcmp(*slot, v, n) == 0)
		return 0; /* the same line again */
	if (*slot && fold && n == 0)
		return 0;
	s = realloc(*slot, old + 2 + n + 1);
	if (!s)
		return -ENOMEM;
	if (old && n) {
		const char *sep = fold ? " " : ", ";
		memcpy(s + old, sep, strlen(sep));
		old += strlen(sep);
	}
	memcpy(s + old, v, n);
	s[old + n] = '\0';
	*slot = s;
	if (i == N_KEPT - 2)
		r->content_length = http_parse_content_length(s);
	else if (i == N_KEPT - 1)
		r->retry_after = http_parse_retry_after(s);
	return 0;
}

int http_response_add_header(struct http_response *r, const char *data, size_t n)
{
	const char *colon, *v;
	size_t vn;

	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		/* A new response (after 100 Continue): forget older headers. */
		response_reset(r);
		return 0;
	}
	while (n && (data[n - 1] == '\r' || data[n - 1] == '\n'))
		n--;
	if (n && is_ows(data[0])) {
		/* obs-fold (RFC 9112 section 5.2): part of the last field's value. */
		for (v = data, vn = n; vn && is_ows(*v); v++, vn--)
			;
		while (vn && is_ows(v[vn - 1]))
			vn--;
		return r->last_field ? field_add(r, r->last_field - 1, v, vn, true) : 0;
	}
	r->last_field = 0;
	colon = memchr(data, ':', n);
	if (!colon)
		return 0;
	v = colon + 1;
	vn = n - (size_t)(v - data);
	while (vn && is_ows(*v))
		v++, vn--;
	while (vn && is_ows(v[vn - 1]))
		vn--;
	for (int i = 0; i < N_KEPT; i++) {
		size_t ln = strlen(kept_fields[i].name);
		if ((size_t)(colon - data) == ln &&
		    strncasecmp(data, kept_fields[i].name, ln) == 0) {
			r->last_field = i + 1;
			return field_add(r, i, v, vn, false);
		}
	}
	return 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct transfer *t = userp;
	size_t n = size * nmemb;

	t->header_bytes += n;
	if (t->header_bytes > HEADERS_CAP) {
		t->too_big = true;
		return 0;
	}
	return http_response_add_header(t->resp, data, n) < 0 ? 0 : n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct transfer *t = userp;
	const size_t total = size * nmemb;
	size_t n = total;
	long status = 0;
	int r;

	curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200 && t->req->has_range && !t->skip_set) {
		/* The server ignored our Range: drop what we already have. */
		t->skip = t->req->range_start;
		t->skip_set = true;
	}
	if (t->skip) {
		size_t drop = t->skip < n ? (size_t)t->skip : n;
		t->skip -= drop;
		data += drop;
		n -= drop;
		if (n == 0)
			return total;
	}
	if (status == 206 && !t->range_checked) {
		/* A partial answer must start where we asked. */
		struct http_content_range cr;
		t->range_checked = true;
		if (http_parse_content_range(t->resp->content_range, &cr) < 0 || cr.unsatisfied ||
		    !t->req->has_range || cr.first != t->req->range_start) {
			t->sink_error = -EBADMSG;
			return 0;
		}
	}
	if (status >= 200 && status < 300 && t->req->sink) {
		t->resp->streamed = true;
		r = t->req->sink(t->req->sink_userdata, data, n);
		if (r < 0) {
			t->sink_error = r;
			return 0;
		}
		return total;
	}
	if (status < 200 || status >= 300) {
		/* Error bodies only explain: keep the first 64 KiB, drop the rest, keep the status.
		 */
		size_t room = ERROR_BODY_CAP - t->resp->body.len;
		t->resp->body.cap = ERROR_BODY_CAP;
		if (buf_append(&t->resp->body, data, n < room ? n : room) < 0)
			return 0;
		return total;
	}
	if (!t->resp->body.cap)
		t->resp->body.cap = t->req->max_body ? t->req->max_body : DEFAULT_BODY_CAP;
	if (buf_append(&t->resp->body, data, n) < 0) {
		t->too_big = true;
		return 0;
	}
	return total;
}

static size_t on_upload(char *out, size_t size, size_t nmemb, void *userp)
{
	struct transfer *t = userp;
	const struct http_request *req = t->req;
	size_t want = size * nmemb;
	uint64_t left = req->upload_len - t->upload_pos;
	ssize_t n;

	if (want > left)
		want = (size_t)left;
	if (want == 0)
		return 0;
	if (req->upload_read_at) {
		n = req->upload_read_at(req->upload_ud, t->upload_pos, out, want);
		if (n <= 0) {
			/* The source's errno, not "aborted by callback"; a short source is EIO. */
			t->sink_error = n < 0 ? (int)n : -EIO;
			return CURL_READFUNC_ABORT;
		}
		if ((size_t)n > want)
			n = (ssize_t)want;
		t->upload_pos += (uint64_t)n;
		return (size_t)n;
	}
	do
		n = pread(req->upload_fd, out, want, (off_t)(req->upload_off + t->upload_pos));
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return CURL_READFUNC_ABORT;
	t->upload_pos += (uint64_t)n;
	return (size_t)n;
}

static int on_seek(void *userp, curl_off_t offset, int origin)
{
	struct transfer *t = userp;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > t->req->upload_len)
		return CURL_SEEKFUNC_FAIL;
	t->upload_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static bool retryable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_COULDNT_RESOLVE_HOST:
		return true;
	default:
		return false;
	}
}

static bool retryable_status(long s)
{
	return s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

/* One attempt at one URL: no retries, no redirects. */
static CURLcode perform_once(struct http_client *c, const struct http_request *req, const char *url,
			     const char *method, bool send_auth, struct http_response *resp,
			     struct transfer *t)
{
	struct curl_slist *hdrs = NULL;
	char *line = NULL;
	CURLcode rc;
	CURL *h;

	h = curl_easy_init();
	if (!h)
		return CURLE_OUT_OF_MEMORY;
	*t = (struct transfer){.req = req, .resp = resp, .h = h};
	response_reset(resp);

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_SHARE, c->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "stagefs/" PACKAGE_VERSION);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->opts.connect_timeout_s);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->opts.stall_timeout_s);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
	if (c->opts.unix_socket)
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->opts.unix_socket);
	if (c->opts.insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}

	if (send_auth && req->authorization) {
		if (asprintf(&line, "Authorization: %s", req->authorization) < 0) {
			rc = CURLE_OUT_OF_MEMORY;
			goto out;
		}
		hdrs = curl_slist_append(hdrs, line);
	}
	for (const char *const *p = req->headers; p && *p; p++)
		hdrs = curl_slist_append(hdrs, *p);
	if (req->has_range) {
		char range[64];
		snprintf(range, sizeof(range), "Range: bytes=%llu-",
			 (unsigned long long)req->range_start);
		hdrs = curl_slist_append(hdrs, range);
	}
	/* No "Expect: 100-continue" round trip for uploads. */
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);

	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		if (req->has_upload_fd || req->upload_read_at) {
			curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(h, CURLOPT_READFUNCTION, on_upload);
			curl_easy_setopt(h, CURLOPT_READDATA, t);
			curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
			curl_easy_setopt(h, CURLOPT_SEEKDATA, t);
			curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->upload_len);
		} else if (strcmp(method, "DELETE") != 0) {
			curl_easy_setopt(h, CURLOPT_POST, 1L);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		}
	}

	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
out:
	curl_slist_free_all(hdrs);
	free(line);
	curl_easy_cleanup(h);
	return rc;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int http_do(struct http_client *c, const struct http_request *req, struct http_response *ret,
	    struct sf_err *err)
{
	const char *method = req->method ? req->method : "GET";
	char *url = strdup(req->url), *next;
	bool send_auth = true;
	long backoff = c->opts.backoff_ms;
	int redirects = 0, tries = 0, r = 0;
	struct transfer t;
	CURLcode rc;

	if (!url)
		return -ENOMEM;
	*ret = (struct http_response){0};
	for (;;) {
		if (cancelled(c)) {
			r = err_set(err, -ECANCELED, "%s %s: cancelled", method, url);
			goto out;
		}
		rc = perform_once(c, req, url, method, send_auth, ret, &t);
		tries++;
		if (cancelled(c)) {
			r = err_set(err, -ECANCELED, "%s %s: cancelled", method, url);
			goto out;
		}
		if (t.too_big) {
			r = err_set(err, -EFBIG, "%s %s: answer larger than allowed", method, url);
			goto out;
		}
		if (t.sink_error) {
			/* The sink's own message (a full disk, a bad archive) says more. */
			if (!err || !err->msg[0])
				err_set(err, t.sink_error, "%s %s: %s", method, url,
					strerror(-t.sink_error));
			r = t.sink_error;
			goto out;
		}
		if (rc != CURLE_OK) {
			if (retryable_curl(rc) && !ret->streamed && tries < c->opts.max_tries) {
				sleep_ms(backoff);
				backoff *= 2;
				continue;
			}
			r = err_set(err, err_from_curl(rc), "%s %s: %s%s", method, url,
				    t.errbuf[0] ? t.errbuf : curl_easy_strerror(rc),
				    rc == CURLE_PEER_FAILED_VERIFICATION
					? " (not a trusted certificate: add its CA to the system "
					  "store, or use -o insecure)"
					: "");
			goto out;
		}
		if (retryable_status(ret->status) && tries < c->opts.max_tries) {
			long wait = backoff;
			if (ret->retry_after >= 0)
				wait = (ret->retry_after > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S
									     : ret->retry_after) *
				       1000;
			sleep_ms(wait);
			backoff *= 2;
			continue;
		}
		if (!req->no_redirect && ret->location &&
		    (ret->status == 301 || ret->status == 302 || ret->status == 303 ||
		     ret->status == 307 || ret->status == 308)) {
			if (++redirects > MAX_REDIRECTS) {
				r = err_set(err, -ELOOP, "%s %s: too many redirects", method,
					    req->url);
				goto out;
			}
			next = http_resolve_url(url, ret->location);
			if (!next) {
				r = err_set(err, -EIO, "%s %s: bad redirect to '%s'", method, url,
					    ret->location);
				goto out;
			}
			if (!http_same_origin(req->url, next))
				send_auth = false;
			if (ret->status == 303)
				method = "GET";
			free(url);
			url = next;
			tries = 0;
			continue;
		}
		break;
	}
out:
	free(url);
	if (r < 0)
		http_response_done(ret);
	return r;
}

char *http_resolve_url(const char *base, const char *ref)
{
	CURLU *u;
	char *out = NULL;
	bool frag_only;

	if (!base || !ref)
		return NULL;
	/* A URI-reference holds no whitespace or controls: two Location lines combined
	 * ("/a, /b") are no reference at all (curl would encode the space). */
	for (const char *p = ref; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return NULL;
	u = curl_url();
	if (!u)
		return NULL;
	/* "#f" is the base itself with another fragment (RFC 3986 section 5.2.2); curl
	 * resolves it like a relative path. */
	frag_only = ref[0] == '#';
	if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    (frag_only ? curl_url_set(u, CURLUPART_FRAGMENT, ref[1] ? ref + 1 : NULL, 0)
		       : curl_url_set(u, CURLUPART_URL, ref, 0)) == CURLUE_OK)
		curl_url_get(u, CURLUPART_URL, &out, 0);
	curl_url_cleanup(u);
	if (out) {
		char *copy = strdup(out);
		curl_free(out);
		out = copy;
	}
	return out;
}

bool http_same_origin(const char *a, const char *b)
{
	CURLU *ua = curl_url(), *ub = curl_url();
	bool same = false;

	if (ua && ub && curl_url_set(ua, CURLUPART_URL, a, 0) == CURLUE_OK &&
	    curl_url_set(ub, CURLUPART_URL, b, 0) == CURLUE_OK) {
		static const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
		same = true;
		for (size_t i = 0; i < 3 && same; i++) {
			char *pa = NULL, *pb = NULL;
			curl_url_get(ua, parts[i], &pa, CURLU_DEFAULT_PORT);
			curl_url_get(ub, parts[i], &pb, CURLU_DEFAULT_PORT);
			same = pa && pb && strcasecmp(pa, pb) == 0;
			curl_free(pa);
			curl_free(pb);
		}
	}
	curl_url_cleanup(ua);
	curl_url_cleanup(ub);
	return same;
}
