/* pending: stage folders written file by file, checked at close and rename, committed once. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "digest.h"
#include "oci.h"
#include "pending.h"
#include "testutil.h"

#define STAGE "0123456789abcdef0123456789abcdef0123456789abcdef01234567-1589786063772"

/* A writer that records what it is given. */
struct fake_writer {
	struct stage_writer base;
	int adds;
	char added[8][DIGEST_LEN];
	int commits;
	char *index;
	int commit_result;
	int *freed;
	struct pending_stage *rmdir_during_commit; /* rmdir "" of it while committing */
	int rmdir_result;
};

static int fw_add(struct stage_writer *w, const char *digest, uint64_t size, const char *path,
		  struct sf_err *err)
{
	struct fake_writer *f = (struct fake_writer *)w;
	char have[DIGEST_LEN];

	/* The file handed over is there and holds exactly the blob. */
	assert_int_equal(digest_file(path, have), 0);
	assert_string_equal(have, digest);
	if (f->adds < 8)
		memcpy(f->added[f->adds], digest, DIGEST_LEN);
	f->adds++;
	return 0;
}

static int fw_commit(struct stage_writer *w, const char *index_json, size_t len,
		     struct sf_err *err)
{
	struct fake_writer *f = (struct fake_writer *)w;

	f->commits++;
	if (f->rmdir_during_commit)
		f->rmdir_result = pending_rmdir(f->rmdir_during_commit, "");
	free(f->index);
	f->index = strndup(index_json, len);
	if (f->commit_result < 0)
		return err_set(err, f->commit_result, "the registry said no");
	return 0;
}

static void fw_free(struct stage_writer *w)
{
	struct fake_writer *f = (struct fake_writer *)w;
	(*f->freed)++;
}

static const struct stage_writer_ops fake_ops = {fw_add, fw_commit, fw_free};

struct image {
	char *config, *layer, *manifest, *index;
	size_t config_len, layer_len, manifest_len, index_len;
	char config_d[DIGEST_LEN], layer_d[DIGEST_LEN], manifest_d[DIGEST_LEN];
};

static void make_image(struct image *im, const char *label, const char *ref)
{
	struct oci_desc cfg = {.media_type = MT_OCI_CONFIG}, layer = {.media_type = MT_OCI_LAYER_TAR},
			man = {.media_type = MT_OCI_MANIFEST};

	im->config = tu_strdupf("{\"config\":{\"Labels\":{\"x\":\"%s\"}},\"rootfs\":{}}", label);
	im->config_len = strlen(im->config);
	im->layer = tu_repeat('L', 3000);
	im->layer_len = 3000;
	digest_buffer(im->config, im->config_len, im->config_d);
	digest_buffer(im->layer, im->layer_len, im->layer_d);
	memcpy(cfg.digest, im->config_d, DIGEST_LEN);
	cfg.size = im->config_len;
	memcpy(layer.digest, im->layer_d, DIGEST_LEN);
	layer.size = im->layer_len;
	assert_int_equal(oci_manifest_json(MT_OCI_MANIFEST, &cfg, &layer, 1, &im->manifest,
					   &im->manifest_len),
			 0);
	digest_buffer(im->manifest, im->manifest_len, im->manifest_d);
	memcpy(man.digest, im->manifest_d, DIGEST_LEN);
	man.size = im->manifest_len;
	assert_int_equal(oci_index_json(&man, ref ? ref : STAGE, &im->index, &im->index_len), 0);
}

static void free_image(struct image *im)
{
	free(im->config);
	free(im->layer);
	free(im->manifest);
	free(im->index);
}

/* Write a whole file the way cp does (create, write in order, close). */
static int put(struct pending_stage *ps, const char *rel, const void *data, size_t len)
{
	struct pending_file *pf;
	struct sf_err err = {0};
	int r = pending_open(ps, rel, O_WRONLY | O_CREAT | O_EXCL, 0644, &pf);

	if (r < 0)
		return r;
	for (size_t off = 0; off < len;) {
		size_t n = len - off > 1000 ? 1000 : len - off;
		assert_int_equal(pending_file_pwrite(pf, (const char *)data + off, n, (off_t)off),
				 (ssize_t)n);
		off += n;
	}
	r = pending_file_flush(pf, &err);
	/* Sticky: a second flush says the same. */
	assert_int_equal(pending_file_flush(pf, &err), r);
	pending_file_close(pf);
	return r;
}

