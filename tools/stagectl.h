/* stagectl: what the commands share (options, mounts, werf's locks). */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "werf.h"

/* Exit statuses (man/stagectl.1). */
#define STAGECTL_OK 0
#define STAGECTL_FAILED 1
#define STAGECTL_USAGE 2

struct stagectl {
	char home[PATH_MAX]; /* werf's home */
	const char *home_opt;
	const char *dir; /* --dir: where werf.yaml is */
	const char **projects;
	size_t n_projects;
	bool projects_given; /* --project on the command line */
	bool all_projects;
	const char *from, *to;
	const char *docker_host, *docker_config;
	bool insecure;
	bool json, dry_run, remove_source;
	int jobs;
	long timeout_s; /* < 0: wait forever */
	const char *sort;
	bool reverse;
};

enum stagectl_mount_mode {
	STAGECTL_RO,	    /* read only */
	STAGECTL_RW,	    /* writable; a :local mount honours werf's switch block */
	STAGECTL_RW_SWITCH, /* writable; a :local mount ignores the block (stagectl writes it and
			       holds werf's exclusive project lock while it works) */
};

bool stagectl_is_local(const char *storage);

/* Mount storage; the mount point, or NULL after printing why. */
const char *stagectl_mount(const struct stagectl *c, const char *storage,
			   enum stagectl_mount_mode mode);

/* werf's lock NAME_FMT(project) in mode, waiting up to c->timeout_s and saying so on stderr
 * while it waits (Ctrl-C stops the wait). NULL after printing why. */
struct werf_lock *stagectl_lock(const struct stagectl *c, const char *project,
				enum werf_lock_mode mode);

/* Print o to f as JSON (jansson's flags: JSON_INDENT(2), JSON_COMPACT) and a newline, then
 * release o (o NULL: "null"). */
void stagectl_json_print(json_t *o, size_t flags, FILE *f);

/* The commands (each returns an exit status): sync.c, switch.c, inspect.c. */
int sync_command(struct stagectl *c);
int switch_from_local(struct stagectl *c);
int switch_rollback(struct stagectl *c);
int inspect_ls(struct stagectl *c, const char *storage);
int inspect_verify(struct stagectl *c);
