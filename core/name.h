/* name: werf's names, validated strictly.
 *
 * Stage names are SIGNATURE-UNIQUEID: 56 lowercase hex (SHA3-224), '-', then the creation time
 * in Unix milliseconds as plain decimal (no sign, no leading zero, at most 19 digits). A tag is
 * split on the FIRST '-'. Project names follow werf: ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$, <= 50.
 * Pure functions, no allocation, thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NAME_SIGNATURE_LEN 56
#define NAME_STAGE_MAX (NAME_SIGNATURE_LEN + 1 + 19)
#define NAME_PROJECT_MAX 50

/* 0 and the parts when name is a stage name; -EINVAL otherwise. ret_* may be NULL. */
int name_stage_parse(const char *name, char ret_signature[NAME_SIGNATURE_LEN + 1],
		     uint64_t *ret_unique_ms);

static inline bool name_is_stage(const char *name)
{
	return name_stage_parse(name, NULL, NULL) == 0;
}

bool name_project_valid(const char *name);

/* True for "sha256:" + 64 lowercase hex. */
bool name_digest_valid(const char *digest);

/* True for 64 lowercase hex (a blob file name under blobs/sha256/). */
bool name_hex64_valid(const char *hex);
