/* werf: werf v1.1's facts and the mechanisms to honour them (../shared/werf-stages.md).
 *
 * Names and labels of stages, werf's home, its host locks (flock(2) on
 * $WERF_HOME/service/locks/<murmur3 of the lock name>, as werf's lockgate file locker does),
 * the switch block file and werf's file stage cache. Checked against werf v1.1.23's source
 * (pkg/werf/main.go, pkg/storage/manager/stages_storage.go,
 * pkg/storage/file_stages_storage_cache.go, pkg/storage/generic_lock_manager.go) and lockgate's
 * file locker over gofrs/flock v0.7.1.
 *
 * Every function taking `home` expects the result of werf_home(). Paths are built like Go's
 * filepath.Join (lexically cleaned), so lock names derived from paths are werf's byte for byte.
 * Functions are thread-safe (no shared state) unless said otherwise. core never prints: waiting
 * for a lock is reported through a callback.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ---- names and labels (pkg/storage/local_docker_server_stages_storage.go, pkg/image/const.go) */

/* `:local` stage images are WERF_LOCAL_REPO_PREFIX PROJECT ":" SIGNATURE "-" UNIQUEID. */
#define WERF_LOCAL_ADDRESS ":local"
#define WERF_LOCAL_REPO_PREFIX "werf-stages-storage/"

#define WERF_LABEL_PROJECT "werf"
#define WERF_LABEL_VERSION "werf-version"
#define WERF_LABEL_CACHE_VERSION "werf-cache-version"
#define WERF_LABEL_IMAGE "werf-image"
#define WERF_LABEL_STAGE_SIGNATURE "werf-stage-signature"
#define WERF_LABEL_STAGE_CONTENT_SIGNATURE "werf-stage-content-signature"
#define WERF_LABEL_DOCKER_IMAGE_NAME "werf-docker-image-name"
#define WERF_LABEL_PROJECT_REPO_COMMIT "werf-project-repo-commit"
/* The value of WERF_LABEL_CACHE_VERSION on every stage werf v1.1 lists. */
#define WERF_CACHE_VERSION "1.1"

/* ---- werf's home and the files in it (relative to werf_home()) ---- */

#define WERF_HOME_ENV "WERF_HOME"
#define WERF_HOME_DEFAULT_NAME ".werf" /* under the user's home */
#define WERF_LOCKS_DIR "service/locks"
#define WERF_BLOCK_DIR "service/stages_switch_from_local_block"
#define WERF_STAGE_CACHE_DIR "shared_context/storage/stages_storage_cache/1"

/* Directory modes werf passes to os.MkdirAll (the umask applies, as for werf). */
#define WERF_LOCKS_DIR_MODE 0755 /* lockgate file_locker.NewFileLocker */
#define WERF_BLOCK_DIR_MODE 0777 /* os.ModePerm in writeStagesSwitchFromLocalBlock */
#define WERF_LOCK_FILE_MODE 0600 /* gofrs/flock: O_CREAT|O_RDONLY, 0600 */
#define WERF_BLOCK_FILE_MODE 0644

/* Lock name formats (pkg/storage/generic_lock_manager.go, pkg/storage/manager/stages_storage.go).
 * The stage cache lock's name is the cache directory's path itself. */
#define WERF_LOCK_STAGES_AND_IMAGES_FMT "%s.stages_and_images"
#define WERF_LOCK_BLOCK_FMT "stages_switch_from_local_block.%s"

/* Longest lock file name: 8 hex digits + NUL. */
#define WERF_LOCK_FILE_NAME_SIZE 9

/* How long the block functions wait for werf's block lock (werf holds it for microseconds). */
#define WERF_BLOCK_LOCK_TIMEOUT_MS 10000
/* Largest block file or stage cache file read; bigger ones are refused with -EFBIG. */
#define WERF_BLOCK_MAX 4096
#define WERF_STAGE_CACHE_FILE_MAX (4 * 1024 * 1024)

