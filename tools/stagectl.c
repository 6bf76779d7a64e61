/* stagectl: werf's stages commands through stagefs mounts. Only `ls` for now. */
#include <stdio.h>
#include <string.h>

#include "config.h"

int main(int argc, char *argv[])
{
	if (argc > 1 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
		printf("stagectl %s\n", PACKAGE_VERSION);
		return 0;
	}
	fprintf(stderr,
		"stagectl: no commands yet (sync, switch-from-local, rollback come next)\n");
	return 2;
}
