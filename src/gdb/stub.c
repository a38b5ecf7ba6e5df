/* The gdb stub's connection side: the listening socket, one debugger at a time,
 * the packet loop and the commands. The target side (vCPUs, memory, breakpoints)
 * is target.c. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gdb/stub.h"
#include "vmm/vm.h"

/* ---- addresses ---- */

struct gdb_addr {
	bool is_unix;
	char host[256];
	char port[8];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static int addr_parse(const char *a, struct gdb_addr *out, char *msg, size_t msg_len)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(a, "unix:", 5) == 0) {
		const char *path = a + 5;
		if (!*path || strlen(path) >= sizeof(out->path)) {
			snprintf(msg, msg_len, "--gdb '%s': expected unix:PATH with a path of 1 to %zu bytes", a,
				 sizeof(out->path) - 1);
			return -1;
		}
		out->is_unix = true;
		snprintf(out->path, sizeof(out->path), "%s", path);
		return 0;
	}
	if (strncmp(a, "tcp:", 4) == 0) {
		const char *host = a + 4, *colon = strrchr(host, ':');
		if (colon && colon > host) {
			const char *h = host, *he = colon;
			if (*h == '[' && he[-1] == ']') { /* [v6 address] */
				h++;
				he--;
			}
			const char *port = colon + 1;
			size_t pl = strlen(port), hl = (size_t)(he - h);
			bool digits = pl > 0 && pl <= 5 && strspn(port, "0123456789") == pl;
			if (digits && atoi(port) <= 65535 && hl > 0 && hl < sizeof(out->host) &&
			    !memchr(h, '[', hl) && !memchr(h, ']', hl)) {
				memcpy(out->host, h, hl);
				snprintf(out->port, sizeof(out->port), "%s", port);
				return 0;
			}
		}
	}
	snprintf(msg, msg_len, "--gdb '%s': expected tcp:HOST:PORT or unix:PATH", a);
	return -1;
}

int gdb_addr_check(const char *addr, char *msg, size_t msg_len)
{
	struct gdb_addr a;
	return addr_parse(addr, &a, msg, msg_len);
}

static int listen_tcp(struct gdb_stub *s, const struct gdb_addr *a, struct kite_err *err)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res;
	int e = getaddrinfo(a->host, a->port, &hints, &res);
	if (e)
		return err_set(err, KITE_EXIT_ERROR, "gdb: address tcp:%s:%s: %s", a->host, a->port,
			       gai_strerror(e));
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1) < 0) {
		e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return err_set(err, KITE_EXIT_ERROR, "gdb: listen on tcp:%s:%s: %s", a->host, a->port,
			       strerror(e));
	}
	freeaddrinfo(res);
	/* Name the port actually bound (port 0 picks one). */
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(s->where, sizeof(s->where), strchr(host, ':') ? "tcp:[%s]:%s" : "tcp:%s:%s", host, port);
	s->listen_fd = fd;
	return 0;
}

static int listen_unix(struct gdb_stub *s, const struct gdb_addr *a, struct kite_err *err)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", a->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 1) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return err_set(err, KITE_EXIT_ERROR, "gdb: listen on unix:%s: %s", a->path, strerror(e));
	}
	snprintf(s->unix_path, sizeof(s->unix_path), "%s", a->path);
	snprintf(s->where, sizeof(s->where), "unix:%s", a->path);
	s->listen_fd = fd;
	return 0;
}

/* ---- sending ---- */

static void drop_client(struct gdb_stub *s);

