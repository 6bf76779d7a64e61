/* sync: listings compared, missing stages copied by a pool of threads, verified, removed. */
#include "sync.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "interrupt.h"
#include "pool.h"
#include "progress.h"
#include "stage.h"
#include "stagectl.h"
#include "werf.h"

struct item {
	size_t project;
	const char *stage; /* borrowed from the project's source listing */
	bool copy;	   /* false: present, verify (and remove) only */
	bool removed;
	bool ok;
	char *reason;
};

struct plan {
	char src_dir[PATH_MAX];
	char dst_dir[PATH_MAX];
	struct stage_names src, dst;
};

struct run {
	const struct sync_opts *o;
	struct plan *plans;
	struct item *items;
	size_t n_items;
	_Atomic unsigned long long bytes;
	struct progress *progress;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int sync_default_jobs(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN) * 2;
	return n < 2 ? 2 : n > 8 ? 8 : (int)n;
}

static void on_bytes(uint64_t n, void *ud)
{
	struct run *r = ud;
	atomic_fetch_add(&r->bytes, n);
	progress_bytes(r->progress, n);
}

static void do_item(struct run *run, struct item *it)
{
	const struct sync_opts *o = run->o;
	struct plan *pl = &run->plans[it->project];
	char src[PATH_MAX], dst[PATH_MAX], name[PATH_MAX];
	struct stage_meta ms, md;
	struct sf_err err = {0};
	int r;

	stage_path(name, sizeof(name), o->projects[it->project], it->stage);
	if (stage_path(src, sizeof(src), pl->src_dir, it->stage) < 0 ||
	    stage_path(dst, sizeof(dst), pl->dst_dir, it->stage) < 0) {
		r = err_set(&err, -ENAMETOOLONG, "path too long");
		goto out;
	}
	if (interrupt_requested()) {
		r = err_set(&err, -ECANCELED, "interrupted");
		goto out;
	}
	if ((r = stage_read_meta(src, &ms, &err)) < 0) {
		err_prefix(&err, "source: ");
		goto out;
	}
	if (it->copy && (r = stage_copy(src, dst, on_bytes, run, &err)) < 0)
		goto out;
	if ((r = stage_read_meta(dst, &md, &err)) < 0) {
		err_prefix(&err, "target: ");
		goto out;
	}
	if (strcmp(ms.image_id, md.image_id) != 0) {
		r = err_set(&err, -EBADMSG, "image ID differs: source %s, target %s", ms.image_id,
			    md.image_id);
		goto out;
	}
	if (o->remove_source) {
		if ((r = stage_remove(src, &err)) < 0) {
			err_prefix(&err, "verified in the target, but removing the source: ");
			goto out;
		}
		it->removed = true;
	}
out:
	it->ok = r == 0;
	if (r < 0)
		it->reason = strdup(err_msg(&err, r));
	progress_stage(run->progress, name, r < 0 ? err_msg(&err, r) : NULL);
}

static void run_item(size_t i, void *userdata)
{
	struct run *run = userdata;
	do_item(run, &run->items[i]);
}

static int plan_project(const struct sync_opts *o, size_t k, struct plan *pl, struct sf_err *err)
{
	const char *p = o->projects[k];
	int r;

	if (stage_dir(pl->src_dir, sizeof(pl->src_dir), o->src_root, o->src_local, p, "") < 0 ||
	    stage_dir(pl->dst_dir, sizeof(pl->dst_dir), o->dst_root, o->dst_local, p, "") < 0)
		return err_set(err, -ENAMETOOLONG, "mount path too long");
	r = stage_list(pl->src_dir, &pl->src, err);
	if (r == -ENOENT && o->src_local)
		r = 0; /* a project with no stage in :local */
	if (r < 0) {
		err_prefix(err, "listing the source: ");
		return r;
	}
	r = stage_list(pl->dst_dir, &pl->dst, err);
	if (r == -ENOENT && o->dst_local) {
		r = 0;
		if (!o->dry_run && pl->src.n > 0 && mkdir(pl->dst_dir, 0755) < 0 && errno != EEXIST)
			r = err_set(err, -errno, "mkdir %s: %s", pl->dst_dir, strerror(errno));
	}
	if (r < 0)
		err_prefix(err, "listing the target: ");
	return r;
}

