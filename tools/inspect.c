/* inspect: `ls` (stages with size, creation time, image ID; projects of :local) and `verify`
 * (every stage of A in B with the same image ID). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format.h"
#include "name.h"
#include "pool.h"
#include "progress.h"
#include "stage.h"
#include "stagectl.h"

struct row {
	const char *project;
	const char *stage;
	uint64_t created_ms;
	struct stage_meta meta;
	int r;
	char *error;
	/* verify */
	bool missing;
	struct stage_meta other;
};

struct rows {
	const char *root_a, *root_b;
	bool local_a, local_b;
	struct row *v;
	size_t n;
	int sort; /* 'n', 't', 's' */
	bool reverse;
};

/* The image ID and size of a row's stage in the mount at root; err's message starts with what. */
static int read_meta(const char *root, bool local, const struct row *w, const char *what,
		     struct stage_meta *ret, struct sf_err *err)
{
	char dir[PATH_MAX];
	int r = stage_dir(dir, sizeof(dir), root, local, w->project, w->stage);

	if (r < 0)
		r = err_set(err, r, "%s/%s: path too long", root, w->stage);
	else
		r = stage_read_meta(dir, ret, err);
	if (r < 0)
		err_prefix(err, "%s", what);
	return r;
}

static void read_row(size_t i, void *ud)
{
	struct rows *rs = ud;
	struct row *w = &rs->v[i];
	struct sf_err err = {0};

	w->r = read_meta(rs->root_a, rs->local_a, w, "source: ", &w->meta, &err);
	if (w->r == 0 && rs->root_b && !w->missing)
		w->r = read_meta(rs->root_b, rs->local_b, w, "target: ", &w->other, &err);
	if (w->r < 0)
		w->error = strdup(err_msg(&err, w->r));
}

static struct rows *sort_ctx;

static int cmp_row(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	int c = 0;
	if (sort_ctx->sort == 't')
		c = x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms;
	else if (sort_ctx->sort == 's')
		c = x->meta.size < y->meta.size ? -1 : x->meta.size > y->meta.size;
	if (c == 0)
		c = strcmp(x->project, y->project);
	if (c == 0)
		c = strcmp(x->stage, y->stage);
	return sort_ctx->reverse ? -c : c;
}

/* Rows for every stage of the given projects at root (listing only). */
static int collect(const struct stagectl *c, const char *root, bool local,
		   struct stage_names *lists, struct rows *rs)
{
	struct sf_err err = {0};
	size_t total = 0;

	for (size_t k = 0; k < c->n_projects; k++) {
		int r = stage_list_in(root, local, c->projects[k], &lists[k], &err);
		if (r < 0) {
			fprintf(stderr, "stagectl: listing %s: %s\n", c->projects[k],
				err_msg(&err, r));
			return -1;
		}
		total += lists[k].n;
	}
	rs->v = calloc(total ? total : 1, sizeof(*rs->v));
	if (!rs->v)
		return -1;
	for (size_t k = 0; k < c->n_projects; k++)
		for (size_t i = 0; i < lists[k].n; i++) {
			struct row *w = &rs->v[rs->n++];
			w->project = c->projects[k];
			w->stage = lists[k].v[i];
			name_stage_parse(w->stage, NULL, &w->created_ms);
		}
	return 0;
}