/* werf's home into ret (n bytes): opt_home when non-NULL and non-empty, else $WERF_HOME when
 * set and non-empty, else $HOME/.werf (the passwd entry's home when $HOME is unset), then
 * lexically cleaned like Go's filepath.Clean ("/a//b/../c/" -> "/a/c").
 * Note: werf v1.1 itself prefers $WERF_HOME over its --home-dir option; we let the explicit
 * option win. Returns 0; -ENAMETOOLONG when it does not fit in n; -ENOENT when no home directory
 * is known. Reads the environment: not safe against a concurrent setenv(). */
int werf_home(const char *opt_home, char *ret, size_t n, struct sf_err *err);

/* ---- host locks ---- */

/* MurmurHash3 x86 32-bit of len bytes with seed (libmurmurhash). Pure. */
uint32_t werf_murmur3_32(const void *data, size_t len, uint32_t seed);

/* The file name werf uses for lock `name`: murmur3 (seed 0) of its bytes as lowercase hex
 * without zero padding (lockgate util.MurmurHash with LegacyHashFunction, as werf v1.1 sets).
 * "hello" -> "248bfa47". Pure. */
void werf_lock_file_name(const char *name, char ret[WERF_LOCK_FILE_NAME_SIZE]);

/* Lock names for a project: "PROJECT.stages_and_images" and
 * "stages_switch_from_local_block.PROJECT" into ret (n bytes). 0, or -ENAMETOOLONG. */
int werf_lock_name_stages_and_images(const char *project, char *ret, size_t n);
int werf_lock_name_block(const char *project, char *ret, size_t n);

enum werf_lock_mode {
	WERF_LOCK_SHARED,    /* flock LOCK_SH: builds, `stages sync` */
	WERF_LOCK_EXCLUSIVE, /* flock LOCK_EX: switch, cleanup, purge, block file, stage cache */
};

/* Called while waiting for a lock another process holds: first with waited_ms == 0 (say
 * "waiting for builds..." then), then before every further poll. A non-zero return stops the
 * wait: werf_lock_acquire returns -ECANCELED. name is the lock name. */
typedef int werf_lock_wait_fn(const char *name, long waited_ms, void *userdata);

struct werf_lock; /* an open lock file holding the lock; owned by the caller */

/* Take werf's host lock `name` in mode: flock(2) on HOME/service/locks/<werf_lock_file_name>,
 * the file opened O_RDONLY|O_CREAT|O_CLOEXEC with mode 0600 (never deleted), the directories
 * made 0755 when missing, exactly as werf's lockgate does. Polls with LOCK_NB (werf polls every
 * 500 ms; we start at 5 ms and back off to 100 ms).
 * timeout_ms: < 0 waits forever; 0 tries once; > 0 waits at most that long.
 * on_wait (may be NULL) is called as described above.
 * Returns 0 and *ret_lock (release with werf_lock_release); -ETIMEDOUT when the lock stayed
 * held past timeout_ms; -ECANCELED when on_wait said stop; -ENAMETOOLONG; -errno of mkdir/open/
 * flock (e.g. -EACCES on a read-only home).
 * flock belongs to the open file description: two acquires in one process (any threads)
 * exclude each other like two processes, and a process holding a lock shared cannot upgrade it
 * (asking exclusive again waits for itself). A child made by fork() shares the description:
 * release in the parent drops the lock for both. Safe to call from any thread. */
int werf_lock_acquire(const char *home, const char *name, enum werf_lock_mode mode, long timeout_ms,
		      werf_lock_wait_fn *on_wait, void *userdata, struct werf_lock **ret_lock,
		      struct sf_err *err);

/* Unlock (LOCK_UN, as werf) and close; frees lock. NULL is a no-op. */
void werf_lock_release(struct werf_lock *lock);

/* ---- the switch block file: HOME/service/stages_switch_from_local_block/PROJECT ---- */

