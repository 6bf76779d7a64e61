#include "blobcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "name.h"

#define NBUCKETS 1024
#define MAX_STALLED_RESUMES 5

enum state { FETCHING, READY, FAILED };

struct entry {
	char hex[65];
	uint64_t size;
	enum state state;
	int fd;	       /* open while refs > 0 (or fetching); -1 otherwise */
	uint64_t have; /* bytes on disk so far */
	int error;
	char errmsg[sizeof(((struct sf_err *)0)->msg)];
	int refs;      /* readers + the fetch thread */
	bool hashed;   /* still in the table (failed entries leave it) */
	bool external; /* the backend's own file: not ours to count or evict */
	struct entry *hnext;
	struct entry *prev, *next; /* LRU of READY entries, most recent at head */
	pthread_cond_t cond;
};

struct blobcache {
	char *dir;
	uint64_t max_bytes;
	uint64_t total;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int fetches;
	bool closing; /* unmounting: running fetches stop */
	struct entry *buckets[NBUCKETS];
	struct entry *lru_head, *lru_tail;
};

struct blob_reader {
	struct blobcache *bc;
	struct entry *e;
};

struct fetch {
	struct blobcache *bc;
	struct entry *e;
	struct storage *st;
	char project[NAME_PROJECT_MAX + 1];
	char stage[NAME_STAGE_MAX + 1];
	struct layout_blob blob;
	char tmp[4096];
	struct digest_ctx *dg;
	int write_error;
};

