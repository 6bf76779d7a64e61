/* Unit tests of core/tar: the streaming tar reader.
 *
 * Data-driven from data/tar/ (made by data/tar/gen.py with Python's tarfile plus crafted
 * headers): every ARCHIVE.tar is fed in chunks of 1, 7, 511, 512 and 4096 bytes, in irregular
 * chunks (with empty feeds), and whole; the callbacks must be the same every time and match
 * ARCHIVE.expect (name, size and sha256 of each regular file in order, then the outcome).
 * In code: callbacks that fail abort the reader with their own error, truncation at every
 * offset, single-byte corruption, and readers without callbacks.
 */
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

#include "digest.h"
#include "tar.h"
#include "testutil.h"

/* ---- a recorder of callbacks ------------------------------------------------------------ */

struct text {
	char *s;
	size_t len;
};

struct recorder {
	struct text trace; /* "file\tNAME\tSIZE\tSHA256\n" per file, then "open..." and "end..." */
	struct text files; /* the "file" lines alone */
	bool in_file;
	char *name;
	uint64_t size, got;
	struct digest_ctx *dg; /* NULL: no hashing (the "file" lines show no sha256) */
	unsigned begins, datas, ends, violations;
	/* Fault injection: the Nth call (1-based) of that callback returns fail_code. */
	unsigned fail_begin_at, fail_data_at, fail_end_at;
	int fail_code;
	bool failed;
	unsigned calls_after_fail;
};

static void text_addf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_addf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	t->s = tu_realloc(t->s, t->len + (size_t)n + 1);
	memcpy(t->s + t->len, s, (size_t)n + 1);
	t->len += (size_t)n;
	free(s);
}

static void text_done(struct text *t)
{
	free(t->s);
	*t = (struct text){0};
}

static const char *text_str(const struct text *t)
{
	return t->s ? t->s : "";
}

static void rec_init(struct recorder *r)
{
	*r = (struct recorder){0};
	r->dg = digest_new();
	assert_non_null(r->dg);
}

/* A recorder that checks the callbacks' invariants but hashes nothing (fast). */
static void rec_init_light(struct recorder *r)
{
	*r = (struct recorder){0};
}

static void rec_done(struct recorder *r)
{
	text_done(&r->trace);
	text_done(&r->files);
	free(r->name);
	digest_free(r->dg);
}

static void violation(struct recorder *r, const char *what)
{
	r->violations++;
	text_addf(&r->trace, "violation\t%s\n", what);
}

/* Count a call; the error to return when this one is the injected failure. */
static int rec_call(struct recorder *r, unsigned count, unsigned fail_at)
{
	if (r->failed)
		r->calls_after_fail++;
	if (fail_at && count == fail_at) {
		r->failed = true;
		return r->fail_code;
	}
	return 0;
}

static int rec_begin(void *ud, const char *name, uint64_t size)
{
	struct recorder *r = ud;

	r->begins++;
	if (r->in_file)
		violation(r, "file_begin inside a file");
	if (!name || strlen(name) >= 4096)
		violation(r, "name NULL or over 4 KiB");
	free(r->name);
	r->name = tu_strdup(name ? name : "");
	r->size = size;
	r->got = 0;
	r->in_file = true;
	if (r->dg)
		digest_final(r->dg, (char[DIGEST_LEN]){0}); /* reset */
	return rec_call(r, r->begins, r->fail_begin_at);
}

static int rec_data(void *ud, const void *data, size_t len)
{
	struct recorder *r = ud;

	r->datas++;
	if (!r->in_file)
		violation(r, "file_data outside a file");
	else if (len > r->size - r->got)
		violation(r, "file_data beyond the size");
	if (r->dg)
		digest_update(r->dg, data, len);
	r->got += len;
	return rec_call(r, r->datas, r->fail_data_at);
}

