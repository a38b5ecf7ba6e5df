#include "api/http.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct client {
	int fd;
	http_parser parser;
	char url[HTTP_MAX_URL + 1];
	size_t url_len;
	char *body; /* HTTP_MAX_BODY + 1 bytes */
	size_t body_len;
	char *out;  /* pending response bytes */
	size_t out_len, out_off;
	bool fault;  /* a request was refused as malformed: close after replying */
	bool close_after; /* Connection: close, or HTTP/1.0 without keep-alive */
	bool eof;    /* the client half-closed: reply to what it sent, then close */
	bool waiting_out; /* EPOLLOUT armed: the socket was full */
	struct http_server *srv;
};

struct http_server {
	int listen_fd, epoll_fd, stop_fd;
	char path[108];
	pthread_t thread;
	http_handler handler;
	void *ctx;
	http_parser_settings settings;
	struct client *clients[HTTP_MAX_CLIENTS];
};

char *http_fault_body(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:s}", "fault_message", msg);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 500: return "Internal Server Error";
	default: return "Unknown";
	}
}

static void queue_response(struct client *c, const struct http_response *r)
{
	size_t blen = r->body ? strlen(r->body) : 0;
	char head[256];
	int hlen;
	if (r->status == 204)
		hlen = snprintf(head, sizeof(head), "HTTP/1.1 204 No Content\r\nServer: kite API\r\n\r\n");
	else
		hlen = snprintf(head, sizeof(head),
				"HTTP/1.1 %d %s\r\nServer: kite API\r\nContent-Type: application/json\r\n"
				"Content-Length: %zu\r\n\r\n",
				r->status, reason(r->status), blen);
	size_t need = c->out_len + (size_t)hlen + blen;
	char *n = realloc(c->out, need);
	if (!n)
		return; /* the client gets no answer; the connection will be closed */
	c->out = n;
	memcpy(c->out + c->out_len, head, (size_t)hlen);
	if (blen)
		memcpy(c->out + c->out_len + hlen, r->body, blen);
	c->out_len = need;
}

static void reply_fault(struct client *c, const char *fmt, const char *arg)
{
	struct http_response r = {.status = 400, .body = http_fault_body(fmt, arg)};
	queue_response(c, &r);
	free(r.body);
	c->fault = true;
}

/* ---- http_parser callbacks ---- */

static int on_message_begin(http_parser *p)
{
	struct client *c = p->data;
	c->url_len = 0;
	c->body_len = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct client *c = p->data;
	if (len > HTTP_MAX_URL - c->url_len) {
		reply_fault(c, "%s", "Request URI is too long.");
		return -1;
	}
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct client *c = p->data;
	/* Refuse a declared oversized body before reading it. */
	if (p->content_length != ULLONG_MAX && p->content_length > HTTP_MAX_BODY) {
		char msg[160];
		snprintf(msg, sizeof(msg),
			 "Request payload with size %llu is larger than the limit of %d allowed by server.",
			 (unsigned long long)p->content_length, HTTP_MAX_BODY);
		reply_fault(c, "%s", msg);
		return -1;
	}
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct client *c = p->data;
	if (len > HTTP_MAX_BODY - c->body_len) {
		char msg[160];
		snprintf(msg, sizeof(msg), "Request payload is larger than the limit of %d allowed by server.",
			 HTTP_MAX_BODY);
		reply_fault(c, "%s", msg);
		return -1;
	}
	memcpy(c->body + c->body_len, at, len);
	c->body_len += len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct client *c = p->data;
	c->url[c->url_len] = 0;
	c->body[c->body_len] = 0;
	struct http_parser_url u;
	http_parser_url_init(&u);
	char path[HTTP_MAX_URL + 1];
	if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
		reply_fault(c, "Invalid request URI: %s", c->url);
		return -1;
	}
	size_t plen = u.field_data[UF_PATH].len;
	memcpy(path, c->url + u.field_data[UF_PATH].off, plen);
	path[plen] = 0;
	struct http_request req = {
		.method = http_method_str((enum http_method)p->method),
		.path = path,
		.body = c->body,
		.body_len = c->body_len,
	};
	struct http_response resp = {.status = 500};
	c->srv->handler(c->srv->ctx, &req, &resp);
	queue_response(c, &resp);
	free(resp.body);
	if (!http_should_keep_alive(p))
		c->close_after = true;
	return 0;
}

/* ---- connections ---- */

static void client_close(struct http_server *s, int slot)
{
	struct client *c = s->clients[slot];
	if (!c)
		return;
	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->body);
	free(c->out);
	free(c);
	s->clients[slot] = NULL;
}

static void client_accept(struct http_server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int slot = -1;
		for (int i = 0; i < HTTP_MAX_CLIENTS && slot < 0; i++)
			if (!s->clients[i])
				slot = i;
		struct client *c = slot >= 0 ? calloc(1, sizeof(*c)) : NULL;
		char *body = c ? malloc(HTTP_MAX_BODY + 1) : NULL;
		if (!body) {
			/* Too many clients or no memory: refuse this one, keep serving. */
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->body = body;
		c->srv = s;
		http_parser_init(&c->parser, HTTP_REQUEST);
		c->parser.data = c;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)slot};
		if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(body);
			free(c);
			continue;
		}
		s->clients[slot] = c;
	}
}

