/* format: the text stagectl prints, as pure functions (no I/O, no global state), so that the
 * exact strings are unit-tested (tests/unit/test_stagectl.c). Every function writes at most n
 * bytes (NUL included) into buf, truncating, and returns buf. Thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* A size in binary units: "0 B", "1023 B", "1.0 KiB", "1.5 MiB", up to TiB; one decimal, never
 * "1024.0 KiB" (that is "1.0 MiB"). */
const char *format_size(uint64_t bytes, char *buf, size_t n);

/* A duration rounded to whole seconds: "0s", "59s", "1m00s", "59m59s", "1h00m", "100h00m";
 * "--" for a negative, NaN or infinite value. */
const char *format_duration(double seconds, char *buf, size_t n);

/* Milliseconds since the epoch as UTC ISO 8601 to the second: "2020-09-13T12:28:11Z". */
const char *format_time_ms(uint64_t ms, char *buf, size_t n);

/* The progress bar's line (without the terminal's "\r\033[K"):
 * "[#########---------------------] 3/10 stages  1.5 MiB  512.0 KiB/s  ETA 7s" while running
 * ("ETA --" before the first stage finishes), "... in 12s" once done == total, then
 * "  FAILED: N" when failed > 0. The bar has 30 cells, done * 30 / total of them '#'. The rate
 * is bytes / elapsed ("0 B/s" below 50 ms); the ETA is elapsed * (total - done) / done. */
const char *format_bar(char *buf, size_t n, size_t done, size_t total, uint64_t bytes,
		       double elapsed_s, size_t failed);

/* The line mode's line for a finished stage, like werf's `%5d/%d synced`, without newline:
 * "    3/10 synced PROJECT/STAGE" (verb as given), or "    3/10 failed PROJECT/STAGE: error". */
const char *format_stage_line(char *buf, size_t n, size_t done, size_t total, const char *verb,
			      const char *name, const char *error);