static char *blob_rel(const char *digest)
{
	return tu_strdupf("blobs/sha256/%s", digest + 7);
}

struct fixture {
	char *dir;
	struct pending *p;
	struct fake_writer *w;
	int freed;
	struct pending_stage *ps;
	struct image im;
};

static int setup(void **state)
{
	struct fixture *fx = tu_calloc(1, sizeof(*fx));
	unsigned stale = 99;

	fx->dir = tu_mkdtemp();
	assert_int_equal(pending_new(fx->dir, &fx->p, &stale, NULL), 0);
	assert_int_equal(stale, 0);
	fx->w = tu_calloc(1, sizeof(*fx->w));
	fx->w->base.ops = &fake_ops;
	fx->w->freed = &fx->freed;
	assert_int_equal(pending_stage_start(fx->p, "", STAGE, &fx->w->base, NULL, &fx->ps, NULL), 0);
	make_image(&fx->im, "a", NULL);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	pending_stage_unref(fx->ps);
	pending_free(fx->p, NULL, NULL);
	free(fx->w->index);
	free(fx->w);
	free_image(&fx->im);
	tu_rm_rf(fx->dir);
	free(fx->dir);
	free(fx);
	return 0;
}

static void mkdirs(struct pending_stage *ps)
{
	assert_int_equal(pending_mkdir(ps, "blobs", 0700), 0);
	assert_int_equal(pending_mkdir(ps, "blobs/sha256", 0700), 0);
}

/* cp -r order: oci-layout, blobs, index.json last: the close of index.json commits. */
static void test_cp_order_commits_once(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im;
	char *c = blob_rel(im->config_d), *l = blob_rel(im->layer_d), *m = blob_rel(im->manifest_d);

	mkdirs(fx->ps);
	assert_int_equal(put(fx->ps, "oci-layout", OCI_LAYOUT_FILE, strlen(OCI_LAYOUT_FILE)), 0);
	assert_int_equal(put(fx->ps, l, im->layer, im->layer_len), 0);
	assert_int_equal(put(fx->ps, c, im->config, im->config_len), 0);
	assert_int_equal(put(fx->ps, m, im->manifest, im->manifest_len), 0);
	assert_int_equal(fx->w->adds, 3);
	assert_string_equal(fx->w->added[0], im->layer_d); /* handed on as each completes */
	assert_int_equal(fx->w->commits, 0);
	assert_int_equal(put(fx->ps, "index.json", im->index, im->index_len), 0);
	assert_int_equal(fx->w->commits, 1);
	assert_string_equal(fx->w->index, im->index);
	assert_int_equal(fx->freed, 1);
	/* Gone from the set once committed. */
	assert_null(pending_stage_find(fx->p, "", STAGE));
	free(c);
	free(l);
	free(m);
}

/* rsync: index.json first under a temporary name, blobs last; the rename completing the layout
 * commits. */
static void test_rsync_order_commits_on_rename(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im;
	char *c = blob_rel(im->config_d), *l = blob_rel(im->layer_d), *m = blob_rel(im->manifest_d);
	struct sf_err err = {0};

	assert_int_equal(put(fx->ps, ".index.json.Ab12", im->index, im->index_len), 0);
	assert_int_equal(pending_rename(fx->ps, ".index.json.Ab12", "index.json", 0, &err), 0);
	mkdirs(fx->ps);
	assert_int_equal(put(fx->ps, "blobs/sha256/.tmp1", im->config, im->config_len), 0);
	assert_int_equal(pending_rename(fx->ps, "blobs/sha256/.tmp1", c, 0, &err), 0);
	assert_int_equal(put(fx->ps, "blobs/sha256/.tmp2", im->layer, im->layer_len), 0);
	assert_int_equal(pending_rename(fx->ps, "blobs/sha256/.tmp2", l, 0, &err), 0);
	assert_int_equal(fx->w->commits, 0);
	/* skopeo's way for the last one: at the stage root, renamed across folders. */
	assert_int_equal(put(fx->ps, "oci-put-blob77", im->manifest, im->manifest_len), 0);
	assert_int_equal(pending_rename(fx->ps, "oci-put-blob77", m, 0, &err), 0);
	assert_int_equal(fx->w->commits, 1);
	assert_int_equal(fx->w->adds, 3);
	free(c);
	free(l);
	free(m);
}