/* Writes what is pending; returns -1 when the connection is done for. */
static int client_flush(struct http_server *s, int slot)
{
	struct client *c = s->clients[slot];
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->waiting_out) {
				struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
							 .data.u32 = (uint32_t)slot};
				epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
				c->waiting_out = true;
			}
			return 0;
		}
		if (n <= 0)
			return -1;
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	if (c->waiting_out) {
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)slot};
		epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
		c->waiting_out = false;
	}
	return (c->fault || c->close_after || c->eof) ? -1 : 0;
}

/* Parses one read's worth; -1 once the connection is refused as malformed. */
static int feed(struct http_server *s, struct client *c, const char *buf, size_t n)
{
	while (n > 0) {
		size_t done = http_parser_execute(&c->parser, &s->settings, buf, n);
		if (c->parser.http_errno != HPE_OK) {
			if (!c->fault)
				reply_fault(c, "Malformed HTTP request: %s",
					    http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
			return -1;
		}
		if (c->parser.upgrade && done > 0) {
			/* kite speaks only HTTP/1.1: an Upgrade request was answered like
			 * any other, and what follows is the next request. */
			http_parser_init(&c->parser, HTTP_REQUEST);
			c->parser.data = c;
		} else if (done != n) {
			if (!c->fault)
				reply_fault(c, "%s", "Malformed HTTP request.");
			return -1;
		}
		buf += done;
		n -= done;
	}
	return 0;
}

static void client_input(struct http_server *s, int slot)
{
	struct client *c = s->clients[slot];
	char buf[4096];
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* End of input (or an error): answer what already arrived, then close. */
			c->eof = true;
			break;
		}
		if (feed(s, c, buf, (size_t)n) < 0)
			break;
	}
	if (client_flush(s, slot) < 0)
		client_close(s, slot);
}

static void *server_thread(void *arg)
{
	struct http_server *s = arg;
	struct epoll_event evs[16];
	for (;;) {
		int n = epoll_wait(s->epoll_fd, evs, 16, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (int i = 0; i < n; i++) {
			uint32_t id = evs[i].data.u32;
			if (id == UINT32_MAX - 1)
				return NULL; /* stop */
			if (id == UINT32_MAX) {
				client_accept(s);
				continue;
			}
			if (id >= HTTP_MAX_CLIENTS || !s->clients[id])
				continue;
			if (evs[i].events & EPOLLIN)
				client_input(s, (int)id);
			else if (evs[i].events & EPOLLOUT) {
				if (client_flush(s, (int)id) < 0)
					client_close(s, (int)id);
			} else if (evs[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP))
				client_close(s, (int)id);
		}
	}
	return NULL;
}

struct http_server *http_server_start(const char *path, http_handler handler, void *ctx,
				      struct kite_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		err_set(err, KITE_EXIT_USAGE, "--api-sock '%s': path too long for a Unix socket", path);
		return NULL;
	}
	struct http_server *s = calloc(1, sizeof(*s));
	if (!s) {
		err_set(err, KITE_EXIT_ERROR, "out of memory");
		return NULL;
	}
	s->listen_fd = s->epoll_fd = s->stop_fd = -1;
	s->handler = handler;
	s->ctx = ctx;
	snprintf(s->path, sizeof(s->path), "%s", path);
	memcpy(sa.sun_path, path, strlen(path));
	http_parser_settings_init(&s->settings);
	s->settings.on_message_begin = on_message_begin;
	s->settings.on_url = on_url;
	s->settings.on_headers_complete = on_headers_complete;
	s->settings.on_body = on_body;
	s->settings.on_message_complete = on_message_complete;

	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err_set(err, KITE_EXIT_USAGE, "--api-sock '%s': %s", path, strerror(errno));
		goto fail;
	}
	if (listen(s->listen_fd, 64) < 0) {
		err_set(err, KITE_EXIT_ERROR, "--api-sock '%s': listen: %s", path, strerror(errno));
		goto fail_unlink;
	}
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event lev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX - 1};
	if (s->epoll_fd < 0 || s->stop_fd < 0 ||
	    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &lev) < 0 ||
	    epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->stop_fd, &sev) < 0) {
		err_set(err, KITE_EXIT_ERROR, "API server: %s", strerror(errno));
		goto fail_unlink;
	}
	if (pthread_create(&s->thread, NULL, server_thread, s) != 0) {
		err_set(err, KITE_EXIT_ERROR, "API server: cannot start its thread");
		goto fail_unlink;
	}
	return s;
fail_unlink:
	unlink(s->path);
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s);
	return NULL;
}

void http_server_stop(struct http_server *s)
{
	if (!s)
		return;
	uint64_t one = 1;
	if (write(s->stop_fd, &one, sizeof(one)) == (ssize_t)sizeof(one))
		pthread_join(s->thread, NULL);
	for (int i = 0; i < HTTP_MAX_CLIENTS; i++)
		client_close(s, i);
	close(s->listen_fd);
	close(s->epoll_fd);
	close(s->stop_fd);
	unlink(s->path);
	free(s);
}
