#include "name.h"

#include <errno.h>
#include <string.h>

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static bool all_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_lower_hex(s[i]))
			return false;
	return true;
}

int name_stage_parse(const char *name, char ret_signature[NAME_SIGNATURE_LEN + 1],
		     uint64_t *ret_unique_ms)
{
	const char *dash, *p;
	uint64_t ms = 0;

	if (!name)
		return -EINVAL;
	dash = strchr(name, '-');
	if (!dash || dash - name != NAME_SIGNATURE_LEN || !all_lower_hex(name, NAME_SIGNATURE_LEN))
		return -EINVAL;
	p = dash + 1;
	if (*p == '\0' || strlen(p) > 19 || (p[0] == '0' && p[1] != '\0'))
		return -EINVAL;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		if (ms > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -EINVAL;
		ms = ms * 10 + (uint64_t)(*p - '0');
	}
	if (ret_signature) {
		memcpy(ret_signature, name, NAME_SIGNATURE_LEN);
		ret_signature[NAME_SIGNATURE_LEN] = '\0';
	}
	if (ret_unique_ms)
		*ret_unique_ms = ms;
	return 0;
}

bool name_project_valid(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	if (n == 0 || n > NAME_PROJECT_MAX || name[0] == '-' || name[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

bool name_digest_valid(const char *digest)
{
	return digest && strncmp(digest, "sha256:", 7) == 0 && name_hex64_valid(digest + 7);
}

bool name_hex64_valid(const char *hex)
{
	return hex && strlen(hex) == 64 && all_lower_hex(hex, 64);
}
