/* Unit tests of core/storage: layouts (add, dedupe, seal, find, refs), stage lists
 * (data/stage-list.txt), and the storage interface's dispatch and default find over a tiny
 * in-test storage_ops implementation. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <cmocka.h>

#include "storage.h"
#include "testutil.h"

#define DA "sha256:0000000000000000000000000000000000000000000000000000000000000001"
#define DB "sha256:5555555555555555555555555555555555555555555555555555555555555555"
#define DC "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define DD "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
#define SIG1 "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"
#define SIG2 "62e9cc7775595e19583def7302d030490871a0e4e53aa8d1f61c6999"

/* ---- layouts ---------------------------------------------------------------------------- */

static void test_layout_refs(void **state)
{
	struct stage_layout *l = stage_layout_new();

	assert_non_null(l);
	assert_int_equal(l->refs, 1);
	assert_int_equal(l->nblobs, 0);
	assert_null(l->blobs);
	assert_null(l->index_json);
	assert_string_equal(l->image_id, "");
	assert_ptr_equal(stage_layout_ref(l), l);
	assert_int_equal(l->refs, 2);
	l->index_json = tu_strdup("{}"); /* owned by the layout, freed with it */
	l->index_len = 2;
	assert_int_equal(stage_layout_add_blob(l, DA, 3, "abc"), 0);
	stage_layout_unref(l);
	assert_int_equal(l->refs, 1);
	assert_int_equal(l->nblobs, 1);
	stage_layout_unref(l); /* frees: valgrind checks */
	stage_layout_unref(NULL);
	assert_null(stage_layout_ref(NULL));
}

static void test_layout_add_dedupe(void **state)
{
	struct stage_layout *l = stage_layout_new();
	char data[] = "config bytes";

	assert_int_equal(stage_layout_add_blob(l, DC, sizeof(data) - 1, data), 0);
	data[0] = 'X'; /* the layout keeps a copy */
	assert_int_equal(stage_layout_add_blob(l, DA, 1 << 30, NULL), 0);
	assert_int_equal(l->nblobs, 2);
	assert_memory_equal(l->blobs[0].data, "config bytes", 12);
	assert_null(l->blobs[1].data);

	/* The same digest again: deduplicated when the size agrees, -EBADMSG when not. */
	assert_int_equal(stage_layout_add_blob(l, DC, sizeof(data) - 1, NULL), 0);
	assert_int_equal(stage_layout_add_blob(l, DC, sizeof(data) - 1, "other"), 0);
	assert_int_equal(stage_layout_add_blob(l, DA, 1 << 30, NULL), 0);
	assert_int_equal(l->nblobs, 2);
	assert_memory_equal(l->blobs[0].data, "config bytes", 12);
	assert_int_equal(stage_layout_add_blob(l, DC, 1, NULL), -EBADMSG);
	assert_int_equal(stage_layout_add_blob(l, DA, 0, NULL), -EBADMSG);
	assert_int_equal(l->nblobs, 2);
	assert_int_equal(l->blobs[1].size, 1 << 30);

	/* Bad digests are refused and change nothing. */
	static const char *const bad[] = {
	    "",
	    "sha256:",
	    "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
	    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
	    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0",
	    "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	    "sha256:../../../../../../../../../../../../../../../../../../etc/passwd",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(stage_layout_add_blob(l, bad[i], 1, "x"), -EINVAL);
	assert_int_equal(l->nblobs, 2);

	/* Zero bytes of data are kept as an (allocated) empty blob. */
	assert_int_equal(stage_layout_add_blob(l, DD, 0, ""), 0);
	assert_non_null(l->blobs[2].data);
	assert_int_equal(l->blobs[2].size, 0);
	stage_layout_unref(l);
}

static void test_layout_seal_find(void **state)
{
	struct stage_layout *l = stage_layout_new();
	static const char *const order[] = {DA, DB, DC, DD};
	const struct layout_blob *b;

	/* Added out of order. */
	assert_int_equal(stage_layout_add_blob(l, DD, 4, NULL), 0);
	assert_int_equal(stage_layout_add_blob(l, DB, 2, "bb"), 0);
	assert_int_equal(stage_layout_add_blob(l, DC, 3, NULL), 0);
	assert_int_equal(stage_layout_add_blob(l, DA, 1, "a"), 0);
	assert_int_equal(stage_layout_add_blob(l, DB, 2, NULL), 0);
	stage_layout_seal(l);
	assert_int_equal(l->nblobs, 4);
	for (size_t i = 0; i < 4; i++) {
		assert_string_equal(l->blobs[i].digest, order[i]);
		assert_int_equal(l->blobs[i].size, i + 1);
		b = stage_layout_find(l, order[i]);
		assert_ptr_equal(b, &l->blobs[i]);
	}
	assert_memory_equal(stage_layout_find(l, DB)->data, "bb", 2);
	assert_memory_equal(stage_layout_find(l, DA)->data, "a", 1);
	assert_null(stage_layout_find(l, DC)->data);

	/* Absent and invalid digests. */
	assert_null(stage_layout_find(
	    l, "sha256:"
	       "0000000000000000000000000000000000000000000000000000000000000002"));
	assert_null(stage_layout_find(l, NULL));
	assert_null(stage_layout_find(l, ""));
	assert_null(stage_layout_find(l, DA "0"));
	assert_null(stage_layout_find(
	    l, "sha256:FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"));
	{
		char *huge = tu_repeat('f', 1 << 20);
		memcpy(huge, "sha256:", 7);
		assert_null(stage_layout_find(l, huge));
		free(huge);
	}
	/* Sealing again changes nothing. */
	stage_layout_seal(l);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(l->blobs[i].digest, order[i]);
	stage_layout_unref(l);

	/* An empty layout. */
	l = stage_layout_new();
	stage_layout_seal(l);
	assert_null(stage_layout_find(l, DA));
	stage_layout_unref(l);
}

static void test_layout_many(void **state)
{
	struct stage_layout *l = stage_layout_new();
	char d[DIGEST_LEN];
	const size_t n = 1000;

	for (size_t i = n; i-- > 0;) {
		snprintf(d, sizeof(d), "sha256:%064zx", i * 2654435761u % 1000003);
		assert_int_equal(stage_layout_add_blob(l, d, i, NULL), 0);
	}
	stage_layout_seal(l);
	assert_int_equal(l->nblobs, n);
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(l->blobs[i - 1].digest, l->blobs[i].digest) < 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(d, sizeof(d), "sha256:%064zx", i * 2654435761u % 1000003);
		assert_int_equal(stage_layout_find(l, d)->size, i);
	}
	stage_layout_unref(l);
}

