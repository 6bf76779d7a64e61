/* switch: werf's `stages switch-from-local` (werf-stages.md section 6) and the guide's
 * rollback, re-runnable after a failure at any step. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "interrupt.h"
#include "stage.h"
#include "stagectl.h"
#include "sync.h"
#include "werf.h"

static int run_sync(const struct stagectl *c, const char *src, bool src_local, const char *dst,
		    bool dst_local, bool remove_source, const char *step, struct sync_report *rep)
{
	struct sf_err err = {0};
	struct sync_opts o = {
	    .src_root = src,
	    .src_local = src_local,
	    .dst_root = dst,
	    .dst_local = dst_local,
	    .projects = c->projects,
	    .n_projects = 1,
	    .remove_source = remove_source,
	    .jobs = c->jobs,
	};
	int r;

	fprintf(stderr, "stagectl: %s\n", step);
	r = sync_run(&o, rep, &err);
	if (r < 0) {
		fprintf(stderr, "stagectl: %s\n", err_msg(&err, r));
		return -1;
	}
	if (!c->json)
		sync_report_print(rep,
				  src_local ? ":local"
				  : c->to   ? c->to
					    : c->from,
				  dst_local ? ":local"
				  : c->to   ? c->to
					    : c->from,
				  false, stdout);
	return rep->n_failures == 0 && !rep->interrupted ? 0 : -1;
}

static void print_json(const char *cmd, const char *project, const char *repo, bool ok,
		       const char *state)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:s}", "command", cmd, "project", project, "repo",
			      repo, "ok", ok, "state", state);
	stagectl_json_print(o, JSON_COMPACT, stdout);
}

int switch_from_local(struct stagectl *c)
{
	const char *project = c->projects[0], *repo = c->to;
	struct werf_lock *lock = NULL;
	struct sync_report rep = {0};
	struct sf_err err = {0};
	char *blocked_to = NULL;
	const char *local, *remote;
	bool cont = false;
	int status = STAGECTL_FAILED, r;

	/* Step 1: werf refuses when the block exists; we continue when it names this REPO. */
	r = werf_block_read(c->home, project, &blocked_to, &err);
	if (r == 0) {
		if (strcmp(blocked_to, repo) != 0) {
			fprintf(
			    stderr,
			    "stagectl: project %s was switched from :local to %s, not %s (werf's "
			    "block file %s/%s/%s); roll back first: stagectl rollback --from %s\n",
			    project, blocked_to, repo, c->home, WERF_BLOCK_DIR, project,
			    blocked_to);
			goto out;
		}
		cont = true;
		fprintf(stderr,
			"stagectl: project %s is already blocked for :local in favour of %s: "
			"continuing the switch\n",
			project, repo);
	} else if (r != -ENOENT) {
		fprintf(stderr, "stagectl: werf's block file: %s\n", err_msg(&err, r));
		goto out;
	}
	if (!(remote = stagectl_mount(c, repo, STAGECTL_RW)))
		goto out;

	if (!cont) {
		/* Step 2: sync :local -> REPO under the shared project lock, builds go on. */
		if (!(local = stagectl_mount(c, ":local", STAGECTL_RO)) ||
		    !(lock = stagectl_lock(c, project, WERF_LOCK_SHARED)))
			goto out;
		r = run_sync(c, local, true, remote, false, false,
			     "step 1/3: copying the local stages to the repository (builds go on)",
			     &rep);
		werf_lock_release(lock);
		lock = NULL;
		if (r < 0) {
			fprintf(stderr, "stagectl: the first sync failed; nothing is blocked yet. "
					"Run the same command again to go on.\n");
			goto out;
		}
		sync_report_done(&rep);
	}
	/* Step 3: the project lock, exclusive: waits for running builds. */
	fprintf(stderr,
		"stagectl: step 2/3: waiting for running werf builds of %s to finish, "
		"then blocking :local\n",
		project);
	if (!(lock = stagectl_lock(c, project, WERF_LOCK_EXCLUSIVE)))
		goto out;
	/* A :local mount started now, under the exclusive lock: its listing (kept for the
	 * mount's ttl) has every stage built while step 2 ran or while we waited, and no build
	 * can add one any more. Step 2's mount may still list what it saw before. */
	if (!(local = stagectl_mount(c, ":local", STAGECTL_RW_SWITCH)))
		goto out;
	/* Step 4: the block file, werf's format, under werf's block lock. */
	if (!cont) {
		r = werf_block_write(c->home, project, repo, &err);
		if (r < 0) {
			fprintf(stderr, "stagectl: writing werf's block file: %s\n",
				err_msg(&err, r));
			goto out;
		}
		fprintf(stderr, "stagectl: wrote %s/%s/%s: werf builds of %s now refuse :local\n",
			c->home, WERF_BLOCK_DIR, project, project);
	}
	/* Step 5: again, removing every local stage once its image ID is verified in REPO. */
	r = run_sync(c, local, true, remote, false, true,
		     "step 3/3: copying what was built meanwhile and removing every local stage "
		     "verified in the repository",
		     &rep);
	/* werf's stage cache must not list the removed stages (section 8). */
	if (rep.n == 1 && rep.v[0].removed > 0) {
		int f = werf_stage_cache_forget(c->home, project,
						(const char *const *)rep.v[0].removed_v,
						rep.v[0].removed, &err);
		if (f < 0) {
			fprintf(stderr, "stagectl: clearing werf's stage cache: %s\n",
				err_msg(&err, f));
			r = -1;
		}
	}
	if (r < 0) {
		fprintf(stderr, "stagectl: the switch is not finished (:local stays blocked); run "
				"the same command again to finish it.\n");
		goto out;
	}
	{
		struct stage_names left = {0};
		if (stage_list_in(local, true, project, &left, &err) == 0 && left.n > 0) {
			fprintf(stderr, "stagectl: %zu local stages of %s remain; run again\n",
				left.n, project);
			stage_names_done(&left);
			goto out;
		}
		stage_names_done(&left);
	}
	status = STAGECTL_OK;
	if (c->json)
		print_json("switch-from-local", project, repo, true, "switched");
	else
		printf("project %s switched from :local to %s.\n"
		       "next: make every werf command of %s use --stages-storage %s (in GitLab CI, "
		       "`werf ci-env` does when $WERF_STAGES_STORAGE is unset).\n",
		       project, repo, project, repo);