int sync_run(const struct sync_opts *o, struct sync_report *ret, struct sf_err *err)
{
	struct run run = {.o = o};
	struct sync_report rep = {.dry_run = o->dry_run};
	double start = now_s();
	size_t cap = 0;
	int r = 0;

	run.plans = calloc(o->n_projects ? o->n_projects : 1, sizeof(*run.plans));
	rep.v = calloc(o->n_projects ? o->n_projects : 1, sizeof(*rep.v));
	if (!run.plans || !rep.v) {
		r = err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	rep.n = o->n_projects;
	for (size_t k = 0; k < o->n_projects; k++) {
		struct plan *pl = &run.plans[k];
		rep.v[k].project = strdup(o->projects[k]);
		if ((r = plan_project(o, k, pl, err)) < 0) {
			err_prefix(err, "%s: ", o->projects[k]);
			goto out;
		}
		rep.v[k].source = pl->src.n;
		for (size_t i = 0; i < pl->src.n; i++) {
			bool present = stage_names_has(&pl->dst, pl->src.v[i]);
			rep.v[k].present += present;
			if (present && !o->remove_source)
				continue;
			if (run.n_items == cap) {
				cap = cap ? cap * 2 : 256;
				struct item *nv = realloc(run.items, cap * sizeof(*nv));
				if (!nv) {
					r = err_set(err, -ENOMEM, "out of memory");
					goto out;
				}
				run.items = nv;
			}
			run.items[run.n_items++] =
			    (struct item){.project = k, .stage = pl->src.v[i], .copy = !present};
		}
	}
	rep.planned = run.n_items;
	if (o->dry_run) {
		for (size_t i = 0; i < run.n_items; i++) {
			struct item *it = &run.items[i];
			printf("%s %s/%s\n",
			       it->copy ? (o->remove_source ? "copy+remove" : "copy")
					: "verify+remove",
			       o->projects[it->project], it->stage);
		}
		goto out;
	}
	if (run.n_items) {
		run.progress =
		    progress_new(run.n_items, o->remove_source ? "synced+removed" : "synced");
		pool_run(run.n_items, o->jobs, run_item, &run);
		progress_free(run.progress);
	}
	for (size_t i = 0; i < run.n_items; i++) {
		struct item *it = &run.items[i];
		struct sync_project *sp = &rep.v[it->project];
		if (it->ok) {
			sp->copied += it->copy;
		} else {
			sp->failed++;
			struct sync_failure *nf =
			    realloc(rep.failures, (rep.n_failures + 1) * sizeof(*nf));
			if (nf) {
				rep.failures = nf;
				char name[PATH_MAX];
				stage_path(name, sizeof(name), sp->project, it->stage);
				nf[rep.n_failures].name = strdup(name);
				nf[rep.n_failures].reason = it->reason;
				it->reason = NULL;
				rep.n_failures++;
			}
		}
		if (it->removed) {
			char **nv = realloc(sp->removed_v, (sp->removed + 1) * sizeof(*nv));
			if (nv) {
				sp->removed_v = nv;
				nv[sp->removed++] = strdup(it->stage);
			}
		}
	}
out:
	rep.interrupted = interrupt_requested();
	rep.bytes = atomic_load(&run.bytes);
	rep.seconds = now_s() - start;
	for (size_t i = 0; i < run.n_items; i++)
		free(run.items[i].reason);
	free(run.items);
	if (run.plans)
		for (size_t k = 0; k < o->n_projects; k++) {
			stage_names_done(&run.plans[k].src);
			stage_names_done(&run.plans[k].dst);
		}
	free(run.plans);
	*ret = rep;
	return r;
}

void sync_report_done(struct sync_report *r)
{
	for (size_t k = 0; k < r->n; k++) {
		free(r->v[k].project);
		for (size_t i = 0; i < r->v[k].removed; i++)
			free(r->v[k].removed_v[i]);
		free(r->v[k].removed_v);
	}
	free(r->v);
	for (size_t i = 0; i < r->n_failures; i++) {
		free(r->failures[i].name);
		free(r->failures[i].reason);
	}
	free(r->failures);
	*r = (struct sync_report){0};
}

void sync_report_print(const struct sync_report *r, const char *from, const char *to, bool json,
		       FILE *f)
{
	if (json) {
		json_t *o = json_object(), *ps = json_array(), *fs = json_array();
		json_object_set_new(o, "from", json_string(from));
		json_object_set_new(o, "to", json_string(to));
		json_object_set_new(o, "dry_run", json_boolean(r->dry_run));
		json_object_set_new(o, "ok", json_boolean(r->n_failures == 0 && !r->interrupted));
		json_object_set_new(o, "seconds", json_real(r->seconds));
		json_object_set_new(o, "bytes", json_integer((json_int_t)r->bytes));
		json_object_set_new(o, "planned", json_integer((json_int_t)r->planned));
		for (size_t k = 0; k < r->n; k++) {
			const struct sync_project *p = &r->v[k];
			json_array_append_new(
			    ps,
			    json_pack("{s:s?,s:I,s:I,s:I,s:I,s:I}", "project", p->project, "source",
				      (json_int_t)p->source, "present", (json_int_t)p->present,
				      "copied", (json_int_t)p->copied, "removed",
				      (json_int_t)p->removed, "failed", (json_int_t)p->failed));
		}
		for (size_t i = 0; i < r->n_failures; i++)
			json_array_append_new(fs,
					      json_pack("{s:s?,s:s?}", "stage", r->failures[i].name,
							"reason", r->failures[i].reason));
		json_object_set_new(o, "projects", ps);
		json_object_set_new(o, "failures", fs);
		stagectl_json_print(o, JSON_INDENT(2), f);
		return;
	}
	for (size_t k = 0; k < r->n; k++) {
		const struct sync_project *p = &r->v[k];
		if (r->dry_run)
			fprintf(
			    f, "%s: %zu stages in %s, %zu already in %s, %zu to copy (dry run)\n",
			    p->project, p->source, from, p->present, to, p->source - p->present);
		else
			fprintf(
			    f,
			    "%s: %zu stages in %s, %zu were in %s, %zu copied, %zu removed, %zu "
			    "failed\n",
			    p->project, p->source, from, p->present, to, p->copied, p->removed,
			    p->failed);
	}
	for (size_t i = 0; i < r->n_failures; i++)
		fprintf(f, "failed %s: %s\n", r->failures[i].name, r->failures[i].reason);
	char sz[32];
	fprintf(f, "%s in %.2f s%s\n", format_size(r->bytes, sz, sizeof(sz)), r->seconds,
		r->interrupted ? " (interrupted)" : "");
	fflush(f);
}

/* The `sync` command: mounts, projects, werf's shared lock per project, the sync, the summary. */
int sync_command(struct stagectl *c)
{
	struct stage_names all = {0};
	struct werf_lock **locks = NULL;
	struct sync_report rep = {0};
	struct sf_err err = {0};
	const char *src, *dst;
	int status = STAGECTL_FAILED, r;

	src =
	    stagectl_mount(c, c->from, c->remove_source && !c->dry_run ? STAGECTL_RW : STAGECTL_RO);
	if (!src)
		goto out;
	if (c->all_projects) {
		r = stage_list_projects(src, &all, &err);
		if (r < 0) {
			fprintf(stderr, "stagectl: listing the projects of %s: %s\n", c->from,
				err_msg(&err, r));
			goto out;
		}
		c->projects = (const char **)all.v;
		c->n_projects = all.n;
		if (all.n == 0)
			fprintf(stderr, "stagectl: %s holds no project\n", c->from);
	}
	if (stagectl_is_local(c->to))
		for (size_t k = 0; k < c->n_projects; k++)
			if (werf_block_active(c->home, c->projects[k]) != 0) {
				fprintf(stderr,
					"stagectl: project %s is switched away from :local (werf's "
					"block file %s/%s/%s): use `stagectl rollback`\n",
					c->projects[k], c->home, WERF_BLOCK_DIR, c->projects[k]);
				goto out;
			}
	dst = stagectl_mount(c, c->to, c->dry_run ? STAGECTL_RO : STAGECTL_RW);
	if (!dst)
		goto out;
	locks = calloc(c->n_projects + 1, sizeof(*locks));
	if (!locks)
		goto out;
	/* As werf's `stages sync`: the project's lock, shared (builds run beside it). */
	for (size_t k = 0; k < c->n_projects; k++)
		if (!(locks[k] = stagectl_lock(c, c->projects[k], WERF_LOCK_SHARED)))
			goto out;
	struct sync_opts o = {
	    .src_root = src,
	    .src_local = stagectl_is_local(c->from),
	    .dst_root = dst,
	    .dst_local = stagectl_is_local(c->to),
	    .projects = c->projects,
	    .n_projects = c->n_projects,
	    .remove_source = c->remove_source,
	    .dry_run = c->dry_run,
	    .jobs = c->jobs,
	};
	r = sync_run(&o, &rep, &err);
	if (r < 0) {
		fprintf(stderr, "stagectl: %s\n", err_msg(&err, r));
		goto out;
	}
	sync_report_print(&rep, c->from, c->to, c->json, stdout);
	status = rep.n_failures == 0 && !rep.interrupted ? STAGECTL_OK : STAGECTL_FAILED;
out:
	sync_report_done(&rep);
	if (locks)
		for (size_t k = 0; k < c->n_projects; k++)
			werf_lock_release(locks[k]);
	free(locks);
	/* the project names may be in `all`: unmount (main) needs none of them */
	if (c->all_projects) {
		c->n_projects = 0;
		stage_names_done(&all);
	}
	return status;
}