/* ---- stage lists ----------------------------------------------------------------------- */

struct list_data {
	struct stage_list in, out;
};

static void push(struct stage_list *l, const char *project, const char *name, uint64_t ms)
{
	struct stage_info *v;

	if ((l->n & (l->n - 1)) == 0) { /* capacity doubles at powers of two */
		v = tu_realloc(l->v, (l->n ? 2 * l->n : 1) * sizeof(*v));
		assert_non_null(v);
		l->v = v;
	}
	v = &l->v[l->n++];
	memset(v, 0, sizeof(*v));
	assert_true(strlen(project) < sizeof(v->project));
	assert_true(strlen(name) < sizeof(v->name));
	memcpy(v->project, project, strlen(project));
	memcpy(v->name, name, strlen(name));
	v->unique_ms = ms;
}

static void list_line(struct tu_case *c, void *userdata)
{
	struct list_data *d = userdata;
	const char *project = c->f[1] ? c->f[1] : "", *name = c->nf > 2 && c->f[2] ? c->f[2] : "";

	if (strcmp(c->kind, "in") == 0 && c->nf == 3)
		push(&d->in, project, name, 12345);
	else if (strcmp(c->kind, "out") == 0 && c->nf == 4)
		push(&d->out, project, name, strtoull(c->f[3], NULL, 10));
	else
		tu_check(c, false, "bad case line");
}

static void test_list_finish(void **state)
{
	struct list_data d = {{0}, {0}};
	struct tu_case c;

	tu_each_line("stage-list.txt", list_line, &d);
	tu_assert_all_passed();
	assert_true(d.in.n >= 20);
	stage_list_finish(&d.in);
	tu_case_begin(&c, false, "stage-list.txt");
	tu_check_int(&c, "entries", (long long)d.in.n, (long long)d.out.n);
	for (size_t i = 0; i < d.in.n && i < d.out.n; i++) {
		char what[64];
		snprintf(what, sizeof(what), "entry %zu project", i);
		tu_check_str(&c, what, d.in.v[i].project, d.out.v[i].project);
		snprintf(what, sizeof(what), "entry %zu name", i);
		tu_check_str(&c, what, d.in.v[i].name, d.out.v[i].name);
		tu_check(&c, d.in.v[i].unique_ms == d.out.v[i].unique_ms,
			 "entry %zu unique_ms: got %" PRIu64 ", want %" PRIu64, i,
			 d.in.v[i].unique_ms, d.out.v[i].unique_ms);
	}
	tu_case_end(&c);

	/* Finishing a finished list changes nothing. */
	stage_list_finish(&d.in);
	tu_case_begin(&c, false, "stage-list.txt (finished twice)");
	tu_check_int(&c, "entries", (long long)d.in.n, (long long)d.out.n);
	for (size_t i = 0; i < d.in.n && i < d.out.n; i++)
		tu_check(&c, stage_info_cmp(&d.in.v[i], &d.out.v[i]) == 0, "entry %zu moved", i);
	tu_case_end(&c);
	stage_list_done(&d.in);
	assert_null(d.in.v);
	assert_int_equal(d.in.n, 0);
	stage_list_done(&d.out);
	stage_list_done(NULL);
	tu_assert_all_passed();
}

