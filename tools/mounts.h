/* mounts: private stagefs mounts for stagectl.
 *
 * Each mount is a `stagefs -f` child on a mount point under one private directory
 * (mkdtemp in $TMPDIR, else /tmp), with its own cache dir and log there. The child runs in its
 * own process group (a terminal's Ctrl-C reaches stagectl only, which then unmounts in order)
 * and gets SIGTERM if stagectl dies (PR_SET_PDEATHSIG; stagefs then unmounts itself).
 * mounts_stop_all() unmounts everything (fusermount3 -u, retried while busy, then -uz), waits
 * for each daemon to exit (SIGTERM, then SIGKILL past a bound) and removes the private
 * directory; call it on every way out. The stagefs binary: $STAGEFS, else `stagefs` next to
 * this program or in ../fs/ of a build tree, else the one in PATH.
 * Not thread-safe: start and stop mounts from the main thread only.
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "err.h"

struct mounts_opts {
	const char *docker_host;   /* -o docker_host; NULL: stagefs's default ($DOCKER_HOST) */
	const char *docker_config; /* -o docker_config; NULL: stagefs's default */
	const char *werf_home;	   /* -o werf_home (whose switch block the mount honours); NULL:
				      stagefs's default ($WERF_HOME) */
	bool insecure;		   /* -o insecure */
	bool read_only;		   /* -o ro */
};

struct mounts_mount;

/* Mount storage (":local" or HOST/REPO) and wait (bounded poll, 30 s or
 * $STAGECTL_MOUNT_TIMEOUT seconds) until it is mounted. Returns 0 and *ret (owned by this
 * module until mounts_stop_all); -ECHILD when stagefs exited first (its log's last lines are
 * printed to stderr), -ETIMEDOUT, -ECANCELED on an interrupt, -errno of mkdir/fork. */
int mounts_start(const char *storage, const struct mounts_opts *o, struct mounts_mount **ret,
		 struct sf_err *err);

/* The mount point (absolute path). */
const char *mounts_path(const struct mounts_mount *m);

/* A directory inside the private directory, created empty on first use (e.g. a werf home with
 * no block in it); NULL when it cannot be made. Owned by this module. */
const char *mounts_private_dir(const char *name);

/* Print the last `lines` lines of the daemon's log to f, each prefixed "  stagefs: ". */
void mounts_log_tail(const struct mounts_mount *m, int lines, FILE *f);

/* Unmount every mount, wait for the daemons, remove the private directory. Returns 0, or -EBUSY
 * when a mount could not be removed (reported on stderr). Idempotent. */
int mounts_stop_all(void);

/* Number of mounts of this process still mounted (per /proc/self/mountinfo). */
int mounts_active(void);
