/* docker_load_image and docker_remove_image against a real dockerd (started by local_load.sh).
 *
 * Every archive is planned with core/tar_writer from files on disk (layer tars themselves made
 * with a tar plan) in the classic `docker save` format: manifest.json, CONFIG.json, one
 * DIR/layer.tar per layer; it is streamed to POST /images/load and never written whole.
 * Checks use GET /images/{ref}/json: Id = sha256 of the config bytes, RepoTags, RootFS.Layers.
 * Each case uses layer contents of its own seed: Docker skips reading a layer file whose layer
 * it already holds, so a corrupt file of a known layer would not be noticed.
 * Environment: DOCKER_HOST (the test's dockerd), DOCKER_CLI (a docker client), WORKDIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "digest.h"
#include "docker.h"
#include "tar_writer.h"

#define PROJECT "loadtest"
#define REPO "werf-stages-storage/" PROJECT

static const char *env(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		fail_msg("%s is not set (run through local_load.sh)", name);
	return v;
}

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	assert_true(vasprintf(&s, fmt, ap) >= 0);
	va_end(ap);
	return s;
}

static struct docker *open_docker(void)
{
	struct sf_err err = {0};
	struct docker *d = NULL;

	if (docker_new(NULL, &d, &err) < 0)
		fail_msg("docker_new: %s", err.msg);
	return d;
}

/* A stage tag: SIGNATURE-UNIQUEID (werf's form) made from a number. */
static char *stage_ref(unsigned n)
{
	return strf(REPO ":%056x-%llu", n * 2654435761u, 1600000000000ULL + n);
}

/* ---- building images -------------------------------------------------------------------- */

struct image {
	size_t n_files;		  /* distinct layer files */
	char *file[4];		  /* their paths on disk (maybe gzip-compressed) */
	char diff[4][DIGEST_LEN]; /* diff ID of each distinct layer (uncompressed tar) */
	size_t n_layers;	  /* layers in the image; layer i is file[order[i]] */
	size_t order[4];
	char *config;
	char id[DIGEST_LEN];
};

/* Write a layer tar (itself planned with tar_writer) of ~70 KiB of seeded bytes; its diff ID. */
static char *make_layer(unsigned seed, char diff[DIGEST_LEN])
{
	char *path = strf("%s/layer-%u.tar", env("WORKDIR"), seed), *name = strf("data/f-%u", seed);
	size_t len = 70000 + seed % 1000;
	char *data = malloc(len), *all;
	uint32_t x = seed;
	struct tar_plan *p;
	struct sf_err err = {0};

	assert_non_null(data);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (char)(x >> 16);
	}
	assert_int_equal(tar_plan_new(0, &p), 0);
	assert_int_equal(tar_plan_add_dir(p, "data", &err), 0);
	assert_int_equal(tar_plan_add_mem(p, name, data, len, &err), 0);
	all = malloc(tar_plan_size(p));
	assert_non_null(all);
	assert_int_equal(tar_plan_read_at(p, 0, all, tar_plan_size(p)), tar_plan_size(p));
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, all, tar_plan_size(p)), (ssize_t)tar_plan_size(p));
	close(fd);
	assert_int_equal(digest_buffer(all, tar_plan_size(p), diff), 0);
	tar_plan_free(p);
	free(all);
	free(data);
	free(name);
	return path;
}

/* An image of n_files fresh layers (seeds seed, seed+1, ...) in the given order. */
static void make_image(struct image *im, unsigned seed, size_t n_files, const size_t *order,
		       size_t n_layers, bool gzip)
{
	char *diffs = strf("%s", ""), *hist = strf("%s", ""), *t;

	memset(im, 0, sizeof(*im));
	im->n_files = n_files;
	im->n_layers = n_layers;
	for (size_t i = 0; i < n_files; i++) {
		im->file[i] = make_layer(seed + (unsigned)i, im->diff[i]);
		if (gzip) {
			char *cmd = strf("gzip -n '%s'", im->file[i]);
			assert_int_equal(system(cmd), 0);
			free(cmd);
			t = strf("%s.gz", im->file[i]);
			free(im->file[i]);
			im->file[i] = t;
		}
	}
	for (size_t i = 0; i < n_layers; i++) {
		im->order[i] = order[i];
		t = strf("%s%s\"%s\"", diffs, i ? "," : "", im->diff[order[i]]);
		free(diffs);
		diffs = t;
		t = strf("%s%s{\"created_by\":\"layer %zu\"}", hist, i ? "," : "", i);
		free(hist);
		hist = t;
	}
	im->config = strf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Labels\":"
			  "{\"werf\":\"" PROJECT "\",\"werf-cache-version\":\"1.1\"}},"
			  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[%s]},\"history\":[%s]}",
			  diffs, hist);
	assert_int_equal(digest_buffer(im->config, strlen(im->config), im->id), 0);
	free(diffs);
	free(hist);
}

