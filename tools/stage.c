/* stage: list, read, copy and remove stage folders through a mount. */
#include "stage.h"

#include <dirent.h>
#include <errno.h>
#include <sys/xattr.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "interrupt.h"
#include "name.h"

#define STAGE_JSON_MAX (1 << 20)
#define STAGE_MANIFEST_MAX (4 << 20)
#define STAGE_CHUNK (1 << 20)

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_dir(const char *dir, bool (*keep)(const char *), struct stage_names *ret,
		    struct sf_err *err)
{
	struct stage_names l = {0};
	size_t cap = 0;
	DIR *d = opendir(dir);
	struct dirent *e;
	int r = 0;

	if (!d)
		return err_set(err, -errno, "%s: %s", dir, strerror(errno));
	errno = 0;
	while ((e = readdir(d))) {
		if (!keep(e->d_name))
			continue;
		if (l.n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			char **nv = realloc(l.v, nc * sizeof(*nv));
			if (!nv) {
				r = err_set(err, -ENOMEM, "out of memory");
				goto out;
			}
			l.v = nv;
			cap = nc;
		}
		if (!(l.v[l.n] = strdup(e->d_name))) {
			r = err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		l.n++;
		errno = 0;
	}
	if (errno)
		r = err_set(err, -errno, "readdir %s: %s", dir, strerror(errno));
out:
	closedir(d);
	if (r < 0) {
		stage_names_done(&l);
		return r;
	}
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), cmp_str);
	*ret = l;
	return 0;
}

static bool keep_stage(const char *name)
{
	return name_is_stage(name);
}

static bool keep_project(const char *name)
{
	return name_project_valid(name);
}

int stage_list(const char *dir, struct stage_names *ret, struct sf_err *err)
{
	return list_dir(dir, keep_stage, ret, err);
}

int stage_list_projects(const char *dir, struct stage_names *ret, struct sf_err *err)
{
	return list_dir(dir, keep_project, ret, err);
}

bool stage_names_has(const struct stage_names *l, const char *name)
{
	return l->n && bsearch(&name, l->v, l->n, sizeof(*l->v), cmp_str) != NULL;
}

void stage_names_done(struct stage_names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (struct stage_names){0};
}