out:
	if (status != STAGECTL_OK && c->json)
		print_json("switch-from-local", project, repo, false, cont ? "blocked" : "unknown");
	werf_lock_release(lock);
	sync_report_done(&rep);
	free(blocked_to);
	return status;
}

int switch_rollback(struct stagectl *c)
{
	const char *project = c->projects[0], *repo = c->from;
	struct werf_lock *lock = NULL;
	struct sync_report rep = {0};
	struct sf_err err = {0};
	char *blocked_to = NULL;
	const char *local, *remote;
	int status = STAGECTL_FAILED, r;

	r = werf_block_read(c->home, project, &blocked_to, &err);
	if (r == 0 && strcmp(blocked_to, repo) != 0) {
		fprintf(stderr,
			"stagectl: project %s was switched to %s, not %s: roll back from %s\n",
			project, blocked_to, repo, blocked_to);
		goto out;
	}
	if (r < 0 && r != -ENOENT) {
		fprintf(stderr, "stagectl: werf's block file: %s\n", err_msg(&err, r));
		goto out;
	}
	if (r == -ENOENT)
		fprintf(stderr,
			"stagectl: project %s is not blocked for :local; copying its stages "
			"back anyway\n",
			project);
	/* Rollback step 1: REPO -> :local (the project folder is made when missing). */
	if (!(remote = stagectl_mount(c, repo, STAGECTL_RO)) ||
	    !(local = stagectl_mount(c, ":local", STAGECTL_RW_SWITCH)))
		goto out;
	if (!(lock = stagectl_lock(c, project, WERF_LOCK_SHARED)))
		goto out;
	r = run_sync(c, remote, false, local, true, false,
		     "rollback 1/2: copying the repository's stages back into :local", &rep);
	werf_lock_release(lock);
	lock = NULL;
	if (r < 0) {
		fprintf(stderr,
			"stagectl: the copy back failed; :local stays blocked. Run the same "
			"command again.\n");
		goto out;
	}
	/* Rollback step 2: the block file removed under werf's block lock. */
	r = werf_block_remove(c->home, project, &err);
	if (r < 0) {
		fprintf(stderr, "stagectl: removing werf's block file: %s\n", err_msg(&err, r));
		goto out;
	}
	fprintf(stderr, "stagectl: rollback 2/2: %s\n",
		r == 1 ? "removed werf's block file: :local works again"
		       : "no block file to remove");
	status = STAGECTL_OK;
	if (c->json)
		print_json("rollback", project, repo, true, "local");
	else
		printf("project %s is back on :local (%zu stages copied back).\n"
		       "remaining manual steps:\n"
		       "  1. revert the CI change: werf commands of %s use --stages-storage :local "
		       "again (unset $WERF_STAGES_STORAGE or set it to :local);\n"
		       "  2. stop or let finish the CI jobs still building with %s;\n"
		       "  3. on every other runner host that built %s, run this rollback too "
		       "(:local is per host).\n",
		       project, rep.n ? rep.v[0].copied : 0, project, repo, project);
out:
	if (status != STAGECTL_OK && c->json)
		print_json("rollback", project, repo, false, "blocked");
	werf_lock_release(lock);
	sync_report_done(&rep);
	free(blocked_to);
	return status;
}