static void image_done(struct image *im)
{
	for (size_t i = 0; i < im->n_files; i++) {
		unlink(im->file[i]);
		free(im->file[i]);
	}
	free(im->config);
}

/* The classic `docker save` archive of im tagged with tags (NULL-terminated). */
static struct tar_plan *plan_image(const struct image *im, const char *const *tags)
{
	struct tar_plan *p;
	struct sf_err err = {0};
	char *layers = strf("%s", ""), *rt = strf("%s", ""), *man, *t, *cfg_name;

	assert_int_equal(tar_plan_new(0, &p), 0);
	for (size_t i = 0; i < im->n_layers; i++) {
		t = strf("%s%s\"%zu/layer.tar\"", layers, i ? "," : "", im->order[i]);
		free(layers);
		layers = t;
	}
	for (size_t i = 0; tags && tags[i]; i++) {
		t = strf("%s%s\"%s\"", rt, i ? "," : "", tags[i]);
		free(rt);
		rt = t;
	}
	cfg_name = strf("%s.json", im->id + 7);
	man = strf("[{\"Config\":\"%s\",\"RepoTags\":[%s],\"Layers\":[%s]}]", cfg_name, rt, layers);
	assert_int_equal(tar_plan_add_mem(p, "manifest.json", man, strlen(man), &err), 0);
	assert_int_equal(tar_plan_add_mem(p, cfg_name, im->config, strlen(im->config), &err), 0);
	for (size_t i = 0; i < im->n_files; i++) {
		t = strf("%zu/layer.tar", i);
		if (tar_plan_add_file_at(p, t, AT_FDCWD, im->file[i], &err) < 0)
			fail_msg("%s", err.msg);
		free(t);
	}
	free(layers);
	free(rt);
	free(man);
	free(cfg_name);
	return p;
}

/* A source over a plan that counts what was read and can fail after fail_after bytes. */
struct counted {
	struct tar_plan *plan;
	uint64_t bytes, max_end, rewinds, fail_after;
	int fail_code;
};

static ssize_t counted_read_at(void *ud, uint64_t off, void *buf, size_t len)
{
	struct counted *c = ud;
	ssize_t n;

	if (c->fail_code && off + len > c->fail_after)
		return c->fail_code;
	if (off < c->max_end)
		c->rewinds++;
	n = tar_plan_read_at(c->plan, off, buf, len);
	if (n > 0) {
		c->bytes += (uint64_t)n;
		if (off + (uint64_t)n > c->max_end)
			c->max_end = off + (uint64_t)n;
	}
	return n;
}

static int load(struct docker *d, const struct image *im, const char *const *tags,
		struct docker_load_result *res, struct sf_err *err)
{
	struct tar_plan *p = plan_image(im, tags);
	int r = docker_load_image(d, tar_plan_read_at_cb, p, tar_plan_size(p), res, err);

	tar_plan_free(p);
	return r;
}

/* GET /images/{ref}/json must show exactly im under exactly these tags. */
static void check_image(struct docker *d, const char *ref, const struct image *im,
			const char *const *tags)
{
	struct sf_err err = {0};
	json_t *o = NULL, *a;
	size_t n;

	if (docker_inspect_image(d, ref, &o, &err) < 0)
		fail_msg("inspect %s: %s", ref, err.msg);
	assert_string_equal(json_string_value(json_object_get(o, "Id")), im->id);
	a = json_object_get(o, "RepoTags");
	for (n = 0; tags[n]; n++)
		;
	assert_int_equal(json_array_size(a), n);
	for (size_t i = 0; i < n; i++) {
		bool found = false;
		for (size_t j = 0; j < n; j++)
			found |= strcmp(json_string_value(json_array_get(a, j)), tags[i]) == 0;
		if (!found)
			fail_msg("%s: tag %s missing", ref, tags[i]);
	}
	a = json_object_get(json_object_get(o, "RootFS"), "Layers");
	assert_int_equal(json_array_size(a), im->n_layers);
	for (size_t i = 0; i < im->n_layers; i++)
		assert_string_equal(json_string_value(json_array_get(a, i)),
				    im->diff[im->order[i]]);
	assert_string_equal(json_string_value(json_object_get(
				json_object_get(json_object_get(o, "Config"), "Labels"), "werf")),
			    PROJECT);
	json_decref(o);
}

static void check_absent(struct docker *d, const char *ref)
{
	struct sf_err err = {0};
	json_t *o = NULL;

	assert_int_equal(docker_inspect_image(d, ref, &o, &err), -ENOENT);
}

/* ---- cases ------------------------------------------------------------------------------ */

