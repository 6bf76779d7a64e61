#include "werf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <murmurhash.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "name.h"

struct werf_lock {
	int fd;
};

/* Lexical cleaning exactly like Go's path/filepath.Clean on Unix, in place. */
static void path_clean(char *p)
{
	size_t n = strlen(p), r = 0, w = 0, dotdot = 0;
	bool rooted = n > 0 && p[0] == '/';

	if (n == 0) {
		/* Callers never pass "" (they join a non-empty suffix). */
		return;
	}
	if (rooted) {
		p[w++] = '/';
		r = dotdot = 1;
	}
	while (r < n) {
		if (p[r] == '/') {
			r++;
		} else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
			r++;
		} else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
			r += 2;
			if (w > dotdot) {
				w--;
				while (w > dotdot && p[w] != '/')
					w--;
			} else if (!rooted) {
				if (w > 0)
					p[w++] = '/';
				p[w++] = '.';
				p[w++] = '.';
				dotdot = w;
			}
		} else {
			if ((rooted && w != 1) || (!rooted && w != 0))
				p[w++] = '/';
			while (r < n && p[r] != '/')
				p[w++] = p[r++];
		}
	}
	if (w == 0)
		p[w++] = '.';
	p[w] = '\0';
}

/* filepath.Join(a, b[, c]) into ret (PATH_MAX bytes). */
static int path_join(char ret[PATH_MAX], const char *a, const char *b, const char *c)
{
	int k = c ? snprintf(ret, PATH_MAX, "%s/%s/%s", a, b, c)
		  : snprintf(ret, PATH_MAX, "%s/%s", a, b);
	if (k < 0 || k >= PATH_MAX)
		return -ENAMETOOLONG;
	path_clean(ret);
	return 0;
}

int werf_home(const char *opt_home, char *ret, size_t n, struct sf_err *err)
{
	const char *env = getenv(WERF_HOME_ENV), *home;
	char buf[PATH_MAX], pwbuf[4096];
	struct passwd pw, *res = NULL;
	int k;

	if (opt_home && *opt_home)
		k = snprintf(buf, sizeof(buf), "%s", opt_home);
	else if (env && *env)
		k = snprintf(buf, sizeof(buf), "%s", env);
	else {
		home = getenv("HOME");
		if (!home || !*home) {
			if (getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) != 0 || !res ||
			    !res->pw_dir || !*res->pw_dir)
				return err_set(err, -ENOENT,
					       "werf's home is unknown: set $WERF_HOME or $HOME");
			home = res->pw_dir;
		}
		k = snprintf(buf, sizeof(buf), "%s/" WERF_HOME_DEFAULT_NAME, home);
	}
	if (k < 0 || (size_t)k >= sizeof(buf))
		return err_set(err, -ENAMETOOLONG, "werf's home path is too long");
	path_clean(buf);
	if (strlen(buf) >= n)
		return err_set(err, -ENAMETOOLONG, "werf's home path %s is too long", buf);
	memcpy(ret, buf, strlen(buf) + 1);
	return 0;
}

/* ---- locks ---- */

uint32_t werf_murmur3_32(const void *data, size_t len, uint32_t seed)
{
	uint32_t out[1];
	lmmh_x86_32(data, (unsigned int)len, seed, out);
	return out[0];
}

void werf_lock_file_name(const char *name, char ret[WERF_LOCK_FILE_NAME_SIZE])
{
	snprintf(ret, WERF_LOCK_FILE_NAME_SIZE, "%" PRIx32, werf_murmur3_32(name, strlen(name), 0));
}

