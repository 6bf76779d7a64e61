/* pool: run fn(i) for i in [0, n) on up to `jobs` threads, the caller's included (a shared
 * counter hands out work in order). Returns when all ran. fn must be thread-safe. */
#pragma once

#include <stddef.h>

typedef void pool_fn(size_t i, void *userdata);

void pool_run(size_t n, int jobs, pool_fn *fn, void *userdata);