static int rec_end(void *ud)
{
	struct recorder *r = ud;
	char dg[DIGEST_LEN] = "sha256:-";

	r->ends++;
	if (!r->in_file) {
		violation(r, "file_end outside a file");
		return rec_call(r, r->ends, r->fail_end_at);
	}
	if (r->got != r->size)
		violation(r, "file_end before all data");
	if (r->dg)
		digest_final(r->dg, dg);
	text_addf(&r->trace, "file\t%s\t%" PRIu64 "\t%s\n", r->name, r->size, dg + 7);
	text_addf(&r->files, "file\t%s\t%" PRIu64 "\t%s\n", r->name, r->size, dg + 7);
	r->in_file = false;
	return rec_call(r, r->ends, r->fail_end_at);
}

static const struct tar_callbacks rec_cb = {rec_begin, rec_data, rec_end, NULL};

static int rec_link(void *ud, const char *name, const char *target, bool hard)
{
	struct recorder *r = ud;

	if (r->in_file)
		violation(r, "link inside a file");
	text_addf(&r->trace, "link\t%s\t%s\t%s\n", name, target, hard ? "hard" : "sym");
	return 0;
}

/* The same, also told of link entries. */
static const struct tar_callbacks rec_link_cb = {rec_begin, rec_data, rec_end, rec_link};

#define CHUNK_IRREGULAR ((size_t)-1)

/* Feed data in chunks of chunk bytes (or irregular ones); the outcome is appended to the
 * trace: "open..." for a file left unfinished, then "end\tok" or "end\tfeed|finish\tERRNO". */
static int feed_all(const void *data, size_t len, size_t chunk, struct recorder *r,
		    const struct tar_callbacks *cb)
{
	static const size_t irregular[] = {1, 0, 3, 1000, 0, 513, 2, 511, 4095, 0, 7, 1536, 9000};
	struct tar_reader *t = tar_reader_new(cb, r);
	struct sf_err err = {0};
	const char *where = "feed";
	size_t off = 0, i = 0;
	int rc = 0;

	assert_non_null(t);
	while (off < len && rc == 0) {
		size_t n = chunk == CHUNK_IRREGULAR ? irregular[i++ % 13] : chunk;
		if (n > len - off)
			n = len - off;
		rc = tar_feed(t, (const char *)data + off, n, &err);
		off += n;
	}
	if (rc == 0) {
		where = "finish";
		rc = tar_finish(t, &err);
	}
	if (r->in_file)
		text_addf(&r->trace, "open\t%s\t%" PRIu64 "\t%" PRIu64 "\n", r->name, r->size,
			  r->got);
	if (rc == 0)
		text_addf(&r->trace, "end\tok\n");
	else
		text_addf(&r->trace, "end\t%s\t%s\n", where, tu_errno_name(rc) + 1);
	/* A malformed archive says why (err.h): the code and a sentence. */
	if (rc == -EBADMSG && (err.code != rc || err.msg[0] == '\0'))
		violation(r, "-EBADMSG without a message in err");
	tar_reader_free(t);
	return rc;
}

/* ---- data-driven archives --------------------------------------------------------------- */

static void expect_line(struct tu_case *c, void *userdata)
{
	struct text *t = userdata;

	for (size_t i = 0; i < c->nf; i++)
		text_addf(t, "%s%s", i ? "\t" : "", c->f[i] ? c->f[i] : "-");
	text_addf(t, "\n");
}

/* Whole-archive feeds are done besides these. */
static const size_t chunks[] = {1, 7, 511, 512, 4096, CHUNK_IRREGULAR};
#define NCHUNKS (sizeof(chunks) / sizeof(chunks[0]))