int werf_lock_name_stages_and_images(const char *project, char *ret, size_t n)
{
	int k = snprintf(ret, n, WERF_LOCK_STAGES_AND_IMAGES_FMT, project);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

int werf_lock_name_block(const char *project, char *ret, size_t n)
{
	int k = snprintf(ret, n, WERF_LOCK_BLOCK_FMT, project);
	return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

/* os.MkdirAll(path, mode): make every missing directory with mode (the umask applies). */
static int mkdir_all(char *path, mode_t mode)
{
	struct stat st;
	char *slash;
	int r;

	if (stat(path, &st) == 0)
		return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
	if (errno != ENOENT)
		return -errno;
	slash = strrchr(path, '/');
	if (slash && slash != path) {
		*slash = '\0';
		r = mkdir_all(path, mode);
		*slash = '/';
		if (r < 0)
			return r;
	}
	if (mkdir(path, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
	nanosleep(&ts, NULL); /* an interrupted sleep just polls earlier */
}

int werf_lock_acquire(const char *home, const char *name, enum werf_lock_mode mode, long timeout_ms,
		      werf_lock_wait_fn *on_wait, void *userdata, struct werf_lock **ret_lock,
		      struct sf_err *err)
{
	char dir[PATH_MAX], path[PATH_MAX], file[WERF_LOCK_FILE_NAME_SIZE];
	int op = mode == WERF_LOCK_SHARED ? LOCK_SH : LOCK_EX;
	long start = now_ms(), delay = 5, waited, polls = 0;
	struct werf_lock *lock;
	int fd, r;

	werf_lock_file_name(name, file);
	if (path_join(dir, home, WERF_LOCKS_DIR, NULL) < 0 || path_join(path, dir, file, NULL) < 0)
		return err_set(err, -ENAMETOOLONG, "werf's home path %s is too long", home);
	r = mkdir_all(dir, WERF_LOCKS_DIR_MODE);
	if (r < 0)
		return err_set(err, r, "cannot create werf's lock directory %s: %s", dir,
			       strerror(-r));
	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, WERF_LOCK_FILE_MODE);
	if (fd < 0)
		return err_set(err, -errno, "cannot open werf's lock file %s (lock %s): %s", path,
			       name, strerror(errno));
	for (;;) {
		if (flock(fd, op | LOCK_NB) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			r = err_set(err, -errno, "flock %s (lock %s): %s", path, name,
				    strerror(errno));
			goto fail;
		}
		waited = now_ms() - start;
		if (timeout_ms >= 0 && waited >= timeout_ms) {
			r = err_set(err, -ETIMEDOUT,
				    "werf's lock %s is still held by another process after %ld ms "
				    "(lock file %s)",
				    name, timeout_ms, path);
			goto fail;
		}
		/* The first call says "waiting starts" with 0, as the header promises. */
		if (on_wait && on_wait(name, polls++ ? waited : 0, userdata) != 0) {
			r = err_set(err, -ECANCELED, "waiting for werf's lock %s was cancelled",
				    name);
			goto fail;
		}
		if (timeout_ms >= 0 && delay > timeout_ms - waited)
			sleep_ms(timeout_ms - waited);
		else
			sleep_ms(delay);
		if (delay < 100)
			delay *= 2;
	}
	lock = malloc(sizeof(*lock));
	if (!lock) {
		r = -ENOMEM;
		goto fail;
	}
	lock->fd = fd;
	*ret_lock = lock;
	return 0;
fail:
	close(fd);
	return r;
}

void werf_lock_release(struct werf_lock *lock)
{
	if (!lock)
		return;
	flock(lock->fd, LOCK_UN);
	close(lock->fd);
	free(lock);
}

/* ---- block file ---- */

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Read at most cap bytes of fd into buf (cap + 1 bytes). -EFBIG when the file is longer. */
static ssize_t read_capped(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	while (got <= cap) {
		ssize_t k = read(fd, buf + got, cap + 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			break;
		got += (size_t)k;
	}
	if (got > cap)
		return -EFBIG;
	buf[got] = '\0';
	return (ssize_t)got;
}

/* Write all of data to fd. */
static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t k = write(fd, data, len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		data += k;
		len -= (size_t)k;
	}
	return 0;
}

/* Atomically replace path with data: temporary file tmpl (a mkostemp template in the same
 * filesystem), mode set exactly, fsync, rename, fsync of path's directory. */
static int replace_file(const char *path, char *tmpl, const char *data, size_t len, mode_t mode)
{
	char dir[PATH_MAX];
	int fd, r = 0, dfd;

	fd = mkostemp(tmpl, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0)
		r = -errno;
	else if ((r = write_all(fd, data, len)) == 0 && fsync(fd) < 0)
		r = -errno;
	if (r < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	fd = -1;
	if (rename(tmpl, path) < 0) {
		r = -errno;
		goto fail;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
fail:
	if (r == 0)
		r = -EIO;
	if (fd >= 0)
		close(fd);
	unlink(tmpl);
	return r;
}

static int block_lock(const char *home, const char *project, struct werf_lock **ret,
		      struct sf_err *err)
{
	char name[128];

	if (werf_lock_name_block(project, name, sizeof(name)) < 0)
		return -ENAMETOOLONG;
	return werf_lock_acquire(home, name, WERF_LOCK_EXCLUSIVE, WERF_BLOCK_LOCK_TIMEOUT_MS, NULL,
				 NULL, ret, err);
}

static int block_path(const char *home, const char *project, char ret[PATH_MAX], struct sf_err *err)
{
	if (!name_project_valid(project))
		return err_set(err, -EINVAL, "\"%s\" is not a valid werf project name", project);
	if (path_join(ret, home, WERF_BLOCK_DIR, project) < 0)
		return err_set(err, -ENAMETOOLONG, "werf's home path %s is too long", home);
	return 0;
}

/* Whole block file content, surrounding whitespace trimmed (Go's strings.TrimSpace for
 * ASCII), into buf (WERF_BLOCK_MAX + 1). Returns its length (0 = no block), -errno. */
static ssize_t block_load(const char *path, char *buf)
{
	ssize_t len;
	size_t a = 0, b;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	len = read_capped(fd, buf, WERF_BLOCK_MAX);
	close(fd);
	if (len < 0)
		return len;
	b = (size_t)len;
	while (a < b && is_space(buf[a]))
		a++;
	while (b > a && is_space(buf[b - 1]))
		b--;
	memmove(buf, buf + a, b - a);
	buf[b - a] = '\0';
	return (ssize_t)(b - a);
}

int werf_block_read(const char *home, const char *project, char **ret_repo, struct sf_err *err)
{
	char path[PATH_MAX], buf[WERF_BLOCK_MAX + 1];
	struct werf_lock *lock = NULL;
	ssize_t len;
	int r;

	r = block_path(home, project, path, err);
	if (r < 0)
		return r;
	r = block_lock(home, project, &lock, err);
	if (r < 0)
		return r;
	len = block_load(path, buf);
	werf_lock_release(lock);
	if (len < 0)
		return err_set(err, (int)len, "cannot read werf's block file %s: %s", path,
			       strerror((int)-len));
	if (len == 0)
		return err_set(err, -ENOENT, "project %s has no switch block (%s)", project, path);
	*ret_repo = strdup(buf);
	return *ret_repo ? 0 : -ENOMEM;
}

int werf_block_write(const char *home, const char *project, const char *repo, struct sf_err *err)
{
	char path[PATH_MAX], dir[PATH_MAX], tmpl[PATH_MAX + 16], *content = NULL;
	struct werf_lock *lock = NULL;
	size_t len;
	int r;

	r = block_path(home, project, path, err);
	if (r < 0)
		return r;
	len = strlen(repo);
	if (len == 0 || len >= WERF_BLOCK_MAX)
		return err_set(err, -EINVAL, "invalid repository for the switch block: \"%s\"",
			       repo);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)repo[i] <= ' ' || repo[i] == 0x7f)
			return err_set(err, -EINVAL,
				       "invalid repository for the switch block (whitespace or "
				       "control character): \"%s\"",
				       repo);
	/* The lock first: like werf's Init, it makes service/locks (0755) before anything. */
	r = block_lock(home, project, &lock, err);
	if (r < 0)
		return r;
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	r = mkdir_all(dir, WERF_BLOCK_DIR_MODE);
	if (r < 0) {
		err_set(err, r, "cannot create %s: %s", dir, strerror(-r));
		goto out;
	}
	if (asprintf(&content, "%s\n", repo) < 0) {
		content = NULL;
		r = -ENOMEM;
		goto out;
	}
	snprintf(tmpl, sizeof(tmpl), "%s/.%s.XXXXXX", dir, project);
	r = replace_file(path, tmpl, content, len + 1, WERF_BLOCK_FILE_MODE);
	if (r < 0)
		err_set(err, r, "cannot write werf's block file %s: %s", path, strerror(-r));
out:
	free(content);
	werf_lock_release(lock);
	return r;
}

int werf_block_remove(const char *home, const char *project, struct sf_err *err)
{
	char path[PATH_MAX];
	struct werf_lock *lock = NULL;
	int r;

	r = block_path(home, project, path, err);
	if (r < 0)
		return r;
	r = block_lock(home, project, &lock, err);
	if (r < 0)
		return r;
	if (unlink(path) == 0)
		r = 1;
	else if (errno == ENOENT)
		r = 0;
	else
		r = err_set(err, -errno, "cannot remove werf's block file %s: %s", path,
			    strerror(errno));
	werf_lock_release(lock);
	return r;
}

int werf_block_active(const char *home, const char *project)
{
	char path[PATH_MAX], buf[WERF_BLOCK_MAX + 1];
	ssize_t len;

	if (!name_project_valid(project))
		return 0;
	if (path_join(path, home, WERF_BLOCK_DIR, project) < 0)
		return -ENAMETOOLONG;
	len = block_load(path, buf);
	if (len < 0)
		return len == -EFBIG ? 1 : (int)len; /* a huge block is still a block */
	return len > 0;
}

/* ---- stage cache ---- */

struct stage_id {
	char sig[NAME_SIGNATURE_LEN + 1];
	uint64_t uid;
};

/* True when the entry is {"signature": string, "uniqueID": integer}, the shape werf reads. */
static bool cache_entry_valid(json_t *e)
{
	return json_is_object(e) && json_is_string(json_object_get(e, "signature")) &&
	       json_is_integer(json_object_get(e, "uniqueID"));
}

/* Edit one signature file; returns how many entries were removed or -errno. */
static int cache_forget_sig(const char *cachedir, const char *project, const char *sig,
			    const struct stage_id *ids, size_t n, struct sf_err *err)
{
	char path[PATH_MAX], tmpl[PATH_MAX + 64], *buf = NULL, *out = NULL;
	json_t *root = NULL, *stages, *kept = NULL, *e, *doc = NULL;
	struct stat st;
	ssize_t len;
	size_t i;
	int fd, r = 0, removed = 0;

	if (path_join(path, cachedir, project, sig) < 0)
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT
			   ? 0
			   : err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0; /* werf could not read it either */
	}
	buf = malloc(WERF_STAGE_CACHE_FILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	len = read_capped(fd, buf, WERF_STAGE_CACHE_FILE_MAX);
	close(fd);
	if (len < 0) {
		r = err_set(err, (int)len, "cannot read werf's stage cache file %s: %s", path,
			    strerror((int)-len));
		goto out;
	}
	root = json_loadb(buf, (size_t)len, 0, NULL);
	stages = json_object_get(root, "stages");
	if (!json_is_array(stages))
		goto out; /* not JSON, or no list: werf ignores such a file */
	kept = json_array();
	if (!kept) {
		r = -ENOMEM;
		goto out;
	}
	json_array_foreach(stages, i, e)
	{
		const char *s;
		json_int_t uid;
		bool drop = false;
		if (!cache_entry_valid(e)) {
			removed = 0; /* werf would fail to parse it: leave it alone */
			goto out;
		}
		s = json_string_value(json_object_get(e, "signature"));
		uid = json_integer_value(json_object_get(e, "uniqueID"));
		for (size_t j = 0; j < n && !drop; j++)
			drop =
			    uid >= 0 && strcmp(ids[j].sig, s) == 0 && ids[j].uid == (uint64_t)uid;
		if (drop) {
			removed++;
			continue;
		}
		/* Re-marshal as werf's StageID: signature, then uniqueID. */
		if (json_array_append_new(
			kept, json_pack("{s:s,s:I}", "signature", s, "uniqueID", uid)) < 0) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (removed == 0)
		goto out;
	if (json_array_size(kept) == 0) {
		if (unlink(path) < 0 && errno != ENOENT)
			r = err_set(err, -errno, "cannot remove %s: %s", path, strerror(errno));
		goto out;
	}
	doc = json_pack("{s:O}", "stages", kept);
	out = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	free(buf);
	if (asprintf(&buf, "%s\n", out) < 0) {
		buf = NULL;
		r = -ENOMEM;
		goto out;
	}
	snprintf(tmpl, sizeof(tmpl), "%s/.%s.%s.XXXXXX", cachedir, project, sig);
	r = replace_file(path, tmpl, buf, strlen(buf), st.st_mode & 07777);
	if (r < 0)
		err_set(err, r, "cannot rewrite werf's stage cache file %s: %s", path,
			strerror(-r));
out:
	free(buf);
	free(out);
	json_decref(doc);
	json_decref(kept);
	json_decref(root);
	return r < 0 ? r : removed;
}

int werf_stage_cache_forget(const char *home, const char *project, const char *const *stages,
			    size_t n, struct sf_err *err)
{
	char cachedir[PATH_MAX], projdir[PATH_MAX];
	struct werf_lock *lock = NULL;
	struct stage_id *ids;
	struct stat st;
	int r = 0, total = 0;

	if (!name_project_valid(project))
		return err_set(err, -EINVAL, "\"%s\" is not a valid werf project name", project);
	if (path_join(cachedir, home, WERF_STAGE_CACHE_DIR, NULL) < 0 ||
	    path_join(projdir, cachedir, project, NULL) < 0)
		return err_set(err, -ENAMETOOLONG, "werf's home path %s is too long", home);
	ids = calloc(n ? n : 1, sizeof(*ids));
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (name_stage_parse(stages[i], ids[i].sig, &ids[i].uid) < 0) {
			r = err_set(err, -EINVAL, "\"%s\" is not a stage name (SIGNATURE-UNIQUEID)",
				    stages[i]);
			goto out;
		}
	}
	if (n == 0 || stat(projdir, &st) < 0)
		goto out; /* no cache for this project: nothing to forget */
	/* werf's FileStagesStorageCache locks its directory's path, exclusively. */
	r = werf_lock_acquire(home, cachedir, WERF_LOCK_EXCLUSIVE, WERF_BLOCK_LOCK_TIMEOUT_MS, NULL,
			      NULL, &lock, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(ids[j].sig, ids[i].sig) == 0;
		if (seen)
			continue;
		r = cache_forget_sig(cachedir, project, ids[i].sig, ids + i, n - i, err);
		if (r < 0)
			goto out;
		total += r;
	}
	r = total;
out:
	werf_lock_release(lock);
	free(ids);
	return r;
}

/* ---- stage config ---- */

int werf_check_stage_config(const char *config_json, size_t len, const char *project,
			    struct sf_err *err)
{
	json_error_t jerr;
	json_t *root, *labels;
	const char *owner, *cache;
	int r = 0;

	root = json_loadb(config_json, len, 0, &jerr);
	if (!root)
		return err_set(err, -EINVAL, "the image config is not JSON: %s (line %d)",
			       jerr.text, jerr.line);
	labels = json_object_get(json_object_get(root, "config"), "Labels");
	if (!json_is_object(labels)) {
		r = err_set(err, -EINVAL,
			    "the image config has no labels: werf lists only images "
			    "labelled " WERF_LABEL_PROJECT "=%s and " WERF_LABEL_CACHE_VERSION
			    "=" WERF_CACHE_VERSION,
			    project);
		goto out;
	}
	owner = json_string_value(json_object_get(labels, WERF_LABEL_PROJECT));
	cache = json_string_value(json_object_get(labels, WERF_LABEL_CACHE_VERSION));
	if (!owner)
		r = err_set(err, -EINVAL,
			    "the image has no label " WERF_LABEL_PROJECT
			    "=%s: werf would not see it",
			    project);
	else if (strcmp(owner, project) != 0)
		r = err_set(err, -EINVAL,
			    "the image belongs to werf project \"%s\" (label " WERF_LABEL_PROJECT
			    "), not \"%s\"",
			    owner, project);
	else if (!cache)
		r = err_set(err, -EINVAL,
			    "the image has no label " WERF_LABEL_CACHE_VERSION
			    "=" WERF_CACHE_VERSION ": werf v1.1 would not see it");
	else if (strcmp(cache, WERF_CACHE_VERSION) != 0)
		r = err_set(err, -EINVAL,
			    "the image has " WERF_LABEL_CACHE_VERSION "=%s, not " WERF_CACHE_VERSION
			    ": werf v1.1 would not see it",
			    cache);
out:
	json_decref(root);
	return r;
}