static void test_load_plain(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0, 1};
	struct image im;
	char *ref = stage_ref(1);
	const char *tags[] = {ref, NULL};
	struct docker_load_result res = {0};
	struct sf_err err = {0};
	struct tar_plan *p;

	make_image(&im, 100, 2, order, 2, false);
	p = plan_image(&im, tags);
	struct counted c = {.plan = p};
	if (docker_load_image(d, counted_read_at, &c, tar_plan_size(p), &res, &err) < 0)
		fail_msg("load: %s", err.msg);
	/* Streamed once, start to end. */
	assert_int_equal(c.bytes, tar_plan_size(p));
	assert_int_equal(c.rewinds, 0);
	assert_int_equal(res.n_loaded, 1);
	assert_string_equal(res.loaded[0], ref);
	assert_int_equal(res.n_untagged, 0);
	check_image(d, ref, &im, tags);
	check_image(d, im.id, &im, tags);
	/* The same archive again: the same image, nothing moved. */
	docker_load_result_done(&res);
	assert_int_equal(load(d, &im, tags, &res, &err), 0);
	assert_int_equal(res.n_loaded, 1);
	assert_int_equal(res.n_untagged, 0);
	check_image(d, ref, &im, tags);
	/* Without RepoTags Docker names the image by ID. */
	docker_load_result_done(&res);
	assert_int_equal(load(d, &im, NULL, &res, &err), 0);
	assert_int_equal(res.n_loaded, 1);
	assert_string_equal(res.loaded[0], im.id);
	docker_load_result_done(&res);
	tar_plan_free(p);
	image_done(&im);
	free(ref);
	docker_free(d);
}

static void test_load_gzip_layers(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0, 1, 2};
	struct image im;
	char *ref = stage_ref(2);
	const char *tags[] = {ref, NULL};
	struct sf_err err = {0};

	make_image(&im, 200, 3, order, 3, true);
	if (load(d, &im, tags, NULL, &err) < 0)
		fail_msg("load: %s", err.msg);
	check_image(d, ref, &im, tags);
	image_done(&im);
	free(ref);
	docker_free(d);
}

static void test_load_repeated_layer(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0, 1, 0};
	struct image im;
	char *ref = stage_ref(3);
	const char *tags[] = {ref, NULL};
	struct sf_err err = {0};

	make_image(&im, 300, 2, order, 3, false);
	if (load(d, &im, tags, NULL, &err) < 0)
		fail_msg("load: %s", err.msg);
	check_image(d, ref, &im, tags);
	image_done(&im);
	free(ref);
	docker_free(d);
}

/* Docker moves a tag that names another image, and says so only in its message stream. */
static void test_load_moves_tag(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0};
	struct image a, b;
	char *ref = stage_ref(4);
	const char *tags[] = {ref, NULL}, *none[] = {NULL};
	struct docker_load_result res = {0};
	struct sf_err err = {0};

	make_image(&a, 400, 1, order, 1, false);
	make_image(&b, 410, 1, order, 1, false);
	assert_int_equal(load(d, &a, tags, NULL, &err), 0);
	assert_int_equal(load(d, &b, tags, &res, &err), 0);
	assert_int_equal(res.n_loaded, 1);
	assert_string_equal(res.loaded[0], ref);
	assert_int_equal(res.n_untagged, 1);
	assert_string_equal(res.untagged[0], a.id);
	check_image(d, ref, &b, tags);
	check_image(d, a.id, &a, none); /* a is dangling now */
	docker_load_result_done(&res);
	image_done(&a);
	image_done(&b);
	free(ref);
	docker_free(d);
}

/* A layer whose bytes differ from the config's diff ID: EBADMSG, no tag, no image. */
static void test_load_corrupt_layer(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0, 1};
	struct image im;
	char *ref = stage_ref(5);
	const char *tags[] = {ref, NULL};
	struct docker_load_result res = {0};
	struct sf_err err = {0};

	make_image(&im, 500, 2, order, 2, false);
	/* Flip one data byte of the second layer (past its two tar headers). */
	int fd = open(im.file[1], O_RDWR | O_CLOEXEC);
	char ch;
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &ch, 1, 3000), 1);
	ch ^= 0x55;
	assert_int_equal(pwrite(fd, &ch, 1, 3000), 1);
	close(fd);
	assert_int_equal(load(d, &im, tags, &res, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "invalid diffID for layer 1: expected \""));
	assert_int_equal(res.n_loaded, 0);
	check_absent(d, ref);
	check_absent(d, im.id);
	image_done(&im);
	free(ref);
	docker_free(d);
}

