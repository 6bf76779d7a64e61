/* progress: bars on a terminal, one line per stage elsewhere. */
#include "progress.h"

#include "format.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_NONE, MODE_LINES, MODE_BARS };

struct progress {
	enum mode mode;
	size_t total;
	const char *verb;
	_Atomic uint64_t bytes;
	size_t done;
	size_t failed;
	double start;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	bool drawn;
	pthread_t thread;
	bool has_thread;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Draw the bar (lock held). */
static void draw(struct progress *p)
{
	char line[256];

	format_bar(line, sizeof(line), p->done, p->total, atomic_load(&p->bytes),
		   now_s() - p->start, p->failed);
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
	p->drawn = true;
}

static void *ticker(void *arg)
{
	struct progress *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		draw(p);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct progress *progress_new(size_t total, const char *verb)
{
	struct progress *p = calloc(1, sizeof(*p));
	const char *force = getenv("STAGECTL_PROGRESS");
	const char *term = getenv("TERM");

	if (!p)
		return NULL;
	p->total = total;
	p->verb = verb;
	p->start = now_s();
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (force && strcmp(force, "none") == 0)
		p->mode = MODE_NONE;
	else if (force && strcmp(force, "bars") == 0)
		p->mode = MODE_BARS;
	else if (force && strcmp(force, "lines") == 0)
		p->mode = MODE_LINES;
	else
		p->mode = isatty(STDERR_FILENO) && !(term && strcmp(term, "dumb") == 0)
			      ? MODE_BARS
			      : MODE_LINES;
	if (p->mode == MODE_BARS && total > 0 && pthread_create(&p->thread, NULL, ticker, p) == 0)
		p->has_thread = true;
	return p;
}

void progress_bytes(struct progress *p, uint64_t n)
{
	if (p)
		atomic_fetch_add(&p->bytes, n);
}

void progress_stage(struct progress *p, const char *name, const char *error)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->done++;
	if (error)
		p->failed++;
	if (p->mode == MODE_LINES) {
		char line[8192];
		fprintf(
		    stderr, "%s\n",
		    format_stage_line(line, sizeof(line), p->done, p->total, p->verb, name, error));
	} else if (p->mode == MODE_BARS && error) {
		fprintf(stderr, "\r\033[Kfailed %s: %s\n", name, error);
		draw(p);
	}
	pthread_mutex_unlock(&p->lock);
}

void progress_free(struct progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->has_thread)
		pthread_join(p->thread, NULL);
	if (p->mode == MODE_BARS && p->total > 0) {
		draw(p);
		fputc('\n', stderr);
	}
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