static void test_list_finish_edges(void **state)
{
	struct stage_list l = {0};

	stage_list_finish(&l); /* empty */
	assert_int_equal(l.n, 0);

	/* Nothing but non-stages. */
	push(&l, "p", "latest", 0);
	push(&l, "p", "managed-image-x", 0);
	stage_list_finish(&l);
	assert_int_equal(l.n, 0);
	stage_list_done(&l);

	/* A big list in reverse order. */
	for (int i = 5000; i > 0; i--) {
		char name[NAME_STAGE_MAX + 1];
		snprintf(name, sizeof(name), "%s-%d", SIG1, i);
		push(&l, i % 2 ? "odd" : "even", name, 0);
		if (i % 7 == 0)
			push(&l, "odd", "not-a-stage", 0);
	}
	stage_list_finish(&l);
	assert_int_equal(l.n, 5000);
	assert_string_equal(l.v[0].project, "even");
	assert_string_equal(l.v[2499].project, "even");
	assert_string_equal(l.v[2500].project, "odd");
	for (size_t i = 1; i < l.n; i++)
		assert_true(stage_info_cmp(&l.v[i - 1], &l.v[i]) < 0);
	assert_int_equal(l.v[0].unique_ms, 10); /* "…-10" < "…-100" < … < "…-2" */
	stage_list_done(&l);
}

static void test_info_cmp(void **state)
{
	struct stage_info a = {.name = SIG1 "-1", .project = "b"};
	struct stage_info b = {.name = SIG2 "-1", .project = "a"};

	/* Project first, then name. */
	assert_true(stage_info_cmp(&a, &b) > 0);
	assert_true(stage_info_cmp(&b, &a) < 0);
	memcpy(b.project, "b", 2);
	assert_true(stage_info_cmp(&a, &b) > 0); /* "6b..." > "62..." */
	assert_int_equal(stage_info_cmp(&a, &a), 0);
}

/* ---- the storage interface over a fake backend ----------------------------------------- */

struct fake {
	struct storage st; /* first: the storage functions get &st */
	int list_calls, describe_calls, read_calls, find_calls, frees;
	int list_error;
	const char *const *entries; /* "PROJECT/NAME" or "NAME" */
};

static int fake_list(struct storage *st, struct stage_list *ret, struct sf_err *err)
{
	struct fake *f = (struct fake *)st;
	struct stage_list l = {0};

	f->list_calls++;
	if (f->list_error)
		return err_set(err, f->list_error, "fake storage is down");
	for (const char *const *e = f->entries; *e; e++) {
		const char *slash = strchr(*e, '/');
		char project[NAME_PROJECT_MAX + 1] = "";
		if (slash)
			memcpy(project, *e, (size_t)(slash - *e));
		push(&l, project, slash ? slash + 1 : *e, 0);
	}
	stage_list_finish(&l);
	*ret = l;
	return 0;
}

static int fake_describe(struct storage *st, const char *project, const char *stage,
			 struct stage_layout **ret, struct sf_err *err)
{
	struct fake *f = (struct fake *)st;

	f->describe_calls++;
	if (strcmp(stage, SIG1 "-1") != 0)
		return err_set(err, -ENOENT, "no stage %s", stage);
	*ret = stage_layout_new();
	return *ret ? 0 : -ENOMEM;
}

static int fake_read_blob(struct storage *st, const char *project, const char *stage,
			  const struct layout_blob *blob, uint64_t offset, http_sink_fn sink,
			  void *userdata, struct sf_err *err)
{
	struct fake *f = (struct fake *)st;
	static const char content[] = "0123456789";

	f->read_calls++;
	if (offset > sizeof(content) - 1)
		return -ERANGE;
	return sink(userdata, content + offset, sizeof(content) - 1 - offset);
}