static void send_raw(struct gdb_stub *s, const char *buf, size_t len)
{
	while (s->client_fd >= 0 && len) {
		ssize_t n = send(s->client_fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_warn("gdb: sending to the debugger: %s", n < 0 ? strerror(errno) : "closed");
			drop_client(s);
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void put_packet(struct gdb_stub *s, const void *data, size_t len)
{
	int n = gdb_frame(s->tx, sizeof(s->tx), data, len);
	if (n < 0) /* cannot happen: replies are bounded by GDB_PACKET_MAX */
		n = gdb_frame(s->tx, sizeof(s->tx), "E01", 3);
	s->tx_len = n;
	send_raw(s, s->tx, (size_t)n);
}

static void put_str(struct gdb_stub *s, const char *str) { put_packet(s, str, strlen(str)); }

static void put_stop(struct gdb_stub *s, const char *reply)
{
	snprintf(s->last_stop, sizeof(s->last_stop), "%s", reply);
	put_str(s, reply);
}

/* ---- attach and detach ---- */

static void detach(struct gdb_stub *s)
{
	if (!s->attached)
		return;
	if (s->running)
		gdb_target_stop_all(s);
	s->attached = false;
	gdb_target_clear(s);
	enum gdb_action act[s->vm->nr_vcpus];
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++)
		act[i] = GDB_ACT_CONT;
	char unused[8];
	gdb_target_resume(s, act, unused, sizeof(unused));
	s->running = false; /* running, but nobody waits for a stop */
	log_info("gdb: debugger detached, the guest runs on");
}

static void drop_client(struct gdb_stub *s)
{
	if (s->client_fd < 0)
		return;
	close(s->client_fd);
	s->client_fd = -1;
	gdb_rx_init(&s->rx);
	s->tx_len = 0;
	detach(s);
}

static void accept_client(struct gdb_stub *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (s->client_fd >= 0) {
		/* The last debugger may have just hung up without us reading its EOF yet. */
		char c;
		if (recv(s->client_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
			log_info("gdb: the debugger closed the connection");
			drop_client(s);
		}
	}
	if (s->client_fd >= 0) {
		log_warn("gdb: refused a second debugger connection on %s", s->where);
		close(fd);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails on unix sockets */
	/* A debugger that stops reading must not block the stub forever. */
	struct timeval tv = {.tv_sec = 10};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	s->client_fd = fd;
	gdb_rx_init(&s->rx);
	s->tx_len = 0;
	/* gdb expects a stopped target: park the guest (already parked at start-up). */
	gdb_target_stop_all(s);
	s->attached = true;
	s->g_cpu = 0;
	s->c_cpu = -1;
	snprintf(s->last_stop, sizeof(s->last_stop), "T05thread:1;");
	log_info("gdb: debugger connected on %s", s->where);
}

/* ---- commands ---- */

/* A thread id: "-1" (all), "0" (any) or a vCPU's id (index + 1). Returns -1 for
 * all, 0 for any, the vCPU id, or -2 when malformed or no such vCPU. */
static long parse_tid(const struct gdb_stub *s, const char **p, const char *end)
{
	if (end - *p >= 2 && (*p)[0] == '-' && (*p)[1] == '1') {
		*p += 2;
		return -1;
	}
	uint64_t v;
	if (gdb_parse_hex(p, end, &v) < 0 || v > s->vm->nr_vcpus)
		return -2;
	return (long)v;
}

/* addr,len */
static int parse_addr_len(const char **p, const char *end, uint64_t *addr, uint64_t *len)
{
	if (gdb_parse_hex(p, end, addr) < 0 || *p >= end || **p != ',')
		return -1;
	(*p)++;
	return gdb_parse_hex(p, end, len);
}

static void cmd_regs_read(struct gdb_stub *s)
{
	struct gdb_cpu c;
	uint8_t g[GDB_G_SIZE];
	char hex[2 * GDB_G_SIZE];
	if (gdb_target_get_cpu(s, s->g_cpu, &c) < 0)
		return put_str(s, "E01");
	gdb_regs_encode(&c, g);
	gdb_hex_encode(g, sizeof(g), hex);
	put_packet(s, hex, sizeof(hex));
}

static void cmd_regs_write(struct gdb_stub *s, const char *p, const char *end)
{
	struct gdb_cpu c;
	uint8_t g[GDB_G_SIZE];
	if (end - p != 2 * GDB_G_SIZE || gdb_hex_decode(p, GDB_G_SIZE, g) < 0)
		return put_str(s, "E01");
	if (gdb_target_get_cpu(s, s->g_cpu, &c) < 0)
		return put_str(s, "E01");
	gdb_regs_decode(&c, g);
	put_str(s, gdb_target_set_cpu(s, s->g_cpu, &c) < 0 ? "E01" : "OK");
}

static void cmd_reg_read(struct gdb_stub *s, const char *p, const char *end)
{
	uint64_t n;
	unsigned off, size;
	struct gdb_cpu c;
	if (gdb_parse_hex(&p, end, &n) < 0 || p != end || n >= GDB_NUM_REGS ||
	    gdb_reg_span((unsigned)n, &off, &size) < 0 || gdb_target_get_cpu(s, s->g_cpu, &c) < 0)
		return put_str(s, "E01");
	uint8_t g[GDB_G_SIZE];
	char hex[32];
	gdb_regs_encode(&c, g);
	gdb_hex_encode(g + off, size, hex);
	put_packet(s, hex, 2 * size);
}

static void cmd_reg_write(struct gdb_stub *s, const char *p, const char *end)
{
	uint64_t n;
	unsigned off, size;
	struct gdb_cpu c;
	uint8_t val[16];
	if (gdb_parse_hex(&p, end, &n) < 0 || p >= end || *p++ != '=' || n >= GDB_NUM_REGS ||
	    gdb_reg_span((unsigned)n, &off, &size) < 0 || end - p != 2 * (long)size ||
	    gdb_hex_decode(p, size, val) < 0 || gdb_target_get_cpu(s, s->g_cpu, &c) < 0 ||
	    gdb_reg_write(&c, (unsigned)n, val, size) < 0)
		return put_str(s, "E01");
	put_str(s, gdb_target_set_cpu(s, s->g_cpu, &c) < 0 ? "E01" : "OK");
}

static void cmd_mem_read(struct gdb_stub *s, const char *p, const char *end)
{
	uint64_t addr, len;
	uint8_t buf[GDB_PACKET_MAX / 2];
	char hex[GDB_PACKET_MAX];
	if (parse_addr_len(&p, end, &addr, &len) < 0 || p != end)
		return put_str(s, "E01");
	if (len > sizeof(buf))
		len = sizeof(buf); /* a short read is allowed; gdb asks for the rest */
	size_t n = gdb_target_read(s, s->g_cpu, addr, buf, (size_t)len);
	if (n == 0 && len > 0)
		return put_str(s, "E14"); /* EFAULT */
	gdb_hex_encode(buf, n, hex);
	put_packet(s, hex, 2 * n);
}

/* M addr,len:hex and X addr,len:binary */
static void cmd_mem_write(struct gdb_stub *s, const char *p, const char *end, bool binary)
{
	uint64_t addr, len;
	uint8_t buf[GDB_PACKET_MAX];
	if (parse_addr_len(&p, end, &addr, &len) < 0 || p >= end || *p++ != ':')
		return put_str(s, "E01");
	size_t have = (size_t)(end - p);
	if (len > sizeof(buf) || have != (binary ? len : 2 * len))
		return put_str(s, "E01");
	if (binary)
		memcpy(buf, p, (size_t)len);
	else if (gdb_hex_decode(p, (size_t)len, buf) < 0)
		return put_str(s, "E01");
	if (len && gdb_target_write(s, s->g_cpu, addr, buf, (size_t)len) < 0)
		return put_str(s, "E14");
	put_str(s, "OK");
}

static void cmd_breakpoint(struct gdb_stub *s, bool insert, const char *p, const char *end)
{
	uint64_t addr, kind;
	char type = p < end ? *p++ : 0;
	if (type < '0' || type > '4' || p >= end || *p++ != ',' ||
	    parse_addr_len(&p, end, &addr, &kind) < 0 || p != end)
		return put_str(s, "E01");
	int r = insert ? gdb_target_insert(s, type, addr, kind) : gdb_target_remove(s, type, addr, kind);
	put_str(s, r < 0 ? "E01" : "OK");
}

static void resume(struct gdb_stub *s, const enum gdb_action *act)
{
	char reply[96];
	if (!gdb_target_resume(s, act, reply, sizeof(reply)))
		put_stop(s, reply);
}

/* The vCPU legacy c/s packets act on: Hc's thread, or Hg's when Hc is "all". */
static unsigned c_thread(const struct gdb_stub *s)
{
	return s->c_cpu > 0 ? (unsigned)s->c_cpu - 1 : s->g_cpu;
}

/* c [addr], s [addr], C sig[;addr], S sig[;addr]. Signals mean nothing to a VM
 * and are dropped. */
static void cmd_legacy_resume(struct gdb_stub *s, char cmd, const char *p, const char *end)
{
	uint64_t v;
	if (cmd == 'C' || cmd == 'S') {
		if (gdb_parse_hex(&p, end, &v) < 0)
			return put_str(s, "E01");
		if (p < end && *p++ != ';')
			return put_str(s, "E01");
	}
	unsigned cpu = c_thread(s);
	if (p < end) {
		struct gdb_cpu c;
		if (gdb_parse_hex(&p, end, &v) < 0 || p != end || gdb_target_get_cpu(s, cpu, &c) < 0)
			return put_str(s, "E01");
		c.regs.rip = v;
		if (gdb_target_set_cpu(s, cpu, &c) < 0)
			return put_str(s, "E01");
	}
	enum gdb_action act[s->vm->nr_vcpus];
	bool step = cmd == 's' || cmd == 'S';
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++)
		act[i] = step ? (i == cpu ? GDB_ACT_STEP : GDB_ACT_HOLD) : GDB_ACT_CONT;
	resume(s, act);
}

/* vCont;action[:thread]... — the first action naming a vCPU applies to it;
 * vCPUs no action names stay stopped. */
static void cmd_vcont(struct gdb_stub *s, const char *p, const char *end)
{
	unsigned n = s->vm->nr_vcpus;
	enum gdb_action act[n];
	bool set[n];
	for (unsigned i = 0; i < n; i++) {
		act[i] = GDB_ACT_HOLD;
		set[i] = false;
	}
	if (p == end)
		return put_str(s, "E01");
	while (p < end) {
		if (*p++ != ';' || p >= end)
			return put_str(s, "E01");
		char a = *p++;
		enum gdb_action what;
		uint64_t sig;
		if (a == 'c' || a == 's') {
			what = a == 's' ? GDB_ACT_STEP : GDB_ACT_CONT;
		} else if (a == 'C' || a == 'S') {
			if (gdb_parse_hex(&p, end, &sig) < 0)
				return put_str(s, "E01");
			what = a == 'S' ? GDB_ACT_STEP : GDB_ACT_CONT;
		} else if (a == 't') {
			what = GDB_ACT_HOLD;
		} else {
			return put_str(s, "E01");
		}
		long tid = -1;
		if (p < end && *p == ':') {
			p++;
			tid = parse_tid(s, &p, end);
			if (tid < -1 || tid == 0)
				return put_str(s, "E01");
		}
		if (p < end && *p != ';')
			return put_str(s, "E01");
		for (unsigned i = 0; i < n; i++) {
			if (set[i] || (tid > 0 && (unsigned long)tid != i + 1))
				continue;
			act[i] = what;
			set[i] = true;
		}
	}
	resume(s, act);
}

static void cmd_set_thread(struct gdb_stub *s, const char *p, const char *end)
{
	char which = p < end ? *p++ : 0;
	long tid = parse_tid(s, &p, end);
	if ((which != 'g' && which != 'c') || tid < -1 || p != end)
		return put_str(s, "E01");
	if (which == 'g') {
		if (tid > 0)
			s->g_cpu = (unsigned)tid - 1;
	} else {
		s->c_cpu = tid > 0 ? (int)tid : -1;
	}
	put_str(s, "OK");
}

static void cmd_thread_alive(struct gdb_stub *s, const char *p, const char *end)
{
	long tid = parse_tid(s, &p, end);
	put_str(s, tid > 0 && p == end ? "OK" : "E01");
}

static bool starts(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);
	return (size_t)(end - p) >= n && memcmp(p, word, n) == 0;
}

static bool is(const char *p, const char *end, const char *word)
{
	return (size_t)(end - p) == strlen(word) && starts(p, end, word);
}

static void cmd_query(struct gdb_stub *s, const char *p, const char *end)
{
	char r[1024]; /* "m1,2,...": up to 254 vCPUs of 3 characters */
	if (starts(p, end, "qSupported")) {
		snprintf(r, sizeof(r), "PacketSize=%x;swbreak+;hwbreak+", GDB_PACKET_MAX);
		return put_str(s, r);
	}
	if (is(p, end, "qAttached") || starts(p, end, "qAttached:"))
		return put_str(s, "1"); /* an existing VM: gdb detaches on quit, never kills */
	if (is(p, end, "qC")) {
		snprintf(r, sizeof(r), "QC%x", s->g_cpu + 1);
		return put_str(s, r);
	}
	if (is(p, end, "qfThreadInfo")) {
		int o = snprintf(r, sizeof(r), "m");
		for (unsigned i = 0; i < s->vm->nr_vcpus && o < (int)sizeof(r) - 16; i++)
			o += snprintf(r + o, sizeof(r) - (size_t)o, "%s%x", i ? "," : "", i + 1);
		return put_str(s, r);
	}
	if (is(p, end, "qsThreadInfo"))
		return put_str(s, "l");
	if (starts(p, end, "qThreadExtraInfo,")) {
		p += 17;
		long tid = parse_tid(s, &p, end);
		if (tid <= 0 || p != end)
			return put_str(s, "E01");
		char text[32];
		int n = snprintf(text, sizeof(text), "vCPU %ld", tid - 1);
		gdb_hex_encode(text, (size_t)n, r);
		return put_packet(s, r, 2 * (size_t)n);
	}
	if (starts(p, end, "qSymbol"))
		return put_str(s, "OK"); /* no symbols wanted */
	put_str(s, ""); /* unsupported: qOffsets, qTStatus, qXfer, ... */
}

static void handle_packet(struct gdb_stub *s, const char *p, size_t len)
{
	const char *end = p + len;
	if (len == 0)
		return put_str(s, "");
	if (s->running)
		return put_str(s, "E01"); /* only an interrupt makes sense while the guest runs */
	char cmd = *p++;
	switch (cmd) {
	case '?':
		return put_str(s, s->last_stop);
	case 'g':
		return p == end ? cmd_regs_read(s) : put_str(s, "E01");
	case 'G':
		return cmd_regs_write(s, p, end);
	case 'p':
		return cmd_reg_read(s, p, end);
	case 'P':
		return cmd_reg_write(s, p, end);
	case 'm':
		return cmd_mem_read(s, p, end);
	case 'M':
		return cmd_mem_write(s, p, end, false);
	case 'X':
		return cmd_mem_write(s, p, end, true);
	case 'c':
	case 's':
	case 'C':
	case 'S':
		return cmd_legacy_resume(s, cmd, p, end);
	case 'Z':
	case 'z':
		return cmd_breakpoint(s, cmd == 'Z', p, end);
	case 'H':
		return cmd_set_thread(s, p, end);
	case 'T':
		return cmd_thread_alive(s, p, end);
	case 'D':
		put_str(s, "OK");
		return detach(s);
	case 'k':
		log_info("gdb: the debugger killed the VM");
		vm_request_stop(s->vm, KITE_EXIT_OK, "killed by the debugger");
		return;
	case 'q':
		return cmd_query(s, p - 1, end);
	case 'v':
		if (starts(p - 1, end, "vCont?"))
			return put_str(s, "vCont;c;C;s;S;t");
		if (starts(p - 1, end, "vCont;"))
			return cmd_vcont(s, p + 4, end);
		return put_str(s, ""); /* vMustReplyEmpty and everything else */
	default:
		return put_str(s, "");
	}
}

static void on_input(struct gdb_stub *s, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n && s->client_fd >= 0; i++) {
		switch (gdb_rx_feed(&s->rx, buf[i])) {
		case GDB_RX_PACKET:
			send_raw(s, "+", 1);
			handle_packet(s, s->rx.buf, s->rx.len);
			break;
		case GDB_RX_BAD_SUM:
			send_raw(s, "-", 1);
			break;
		case GDB_RX_MALFORMED:
			send_raw(s, "+", 1);
			put_str(s, "E01");
			break;
		case GDB_RX_INTERRUPT:
			log_debug("gdb: interrupt (%s)", s->running ? "stopping the guest" : "already stopped");
			if (s->running) {
				char reply[96];
				gdb_target_stop_all(s);
				/* A breakpoint hit meanwhile wins over the interrupt. */
				if (!gdb_target_take_event(s, reply, sizeof(reply))) {
					s->g_cpu = s->focus;
					snprintf(reply, sizeof(reply), "T02thread:%x;", s->focus + 1);
				}
				put_stop(s, reply);
			}
			break;
		case GDB_RX_NAK:
			if (s->tx_len > 0)
				send_raw(s, s->tx, (size_t)s->tx_len);
			break;
		case GDB_RX_ACK:
		case GDB_RX_NONE:
			break;
		}
	}
}

/* ---- the stub thread ---- */

static void on_wake(struct gdb_stub *s)
{
	uint64_t v;
	if (read(s->wake_fd, &v, sizeof(v)) < 0) {
		/* nothing to drain */
	}
	if (!s->running)
		return;
	char reply[96];
	bool any = false;
	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < s->vm->nr_vcpus; i++)
		any = any || s->pending[i].kind != GDB_STOP_NONE;
	pthread_mutex_unlock(&s->lock);
	if (!any)
		return;
	gdb_target_stop_all(s);
	if (gdb_target_take_event(s, reply, sizeof(reply)))
		put_stop(s, reply);
}