static int ls_projects(const struct stagectl *c, const char *root)
{
	struct stage_names projects = {0};
	struct sf_err err = {0};
	json_t *arr = json_array();
	int r = stage_list_projects(root, &projects, &err);

	if (r < 0) {
		fprintf(stderr, "stagectl: listing :local: %s\n", err_msg(&err, r));
		json_decref(arr);
		return STAGECTL_FAILED;
	}
	if (!c->json)
		printf("%-50s %s\n", "PROJECT", "STAGES");
	for (size_t i = 0; i < projects.n; i++) {
		struct stage_names l = {0};
		if (stage_list_in(root, true, projects.v[i], &l, &err) < 0)
			fprintf(stderr, "stagectl: %s: %s\n", projects.v[i], err.msg);
		if (c->json)
			json_array_append_new(arr, json_pack("{s:s,s:I}", "project", projects.v[i],
							     "stages", (json_int_t)l.n));
		else
			printf("%-50s %zu\n", projects.v[i], l.n);
		stage_names_done(&l);
	}
	if (c->json)
		stagectl_json_print(arr, JSON_INDENT(2), stdout);
	else
		json_decref(arr);
	stage_names_done(&projects);
	return STAGECTL_OK;
}

int inspect_ls(struct stagectl *c, const char *storage)
{
	bool local = stagectl_is_local(storage);
	const char *root = stagectl_mount(c, storage, STAGECTL_RO);
	struct stage_names *lists = NULL;
	struct rows rs = {0};
	int status = STAGECTL_FAILED;

	if (!root)
		return STAGECTL_FAILED;
	if (local && !c->projects_given)
		return ls_projects(c, root);
	lists = calloc(c->n_projects, sizeof(*lists));
	if (!lists || collect(c, root, local, lists, &rs) < 0)
		goto out;
	rs.root_a = root;
	rs.local_a = local;
	pool_run(rs.n, c->jobs, read_row, &rs);
	rs.sort = c->sort ? c->sort[0] : 'n';
	rs.reverse = c->reverse;
	sort_ctx = &rs;
	qsort(rs.v, rs.n, sizeof(*rs.v), cmp_row);
	json_t *arr = json_array();
	/* the name column as wide as its longest name: PROJECT/ only with several projects */
	int width = 5;
	for (size_t i = 0; i < rs.n; i++) {
		size_t w =
		    strlen(rs.v[i].stage) + (c->n_projects > 1 ? strlen(rs.v[i].project) + 1 : 0);
		if (w > (size_t)width && w < 1000)
			width = (int)w;
	}
	if (!c->json)
		printf("%-*s  %-20s  %12s  %s\n", width, "STAGE", "CREATED", "SIZE", "IMAGE ID");
	status = STAGECTL_OK;
	for (size_t i = 0; i < rs.n; i++) {
		struct row *w = &rs.v[i];
		char t[32], name[PATH_MAX];
		format_time_ms(w->created_ms, t, sizeof(t));
		snprintf(name, sizeof(name), "%s%s%s", c->n_projects > 1 ? w->project : "",
			 c->n_projects > 1 ? "/" : "", w->stage);
		if (w->r < 0)
			status = STAGECTL_FAILED;
		if (c->json) {
			json_t *o =
			    json_pack("{s:s,s:s,s:I,s:s}", "project", w->project, "stage", w->stage,
				      "created_ms", (json_int_t)w->created_ms, "created", t);
			if (w->r == 0) {
				json_object_set_new(o, "size",
						    json_integer((json_int_t)w->meta.size));
				json_object_set_new(o, "image_id", json_string(w->meta.image_id));
			} else {
				json_object_set_new(o, "error", json_string(w->error));
			}
			json_array_append_new(arr, o);
		} else if (w->r == 0) {
			printf("%-*s  %-20s  %12" PRIu64 "  %s\n", width, name, t, w->meta.size,
			       w->meta.image_id);
		} else {
			printf("%-*s  %-20s  %12s  error: %s\n", width, name, t, "-", w->error);
		}
	}
	if (c->json)
		stagectl_json_print(arr, JSON_INDENT(2), stdout);
	else
		json_decref(arr);
out:
	for (size_t i = 0; i < rs.n; i++)
		free(rs.v[i].error);
	free(rs.v);
	if (lists)
		for (size_t k = 0; k < c->n_projects; k++)
			stage_names_done(&lists[k]);
	free(lists);
	return status;
}