static int fake_local_file(struct storage *st, const char *project, const char *stage,
			   const struct layout_blob *blob, char *ret_path, size_t path_size,
			   struct sf_err *err)
{
	if (snprintf(ret_path, path_size, "/cache/%s", blob->digest + 7) >= (int)path_size)
		return err_set(err, -ENAMETOOLONG, "path too long");
	return 0;
}

static void fake_free(struct storage *st)
{
	((struct fake *)st)->frees++;
}

static int fake_find(struct storage *st, const char *project, const char *stage,
		     struct stage_info *ret, struct sf_err *err)
{
	struct fake *f = (struct fake *)st;

	f->find_calls++;
	*ret = (struct stage_info){.unique_ms = 777};
	return 0;
}

static const char *const fake_entries[] = {
    SIG1 "-1", SIG2 "-2", "latest", "web/" SIG1 "-3", "web/" SIG2 "-4", "api/" SIG1 "-5", NULL,
};

static const struct storage_ops fake_ops = {
    .list = fake_list,
    .describe = fake_describe,
    .read_blob = fake_read_blob,
    .free = fake_free,
};

static const struct storage_ops fake_ops_find = {
    .list = fake_list,
    .describe = fake_describe,
    .read_blob = fake_read_blob,
    .free = fake_free,
    .find = fake_find,
    .local_file = fake_local_file,
};

static int collect(void *userdata, const void *data, size_t len)
{
	struct buf_like {
		char s[64];
		size_t n;
	} *b = userdata;

	if (b->n + len >= sizeof(b->s))
		return -EFBIG;
	memcpy(b->s + b->n, data, len);
	b->n += len;
	b->s[b->n] = '\0';
	return 0;
}

static void test_storage_dispatch(void **state)
{
	struct fake f = {.st = {.ops = &fake_ops}, .entries = fake_entries};
	struct stage_list l = {0};
	struct stage_layout *layout = NULL;
	struct layout_blob blob = {.digest = DA, .size = 10};
	struct sf_err err = {0};
	struct {
		char s[64];
		size_t n;
	} got = {{0}, 0};

	assert_int_equal(storage_list(&f.st, &l, &err), 0);
	assert_int_equal(l.n, 5);
	assert_string_equal(l.v[0].name, SIG2 "-2");
	assert_string_equal(l.v[0].project, "");
	assert_int_equal(l.v[0].unique_ms, 2);
	assert_string_equal(l.v[2].project, "api");
	assert_string_equal(l.v[4].project, "web");
	stage_list_done(&l);

	assert_int_equal(storage_describe(&f.st, NULL, SIG1 "-1", &layout, &err), 0);
	assert_non_null(layout);
	stage_layout_unref(layout);
	assert_int_equal(storage_describe(&f.st, NULL, "nope", &layout, &err), -ENOENT);
	assert_string_equal(err.msg, "no stage nope");

	assert_int_equal(storage_read_blob(&f.st, NULL, SIG1 "-1", &blob, 4, collect, &got, &err),
			 0);
	assert_string_equal(got.s, "456789");
	assert_int_equal(storage_read_blob(&f.st, NULL, SIG1 "-1", &blob, 11, collect, &got, &err),
			 -ERANGE);

	assert_int_equal(f.list_calls, 1);
	assert_int_equal(f.describe_calls, 2);
	assert_int_equal(f.read_calls, 2);
	storage_free(&f.st);
	assert_int_equal(f.frees, 1);
	storage_free(NULL);
}

