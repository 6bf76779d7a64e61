/* addr: werf stages storage addresses.
 *
 * ":local" is the host's Docker daemon. Anything else is a registry repository written as
 * Docker writes references: HOST[:PORT]/PATH, no tag, no digest. A first component without '.'
 * or ':' that is not "localhost" means Docker Hub, as in Docker (one-component paths get
 * "library/"). Parsing is strict: the result is either fully valid or -EINVAL with a reason.
 * The struct owns its strings; addr_done() frees them.
 */
#pragma once

#include <stdbool.h>

#include "err.h"

struct addr {
	bool local;
	char *host;	/* as written, with port: "registry.example.com:5000" (API host for Hub) */
	char *hostname; /* without port; IPv6 without brackets */
	int port;	/* 0 when not given */
	char *repo;	/* "web/catalog/myproject/stages" */
};

int addr_parse(const char *text, struct addr *ret, struct sf_err *err);
void addr_done(struct addr *a);

/* True when the host is loopback (localhost, 127.0.0.0/8, ::1): HTTP allowed as in Docker. */
bool addr_is_loopback(const struct addr *a);