static unsigned hash(const char *hex)
{
	unsigned h = 0;
	for (int i = 0; i < 8; i++)
		h = h * 16 + (unsigned)(hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
	return h % NBUCKETS;
}

static void path_of(const struct blobcache *bc, const char *hex, char *out, size_t n)
{
	snprintf(out, n, "%s/sha256/%s", bc->dir, hex);
}

static void lru_unlink(struct blobcache *bc, struct entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else if (bc->lru_head == e)
		bc->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else if (bc->lru_tail == e)
		bc->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_head(struct blobcache *bc, struct entry *e)
{
	e->prev = NULL;
	e->next = bc->lru_head;
	if (bc->lru_head)
		bc->lru_head->prev = e;
	bc->lru_head = e;
	if (!bc->lru_tail)
		bc->lru_tail = e;
}

static void table_remove(struct blobcache *bc, struct entry *e)
{
	struct entry **pp = &bc->buckets[hash(e->hex)];

	for (; *pp; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	e->hashed = false;
}

static struct entry *table_find(struct blobcache *bc, const char *hex)
{
	for (struct entry *e = bc->buckets[hash(hex)]; e; e = e->hnext)
		if (strcmp(e->hex, hex) == 0)
			return e;
	return NULL;
}

static struct entry *entry_new(struct blobcache *bc, const char *hex, uint64_t size)
{
	struct entry *e = calloc(1, sizeof(*e));
	unsigned h = hash(hex);

	if (!e)
		return NULL;
	memcpy(e->hex, hex, 65);
	e->size = size;
	e->fd = -1;
	pthread_cond_init(&e->cond, NULL);
	e->hashed = true;
	e->hnext = bc->buckets[h];
	bc->buckets[h] = e;
	return e;
}

static void entry_free(struct entry *e)
{
	if (e->fd >= 0)
		close(e->fd);
	pthread_cond_destroy(&e->cond);
	free(e);
}

/* Forget a finished, unreferenced blob (and delete its file when unlink_file). Lock held. */
static void entry_drop(struct blobcache *bc, struct entry *e, bool unlink_file)
{
	if (unlink_file) {
		char path[4096];
		path_of(bc, e->hex, path, sizeof(path));
		unlink(path);
	}
	bc->total -= e->size;
	lru_unlink(bc, e);
	table_remove(bc, e);
	entry_free(e);
}

/* Evict least recently used, unreferenced READY blobs until under the cap. Lock held. */
static void evict(struct blobcache *bc)
{
	struct entry *e = bc->lru_tail;

	while (e && bc->total > bc->max_bytes) {
		struct entry *prev = e->prev;
		if (e->refs == 0)
			entry_drop(bc, e, true);
		e = prev;
	}
}

/* Drop a reference. Lock held. */
static void entry_put(struct blobcache *bc, struct entry *e)
{
	if (--e->refs > 0)
		return;
	if (!e->hashed || e->state == FAILED || e->external) {
		if (e->hashed)
			table_remove(bc, e);
		lru_unlink(bc, e);
		entry_free(e);
		return;
	}
	if (e->state == READY) {
		if (e->fd >= 0) {
			close(e->fd);
			e->fd = -1;
		}
		evict(bc);
	}
}

static int fetch_sink(void *userdata, const void *data, size_t len)
{
	struct fetch *f = userdata;
	struct entry *e = f->e;
	const char *p = data;
	uint64_t at;
	size_t left = len;

	if (__atomic_load_n(&f->bc->closing, __ATOMIC_RELAXED))
		return -ECANCELED;
	/* e->have is only written by this thread; reading it without the lock is safe. */
	at = e->have;
	if (at + len > f->blob.size)
		return -EBADMSG; /* more bytes than the manifest says: not this blob */
	while (left) {
		ssize_t n = pwrite(e->fd, p, left, (off_t)at);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			f->write_error = -errno;
			return -errno;
		}
		p += n;
		at += (uint64_t)n;
		left -= (size_t)n;
	}
	digest_update(f->dg, data, len);
	pthread_mutex_lock(&f->bc->lock);
	e->have = at;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&f->bc->lock);
	return 0;
}

static void *fetch_main(void *arg)
{
	struct fetch *f = arg;
	struct blobcache *bc = f->bc;
	struct entry *e = f->e;
	struct sf_err err = {0};
	char got[DIGEST_LEN], final[4096];
	int r = 0, stalled = 0;

	/* A backend that has the blob as a verified local file: read that, copy nothing. */
	r = storage_local_file(f->st, f->project, f->stage, &f->blob, final, sizeof(final), &err);
	if (r != -ENOTSUP) {
		int fd = r == 0 ? open(final, O_RDONLY | O_CLOEXEC) : -1;
		if (r == 0 && fd < 0 && errno == ENOENT) {
			/* Evicted between the answer and the open: the backend makes it again. */
			r = storage_local_file(f->st, f->project, f->stage, &f->blob, final,
					       sizeof(final), &err);
			fd = r == 0 ? open(final, O_RDONLY | O_CLOEXEC) : -1;
		}
		struct stat sb;
		if (r == 0 &&
		    (fd < 0 || fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != f->blob.size))
			r = fd < 0 ? err_set(&err, -EIO, "%s: %s", final, strerror(errno))
				   : err_set(&err, -EBADMSG, "%s: not the expected blob", final);
		unlink(f->tmp);
		pthread_mutex_lock(&bc->lock);
		close(e->fd);
		e->fd = fd;
		if (r == 0) {
			e->state = READY;
			e->external = true;
			e->have = e->size;
		} else {
			if (fd >= 0)
				close(fd);
			e->fd = -1;
			e->state = FAILED;
			e->error = r;
			snprintf(e->errmsg, sizeof(e->errmsg), "%s", err_msg(&err, r));
		}
		goto done;
	}
	r = 0;

	while (e->have < f->blob.size || (f->blob.size == 0 && r == 0 && stalled == 0)) {
		uint64_t before = e->have;
		err = (struct sf_err){0};
		r = storage_read_blob(f->st, f->project, f->stage, &f->blob, e->have, fetch_sink, f,
				      &err);
		if (f->blob.size == 0)
			break;
		if (r == 0 && e->have < f->blob.size) {
			r = err_set(&err, -EIO, "blob %s: answer ended after %llu of %llu bytes",
				    e->hex, (unsigned long long)e->have,
				    (unsigned long long)f->blob.size);
		}
		if (r == 0)
			break;
		/* Resume transport failures that made progress; give up on the rest. */
		if (r != -EIO && r != -ETIMEDOUT)
			break;
		stalled = e->have > before ? 0 : stalled + 1;
		if (stalled >= MAX_STALLED_RESUMES)
			break;
	}
	if (r == 0) {
		digest_final(f->dg, got);
		if (strcmp(got + 7, e->hex) != 0 || e->have != f->blob.size)
			r = err_set(&err, -EBADMSG, "blob sha256:%s: content does not match digest",
				    e->hex);
	}
	if (r == 0) {
		path_of(bc, e->hex, final, sizeof(final));
		if (rename(f->tmp, final) < 0)
			r = err_set(&err, -errno, "cache %s: %s", final, strerror(errno));
	}
	if (r < 0)
		unlink(f->tmp);

	pthread_mutex_lock(&bc->lock);
	if (r == 0) {
		e->state = READY;
		bc->total += e->size;
		lru_push_head(bc, e);
		evict(bc); /* others may be closed and old; this one is still held */
	} else {
		e->state = FAILED;
		e->error = r;
		snprintf(e->errmsg, sizeof(e->errmsg), "%s", err.msg[0] ? err.msg : strerror(-r));
	}
done:
	pthread_cond_broadcast(&e->cond);
	entry_put(bc, e);
	if (--bc->fetches == 0)
		pthread_cond_broadcast(&bc->idle);
	pthread_mutex_unlock(&bc->lock);

	digest_free(f->dg);
	free(f);
	return NULL;
}

/* Start fetching e. Lock held; e->refs already counts the fetch. */
static int start_fetch(struct blobcache *bc, struct entry *e, struct storage *st,
		       const char *project, const char *stage, const struct layout_blob *blob,
		       struct sf_err *err)
{
	struct fetch *f = calloc(1, sizeof(*f));
	pthread_attr_t attr;
	pthread_t tid;
	int r;

	if (!f)
		return -ENOMEM;
	f->bc = bc;
	f->e = e;
	f->st = st;
	snprintf(f->project, sizeof(f->project), "%s", project ? project : "");
	snprintf(f->stage, sizeof(f->stage), "%s", stage);
	f->blob = *blob;
	f->blob.data = NULL;
	f->dg = digest_new();
	snprintf(f->tmp, sizeof(f->tmp), "%s/tmp/%s.XXXXXX", bc->dir, e->hex);
	e->fd = f->dg ? mkostemp(f->tmp, O_CLOEXEC) : -1;
	if (e->fd < 0) {
		r = f->dg ? err_set(err, -errno, "cache dir %s: %s", bc->dir, strerror(errno))
			  : -ENOMEM;
		digest_free(f->dg);
		free(f);
		return r;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = -pthread_create(&tid, &attr, fetch_main, f);
	pthread_attr_destroy(&attr);
	if (r < 0) {
		close(e->fd);
		e->fd = -1;
		unlink(f->tmp);
		digest_free(f->dg);
		free(f);
		return err_set(err, r, "cannot start a fetch thread");
	}
	bc->fetches++;
	return 0;
}

int blobcache_open(struct blobcache *bc, struct storage *st, const char *project, const char *stage,
		   const struct layout_blob *blob, struct blob_reader **ret, struct sf_err *err)
{
	const char *hex = blob->digest + 7;
	struct blob_reader *rd;
	struct entry *e;
	char path[4096];
	int r = 0;

	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	pthread_mutex_lock(&bc->lock);
	e = table_find(bc, hex);
	if (e && e->state == FAILED) {
		table_remove(bc, e); /* its readers still hold it; a new open tries again */
		e = NULL;
	}
	if (e && e->state == READY && e->size != blob->size && e->refs == 0) {
		/* Left on disk with another size: not this blob's content. Fetch it again. */
		entry_drop(bc, e, true);
		e = NULL;
	}
	if (e && e->state == READY && e->fd < 0) {
		path_of(bc, hex, path, sizeof(path));
		e->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (e->fd < 0) {
			/* Gone from disk (another daemon evicted it): fetch again. */
			entry_drop(bc, e, false);
			e = NULL;
		}
	}
	if (!e) {
		struct stat sb;
		path_of(bc, hex, path, sizeof(path));
		e = entry_new(bc, hex, blob->size);
		if (!e) {
			r = -ENOMEM;
			goto out;
		}
		e->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (e->fd >= 0 && fstat(e->fd, &sb) == 0 && (uint64_t)sb.st_size == blob->size) {
			/* Left by an earlier run or another daemon: verified when it was stored. */
			e->state = READY;
			e->have = blob->size;
			bc->total += e->size;
			lru_push_head(bc, e);
		} else {
			if (e->fd >= 0) {
				close(e->fd);
				e->fd = -1;
			}
			e->state = FETCHING;
			e->refs++;
			r = start_fetch(bc, e, st, project, stage, blob, err);
			if (r < 0) {
				e->refs--;
				table_remove(bc, e);
				entry_free(e);
				goto out;
			}
		}
	} else if (e->state == READY && !e->external) {
		lru_unlink(bc, e);
		lru_push_head(bc, e);
	}
	e->refs++;
	rd->bc = bc;
	rd->e = e;
out:
	pthread_mutex_unlock(&bc->lock);
	if (r < 0) {
		free(rd);
		return r;
	}
	*ret = rd;
	return 0;
}

ssize_t blobcache_pread(struct blob_reader *rd, void *buf, size_t len, uint64_t off,
			struct sf_err *err)
{
	struct blobcache *bc = rd->bc;
	struct entry *e = rd->e;
	uint64_t want;
	ssize_t n;
	int fd;

	if (off >= e->size)
		return 0;
	if (len > e->size - off)
		len = (size_t)(e->size - off);
	want = off + len;
	pthread_mutex_lock(&bc->lock);
	/* A read of the last bytes also waits for the sha256 check: a reader of the whole blob
	 * ends on the verdict. (Earlier chunks, streamed while they arrive, cannot be recalled.) */
	while (e->state == FETCHING && (e->have < want || want == e->size))
		pthread_cond_wait(&e->cond, &bc->lock);
	if (e->state == FAILED) {
		int r = err_set(err, e->error, "%s", e->errmsg);
		pthread_mutex_unlock(&bc->lock);
		return r;
	}
	fd = e->fd;
	pthread_mutex_unlock(&bc->lock);
	do
		n = pread(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_set(err, -errno, "cache read: %s", strerror(errno));
	return n;
}

void blobcache_close(struct blob_reader *rd)
{
	if (!rd)
		return;
	pthread_mutex_lock(&rd->bc->lock);
	entry_put(rd->bc, rd->e);
	pthread_mutex_unlock(&rd->bc->lock);
	free(rd);
}

uint64_t blobcache_size(struct blobcache *bc)
{
	uint64_t n;

	pthread_mutex_lock(&bc->lock);
	n = bc->total;
	pthread_mutex_unlock(&bc->lock);
	return n;
}

static int mkdir_p(const char *path)
{
	char tmp[4096];
	size_t n = strlen(path);

	if (n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Account for blobs left by earlier runs; drop stale partial files (older than a day). */
static void scan(struct blobcache *bc)
{
	char path[4096];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	snprintf(path, sizeof(path), "%s/sha256", bc->dir);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		struct entry *e;
		if (!name_hex64_valid(de->d_name) ||
		    fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		e = entry_new(bc, de->d_name, (uint64_t)sb.st_size);
		if (!e)
			break;
		e->state = READY;
		e->have = e->size;
		bc->total += e->size;
		lru_push_head(bc, e);
	}
	if (d)
		closedir(d);
	snprintf(path, sizeof(path), "%s/tmp", bc->dir);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &sb, 0) == 0 &&
		    S_ISREG(sb.st_mode) && sb.st_mtime < time(NULL) - 86400)
			unlinkat(dirfd(d), de->d_name, 0);
	}
	if (d)
		closedir(d);
	evict(bc);
}

int blobcache_new(const char *dir, uint64_t max_bytes, struct blobcache **ret, struct sf_err *err)
{
	struct blobcache *bc;
	char sub[4096];
	int r;

	if (snprintf(sub, sizeof(sub), "%s/sha256", dir) >= (int)sizeof(sub))
		return err_set(err, -ENAMETOOLONG, "cache dir path too long");
	r = mkdir_p(sub);
	if (r == 0) {
		snprintf(sub, sizeof(sub), "%s/tmp", dir);
		r = mkdir_p(sub);
	}
	if (r < 0)
		return err_set(err, r, "cache dir %s: %s", dir, strerror(-r));
	bc = calloc(1, sizeof(*bc));
	if (!bc || !(bc->dir = strdup(dir))) {
		free(bc);
		return -ENOMEM;
	}
	bc->max_bytes = max_bytes;
	pthread_mutex_init(&bc->lock, NULL);
	pthread_cond_init(&bc->idle, NULL);
	scan(bc);
	*ret = bc;
	return 0;
}

void blobcache_free(struct blobcache *bc)
{
	if (!bc)
		return;
	pthread_mutex_lock(&bc->lock);
	__atomic_store_n(&bc->closing, true, __ATOMIC_RELAXED);
	while (bc->fetches > 0)
		pthread_cond_wait(&bc->idle, &bc->lock);
	pthread_mutex_unlock(&bc->lock);
	for (size_t i = 0; i < NBUCKETS; i++)
		while (bc->buckets[i]) {
			struct entry *e = bc->buckets[i];
			bc->buckets[i] = e->hnext;
			entry_free(e);
		}
	pthread_mutex_destroy(&bc->lock);
	pthread_cond_destroy(&bc->idle);
	free(bc->dir);
	free(bc);
}
