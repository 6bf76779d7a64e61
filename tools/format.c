/* format: sizes, durations, times and progress lines. */
#include "format.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

const char *format_size(uint64_t bytes, char *buf, size_t n)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;

	/* 1023.96 KiB would print as "1024.0 KiB": that is the next unit */
	while (u < 4 && (v >= 1024 || (u > 0 && v >= 1023.95))) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, n, "%.1f %s", v, unit[u]);
	return buf;
}

const char *format_duration(double s, char *buf, size_t n)
{
	if (!isfinite(s) || s < 0 || s > 1e12) {
		snprintf(buf, n, "--");
		return buf;
	}
	long long t = (long long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, n, "%lldh%02lldm", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
	else
		snprintf(buf, n, "%llds", t);
	return buf;
}

const char *format_time_ms(uint64_t ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, n, "-");
	return buf;
}

const char *format_bar(char *buf, size_t n, size_t done, size_t total, uint64_t bytes,
		       double elapsed_s, size_t failed)
{
	char bar[31], sz[32], rate[32], eta[32] = "--", tail[48] = "";
	size_t fill = total && done < total ? done * 30 / total : 30;

	for (size_t i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '-';
	bar[30] = '\0';
	format_size(elapsed_s >= 0.05 ? (uint64_t)((double)bytes / elapsed_s) : 0, rate,
		    sizeof(rate));
	if (done >= total)
		format_duration(elapsed_s, eta, sizeof(eta));
	else if (done > 0)
		format_duration(elapsed_s * (double)(total - done) / (double)done, eta,
				sizeof(eta));
	if (failed)
		snprintf(tail, sizeof(tail), "  FAILED: %zu", failed);
	snprintf(buf, n, "[%s] %zu/%zu stages  %s  %s/s  %s %s%s", bar, done, total,
		 format_size(bytes, sz, sizeof(sz)), rate, done >= total ? "in" : "ETA", eta, tail);
	return buf;
}

const char *format_stage_line(char *buf, size_t n, size_t done, size_t total, const char *verb,
			      const char *name, const char *error)
{
	if (error)
		snprintf(buf, n, "%5zu/%zu failed %s: %s", done, total, name, error);
	else
		snprintf(buf, n, "%5zu/%zu %s %s", done, total, verb, name);
	return buf;
}
