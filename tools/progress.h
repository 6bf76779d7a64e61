/* progress: what a long sync shows on stderr.
 *
 * On a terminal (stderr is a tty and TERM is not "dumb"): one bar redrawn every 200 ms by its
 * own thread, with stages done/total, bytes copied, rate and ETA; finished-stage failures are
 * printed above it. Otherwise one line per finished stage, like werf's `%5d/%d synced`:
 * "%5zu/%zu synced PROJECT/STAGE" or "%5zu/%zu failed PROJECT/STAGE: reason".
 * $STAGECTL_PROGRESS=bars|lines|none overrides the choice. All functions are thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress;

/* total stages to go through; verb ("synced", "verified") for the line mode. NULL on no memory
 * (callers then go on without progress: every function takes NULL). */
struct progress *progress_new(size_t total, const char *verb);

/* n more bytes copied. */
void progress_bytes(struct progress *p, uint64_t n);

/* A stage finished: error NULL when it went well, else the reason. name is "PROJECT/STAGE". */
void progress_stage(struct progress *p, const char *name, const char *error);

/* Stop the bar (final redraw and newline) and free. */
void progress_free(struct progress *p);
