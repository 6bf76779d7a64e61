/* interrupt: SIGINT and SIGTERM turned into a flag that long work polls, so stagectl always
 * gets to unmount what it mounted. Async-signal-safe handler; the flag is read from any thread.
 */
#pragma once

#include <stdbool.h>

/* Install the handlers (SA_RESTART: blocking calls finish, loops poll the flag). Call once,
 * before starting threads. */
void interrupt_install(void);

/* True once SIGINT or SIGTERM arrived. */
bool interrupt_requested(void);

/* The signal that arrived (SIGINT, SIGTERM), 0 when none. */
int interrupt_signal(void);