/* A layer file cut short (a valid archive around it): EINVAL with Docker's "unexpected EOF". */
static void test_load_truncated_layer(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0, 1};
	struct image im;
	char *ref = stage_ref(6);
	const char *tags[] = {ref, NULL};
	struct sf_err err = {0};

	make_image(&im, 600, 2, order, 2, false);
	assert_int_equal(truncate(im.file[0], 20000), 0);
	assert_int_equal(load(d, &im, tags, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "Docker refused to load the image: ApplyLayer exit status 1 "
				     "stdout:  stderr: unexpected EOF");
	check_absent(d, ref);
	check_absent(d, im.id);
	image_done(&im);
	free(ref);
	docker_free(d);
}

/* The source fails half-way: its errno comes back, nothing is tagged; then the same loads. */
static void test_load_source_fails(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0, 1};
	struct image im;
	char *ref = stage_ref(7);
	const char *tags[] = {ref, NULL};
	struct sf_err err = {0};
	struct tar_plan *p;

	make_image(&im, 700, 2, order, 2, false);
	p = plan_image(&im, tags);
	struct counted c = {.plan = p, .fail_after = tar_plan_size(p) / 2, .fail_code = -EIO};
	assert_int_equal(docker_load_image(d, counted_read_at, &c, tar_plan_size(p), NULL, &err),
			 -EIO);
	assert_non_null(strstr(err.msg, "reading the archive to load"));
	check_absent(d, ref);
	c = (struct counted){.plan = p, .fail_after = 100, .fail_code = -ENOSPC};
	assert_int_equal(docker_load_image(d, counted_read_at, &c, tar_plan_size(p), NULL, &err),
			 -ENOSPC);
	check_absent(d, ref);
	c = (struct counted){.plan = p};
	assert_int_equal(docker_load_image(d, counted_read_at, &c, tar_plan_size(p), NULL, &err),
			 0);
	check_image(d, ref, &im, tags);
	tar_plan_free(p);
	image_done(&im);
	free(ref);
	docker_free(d);
}

/* Not an image archive at all. */
static void test_load_garbage(void **state)
{
	struct docker *d = open_docker();
	struct tar_plan *p;
	struct sf_err err = {0};

	/* A tar whose manifest.json is not a list. */
	assert_int_equal(tar_plan_new(0, &p), 0);
	assert_int_equal(tar_plan_add_mem(p, "manifest.json", "{}", 2, &err), 0);
	assert_int_equal(docker_load_image(d, tar_plan_read_at_cb, p, tar_plan_size(p), NULL, &err),
			 -EINVAL);
	assert_string_equal(err.msg, "Docker refused to load the image: json: cannot unmarshal "
				     "object into Go value of type []tarexport.manifestItem");
	tar_plan_free(p);
	docker_free(d);
}

/* Untag: only the named tag goes; the image goes with its last tag; never forced. */
static void test_remove(void **state)
{
	struct docker *d = open_docker();
	static const size_t order[] = {0};
	struct image im;
	char *r1 = stage_ref(8), *r2 = stage_ref(9), *cmd;
	const char *both[] = {r1, r2, NULL}, *one[] = {r1, NULL};
	struct sf_err err = {0};
	bool deleted = true;

	make_image(&im, 800, 1, order, 1, false);
	assert_int_equal(load(d, &im, both, NULL, &err), 0);
	check_image(d, r1, &im, both);
	assert_int_equal(docker_remove_image(d, r2, &deleted, &err), 0);
	assert_false(deleted);
	check_image(d, r1, &im, one);
	check_absent(d, r2);
	assert_int_equal(docker_remove_image(d, r2, &deleted, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "No such image"));

	/* A container holds the image: its last tag cannot go without force. */
	cmd =
	    strf("'%s' create --name load-holder '%s' /nothing >/dev/null", env("DOCKER_CLI"), r1);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	assert_int_equal(docker_remove_image(d, r1, &deleted, &err), -EBUSY);
	assert_int_equal(err.code, -EBUSY);
	assert_non_null(strstr(err.msg, "conflict: unable to remove repository reference"));
	check_image(d, r1, &im, one);
	cmd = strf("'%s' rm load-holder >/dev/null", env("DOCKER_CLI"));
	assert_int_equal(system(cmd), 0);
	free(cmd);

	assert_int_equal(docker_remove_image(d, r1, &deleted, &err), 0);
	assert_true(deleted);
	check_absent(d, r1);
	check_absent(d, im.id);
	image_done(&im);
	free(r1);
	free(r2);
	docker_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load_plain),
	    cmocka_unit_test(test_load_gzip_layers),
	    cmocka_unit_test(test_load_repeated_layer),
	    cmocka_unit_test(test_load_moves_tag),
	    cmocka_unit_test(test_load_corrupt_layer),
	    cmocka_unit_test(test_load_truncated_layer),
	    cmocka_unit_test(test_load_source_fails),
	    cmocka_unit_test(test_load_garbage),
	    cmocka_unit_test(test_remove),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
