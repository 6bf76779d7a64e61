/* progress: bars on a terminal, one line per stage elsewhere. */
#include "progress.h"

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

const char *progress_size(uint64_t bytes, char *buf, size_t n)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, n, "%.1f %s", v, unit[u]);
	return buf;
}

static void fmt_duration(double s, char *buf, size_t n)
{
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, n, "%lds", t);
}

/* Draw the bar (lock held). */
static void draw(struct progress *p)
{
	char bar[31], sz[32], rate[32], eta[32] = "--";
	double el = now_s() - p->start;
	uint64_t b = atomic_load(&p->bytes);
	size_t fill = p->total ? p->done * 30 / p->total : 30;

	for (size_t i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '-';
	bar[30] = '\0';
	progress_size(el > 0.05 ? (uint64_t)((double)b / el) : 0, rate, sizeof(rate));
	if (p->done > 0 && p->done < p->total)
		fmt_duration(el * (double)(p->total - p->done) / (double)p->done, eta, sizeof(eta));
	else if (p->done == p->total)
		fmt_duration(el, eta, sizeof(eta));
	fprintf(stderr, "\r\033[K[%s] %zu/%zu stages  %s  %s/s  %s %s%s", bar, p->done, p->total,
		progress_size(b, sz, sizeof(sz)), rate, p->done == p->total ? "in" : "ETA", eta,
		p->failed ? "  FAILED: " : "");
	if (p->failed)
		fprintf(stderr, "%zu", p->failed);
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
		if (error)
			fprintf(stderr, "%5zu/%zu failed %s: %s\n", p->done, p->total, name, error);
		else
			fprintf(stderr, "%5zu/%zu %s %s\n", p->done, p->total, p->verb, name);
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
