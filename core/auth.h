/* auth: registry credentials and challenges.
 *
 * Credentials come from Docker's config.json in the given directory, looked up as Docker does:
 * credHelpers[host], then credsStore, then auths[host] (base64 "user:password" in "auth", or
 * "username"/"password", or "identitytoken"). Helpers are run as `docker-credential-NAME get`
 * with the server address on stdin (their output is capped at 64 KiB, 10 s).
 * A challenge comes from WWW-Authenticate: Basic, or Bearer with realm/service/scope.
 * Token fetch follows the Docker token spec (GET realm?service=..&scope=.., optional Basic).
 * All returned structs own their strings; *_done() frees. Thread-safe (no shared state).
 */
#pragma once

#include <stdbool.h>
#include <time.h>

#include "err.h"
#include "http.h"

struct auth_cred {
	char *username;
	char *password;
	char *identity_token; /* OAuth refresh token from `docker login` with identity tokens */
};

/* 0 with ret filled, -ENOENT when config has nothing for host, other -errno on bad config. */
int auth_lookup(const char *docker_config_dir, const char *host, struct auth_cred *ret,
		struct sf_err *err);
void auth_cred_done(struct auth_cred *c);

enum auth_scheme { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct auth_challenge {
	enum auth_scheme scheme;
	char *realm;
	char *service;
	char *scope;
};

/* Parse a WWW-Authenticate field value, every line of it combined with ", " (http.h): a list
 * of challenges as RFC 9110 section 11.6.1 writes them (auth-scheme, then token68 or
 * auth-params with token or quoted-string values, commas between challenges and params; an
 * unquoted value is taken up to a comma or whitespace, as registries write URLs unquoted).
 * Every challenge is read; the one returned is the first Bearer with an http(s) realm, else the
 * first Basic given with params or none. -EINVAL on a syntax error anywhere in the value, or
 * when no challenge is usable (only Negotiate, NTLM, Digest...). A parameter value holds at
 * most 8192 bytes. */
int auth_parse_challenge(const char *value, struct auth_challenge *ret);
void auth_challenge_done(struct auth_challenge *c);

/* "Basic base64(user:password)"; caller frees. */
char *auth_basic_header(const struct auth_cred *c);

/* Ask the token server for a Bearer token for scope. Returns "Bearer TOKEN" in ret_header and
 * the time it expires (monotonic seconds). */
int auth_fetch_token(struct http_client *http, const struct auth_challenge *ch, const char *scope,
		     const struct auth_cred *cred, char **ret_header, time_t *ret_expires,
		     struct sf_err *err);

/* Base64 (standard alphabet, padded). Caller frees. Exposed for tests. */
char *auth_base64_encode(const void *data, size_t len);
/* Decode; -EINVAL on bad input. */
int auth_base64_decode(const char *text, unsigned char **ret, size_t *ret_len);

/* Seconds of CLOCK_MONOTONIC. */
time_t auth_now(void);
