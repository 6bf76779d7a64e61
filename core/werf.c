#include "werf.h"
#include <stdio.h>
#include <sys/stat.h>
bool werf_block_active(const char *home, const char *project)
{
	char path[4096];
	struct stat st;
	snprintf(path, sizeof(path), "%s/service/stages_switch_from_local_block/%s", home, project);
	return stat(path, &st) == 0 && st.st_size > 0;
}
