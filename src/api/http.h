/* HTTP/1.1 over a Unix socket, on its own thread: the transport of kite's
 * Firecracker-compatible API. Parsing is libhttp-parser's; this file only moves
 * bytes, bounds them, and hands each complete request to one handler. */
#ifndef KITE_HTTP_H
#define KITE_HTTP_H

#include <stddef.h>

#include "util/log.h"

#define HTTP_MAX_BODY 51200 /* Firecracker's default payload limit */
#define HTTP_MAX_URL 1024
#define HTTP_MAX_CLIENTS 64

struct http_request {
	const char *method; /* "GET", "PUT", "PATCH", ... */
	const char *path;   /* without query string */
	const char *body;   /* NUL-terminated, may be empty */
	size_t body_len;
};

struct http_response {
	int status;  /* 200, 204, 400, ... */
	char *body;  /* malloc'd JSON, or NULL */
};

/* Runs on the API thread; must not block on vCPUs for long. */
typedef void (*http_handler)(void *ctx, const struct http_request *req, struct http_response *resp);

struct http_server;

/* Binds PATH (which must not exist), listens, starts the thread. */
struct http_server *http_server_start(const char *path, http_handler handler, void *ctx,
				      struct kite_err *err);
/* Stops the thread, closes clients, unlinks the socket. */
void http_server_stop(struct http_server *s);

/* {"fault_message": "..."} as a malloc'd string. */
char *http_fault_body(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