static void test_wrong_blob_is_refused_and_removed(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im;
	char *c = blob_rel(im->config_d);
	struct stat st;
	struct sf_err err = {0};

	mkdirs(fx->ps);
	assert_int_equal(put(fx->ps, c, "{}", 2), -EBADMSG);
	assert_int_equal(pending_stat(fx->ps, c, &st), -ENOENT);
	assert_int_equal(fx->w->adds, 0);
	/* Renamed onto the name: the rename is refused the same way. */
	assert_int_equal(put(fx->ps, "tmp", "{}", 2), 0);
	assert_int_equal(pending_rename(fx->ps, "tmp", c, 0, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"));
	/* The right bytes afterwards are fine. */
	assert_int_equal(put(fx->ps, c, im->config, im->config_len), 0);
	assert_int_equal(fx->w->adds, 1);
	free(c);
}

static void test_index_naming_another_stage(void **state)
{
	struct fixture *fx = *state;
	struct image other;

	make_image(&other, "a", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffff-1");
	assert_int_equal(put(fx->ps, "index.json", other.index, other.index_len), -EINVAL);
	/* The stage cannot complete any more: it is dropped, nothing was committed. */
	assert_int_equal(fx->w->commits, 0);
	assert_null(pending_stage_find(fx->p, "", STAGE));
	free_image(&other);
}

static void test_malformed_documents(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(put(fx->ps, "oci-layout", "{}", 2), -EINVAL);
	assert_int_equal(put(fx->ps, "index.json", "{\"manifests\":[]}", 16), -EINVAL);
	assert_int_equal(fx->w->commits, 0);
}

static void test_malformed_manifest_fails_the_completing_call(void **state)
{
	struct fixture *fx = *state;
	const char *bad = "{\"schemaVersion\":2,\"layers\":7}";
	char d[DIGEST_LEN], *rel;
	struct oci_desc man = {.media_type = MT_OCI_MANIFEST};
	char *index;
	size_t index_len;

	digest_buffer(bad, strlen(bad), d);
	memcpy(man.digest, d, DIGEST_LEN);
	man.size = strlen(bad);
	assert_int_equal(oci_index_json(&man, STAGE, &index, &index_len), 0);
	mkdirs(fx->ps);
	rel = blob_rel(d);
	assert_int_equal(put(fx->ps, rel, bad, strlen(bad)), 0); /* a fine blob on its own */
	assert_int_equal(put(fx->ps, "index.json", index, index_len), -EINVAL);
	assert_int_equal(fx->w->commits, 0);
	free(rel);
	free(index);
}

static void test_commit_failure_is_reported_and_sticky(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im;
	char *c = blob_rel(im->config_d), *l = blob_rel(im->layer_d), *m = blob_rel(im->manifest_d);
	struct pending_file *pf;
	struct sf_err err = {0};

	fx->w->commit_result = -EAGAIN;
	mkdirs(fx->ps);
	assert_int_equal(put(fx->ps, l, im->layer, im->layer_len), 0);
	assert_int_equal(put(fx->ps, c, im->config, im->config_len), 0);
	assert_int_equal(put(fx->ps, m, im->manifest, im->manifest_len), 0);
	assert_int_equal(pending_open(fx->ps, "index.json", O_WRONLY | O_CREAT, 0644, &pf), 0);
	assert_int_equal(pending_file_pwrite(pf, im->index, im->index_len, 0),
			 (ssize_t)im->index_len);
	assert_int_equal(pending_file_flush(pf, &err), -EAGAIN);
	assert_non_null(strstr(err.msg, "the registry said no"));
	assert_int_equal(pending_file_flush(pf, NULL), -EAGAIN);
	pending_file_close(pf);
	assert_int_equal(fx->w->commits, 1);
	assert_null(pending_stage_find(fx->p, "", STAGE));
	free(c);
	free(l);
	free(m);
}

/* Over an existing stage: the same image is accepted without a commit, another is EEXIST. */
static void test_check_mode(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im, other;
	struct stage_layout *existing = stage_layout_new();
	struct pending_stage *ps;
	struct pending_file *keep;
	char *m, *om;

	existing->index_json = tu_strdup(im->index);
	existing->index_len = im->index_len;
	memcpy(existing->image_id, im->config_d, DIGEST_LEN);
	stage_layout_add_blob(existing, im->manifest_d, im->manifest_len, im->manifest);
	stage_layout_seal(existing);
	assert_int_equal(pending_stage_start(fx->p, "p2", STAGE, NULL, existing, &ps, NULL), 0);
	stage_layout_unref(existing);
	/* A check lasts while files are open in it: keep one open for the whole sequence. */
	assert_int_equal(pending_open(ps, "keep", O_WRONLY | O_CREAT, 0644, &keep), 0);

	/* index.json of the same image; its manifest known from the existing layout. */
	assert_int_equal(put(ps, "index.json", im->index, im->index_len), 0);
	make_image(&other, "b", NULL);
	m = blob_rel(im->manifest_d);
	om = blob_rel(other.manifest_d);
	assert_int_equal(put(ps, m, im->manifest, im->manifest_len), 0);
	/* A manifest of another image among the blobs. */
	assert_int_equal(put(ps, om, other.manifest, other.manifest_len), -EEXIST);
	/* index.json of another image, whose manifest arrives (and is refused) later. */
	assert_int_equal(put(ps, ".idx", other.index, other.index_len), 0);
	assert_int_equal(pending_rename(ps, ".idx", "index.json", 0, NULL), 0);
	assert_int_equal(put(ps, om, other.manifest, other.manifest_len), -EEXIST);
	/* Layers are checked, not kept: nothing of them stays under the stage's folders. */
	char *l = blob_rel(im->layer_d);
	assert_int_equal(put(ps, l, im->layer, im->layer_len), 0);
	struct stat st;
	assert_int_equal(pending_stat(ps, l, &st), -ENOENT);
	free(l);
	/* The last close ends the check, once no file waits in its folder (rsync's temporary
	 * files wait there for their rename). */
	struct pending_stage *still = pending_stage_find(fx->p, "p2", STAGE);
	assert_ptr_equal(still, ps);
	pending_stage_unref(still);
	struct pending_file *tmp;
	assert_int_equal(pending_open(ps, ".tmp.x", O_WRONLY | O_CREAT, 0600, &tmp), 0);
	pending_file_close(tmp);
	pending_file_close(keep);
	still = pending_stage_find(fx->p, "p2", STAGE);
	assert_ptr_equal(still, ps); /* .tmp.x and keep are still there */
	pending_stage_unref(still);
	assert_int_equal(pending_unlink(ps, ".tmp.x"), 0);
	assert_int_equal(pending_unlink(ps, "keep"), 0);
	assert_int_equal(pending_open(ps, ".tmp.y", O_WRONLY | O_CREAT, 0600, &tmp), 0);
	assert_int_equal(pending_unlink(ps, ".tmp.y"), 0);
	pending_file_close(tmp);
	assert_null(pending_stage_find(fx->p, "p2", STAGE));
	/* An ended check takes no new file: the caller starts another. */
	assert_int_equal(pending_open(ps, "late", O_WRONLY | O_CREAT, 0600, &tmp), -EAGAIN);
	pending_stage_unref(ps);
	free(m);
	free(om);
	free_image(&other);
}

static void test_truncating_a_verified_blob_keeps_the_writers_copy(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im;
	char *l = blob_rel(im->layer_d);
	struct pending_file *pf;

	mkdirs(fx->ps);
	assert_int_equal(put(fx->ps, l, im->layer, im->layer_len), 0);
	/* cp -r again onto it: O_TRUNC gives a fresh file; the one handed on stays whole. */
	assert_int_equal(pending_open(fx->ps, l, O_WRONLY | O_TRUNC, 0644, &pf), 0);
	assert_int_equal(pending_file_pwrite(pf, "x", 1, 0), 1);
	assert_int_equal(pending_file_flush(pf, NULL), -EBADMSG);
	pending_file_close(pf);
	assert_int_equal(put(fx->ps, l, im->layer, im->layer_len), 0);
	assert_int_equal(fx->w->adds, 1); /* already handed on */
	free(l);
}

/* rm -r while the commit runs: the writer and its files stay until the commit returns. */
static void test_rmdir_during_commit_is_busy(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im;
	char *c = blob_rel(im->config_d), *l = blob_rel(im->layer_d), *m = blob_rel(im->manifest_d);

	fx->w->rmdir_during_commit = fx->ps;
	mkdirs(fx->ps);
	assert_int_equal(put(fx->ps, l, im->layer, im->layer_len), 0);
	assert_int_equal(put(fx->ps, c, im->config, im->config_len), 0);
	assert_int_equal(put(fx->ps, m, im->manifest, im->manifest_len), 0);
	assert_int_equal(put(fx->ps, "index.json", im->index, im->index_len), 0);
	assert_int_equal(fx->w->rmdir_result, -EBUSY);
	assert_int_equal(fx->w->commits, 1);
	assert_int_equal(fx->freed, 1); /* freed once, after the commit */
	free(c);
	free(l);
	free(m);
}

/* A blob handed to the writer is never changed in place: an open without O_TRUNC gets a
 * private copy, and the writer's file keeps its digest. */
static void test_handed_on_blob_is_copied_before_a_write(void **state)
{
	struct fixture *fx = *state;
	struct image *im = &fx->im;
	char *l = blob_rel(im->layer_d), *v, have[DIGEST_LEN];
	struct pending_file *pf;

	mkdirs(fx->ps);
	assert_int_equal(put(fx->ps, l, im->layer, im->layer_len), 0);
	assert_int_equal(pending_open(fx->ps, l, O_WRONLY, 0, &pf), 0);
	assert_int_equal(pending_file_pwrite(pf, "XX", 2, 10), 2);
	assert_int_equal(pending_file_flush(pf, NULL), -EBADMSG);
	pending_file_close(pf);
	v = tu_strdupf("%s/pending", fx->dir);
	char *cmd = tu_strdupf("sha256sum %s/D.*/s.*/v/%s | cut -c1-64 > %s/sum", v, im->layer_d + 7, fx->dir);
	assert_int_equal(system(cmd), 0);
	char *sum = tu_strdupf("%s/sum", fx->dir);
	char *got = tu_read_file(sum, NULL);
	snprintf(have, sizeof(have), "sha256:%.64s", got);
	assert_string_equal(have, im->layer_d);
	free(got);
	free(sum);
	free(cmd);
	free(v);
	free(l);
}

static void test_rmdir_drops_an_empty_stage(void **state)
{
	struct fixture *fx = *state;

	mkdirs(fx->ps);
	assert_int_equal(pending_rmdir(fx->ps, ""), -ENOTEMPTY);
	assert_int_equal(pending_rmdir(fx->ps, "blobs/sha256"), 0);
	assert_int_equal(pending_rmdir(fx->ps, "blobs"), 0);
	assert_int_equal(pending_rmdir(fx->ps, ""), 0);
	assert_null(pending_stage_find(fx->p, "", STAGE));
	assert_int_equal(fx->freed, 1);
}

/* A daemon killed mid-copy leaves its directory; the next one on the cache dir removes it. */
static void test_stale_directories_are_swept(void **state)
{
	char *dir = tu_mkdtemp();
	char *dead = tu_strdupf("%s/pending/D.dead01/s.1/tree", dir);
	char *lock = tu_strdupf("%s/pending/D.dead01/lock", dir);
	char *cmd = tu_strdupf("mkdir -p %s", dead);
	struct pending *p, *q;
	unsigned stale = 0;
	struct stat st;

	assert_int_equal(system(cmd), 0);
	tu_write_file(lock, "", 0, 0600);
	assert_int_equal(pending_new(dir, &p, &stale, NULL), 0);
	assert_int_equal(stale, 1);
	assert_int_equal(stat(lock, &st), -1);
	/* A live daemon's directory is left alone. */
	assert_int_equal(pending_new(dir, &q, &stale, NULL), 0);
	assert_int_equal(stale, 0);
	pending_free(q, NULL, NULL);
	pending_free(p, NULL, NULL);
	tu_rm_rf(dir);
	free(dir);
	free(dead);
	free(lock);
	free(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_cp_order_commits_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rsync_order_commits_on_rename, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_blob_is_refused_and_removed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_index_naming_another_stage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_documents, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_manifest_fails_the_completing_call,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_commit_failure_is_reported_and_sticky, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_check_mode, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncating_a_verified_blob_keeps_the_writers_copy,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rmdir_drops_an_empty_stage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rmdir_during_commit_is_busy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handed_on_blob_is_copied_before_a_write, setup,
					    teardown),
	    cmocka_unit_test(test_stale_directories_are_swept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