static void archive_case(struct tu_case *c, void *userdata)
{
	size_t *total = userdata, len, nl = strlen(c->name) - strlen(".tar");
	char *data = tu_read_file(c->path, &len);
	char *rel = tu_strdupf("tar/%.*s.expect", (int)nl, c->name);
	struct text want = {0};
	struct recorder whole;
	struct tu_case cc;

	tu_each_line(rel, expect_line, &want);
	tu_check(c, want.len > 0, "%s is empty", rel);
	if (strcmp(c->kind, "valid") == 0)
		tu_check(c,
			 strstr(text_str(&want), "\nend\tok\n") != NULL ||
			     strncmp(text_str(&want), "end\tok\n", 7) == 0,
			 "valid archive whose .expect does not end in ok");
	else
		tu_check(c, strstr(text_str(&want), "end\tok\n") == NULL,
			 "invalid archive whose .expect ends in ok");

	/* The right callbacks and outcome, fed whole. */
	rec_init(&whole);
	feed_all(data, len, len ? len : 1, &whole, &rec_cb);
	tu_check_mem(c, "callbacks (fed whole)", text_str(&whole.trace), whole.trace.len,
		     text_str(&want), want.len);

	/* The same callbacks whatever the chunking: counted even for known core bugs. */
	tu_case_begin(&cc, false, "%s (chunked)", c->where);
	for (size_t i = 0; i < NCHUNKS; i++) {
		struct recorder r;
		char what[64];

		rec_init(&r);
		feed_all(data, len, chunks[i], &r, &rec_cb);
		if (chunks[i] == CHUNK_IRREGULAR)
			snprintf(what, sizeof(what), "irregular chunks vs whole");
		else
			snprintf(what, sizeof(what), "chunks of %zu vs whole", chunks[i]);
		tu_check_mem(&cc, what, text_str(&r.trace), r.trace.len, text_str(&whole.trace),
			     whole.trace.len);
		rec_done(&r);
	}
	tu_case_end(&cc);

	rec_done(&whole);
	text_done(&want);
	free(rel);
	free(data);
	(*total)++;
}

static void test_archives(void **state)
{
	size_t n = 0, ran = tu_each_file("tar", ".tar", archive_case, &n);

	assert_int_equal(ran, n);
	/* gen.py makes 14 valid and 31 invalid archives: all must have been found. */
	assert_int_equal(ran, 45);
	tu_assert_all_passed();
}

/* ---- callbacks that fail ---------------------------------------------------------------- */

static char *read_archive(const char *name, size_t *ret_len)
{
	char *path = tu_strdupf("%s/tar/%s", tu_data_dir(), name);
	char *data = tu_read_file(path, ret_len);

	free(path);
	return data;
}

static void test_callback_errors(void **state)
{
	size_t len;
	char *data = read_archive("valid-sizes.tar", &len);
	struct recorder r;
	int rc;

	/* The baseline: 13 files (3 empty), every callback accepted. */
	rec_init(&r);
	assert_int_equal(feed_all(data, len, 4096, &r, &rec_cb), 0);
	assert_int_equal(r.begins, 13);
	assert_int_equal(r.ends, 13);
	assert_int_equal(r.violations, 0);
	rec_done(&r);

	for (size_t ci = 0; ci <= NCHUNKS; ci++) {
		size_t chunk = ci < NCHUNKS ? chunks[ci] : len;
		unsigned ndata;

		for (unsigned at = 1; at <= 13; at += 4) {
			/* file_begin fails: the feed returns its error; nothing else is called. */
			rec_init(&r);
			r.fail_begin_at = at;
			r.fail_code = -EIO;
			rc = feed_all(data, len, chunk, &r, &rec_cb);
			assert_int_equal(rc, -EIO);
			assert_int_equal(r.begins, at);
			assert_int_equal(r.ends, at - 1);
			assert_int_equal(r.calls_after_fail, 0);
			assert_non_null(strstr(text_str(&r.trace), "end\tfeed\tEIO\n"));
			assert_int_equal(r.violations, 0);
			rec_done(&r);

			/* file_end fails. */
			rec_init(&r);
			r.fail_end_at = at;
			r.fail_code = -EPIPE;
			rc = feed_all(data, len, chunk, &r, &rec_cb);
			assert_int_equal(rc, -EPIPE);
			assert_int_equal(r.ends, at);
			assert_int_equal(r.begins, at);
			assert_int_equal(r.calls_after_fail, 0);
			assert_int_equal(r.violations, 0);
			rec_done(&r);
		}

		/* file_data fails on its first, a middle and its last call of this chunking. */
		rec_init(&r);
		assert_int_equal(feed_all(data, len, chunk, &r, &rec_cb), 0);
		ndata = r.datas;
		rec_done(&r);
		assert_true(ndata >= 10); /* 10 files have data */
		unsigned data_at[] = {1, ndata / 2, ndata};
		for (size_t k = 0; k < 3; k++) {
			rec_init(&r);
			r.fail_data_at = data_at[k];
			r.fail_code = -ECANCELED;
			rc = feed_all(data, len, chunk, &r, &rec_cb);
			assert_int_equal(rc, -ECANCELED);
			assert_int_equal(r.datas, data_at[k]);
			assert_int_equal(r.calls_after_fail, 0);
			assert_int_equal(r.violations, 0);
			assert_non_null(strstr(text_str(&r.trace), "end\tfeed\tECANCELED\n"));
			rec_done(&r);
		}
	}
	free(data);
}

