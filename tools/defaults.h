/* defaults: where stagectl finds what the command line leaves out (DESIGN.md section 6): the
 * project from werf.yaml and the repository from werf's environment. Pure except
 * defaults_project (reads a file); thread-safe.
 */
#pragma once

#include <stddef.h>

/* The `project:` of werf.yaml text (the meta document's top-level key; werf.yaml may hold
 * several YAML documents separated by "---"): the first line of any document that starts at
 * column 0 with `project:` (or a quoted "project"/'project' key), its value plain, "double"
 * or 'single' quoted, with an optional trailing "# comment". Indented lines (nested keys, block
 * scalars), comment lines, document markers and a UTF-8 byte order mark are skipped; CRLF line
 * ends are accepted. Writes the name into ret (n bytes). Returns 0; -ENOENT when no such key;
 * -EINVAL when the value is empty, unterminated, a template ({{ ... }}) or not a werf project
 * name (name_project_valid), or longer than n - 1. */
int defaults_project_parse(const char *text, size_t len, char *ret, size_t n);

/* The same for DIR/werf.yaml, else DIR/werf.yml (dir NULL: the current directory), read up to
 * 1 MiB. Returns 0; -ENOENT when neither file exists or has the key; -EINVAL as above; -EFBIG
 * past 1 MiB; -errno of open/read. */
int defaults_project(const char *dir, char *ret, size_t n);

/* --to's default: stages_storage ($WERF_STAGES_STORAGE) when it is set, non-empty and not
 * ":local"; else ci_registry_image ($CI_REGISTRY_IMAGE) + "/stages" (as `werf ci-env` sets it),
 * written into buf (n bytes); else NULL (also when that does not fit). Either may be NULL. */
const char *defaults_repo(const char *stages_storage, const char *ci_registry_image, char *buf,
			  size_t n);