/* The whole file at path (at most max bytes) as a NUL-terminated string. */
static int read_small(const char *path, size_t max, char **ret, size_t *ret_len, struct sf_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (fd < 0)
		return err_set(err, -errno, "open %s: %s", path, strerror(errno));
	for (;;) {
		if (len == cap) {
			if (cap > max) {
				free(buf);
				close(fd);
				return err_set(err, -EFBIG, "%s: larger than %zu bytes", path, max);
			}
			cap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				close(fd);
				return err_set(err, -ENOMEM, "out of memory");
			}
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			free(buf);
			close(fd);
			return err_set(err, -e, "read %s: %s", path, strerror(e));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int load_json(const char *path, size_t max, json_t **ret, size_t *ret_len,
		     struct sf_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	json_error_t je;
	int r = read_small(path, max, &buf, &len, err);

	if (r < 0)
		return r;
	*ret = json_loadb(buf, len, 0, &je);
	free(buf);
	if (!*ret)
		return err_set(err, -EBADMSG, "%s: not JSON (%s)", path, je.text);
	*ret_len = len;
	return 0;
}

/* descriptor's digest (borrowed) when valid, else NULL */
static const char *desc_digest(json_t *desc)
{
	const char *d = json_string_value(json_object_get(desc, "digest"));
	return d && name_digest_valid(d) ? d : NULL;
}

/* The mount's own answer (user.stagefs.image_id and .size on a stage folder): no blob is read,
 * so :local needs no export. 1 when the folder has none (another file system), 0, -errno. */
static int meta_from_xattrs(const char *dir, struct stage_meta *ret, struct sf_err *err)
{
	char id[STAGE_ID_SIZE], size[32];
	ssize_t n = getxattr(dir, "user.stagefs.image_id", id, sizeof(id) - 1);
	ssize_t m = n > 0 ? getxattr(dir, "user.stagefs.size", size, sizeof(size) - 1) : n;
	char *end;

	if (n < 0 || m < 0) {
		if (errno == ENODATA || errno == ENOTSUP)
			return 1;
		return err_set(err, -errno, "%s: %s", dir, strerror(errno));
	}
	id[n] = '\0';
	size[m] = '\0';
	ret->size = strtoull(size, &end, 10);
	if (*end || !m)
		return err_set(err, -EBADMSG, "%s: user.stagefs.size is not a number", dir);
	memcpy(ret->image_id, id, (size_t)n + 1);
	return 0;
}

int stage_read_meta(const char *dir, struct stage_meta *ret, struct sf_err *err)
{
	char path[PATH_MAX];
	json_t *idx = NULL, *man = NULL;
	size_t len;
	const char *d;
	int r;

	if ((r = meta_from_xattrs(dir, ret, err)) <= 0)
		return r;
	if (stage_path(path, sizeof(path), dir, "index.json") < 0)
		return err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
	if ((r = load_json(path, STAGE_JSON_MAX, &idx, &len, err)) < 0)
		return r;
	d = desc_digest(json_array_get(json_object_get(idx, "manifests"), 0));
	if (!d) {
		r = err_set(err, -EBADMSG, "%s: no manifest descriptor", path);
		goto out;
	}
	for (int depth = 0;; depth++) {
		char rel[80];
		snprintf(rel, sizeof(rel), "blobs/sha256/%s", d + 7);
		if (stage_path(path, sizeof(path), dir, rel) < 0) {
			r = err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
			goto out;
		}
		json_decref(man);
		man = NULL;
		if ((r = load_json(path, STAGE_MANIFEST_MAX, &man, &len, err)) < 0)
			goto out;
		json_t *children = json_object_get(man, "manifests");
		if (!json_is_array(children))
			break;
		d = desc_digest(json_array_get(children, 0));
		if (depth > 0 || !d) {
			r = err_set(err, -EBADMSG, "%s: an image index without a usable manifest",
				    path);
			goto out;
		}
	}
	json_t *config = json_object_get(man, "config");
	d = desc_digest(config);
	if (!d) {
		r = err_set(err, -EBADMSG, "%s: no config descriptor", path);
		goto out;
	}
	uint64_t size = len + (uint64_t)json_integer_value(json_object_get(config, "size"));
	json_t *layer;
	size_t i;
	json_array_foreach(json_object_get(man, "layers"), i, layer)
	{
		json_int_t s = json_integer_value(json_object_get(layer, "size"));
		if (s > 0)
			size += (uint64_t)s;
	}
	snprintf(ret->image_id, sizeof(ret->image_id), "%s", d);
	ret->size = size;
	r = 0;
out:
	json_decref(idx);
	json_decref(man);
	return r;
}

struct entry {
	char *name;
	bool dir;
	int rank; /* 0 dirs, 1 files, 2 index.json */
};

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank - y->rank;
	return strcmp(x->name, y->name);
}

struct copy_state {
	char *buf;
	uint64_t bytes;
	stage_bytes_fn *on_bytes;
	void *userdata;
};

static int copy_file(struct copy_state *cs, const char *src, const char *dst, struct sf_err *err)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out, r = 0;

	if (in < 0)
		return err_set(err, -errno, "open %s: %s", src, strerror(errno));
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		r = err_set(err, -errno, "create %s: %s", dst, strerror(errno));
		close(in);
		return r;
	}
	for (;;) {
		if (interrupt_requested()) {
			r = err_set(err, -ECANCELED, "interrupted");
			break;
		}
		ssize_t n = read(in, cs->buf, STAGE_CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = err_set(err, -errno, "read %s: %s", src, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, cs->buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				r = err_set(err, -errno, "write %s: %s", dst, strerror(errno));
				break;
			}
			off += w;
		}
		if (r < 0)
			break;
		cs->bytes += (uint64_t)n;
		if (cs->on_bytes)
			cs->on_bytes((uint64_t)n, cs->userdata);
	}
	close(in);
	/* The close of the file that completes the layout is the commit: its errno is the
	 * commit's result. */
	if (close(out) < 0 && r == 0)
		r = err_set(err, -errno, "close %s: %s", dst, strerror(errno));
	return r;
}

static int copy_dir(struct copy_state *cs, const char *src, const char *dst, int depth,
		    struct sf_err *err)
{
	struct entry *v = NULL;
	size_t n = 0, cap = 0;
	DIR *d;
	struct dirent *e;
	int r = 0;