/* Closing right after the last packet would make gdb's acknowledgement fail
 * (and could reset the connection before gdb read the packet): wait a little
 * for the '+'. */
static void wait_ack(struct gdb_stub *s)
{
	for (int tries = 0; tries < 20 && s->client_fd >= 0; tries++) {
		struct pollfd pf = {.fd = s->client_fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		char buf[256];
		ssize_t n = recv(s->client_fd, buf, sizeof(buf), 0);
		if (n <= 0 || memchr(buf, '+', (size_t)n))
			return;
	}
}

static void *stub_thread(void *arg)
{
	struct gdb_stub *s = arg;
	pthread_setname_np(pthread_self(), "kite-gdb");
	for (;;) {
		pthread_mutex_lock(&s->lock);
		bool quit = s->quit;
		pthread_mutex_unlock(&s->lock);
		if (quit)
			break;
		struct pollfd pf[3] = {
			{.fd = s->wake_fd, .events = POLLIN},
			{.fd = s->listen_fd, .events = POLLIN},
			{.fd = s->client_fd, .events = POLLIN},
		};
		if (poll(pf, s->client_fd >= 0 ? 3 : 2, -1) < 0)
			continue;
		if (pf[0].revents)
			on_wake(s);
		/* The client first: a hang-up then a new connection must not look like two. */
		if (s->client_fd >= 0 && pf[2].fd == s->client_fd && pf[2].revents) {
			uint8_t buf[4096];
			ssize_t n = recv(s->client_fd, buf, sizeof(buf), 0);
			if (n > 0) {
				on_input(s, buf, (size_t)n);
			} else if (n == 0 || errno != EINTR) {
				log_info("gdb: the debugger closed the connection");
				drop_client(s);
			}
		}
		if (pf[1].revents & POLLIN)
			accept_client(s);
	}
	if (s->client_fd >= 0 && s->running) {
		/* gdb waits for a stop: tell it the VM is gone. */
		char w[8];
		pthread_mutex_lock(&s->vm->stop.lock);
		int code = s->vm->stop.exit_code;
		pthread_mutex_unlock(&s->vm->stop.lock);
		snprintf(w, sizeof(w), "W%02x", code & 0xff);
		put_str(s, w);
		wait_ack(s);
	}
	if (s->client_fd >= 0)
		close(s->client_fd);
	s->client_fd = -1;
	return NULL;
}

/* ---- start and stop ---- */

static void stub_free(struct gdb_stub *s)
{
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	if (s->unix_path[0])
		unlink(s->unix_path);
	pthread_mutex_destroy(&s->lock);
	free(s->pending);
	free(s->stepping);
	free(s);
}

int gdb_stub_start(struct vm *vm, const char *addr, struct kite_err *err)
{
	char msg[256];
	struct gdb_addr a;
	if (addr_parse(addr, &a, msg, sizeof(msg)) < 0)
		return err_set(err, KITE_EXIT_USAGE, "%s", msg);
	struct gdb_stub *s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(err, KITE_EXIT_ERROR, "out of memory");
	s->vm = vm;
	s->listen_fd = s->client_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	gdb_bps_init(&s->bps);
	s->c_cpu = -1;
	s->pending = calloc(vm->nr_vcpus, sizeof(*s->pending));
	s->stepping = calloc(vm->nr_vcpus, sizeof(*s->stepping));
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!s->pending || !s->stepping || s->wake_fd < 0) {
		stub_free(s);
		return err_set(err, KITE_EXIT_ERROR, "gdb: out of resources: %s", strerror(errno));
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG) <= 0) {
		stub_free(s);
		return err_set(err, KITE_EXIT_KVM, "gdb: /dev/kvm lacks KVM_CAP_SET_GUEST_DEBUG");
	}
	int caps = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2);
	s->debug_caps = caps > 0 ? (unsigned)caps : 0;
	if ((a.is_unix ? listen_unix(s, &a, err) : listen_tcp(s, &a, err)) < 0) {
		stub_free(s);
		return -1;
	}
	/* The vCPUs park before their first KVM_RUN, until gdb says continue. */
	pthread_mutex_lock(&vm->stop.lock);
	__atomic_store_n(&vm->paused, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vm->stop.lock);
	int e = pthread_create(&s->thread, NULL, stub_thread, s);
	if (e) {
		stub_free(s);
		return err_set(err, KITE_EXIT_ERROR, "gdb: start the stub thread: %s", strerror(e));
	}
	s->thread_started = true;
	vm->gdb = s;
	log_warn("gdb: the guest waits for a debugger on %s", s->where);
	return 0;
}

void gdb_stub_stop(struct vm *vm)
{
	struct gdb_stub *s = vm->gdb;
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->quit = true;
	pthread_mutex_unlock(&s->lock);
	uint64_t one = 1;
	if (write(s->wake_fd, &one, sizeof(one)) < 0) {
		/* already woken */
	}
	if (s->thread_started)
		pthread_join(s->thread, NULL);
	vm->gdb = NULL;
	stub_free(s);
}