/* A positive return of a callback is not an error. */
static int begin_positive(void *ud, const char *name, uint64_t size)
{
	(*(unsigned *)ud)++;
	return 1;
}

static void test_no_callbacks(void **state)
{
	static const char *const names[] = {"valid-pax.tar", "valid-sizes.tar",
					    "invalid-bad-checksum.tar",
					    "invalid-truncated-body.tar"};
	static const int want[] = {0, 0, -EBADMSG, -EBADMSG};
	const struct tar_callbacks none = {0};
	const struct tar_callbacks only_begin = {.file_begin = begin_positive};

	for (size_t i = 0; i < 4; i++) {
		size_t len;
		char *data = read_archive(names[i], &len);
		struct tar_reader *t = tar_reader_new(&none, NULL);
		unsigned begins = 0;
		int rc;

		rc = tar_feed(t, data, len, NULL); /* err is optional */
		if (rc == 0)
			rc = tar_finish(t, NULL);
		assert_int_equal(rc, want[i]);
		tar_reader_free(t);

		t = tar_reader_new(&only_begin, &begins);
		rc = tar_feed(t, data, len, NULL);
		if (rc == 0)
			rc = tar_finish(t, NULL);
		assert_int_equal(rc, want[i]);
		assert_int_equal(begins, i == 0 ? 5 : i == 1 ? 13 : i == 2 ? 1 : 2);
		tar_reader_free(t);
		free(data);
	}
	tar_reader_free(NULL);

	/* Nothing at all fed: no entry was cut. Empty feeds change nothing. */
	struct tar_reader *t = tar_reader_new(&none, NULL);
	assert_int_equal(tar_feed(t, "", 0, NULL), 0);
	assert_int_equal(tar_finish(t, NULL), 0);
	tar_reader_free(t);
}

/* ---- truncation and corruption everywhere ----------------------------------------------- */

static void test_truncated_everywhere(void **state)
{
	static const char *const names[] = {"valid-gnu.tar", "valid-pax.tar"};

	for (size_t i = 0; i < 2; i++) {
		size_t len, end;
		char *data = read_archive(names[i], &len);
		struct recorder full;

		rec_init(&full);
		assert_int_equal(feed_all(data, len, len, &full, &rec_cb), 0);
		/* Past the last non-zero byte everything is end blocks and record padding. */
		for (end = len; end > 0 && data[end - 1] == '\0'; end--)
			;
		for (size_t cut = 0; cut <= end + 1024; cut++) {
			struct recorder r;
			int rc;

			/* Every offset of the first headers, then block edges and a stride (time).
			 */
			if (cut > 2048 && cut % 512 > 1 && cut % 512 < 511 && cut % 53 != 0)
				continue;
			rec_init(&r);
			rc = feed_all(data, cut, cut % 2 ? 509 : cut + 1, &r, &rec_cb);
			if (rc != 0 && rc != -EBADMSG)
				fail_msg("%s cut at %zu: %s", names[i], cut, tu_errno_name(rc));
			if (r.violations)
				fail_msg("%s cut at %zu: %s", names[i], cut, text_str(&r.trace));
			/* Whatever was delivered whole is a prefix of the full listing. */
			if (r.files.len > full.files.len ||
			    memcmp(text_str(&r.files), text_str(&full.files), r.files.len) != 0)
				fail_msg("%s cut at %zu: files %s", names[i], cut,
					 text_str(&r.files));
			/* Cut inside a block: always an error. */
			if (cut % 512 != 0 && cut < end)
				assert_int_equal(rc, -EBADMSG);
			rec_done(&r);
		}
		rec_done(&full);
		free(data);
	}
}