	if (depth > 8)
		return err_set(err, -ELOOP, "%s: too deep for a stage folder", src);
	if (mkdir(dst, 0755) < 0 && errno != EEXIST)
		return err_set(err, -errno, "mkdir %s: %s", dst, strerror(errno));
	if (!(d = opendir(src)))
		return err_set(err, -errno, "%s: %s", src, strerror(errno));
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			struct entry *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				r = err_set(err, -ENOMEM, "out of memory");
				goto out;
			}
			v = nv;
		}
		bool is_dir = e->d_type == DT_DIR;
		if (e->d_type == DT_UNKNOWN) {
			struct stat st;
			is_dir = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				 S_ISDIR(st.st_mode);
		}
		if (!(v[n].name = strdup(e->d_name))) {
			r = err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		v[n].dir = is_dir;
		v[n].rank = is_dir ? 0 : strcmp(e->d_name, "index.json") == 0 && depth == 0 ? 2 : 1;
		n++;
	}
	qsort(v, n, sizeof(*v), cmp_entry);
	for (size_t i = 0; i < n && r == 0; i++) {
		char s[PATH_MAX], t[PATH_MAX];
		if (stage_path(s, sizeof(s), src, v[i].name) < 0 ||
		    stage_path(t, sizeof(t), dst, v[i].name) < 0) {
			r = err_set(err, -ENAMETOOLONG, "%s/%s: path too long", dst, v[i].name);
			break;
		}
		r = v[i].dir ? copy_dir(cs, s, t, depth + 1, err) : copy_file(cs, s, t, err);
	}
out:
	closedir(d);
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
	return r;
}

int stage_copy(const char *src, const char *dst, stage_bytes_fn *on_bytes, void *userdata,
	       struct sf_err *err)
{
	struct copy_state cs = {.on_bytes = on_bytes, .userdata = userdata};
	int r;

	if (!(cs.buf = malloc(STAGE_CHUNK)))
		return err_set(err, -ENOMEM, "out of memory");
	r = copy_dir(&cs, src, dst, 0, err);
	free(cs.buf);
	return r;
}

/* Remove dir/rel and what it holds, depth first: what `rm -r` does, which is what removes a
 * stage from a mount (DESIGN.md section 4.7). */
static int remove_tree(const char *dir, struct sf_err *err)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d = opendir(dir);
	int r = 0;

	if (!d)
		return err_set(err, -errno, "opendir %s: %s", dir, strerror(errno));
	while (r == 0 && (de = readdir(d))) {
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (stage_path(path, sizeof(path), dir, de->d_name) < 0) {
			r = err_set(err, -ENAMETOOLONG, "%s: path too long", dir);
			break;
		}
		if (lstat(path, &st) < 0) {
			if (errno != ENOENT)
				r = err_set(err, -errno, "stat %s: %s", path, strerror(errno));
			continue;
		}
		if (S_ISDIR(st.st_mode))
			r = remove_tree(path, err);
		else if (unlink(path) < 0 && errno != ENOENT)
			r = err_set(err, -errno, "unlink %s: %s", path, strerror(errno));
	}
	closedir(d);
	if (r == 0 && rmdir(dir) < 0)
		r = err_set(err, -errno, "rmdir %s: %s", dir, strerror(errno));
	return r;
}

int stage_remove(const char *dir, struct sf_err *err)
{
	return remove_tree(dir, err);
}

int stage_path(char *buf, size_t n, const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);

	if (a + 1 + b + 1 > n)
		return -ENAMETOOLONG;
	memcpy(buf, dir, a);
	if (b) {
		buf[a] = '/';
		memcpy(buf + a + 1, name, b + 1);
	} else {
		buf[a] = '\0';
	}
	return 0;
}

int stage_dir(char *buf, size_t n, const char *root, bool local, const char *project,
	      const char *stage)
{
	char proj[PATH_MAX];

	if (!local)
		return stage_path(buf, n, root, stage);
	if (stage_path(proj, sizeof(proj), root, project) < 0)
		return -ENAMETOOLONG;
	return stage_path(buf, n, proj, stage);
}

int stage_list_in(const char *root, bool local, const char *project, struct stage_names *ret,
		  struct sf_err *err)
{
	char dir[PATH_MAX];
	int r;

	*ret = (struct stage_names){0};
	if (stage_dir(dir, sizeof(dir), root, local, project, "") < 0)
		return err_set(err, -ENAMETOOLONG, "%s/%s: path too long", root, project);
	r = stage_list(dir, ret, err);
	return r == -ENOENT && local ? 0 : r;
}