int inspect_verify(struct stagectl *c)
{
	bool la = stagectl_is_local(c->from), lb = stagectl_is_local(c->to);
	const char *a = stagectl_mount(c, c->from, STAGECTL_RO);
	const char *b = a ? stagectl_mount(c, c->to, STAGECTL_RO) : NULL;
	struct stage_names *lists = NULL, *other = NULL;
	struct rows rs = {0};
	struct sf_err err = {0};
	size_t bad = 0, missing = 0, errors = 0;
	int status = STAGECTL_FAILED;

	if (!a || !b)
		return STAGECTL_FAILED;
	lists = calloc(c->n_projects, sizeof(*lists));
	other = calloc(c->n_projects, sizeof(*other));
	if (!lists || !other || collect(c, a, la, lists, &rs) < 0)
		goto out;
	for (size_t k = 0; k < c->n_projects; k++) {
		int r = stage_list_in(b, lb, c->projects[k], &other[k], &err);
		if (r < 0) {
			fprintf(stderr, "stagectl: listing %s: %s\n", c->to, err_msg(&err, r));
			goto out;
		}
	}
	for (size_t i = 0; i < rs.n; i++) {
		size_t k = 0;
		while (k < c->n_projects && rs.v[i].project != c->projects[k])
			k++;
		rs.v[i].missing = !stage_names_has(&other[k], rs.v[i].stage);
	}
	rs.root_a = a;
	rs.local_a = la;
	rs.root_b = b;
	rs.local_b = lb;
	pool_run(rs.n, c->jobs, read_row, &rs);
	json_t *arr = json_array();
	for (size_t i = 0; i < rs.n; i++) {
		struct row *w = &rs.v[i];
		const char *state = "ok";
		if (w->r < 0) {
			state = "error";
			errors++;
		} else if (w->missing) {
			state = "missing";
			missing++;
		} else if (strcmp(w->meta.image_id, w->other.image_id) != 0) {
			state = "different";
			bad++;
		}
		if (c->json) {
			json_t *o = json_pack("{s:s,s:s,s:s}", "project", w->project, "stage",
					      w->stage, "state", state);
			if (w->r == 0)
				json_object_set_new(o, "from_image_id",
						    json_string(w->meta.image_id));
			if (w->r == 0 && !w->missing)
				json_object_set_new(o, "to_image_id",
						    json_string(w->other.image_id));
			if (w->error)
				json_object_set_new(o, "error", json_string(w->error));
			json_array_append_new(arr, o);
		} else if (strcmp(state, "ok") != 0) {
			printf("%s %s/%s%s%s\n", state, w->project, w->stage, w->error ? ": " : "",
			       w->error ? w->error : "");
		}
	}
	status = bad + missing + errors == 0 ? STAGECTL_OK : STAGECTL_FAILED;
	if (c->json) {
		json_t *o = json_pack("{s:s,s:s,s:b,s:I,s:I,s:I,s:I,s:o}", "from", c->from, "to",
				      c->to, "ok", status == STAGECTL_OK, "checked",
				      (json_int_t)rs.n, "missing", (json_int_t)missing, "different",
				      (json_int_t)bad, "errors", (json_int_t)errors, "stages", arr);
		stagectl_json_print(o, JSON_INDENT(2), stdout);
	} else {
		json_decref(arr);
		printf("verify %s -> %s: %zu stages checked, %zu missing, %zu different, %zu "
		       "errors: %s\n",
		       c->from, c->to, rs.n, missing, bad, errors,
		       status == STAGECTL_OK ? "OK" : "FAILED");
	}
out:
	for (size_t i = 0; i < rs.n; i++)
		free(rs.v[i].error);
	free(rs.v);
	for (size_t k = 0; lists && k < c->n_projects; k++)
		stage_names_done(&lists[k]);
	for (size_t k = 0; other && k < c->n_projects; k++)
		stage_names_done(&other[k]);
	free(lists);
	free(other);
	return status;
}
