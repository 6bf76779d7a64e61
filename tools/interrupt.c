/* interrupt: the Ctrl-C / SIGTERM flag. */
#include "interrupt.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	static const char msg[] = "\nstagectl: interrupted; finishing the current files and "
				  "unmounting (the storages stay consistent)\n";
	if (!got_signal) {
		got_signal = sig;
		ssize_t r = write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)r;
	}
}

void interrupt_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

bool interrupt_requested(void)
{
	return got_signal != 0;
}

int interrupt_signal(void)
{
	return got_signal;
}
