/* pending: stage folders being written into a mount, before their commit (DESIGN.md section 4).
 *
 * A pending stage is a real directory under CACHE_DIR/pending/, so every tool's way of writing a
 * folder (cp, rsync's temporary names, tar, skopeo's renames across folders) works on real
 * files: the FS maps its calls onto the *at() functions here, by paths relative to the stage
 * folder ("" is the folder itself, "blobs/sha256/HEX", ".index.json.XYZ", ...).
 *
 * Final names are checked when a file is closed there (pending_file_flush) or renamed onto
 * them (pending_rename): a blob must hash to its name (-EBADMSG otherwise), index.json must list
 * one manifest whose ref name, if any, is the stage's (-EINVAL), oci-layout must be an image
 * layout marker (-EINVAL). A refused file is removed at once. A verified blob is handed to the
 * storage's writer right away (stage_writer_add_blob), so compression and upload overlap with
 * the copy. When index.json, the manifest it names (with an image index, every child manifest)
 * and every config and layer they name are verified, the call that completed the layout
 * commits the stage (stage_writer_commit) and returns the commit's result; then the pending
 * stage is gone, committed or not, and nothing of it is kept on disk.
 *
 * A pending stage over a stage that already exists (check mode, no writer) commits nothing:
 * each file is checked the same way, and index.json and image manifests must lead to the
 * existing stage's image ID (config digest; for an image index, the same index digest), else
 * -EEXIST.
 *
 * Each daemon works in its own CACHE_DIR/pending/D.XXXXXX, held by an flock; directories left
 * by a daemon that died (kill -9) are removed by the next pending_new() on the same cache dir.
 *
 * Thread safety: every function may be called from many threads at once; a pending_file is
 * used by one open file description (its calls may still come from several threads).
 * Errors: -errno of the underlying system call (ENOENT, EEXIST, ENOTEMPTY, ENOSPC, EDQUOT,
 * EXDEV...) or of the checks and commit above, with the reason in err where one is taken.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "err.h"
#include "storage.h"

struct pending;
struct pending_stage;
struct pending_file;

/* Open the pending area of cache_dir (created if missing) and remove what dead daemons left;
 * *ret_stale gets how many of their pending stages were removed. */
int pending_new(const char *cache_dir, struct pending **ret, unsigned *ret_stale,
		struct sf_err *err);

/* Called (from the retiring thread, no lock held) each time a pending stage leaves the set:
 * committed, failed, or dropped; for callers that cache what the folder looked like. */
typedef void (*pending_retired_fn)(void *ud, const char *project, const char *stage);
void pending_on_retire(struct pending *p, pending_retired_fn fn, void *ud);

/* Called by pending_free once for every pending stage that never completed, with what it lacks
 * ("no index.json", "blob sha256:... named by the manifest"). */
typedef void (*pending_dropped_fn)(void *ud, const char *project, const char *stage,
				   const char *missing);
/* Drop every pending stage (their writers abort) and the daemon's directory. Takes NULL. */
void pending_free(struct pending *p, pending_dropped_fn dropped, void *ud);

/* Start a pending stage: with a writer (owned from now on, also on failure) for a new stage, or
 * in check mode over existing (writer NULL; a reference is taken). -EEXIST when a pending stage
 * of that name exists already. *ret is referenced. */
int pending_stage_start(struct pending *p, const char *project, const char *stage,
			struct stage_writer *writer, const struct stage_layout *existing,
			struct pending_stage **ret, struct sf_err *err);
/* The pending stage of that name (referenced), or NULL. project "" when not by project. */
struct pending_stage *pending_stage_find(struct pending *p, const char *project, const char *stage);
void pending_stage_unref(struct pending_stage *ps);
bool pending_stage_checks_existing(const struct pending_stage *ps);
/* Check mode: rel of the existing stage was unlinked or (a folder) removed, as tar -x and
 * rm -r do: it, and what was inside it, look absent until something is written there.
 * Changes nothing stored. */
int pending_whiteout(struct pending_stage *ps, const char *rel);
bool pending_is_whiteout(struct pending_stage *ps, const char *rel);
/* Forget a pending stage now, whatever it holds (its writer aborts, its files go). */
void pending_stage_drop(struct pending_stage *ps);
/* When the stage folder was made (mkdir), in ms since the epoch. */
uint64_t pending_stage_created_ms(const struct pending_stage *ps);

/* Call fn for every pending stage of project (NULL: all), in no particular order; fn returns
 * non-zero to stop. Check-mode stages are not listed (their folder is the existing stage). */
void pending_foreach(struct pending *p, const char *project,
		     int (*fn)(void *ud, const char *project, const char *stage), void *ud);

/* Folder operations, by path relative to the stage folder. */
int pending_stat(struct pending_stage *ps, const char *rel, struct stat *ret);
/* fn gets each entry's name and stat (not "." and ".."); a non-zero return stops. */
int pending_readdir(struct pending_stage *ps, const char *rel,
		    int (*fn)(void *ud, const char *name, const struct stat *st), void *ud);
int pending_mkdir(struct pending_stage *ps, const char *rel, mode_t mode);
/* rel "": drop the whole pending stage (-ENOTEMPTY unless its folder is empty). */
int pending_rmdir(struct pending_stage *ps, const char *rel);
int pending_unlink(struct pending_stage *ps, const char *rel);
int pending_chmod(struct pending_stage *ps, const char *rel, mode_t mode);
int pending_utimens(struct pending_stage *ps, const char *rel, const struct timespec tv[2]);
int pending_truncate(struct pending_stage *ps, const char *rel, off_t size);
/* rename(2) inside one stage folder (flags: RENAME_NOREPLACE, RENAME_EXCHANGE as renameat2).
 * Renaming onto a final name checks the file and may complete and commit the stage. */
int pending_rename(struct pending_stage *ps, const char *from, const char *to, unsigned flags,
		   struct sf_err *err);

/* Open (flags as open(2); O_CREAT with mode). Opening an existing file with O_TRUNC gives a
 * fresh file under that name, so blobs already handed to the writer never change. */
int pending_open(struct pending_stage *ps, const char *rel, int flags, mode_t mode,
		 struct pending_file **ret);
ssize_t pending_file_pread(struct pending_file *pf, void *buf, size_t len, off_t off);
ssize_t pending_file_pwrite(struct pending_file *pf, const void *buf, size_t len, off_t off);
int pending_file_truncate(struct pending_file *pf, off_t size);
int pending_file_fstat(struct pending_file *pf, struct stat *ret);
/* close(2)'s check point: checks the file under its current name and may commit the stage.
 * Idempotent: a failure is sticky and every later flush reports it again. */
int pending_file_flush(struct pending_file *pf, struct sf_err *err);
/* The handle's sticky error (0 if none), without checking anything: for fsync. */
int pending_file_error(struct pending_file *pf, struct sf_err *err);
/* Free the handle (after the last flush). Takes NULL. A check-mode stage goes with its last
 * open file. */
void pending_file_close(struct pending_file *pf);
