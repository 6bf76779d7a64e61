/* pool: a tiny parallel for. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct pool {
	size_t n;
	_Atomic size_t next;
	pool_fn *fn;
	void *userdata;
};

static void *work(void *arg)
{
	struct pool *p = arg;
	for (size_t i; (i = atomic_fetch_add(&p->next, 1)) < p->n;)
		p->fn(i, p->userdata);
	return NULL;
}

void pool_run(size_t n, int jobs, pool_fn *fn, void *userdata)
{
	struct pool p = {.n = n, .fn = fn, .userdata = userdata};
	pthread_t *th;
	int started = 0;

	if (jobs < 1)
		jobs = 1;
	if ((size_t)jobs > n)
		jobs = (int)n;
	/* the calling thread is one of the jobs */
	th = jobs > 1 ? calloc((size_t)jobs - 1, sizeof(*th)) : NULL;
	if (th)
		for (; started < jobs - 1; started++)
			if (pthread_create(&th[started], NULL, work, &p) != 0)
				break;
	work(&p);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	free(th);
}
