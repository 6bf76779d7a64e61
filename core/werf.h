/* werf: placeholder until the werf module lands. */
#pragma once
#include <stdbool.h>
bool werf_block_active(const char *home, const char *project);
