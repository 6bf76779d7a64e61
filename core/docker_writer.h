/* docker_writer: the write side of the :local storage (DESIGN.md section 4.3): a stage committed
 * into the Docker daemon, and a stage removed from it.
 *
 * Commit builds a classic `docker save` archive (manifest.json, CONFIGHEX.json, one
 * LAYERHEX/layer.tar per layer) on the fly from the verified blob files (core/tar_writer.h: no
 * temporary archive) and streams it to POST /images/load, tagged
 * werf-stages-storage/PROJECT:STAGE. That format loads on every Docker version (before 25 an
 * OCI-layout archive is refused; with the containerd image store too). gzip layers are loaded
 * as they are (Docker decompresses them); zstd layers are refused (Docker before 23 cannot read
 * them). The config must carry werf's labels for the project (werf.h), or werf would never see
 * the stage. An image index is refused: Docker 20.10 cannot load one.
 * Docker's load moves an existing tag silently: the tag is checked first (same image ID: nothing
 * to do; another: -EEXIST), and the loaded image ID is checked after.
 * Thread-safe: each writer is used by one commit; many writers may run at once.
 */
#pragma once

#include "docker.h"
#include "storage.h"

/* A writer for stage of project (both checked by the caller). d is borrowed and must outlive
 * the writer. -ENOMEM only. */
int docker_writer_new(struct docker *d, const char *project, const char *stage,
		      struct stage_writer **ret, struct sf_err *err);

/* Untag werf-stages-storage/PROJECT:STAGE (never forced: an image that another tag holds
 * stays). -ENOENT when there is no such stage; -EBUSY when a container uses the image. */
int docker_writer_remove(struct docker *d, const char *project, const char *stage,
			 struct sf_err *err);