/* The block's repository (werf trims surrounding whitespace, so do we) into *ret_repo, a new
 * string the caller frees. Takes the block lock EXCLUSIVE while reading, as werf's
 * UseStagesStorage does (lockgate.AcquireOptions{} = exclusive), waiting up to
 * WERF_BLOCK_LOCK_TIMEOUT_MS. Returns 0; -ENOENT when the file is absent or holds only
 * whitespace (no block); -EINVAL for an invalid project name; -EFBIG when over WERF_BLOCK_MAX;
 * -ETIMEDOUT on the lock; -errno of open/read. */
int werf_block_read(const char *home, const char *project, char **ret_repo, struct sf_err *err);

/* Write the block: content repo + "\n", mode 0644 whatever the umask, directories made with
 * werf's mode (0777 minus umask) when missing, atomically (a temporary .PROJECT.XXXXXX in the
 * same directory, fsync, rename, fsync of the directory), under the block lock (exclusive, as
 * werf's SetStagesSwitchFromLocalBlock). Overwrites an existing block (checking it first is
 * the caller's job). -EINVAL for an invalid project or a repo that is empty or contains
 * whitespace or control characters; -ETIMEDOUT on the lock; -errno of the file calls. */
int werf_block_write(const char *home, const char *project, const char *repo, struct sf_err *err);

/* Remove the block file under the block lock (the guide's rollback `rm`). Returns 1 when it was
 * removed, 0 when there was none; -EINVAL, -ETIMEDOUT, -errno of unlink otherwise. */
int werf_block_remove(const char *home, const char *project, struct sf_err *err);

/* Cheap check for every write in a `:local` mount: 1 when the block file exists and holds a
 * non-whitespace byte, 0 when not (absent, empty, or the project name is invalid), -errno when
 * it cannot be read (-EISDIR, -EACCES, -EIO, ...; a caller should then refuse changes).
 * One open + read of at most WERF_BLOCK_MAX bytes, no allocation, and NO lock: a FUSE thread
 * must never wait on the block lock, which stagectl holds while it may write through the
 * mount, and must not sleep through lock polls. Reading without the lock is safe because the
 * file only ever goes absent -> complete (ours: rename) or absent -> empty -> complete (werf's
 * WriteFile, run only when no block exists); a read in between sees "no block", the state
 * before. Thread-safe. */
int werf_block_active(const char *home, const char *project);

/* ---- werf's file stage cache (werf-stages.md section 8) ---- */

/* Drop the entries of the n stages (SIGNATURE-UNIQUEID names) from werf's stage cache files
 * HOME/shared_context/storage/stages_storage_cache/1/PROJECT/SIGNATURE, JSON
 * {"stages":[{"signature":"...","uniqueID":N},...]}. Each changed file is rewritten the way
 * werf marshals it (compact, other entries in their order, then "\n"), keeping its mode,
 * atomically (temporary file in the cache root, not in the project directory werf lists, then
 * rename); a file left with no entry is removed, as werf's own DeleteStagesBySignature does
 * (an empty list would tell werf "no stage has this signature" instead of asking the storage).
 * Absent files and files werf could not parse either are left alone. Takes werf's stage cache
 * lock (the cache directory's path as lock name, exclusive) around all edits, as werf's
 * FileStagesStorageCache does. Returns the number of entries removed; -EINVAL for an invalid
 * project or stage name; -EFBIG for a cache file over WERF_STAGE_CACHE_FILE_MAX; -ETIMEDOUT
 * (WERF_BLOCK_LOCK_TIMEOUT_MS) on the lock; -errno of the file calls. */
int werf_stage_cache_forget(const char *home, const char *project, const char *const *stages,
			    size_t n, struct sf_err *err);

/* ---- stage images ---- */

/* 0 when the image config JSON (len bytes) carries config.Labels werf=PROJECT and
 * werf-cache-version=1.1, the two labels werf lists `:local` stages by; else -EINVAL with the
 * reason in err (not JSON, no labels, label missing, wrong value). Pure, thread-safe. */
int werf_check_stage_config(const char *config_json, size_t len, const char *project,
			    struct sf_err *err);