static void test_storage_find_default(void **state)
{
	struct fake f = {.st = {.ops = &fake_ops}, .entries = fake_entries};
	struct stage_info info, untouched;
	struct sf_err err = {0};
	char *long_name, *long_project;

	/* Found: not by project (NULL and "" are the same), and by project. */
	memset(&info, 0x5a, sizeof(info));
	assert_int_equal(storage_find(&f.st, NULL, SIG1 "-1", &info, &err), 0);
	assert_string_equal(info.name, SIG1 "-1");
	assert_string_equal(info.project, "");
	assert_int_equal(info.unique_ms, 1);
	assert_int_equal(storage_find(&f.st, "", SIG2 "-2", &info, &err), 0);
	assert_int_equal(info.unique_ms, 2);
	assert_int_equal(storage_find(&f.st, "web", SIG2 "-4", &info, &err), 0);
	assert_string_equal(info.project, "web");
	assert_string_equal(info.name, SIG2 "-4");
	assert_int_equal(info.unique_ms, 4);
	assert_int_equal(f.list_calls, 3);

	/* Not found: wrong project, non-stage names (dropped from lists), unknown names. ret is
	 * left alone. */
	memset(&info, 0x5a, sizeof(info));
	untouched = info;
	assert_int_equal(storage_find(&f.st, "api", SIG2 "-4", &info, &err), -ENOENT);
	assert_int_equal(storage_find(&f.st, NULL, SIG1 "-3", &info, &err), -ENOENT);
	assert_int_equal(storage_find(&f.st, "web", SIG1 "-1", &info, &err), -ENOENT);
	assert_int_equal(storage_find(&f.st, NULL, "latest", &info, &err), -ENOENT);
	assert_int_equal(storage_find(&f.st, NULL, "", &info, &err), -ENOENT);
	assert_int_equal(storage_find(&f.st, "nope", SIG1 "-5", &info, &err), -ENOENT);
	assert_memory_equal(&info, &untouched, sizeof(info));

	/* Names too long for a stage or a project: -ENOENT without asking the backend. */
	f.list_calls = 0;
	long_name = tu_strdupf("%s-%s", SIG1, "12345678901234567890");
	assert_int_equal(storage_find(&f.st, NULL, long_name, &info, &err), -ENOENT);
	free(long_name);
	long_name = tu_repeat('a', 1 << 20);
	assert_int_equal(storage_find(&f.st, NULL, long_name, &info, &err), -ENOENT);
	free(long_name);
	long_project = tu_repeat('p', NAME_PROJECT_MAX + 1);
	assert_int_equal(storage_find(&f.st, long_project, SIG1 "-1", &info, &err), -ENOENT);
	free(long_project);
	assert_int_equal(f.list_calls, 0);
	assert_memory_equal(&info, &untouched, sizeof(info));

	/* A failing listing is the error, never "not found". */
	f.list_error = -EAGAIN;
	assert_int_equal(storage_find(&f.st, NULL, SIG1 "-1", &info, &err), -EAGAIN);
	assert_int_equal(err.code, -EAGAIN);
	assert_string_equal(err.msg, "fake storage is down");
	f.list_error = -EIO;
	assert_int_equal(storage_find(&f.st, "web", SIG1 "-3", &info, NULL), -EIO);
	assert_memory_equal(&info, &untouched, sizeof(info));
}

static void test_storage_find_op(void **state)
{
	struct fake f = {.st = {.ops = &fake_ops_find}, .entries = fake_entries};
	struct stage_info info;

	/* A backend's own find is used as it is. */
	assert_int_equal(storage_find(&f.st, NULL, "anything", &info, NULL), 0);
	assert_int_equal(info.unique_ms, 777);
	assert_int_equal(f.find_calls, 1);
	assert_int_equal(f.list_calls, 0);
}

static void test_storage_local_file(void **state)
{
	struct fake plain = {.st = {.ops = &fake_ops}, .entries = fake_entries};
	struct fake local = {.st = {.ops = &fake_ops_find}, .entries = fake_entries};
	struct layout_blob blob = {.digest = DC, .size = 3};
	struct sf_err err = {0};
	char path[128] = "untouched", tiny[8];

	/* Without the optional operation: -ENOTSUP, nothing written. */
	assert_int_equal(
	    storage_local_file(&plain.st, NULL, SIG1 "-1", &blob, path, sizeof(path), &err),
	    -ENOTSUP);
	assert_string_equal(path, "untouched");
	/* With it: passed through, errors too. */
	assert_int_equal(
	    storage_local_file(&local.st, NULL, SIG1 "-1", &blob, path, sizeof(path), &err), 0);
	assert_string_equal(path,
			    "/cache/"
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(
	    storage_local_file(&local.st, NULL, SIG1 "-1", &blob, tiny, sizeof(tiny), &err),
	    -ENAMETOOLONG);
	assert_string_equal(err.msg, "path too long");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_layout_refs),
	    cmocka_unit_test(test_layout_add_dedupe),
	    cmocka_unit_test(test_layout_seal_find),
	    cmocka_unit_test(test_layout_many),
	    cmocka_unit_test(test_list_finish),
	    cmocka_unit_test(test_list_finish_edges),
	    cmocka_unit_test(test_info_cmp),
	    cmocka_unit_test(test_storage_dispatch),
	    cmocka_unit_test(test_storage_find_default),
	    cmocka_unit_test(test_storage_find_op),
	    cmocka_unit_test(test_storage_local_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