static void test_corrupt_bytes(void **state)
{
	size_t len;
	char *data = read_archive("valid-pax.tar", &len);
	char *copy = tu_malloc(len);
	static const unsigned char values[] = {0x00, 0xff, '7'};
	unsigned accepted = 0, refused = 0;

	memcpy(copy, data, len);
	/* The first 4 KiB hold a global pax header, a pax header and ustar headers. */
	for (size_t off = 0; off < 4096 && off < len; off++) {
		for (size_t v = 0; v < sizeof(values); v++) {
			struct recorder r;
			int rc;

			if ((unsigned char)data[off] == values[v])
				continue;
			copy[off] = (char)values[v];
			rec_init_light(&r);
			rc = feed_all(copy, len, 4096, &r, &rec_cb);
			if (rc != 0 && rc != -EBADMSG)
				fail_msg("byte %zu = 0x%02x: %s", off, values[v],
					 tu_errno_name(rc));
			if (r.violations)
				fail_msg("byte %zu = 0x%02x: %s", off, values[v],
					 text_str(&r.trace));
			if (rc == 0)
				accepted++;
			else
				refused++;
			rec_done(&r);
			copy[off] = data[off];
		}
	}
	/* Header bytes are covered by the checksum: most changes there must be refused. */
	assert_true(refused > 1000);
	assert_true(accepted > 0); /* changes inside file data are fine */
	free(copy);
	free(data);
}

/* ---- link entries ------------------------------------------------------------------------- */

static void links_case(struct tu_case *c, void *userdata)
{
	size_t *total = userdata, len, nl = strlen(c->name) - strlen(".tar");
	char *data = tu_read_file(c->path, &len);
	char *rel = tu_strdupf("tar-links/%.*s.expect", (int)nl, c->name);
	struct text want = {0};

	tu_each_line(rel, expect_line, &want);
	for (size_t i = 0; i <= NCHUNKS; i++) {
		struct recorder r;

		rec_init(&r);
		feed_all(data, len, i < NCHUNKS ? chunks[i] : len, &r, &rec_link_cb);
		tu_check_mem(c, "callbacks with links", text_str(&r.trace), r.trace.len,
			     text_str(&want), want.len);
		rec_done(&r);
	}
	text_done(&want);
	free(rel);
	free(data);
	(*total)++;
}

static void test_links(void **state)
{
	size_t n = 0, ran = tu_each_file("tar-links", ".tar", links_case, &n);
	struct recorder r;
	size_t len;
	char *data;

	assert_int_equal(ran, n);
	assert_int_equal(n, 4); /* gen.py writes 4 archives */
	tu_assert_all_passed();

	/* The links of the archives of test_archives are reported too, in their place. */
	data = read_archive("valid-skip.tar", &len);
	rec_init(&r);
	assert_int_equal(feed_all(data, len, 512, &r, &rec_link_cb), 0);
	assert_non_null(
	    strstr(text_str(&r.trace), "link\td/sym\tone\tsym\nlink\td/hard\td/one\thard\n"));
	assert_int_equal(r.violations, 0);
	rec_done(&r);
	free(data);

	/* Without a link callback, link entries are skipped (the trace has no link line). */
	data = read_archive("valid-skip.tar", &len);
	rec_init(&r);
	assert_int_equal(feed_all(data, len, 512, &r, &rec_cb), 0);
	assert_null(strstr(text_str(&r.trace), "link\t"));
	rec_done(&r);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_archives),	  cmocka_unit_test(test_callback_errors),
	    cmocka_unit_test(test_no_callbacks),  cmocka_unit_test(test_truncated_everywhere),
	    cmocka_unit_test(test_corrupt_bytes), cmocka_unit_test(test_links),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
