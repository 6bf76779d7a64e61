/* sync: copy the stages missing in one mounted storage from another (werf-stages.md section 5,
 * done through stagefs mounts).
 *
 * Deciding what to copy compares the two directory listings only: no per-stage read, so a sync
 * where everything is present costs two readdirs per project. Each missing stage is copied as
 * a folder (stage_copy), then its image ID is read on both sides and compared. With
 * remove_source, each source stage is removed only after its image ID was verified in the
 * target (also for stages that were present before). Several stages at a time (jobs threads
 * over a shared queue). Memory: the two listings plus a small record per stage.
 * Locks are the caller's business. Not reentrant (one sync at a time per process).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "err.h"

struct sync_opts {
	const char *src_root; /* mount point of the source */
	bool src_local;	      /* the source is :local: projects are sub-folders */
	const char *dst_root;
	bool dst_local;
	const char *const *projects;
	size_t n_projects;
	bool remove_source;
	bool dry_run; /* list what would be done on stdout, change nothing */
	int jobs;     /* >= 1 */
};

struct sync_failure {
	char *name;   /* PROJECT/STAGE */
	char *reason; /* what failed and why */
};

struct sync_project {
	char *project;
	size_t source;	  /* stages in the source */
	size_t present;	  /* of them already in the target before the sync */
	size_t copied;	  /* copied and verified */
	size_t removed;	  /* source stages removed (remove_source) */
	size_t failed;	  /* stages not done */
	char **removed_v; /* the removed stage names (SIGNATURE-UNIQUEID) */
};

struct sync_report {
	size_t n;
	struct sync_project *v;
	size_t n_failures;
	struct sync_failure *failures;
	size_t planned; /* stages with work to do (copy, or verify+remove) */
	unsigned long long bytes;
	double seconds;
	bool dry_run;
	bool interrupted;
};

/* Run the sync. Returns 0 when it ran (the report says what failed per stage: check
 * n_failures); -errno when it could not start (a listing failed: err says which). Fills *ret
 * in both cases; release it with sync_report_done. */
int sync_run(const struct sync_opts *o, struct sync_report *ret, struct sf_err *err);

void sync_report_done(struct sync_report *r);

/* The summary, as text (one line per project, then the failures) or as JSON:
 * {"from","to","dry_run","ok","seconds","bytes","projects":[{"project","source","present",
 * "copied","removed","failed"}],"failures":[{"stage","reason"}]}. */
void sync_report_print(const struct sync_report *r, const char *from, const char *to, bool json,
		       FILE *f);

/* Default --jobs: twice the online CPUs, between 2 and 8 (copies wait on the network and the
 * Docker daemon more than on CPU). */
int sync_default_jobs(void);
