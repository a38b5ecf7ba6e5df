/* Live migration (migrate.h). */
#include "migration/migrate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "devices/device.h"
#include "snapshot/snapshot.h"
#include "snapshot/vmstate.h"
#include "virtio/virtio.h"

#define IO_TIMEOUT_S 30
#define PAGE_REC (8 + GMEM_PAGE)

/* ---- status (GET /migration) ---- */

static struct {
	pthread_mutex_t lock;
	const char *state; /* none, listening, receiving, sending, completed, failed */
	const char *role;  /* source, destination */
	bool busy;
	char peer[128];
	unsigned round;
	uint64_t dirty_pages;     /* pages the last round had to send */
	uint64_t bytes;           /* on the wire so far */
	uint64_t pages;           /* pages sent or received so far */
	double bandwidth_mib_s;   /* measured */
	double est_downtime_ms;   /* remaining pages at the measured bandwidth */
	double downtime_ms;       /* paused until the destination ran (source, at the end) */
	double stream_downtime_ms; /* paused until the last byte was sent */
	double total_ms;
	unsigned downtime_target_ms;
	char error[400];
} st = {.lock = PTHREAD_MUTEX_INITIALIZER, .state = "none"};

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void set_state(const char *state)
{
	pthread_mutex_lock(&st.lock);
	st.state = state;
	pthread_mutex_unlock(&st.lock);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	pthread_mutex_lock(&st.lock);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st.error, sizeof(st.error), fmt, ap);
	va_end(ap);
	st.state = "failed";
	st.busy = false;
	pthread_mutex_unlock(&st.lock);
	log_warn("migration failed: %s", st.error);
}

bool migration_busy(void)
{
	pthread_mutex_lock(&st.lock);
	bool b = st.busy;
	pthread_mutex_unlock(&st.lock);
	return b;
}

json_t *migration_status_json(void)
{
	pthread_mutex_lock(&st.lock);
	json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:I, s:f, s:f, s:i}", "state", st.state, "round", (int)st.round,
			      "dirty_pages", (json_int_t)st.dirty_pages, "bytes", (json_int_t)st.bytes, "pages",
			      (json_int_t)st.pages, "bandwidth_mib_s", st.bandwidth_mib_s, "estimated_downtime_ms",
			      st.est_downtime_ms, "downtime_target_ms", (int)st.downtime_target_ms);
	if (st.role)
		json_object_set_new(j, "role", json_string(st.role));
	if (st.peer[0])
		json_object_set_new(j, "peer", json_string(st.peer));
	if (strcmp(st.state, "completed") == 0) {
		json_object_set_new(j, "downtime_ms", json_real(st.downtime_ms));
		json_object_set_new(j, "stream_downtime_ms", json_real(st.stream_downtime_ms));
		json_object_set_new(j, "total_ms", json_real(st.total_ms));
	}
	if (st.error[0])
		json_object_set_new(j, "error", json_string(st.error));
	pthread_mutex_unlock(&st.lock);
	return j;
}

/* ---- addresses and sockets ---- */

int mig_parse_addr(const char *s, struct sockaddr_storage *ss, unsigned *len, struct kite_err *err)
{
	char host[64];
	const char *port;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
			return err_set(err, KITE_EXIT_USAGE, "'%s' is not [IPv6]:PORT", s);
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = 0;
		port = end + 2;
	} else {
		const char *colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host) || strchr(s, ':') != colon)
			return err_set(err, KITE_EXIT_USAGE, "'%s' is not ADDRESS:PORT", s);
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = 0;
		port = colon + 1;
	}
	char *end;
	unsigned long p = strtoul(port, &end, 10);
	if (!*port || *end || p == 0 || p > 65535)
		return err_set(err, KITE_EXIT_USAGE, "'%s': port must be 1 to 65535", s);
	/* Numeric only: no name service (files, DNS) from a locked-down VMM. */
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM};
	struct addrinfo *ai = NULL;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
		return err_set(err, KITE_EXIT_USAGE, "'%s': '%s' is not a numeric IPv4 or IPv6 address", s, host);
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = (unsigned)ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static void set_timeouts(int fd, int secs)
{
	struct timeval tv = {.tv_sec = secs};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		ssize_t r = recv(fd, b, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			errno = ECONNRESET;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* One message: head, payload in up to two parts, CRC over all. */
static int send_msg(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen)
{
	uint8_t head[16], tail[8];
	snap_put_le(head, type, 4);
	snap_put_le(head + 4, 0, 4);
	snap_put_le(head + 8, alen + blen, 8);
	uint64_t crc = snap_crc64(0, head, sizeof(head));
	crc = snap_crc64(crc, a, alen);
	crc = snap_crc64(crc, b, blen);
	snap_put_le(tail, crc, 8);
	if (send_all(fd, head, sizeof(head)) < 0 || (alen && send_all(fd, a, alen) < 0) ||
	    (blen && send_all(fd, b, blen) < 0) || send_all(fd, tail, sizeof(tail)) < 0)
		return -1;
	pthread_mutex_lock(&st.lock);
	st.bytes += sizeof(head) + alen + blen + sizeof(tail);
	pthread_mutex_unlock(&st.lock);
	return 0;
}

/* ---- source ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool started, job, quit;
	int sock; /* the stream while a migration sends, else -1 */
	struct vm *vm;
	char *config;
	struct sockaddr_storage addr;
	unsigned addrlen;
	char dest[128];
	unsigned downtime_ms, max_rounds;
} wk = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .sock = -1};

/* Dirty logging of every memslot on or off (the VMM's own writes are tracked
 * from the first time on, see gmem_track_dirty). */
static int set_logging(struct vm *vm, bool on)
{
	if (vm_set_memslots(vm, on ? KVM_MEM_LOG_DIRTY_PAGES : 0) < 0)
		return -1;
	if (on && gmem_track_dirty(&vm->mem) < 0)
		return -1;
	return 0;
}

/* Sends the pages set in bitmap. */
static int send_pages(int fd, struct vm *vm, const uint64_t *bitmap, uint64_t *sent)
{
	const struct gmem *m = &vm->mem;
	uint64_t pages = m->ram_size / GMEM_PAGE;
	uint8_t *buf = malloc((size_t)MIG_PAGES_PER_MSG * PAGE_REC);
	if (!buf)
		return -1;
	size_t n = 0;
	int rc = 0;
	*sent = 0;
	for (uint64_t p = 0; p < pages && rc == 0; p++) {
		const uint8_t *src = m->base + p * GMEM_PAGE;
		if (!(bitmap[p / 64] >> (p % 64) & 1))
			continue;
		snap_put_le(buf + n * PAGE_REC, p, 8);
		memcpy(buf + n * PAGE_REC + 8, src, GMEM_PAGE);
		if (++n == MIG_PAGES_PER_MSG) {
			rc = send_msg(fd, MIG_PAGES, buf, n * PAGE_REC, NULL, 0);
			*sent += n;
			n = 0;
		}
	}
	if (rc == 0 && n) {
		rc = send_msg(fd, MIG_PAGES, buf, n * PAGE_REC, NULL, 0);
		*sent += n;
	}
	free(buf);
	pthread_mutex_lock(&st.lock);
	st.pages += *sent;
	pthread_mutex_unlock(&st.lock);
	return rc;
}

static uint64_t popcount(const uint64_t *b, size_t words)
{
	uint64_t n = 0;
	for (size_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(b[i]);
	return n;
}

static int collect(struct vm *vm, uint64_t *bitmap, size_t words, struct kite_err *err)
{
	memset(bitmap, 0, words * sizeof(uint64_t));
	if (snapshot_dirty_log(vm, bitmap, err) < 0)
		return -1;
	gmem_collect_dirty(&vm->mem, bitmap);
	return 0;
}

static void run_send(void)
{
	struct vm *vm = wk.vm;
	struct kite_err err = {0};
	double t0 = now_ms(), t_pause = 0;
	bool paused_here = false, logging = false, quiesced = false, user_paused = __atomic_load_n(&vm->paused, __ATOMIC_ACQUIRE);
	uint64_t pages = vm->mem.ram_size / GMEM_PAGE;
	size_t words = (size_t)((pages + 63) / 64);
	uint64_t *bitmap = calloc(words ? words : 1, sizeof(uint64_t));
	struct snap_writer w;
	snapw_init(&w);
	int fd = socket(wk.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	const char *step = "connect";
	if (!bitmap || fd < 0)
		goto io_fail;
	pthread_mutex_lock(&wk.lock);
	wk.sock = fd; /* migration_stop cuts it short */
	bool quitting = wk.quit;
	pthread_mutex_unlock(&wk.lock);
	if (quitting) {
		errno = ECANCELED;
		goto io_fail;
	}
	set_timeouts(fd, IO_TIMEOUT_S);
	if (connect(fd, (struct sockaddr *)&wk.addr, wk.addrlen) < 0)
		goto io_fail;
	set_state("sending");
	step = "send";
	uint8_t hdr[16];
	memcpy(hdr, MIG_MAGIC, 8);
	snap_put_le(hdr + 8, MIG_VERSION, 4);
	snap_put_le(hdr + 12, 0, 4);
	uint8_t ram[8];
	snap_put_le(ram, vm->mem.ram_size, 8);
	if (send_all(fd, hdr, sizeof(hdr)) < 0 || send_msg(fd, MIG_CONFIG, ram, 8, wk.config, strlen(wk.config)) < 0)
		goto io_fail;
	if (set_logging(vm, true) < 0) {
		fail("cannot log dirty pages: %s", strerror(errno));
		goto out;
	}
	logging = true;
	/* Round 0 sends every page that is not zero; the log, cleared now, holds
	 * what the guest writes meanwhile. */
	if (collect(vm, bitmap, words, &err) < 0)
		goto err_fail;
	double r0 = now_ms();
	uint64_t sent;
	gmem_nonzero(&vm->mem, bitmap);
	if (send_pages(fd, vm, bitmap, &sent) < 0)
		goto io_fail;
	double bw = (double)(sent * PAGE_REC) / ((now_ms() - r0) / 1e3 + 1e-6); /* bytes/s */
	for (unsigned round = 1;; round++) {
		if (collect(vm, bitmap, words, &err) < 0)
			goto err_fail;
		uint64_t dirty = popcount(bitmap, words);
		double est = (double)(dirty * PAGE_REC) / bw * 1e3;
		pthread_mutex_lock(&st.lock);
		st.round = round;
		st.dirty_pages = dirty;
		st.bandwidth_mib_s = bw / (1 << 20);
		st.est_downtime_ms = est;
		pthread_mutex_unlock(&st.lock);
		log_debug("migration round %u: %llu dirty pages, %.1f MiB/s, %.1f ms to send them", round,
			  (unsigned long long)dirty, bw / (1 << 20), est);
		if (est <= wk.downtime_ms || round >= wk.max_rounds) {
			/* Those pages go after the pause, with what they dirty meanwhile. */
			break;
		}
		double rs = now_ms();
		if (send_pages(fd, vm, bitmap, &sent) < 0)
			goto io_fail;
		double el = (now_ms() - rs) / 1e3;
		if (sent > 64 && el > 0)
			bw = (double)(sent * PAGE_REC) / el;
	}
	/* Stop and copy: the pages of the last round and those since, then the state. */
	t_pause = now_ms();
	if (!user_paused) {
		vcpus_pause(vm);
		paused_here = true;
	}
	/* Devices settle what is in flight (which may write guest memory) before
	 * the last dirty pages are read. */
	virtio_quiesce_all(vm);
	quiesced = true;
	uint64_t *last = calloc(words ? words : 1, sizeof(uint64_t));
	if (!last)
		goto io_fail;
	memcpy(last, bitmap, words * sizeof(uint64_t));
	int crc = collect(vm, bitmap, words, &err);
	for (size_t i = 0; i < words; i++)
		bitmap[i] |= last[i];
	free(last);
	if (crc < 0)
		goto err_fail;
	if (send_pages(fd, vm, bitmap, &sent) < 0)
		goto io_fail;
	if (vmstate_save(vm, &w, &err) < 0 || devices_save(vm, &w, &err) < 0)
		goto err_fail;
	const uint8_t *blob;
	size_t blen;
	if (snapw_seal(&w, &blob, &blen) < 0) {
		fail("out of memory for the state");
		goto out;
	}
	if (send_msg(fd, MIG_STATE, blob, blen, NULL, 0) < 0 || send_msg(fd, MIG_END, NULL, 0, NULL, 0) < 0)
		goto io_fail;
	double t_sent = now_ms();
	step = "wait for the destination's answer to";
	set_timeouts(fd, 120);
	uint8_t answer = 0;
	if (recv_all(fd, &answer, 1) < 0)
		goto io_fail;
	if (answer != 'K') {
		fail("the destination refused the VM (see its GET /migration); the VM runs on here");
		goto out;
	}
	double end = now_ms();
	pthread_mutex_lock(&st.lock);
	st.state = "completed";
	st.busy = false;
	st.downtime_ms = end - t_pause;
	st.stream_downtime_ms = t_sent - t_pause;
	st.total_ms = end - t0;
	pthread_mutex_unlock(&st.lock);
	log_info("migration: done in %.1f ms, paused %.1f ms (the last byte sent %.1f ms after the pause)", end - t0,
		 end - t_pause, t_sent - t_pause);
	close(fd);
	fd = -1;
	/* The guest runs at the destination now: this copy must never run again,
	 * nor its devices serve a queue (the disk is the destination's now). */
	vm_request_stop(vm, KITE_EXIT_OK, "migrated to %s (paused %.1f ms)", wk.dest, end - t_pause);
	virtio_abandon_all(vm);
	goto done;
io_fail:
	fail("cannot %s %s: %s; the VM runs on here", step, wk.dest, strerror(errno ? errno : EIO));
	goto out;
err_fail:
	fail("%s; the VM runs on here", err.msg);
out:
	if (quiesced)
		virtio_resume_all(vm);
	if (logging && !vm->cfg->track_dirty)
		set_logging(vm, false);
	if (paused_here)
		vcpus_resume(vm);
done:
	pthread_mutex_lock(&wk.lock);
	wk.sock = -1;
	pthread_mutex_unlock(&wk.lock);
	if (fd >= 0)
		close(fd);
	free(bitmap);
	snapw_free(&w);
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "kite-migrate");
	pthread_mutex_lock(&wk.lock);
	for (;;) {
		while (!wk.job && !wk.quit)
			pthread_cond_wait(&wk.cond, &wk.lock);
		if (wk.quit)
			break;
		pthread_mutex_unlock(&wk.lock);
		run_send();
		pthread_mutex_lock(&wk.lock);
		wk.job = false;
		free(wk.config);
		wk.config = NULL;
	}
	pthread_mutex_unlock(&wk.lock);
	return NULL;
}

int migration_prepare(struct vm *vm, struct kite_err *err)
{
	wk.vm = vm;
	wk.quit = wk.job = false;
	int e = pthread_create(&wk.thread, NULL, worker_main, NULL);
	if (e)
		return err_set(err, KITE_EXIT_ERROR, "cannot start the migration thread: %s", strerror(e));
	wk.started = true;
	return 0;
}

void migration_stop(struct vm *vm)
{
	(void)vm;
	if (!wk.started)
		return;
	pthread_mutex_lock(&wk.lock);
	wk.quit = true;
	/* A migration still sending (the VM is stopping under it) ends now, not at
	 * its socket timeouts. */
	if (wk.sock >= 0)
		shutdown(wk.sock, SHUT_RDWR);
	pthread_cond_broadcast(&wk.cond);
	pthread_mutex_unlock(&wk.lock);
	pthread_join(wk.thread, NULL);
	wk.started = false;
}

int migration_send(struct vm *vm, const char *config_json, const char *dest, unsigned downtime_ms,
		   unsigned max_rounds, struct kite_err *err)
{
	struct sockaddr_storage ss;
	unsigned len;
	if (mig_parse_addr(dest, &ss, &len, err) < 0)
		return -1;
	if (!wk.started || wk.vm != vm)
		return err_set(err, KITE_EXIT_ERROR, "this VM cannot migrate (no migration thread)");
	pthread_mutex_lock(&st.lock);
	if (st.busy) {
		pthread_mutex_unlock(&st.lock);
		return err_set(err, KITE_EXIT_USAGE, "a migration is already running");
	}
	st.busy = true;
	st.state = "connecting";
	st.role = "source";
	snprintf(st.peer, sizeof(st.peer), "%s", dest);
	st.round = 0;
	st.dirty_pages = st.bytes = st.pages = 0;
	st.bandwidth_mib_s = st.est_downtime_ms = st.downtime_ms = st.total_ms = 0;
	st.downtime_target_ms = downtime_ms;
	st.error[0] = 0;
	pthread_mutex_unlock(&st.lock);
	pthread_mutex_lock(&wk.lock);
	wk.config = strdup(config_json);
	wk.addr = ss;
	wk.addrlen = len;
	snprintf(wk.dest, sizeof(wk.dest), "%s", dest);
	wk.downtime_ms = downtime_ms;
	wk.max_rounds = max_rounds ? max_rounds : 30;
	wk.job = true;
	pthread_cond_broadcast(&wk.cond);
	pthread_mutex_unlock(&wk.lock);
	return 0;
}

/* ---- destination ---- */

static struct {
	int lfd;
	const struct mig_dest_ops *ops;
} rx = {.lfd = -1};

/* Reads one message; *payload is malloc'd. Errors are written to msg. */
static int recv_msg(int fd, uint32_t *type, uint8_t **payload, size_t *len, unsigned nr, char *msg, size_t msz)
{
	uint8_t head[16], tail[8];
	*payload = NULL;
	if (recv_all(fd, head, sizeof(head)) < 0) {
		snprintf(msg, msz, "the stream ended before its END message (message %u): %s", nr, strerror(errno));
		return -1;
	}
	*type = (uint32_t)snap_get_le(head, 4);
	uint64_t n = snap_get_le(head + 8, 8);
	if (snap_get_le(head + 4, 4) != 0 || n > MIG_MAX_PAYLOAD || *type < MIG_CONFIG || *type > MIG_END) {
		snprintf(msg, msz, "corrupt migration stream: message %u has type %u and %llu bytes", nr, *type,
			 (unsigned long long)n);
		return -1;
	}
	uint8_t *p = malloc(n ? n : 1);
	if (!p) {
		snprintf(msg, msz, "out of memory");
		return -1;
	}
	if (recv_all(fd, p, n) < 0 || recv_all(fd, tail, sizeof(tail)) < 0) {
		free(p);
		snprintf(msg, msz, "the stream ended inside message %u: %s", nr, strerror(errno));
		return -1;
	}
	uint64_t crc = snap_crc64(snap_crc64(0, head, sizeof(head)), p, n);
	if (crc != snap_get_le(tail, 8)) {
		free(p);
		snprintf(msg, msz, "corrupt migration stream: checksum mismatch in message %u (type %u)", nr, *type);
		return -1;
	}
	pthread_mutex_lock(&st.lock);
	st.bytes += sizeof(head) + n + sizeof(tail);
	pthread_mutex_unlock(&st.lock);
	*payload = p;
	*len = (size_t)n;
	return 0;
}

static void receive(int fd)
{
	char msg[400] = "";
	uint8_t hdr[16];
	char *config = NULL;
	uint8_t *mem = NULL, *state = NULL;
	uint64_t ram = 0;
	size_t state_len = 0;
	bool ok = false, ended = false, prepared = false;
	struct kite_err err = {0};
	set_timeouts(fd, IO_TIMEOUT_S);
	if (recv_all(fd, hdr, sizeof(hdr)) < 0 || memcmp(hdr, MIG_MAGIC, 8) != 0) {
		snprintf(msg, sizeof(msg), "not a kite migration stream");
		goto out;
	}
	if (snap_get_le(hdr + 8, 4) != MIG_VERSION || snap_get_le(hdr + 12, 4) != 0) {
		snprintf(msg, sizeof(msg), "migration stream version %u; this kite speaks version %u",
			 (unsigned)snap_get_le(hdr + 8, 4), MIG_VERSION);
		goto out;
	}
	set_state("receiving");
	for (unsigned nr = 0; !ended; nr++) {
		uint32_t type;
		uint8_t *p;
		size_t n;
		if (recv_msg(fd, &type, &p, &n, nr, msg, sizeof(msg)) < 0)
			goto out;
		if (nr == 0 && type != MIG_CONFIG) {
			free(p);
			snprintf(msg, sizeof(msg), "corrupt migration stream: it does not start with the configuration");
			goto out;
		}
		switch (type) {
		case MIG_CONFIG:
			if (config || n < 9) {
				free(p);
				snprintf(msg, sizeof(msg), "corrupt migration stream: a second or empty configuration");
				goto out;
			}
			ram = snap_get_le(p, 8);
			if (ram == 0 || ram % (1u << 20) || ram > (1ULL << 40)) {
				free(p);
				snprintf(msg, sizeof(msg), "corrupt migration stream: %llu bytes of RAM",
					 (unsigned long long)ram);
				goto out;
			}
			config = malloc(n - 8 + 1);
			if (config) {
				memcpy(config, p + 8, n - 8);
				config[n - 8] = 0;
			}
			mem = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			free(p);
			if (!config || mem == MAP_FAILED) {
				mem = NULL;
				snprintf(msg, sizeof(msg), "cannot allocate %llu MiB for the guest: %s",
					 (unsigned long long)(ram >> 20), strerror(errno));
				goto out;
			}
			/* The VM is built now, around this memory; the pages land in it.
			 * It runs only once the whole stream has arrived. */
			if (rx.ops->prepare(config, mem, ram, &err) < 0) {
				mem = NULL; /* prepare unmapped it */
				snprintf(msg, sizeof(msg), "%.390s", err.msg);
				goto out;
			}
			prepared = true;
			break;
		case MIG_PAGES: {
			uint64_t count = 0;
			bool bad = n % PAGE_REC != 0;
			for (size_t off = 0; !bad && off < n; off += PAGE_REC, count++) {
				uint64_t idx = snap_get_le(p + off, 8);
				if (idx >= ram / GMEM_PAGE)
					bad = true;
				else
					memcpy(mem + idx * GMEM_PAGE, p + off + 8, GMEM_PAGE);
			}
			free(p);
			if (bad) {
				snprintf(msg, sizeof(msg), "corrupt migration stream: a page outside the guest's %llu MiB",
					 (unsigned long long)(ram >> 20));
				goto out;
			}
			pthread_mutex_lock(&st.lock);
			st.pages += count;
			pthread_mutex_unlock(&st.lock);
			break;
		}
		case MIG_STATE:
			free(state);
			state = p;
			state_len = n;
			break;
		case MIG_END:
			free(p);
			ended = true;
			break;
		}
	}
	if (!state) {
		snprintf(msg, sizeof(msg), "corrupt migration stream: no VM state before its end");
		goto out;
	}
	struct snap_reader r;
	if (snapr_open_buf(&r, state, state_len, "migration state", &err) < 0) {
		snprintf(msg, sizeof(msg), "%.390s", err.msg);
		goto out;
	}
	/* Everything arrived and checked out: only now does the VM run here. */
	int rc = rx.ops->finish(&r, &err);
	snapr_free(&r);
	prepared = false; /* finish ran it, or tore it down */
	mem = NULL;       /* the VM's, or gone with it */
	if (rc < 0) {
		snprintf(msg, sizeof(msg), "%.390s", err.msg);
		goto out;
	}
	ok = true;
out:
	if (prepared) {
		rx.ops->abort(msg); /* a VM that never ran, and its memory */
		mem = NULL;
	}
	{
		uint8_t answer = ok ? 'K' : 'F';
		if (send_all(fd, &answer, 1) < 0 && ok)
			log_warn("migration: the source did not hear that the VM runs here: %s", strerror(errno));
	}
	if (mem)
		munmap(mem, ram);
	free(config);
	free(state);
	if (ok) {
		pthread_mutex_lock(&st.lock);
		st.state = "completed";
		st.busy = false;
		pthread_mutex_unlock(&st.lock);
		log_info("migration: the VM runs here now");
	} else {
		fail("%s", msg);
	}
}

static void *receiver_main(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "kite-migrate");
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int fd = accept4(rx.lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
	close(rx.lfd);
	rx.lfd = -1;
	if (fd < 0) {
		fail("accept: %s", strerror(errno));
		return NULL;
	}
	char host[INET6_ADDRSTRLEN] = "?";
	if (peer.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, host, sizeof(host));
	else if (peer.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, host, sizeof(host));
	pthread_mutex_lock(&st.lock);
	snprintf(st.peer, sizeof(st.peer), "%s", host);
	pthread_mutex_unlock(&st.lock);
	receive(fd);
	close(fd);
	return NULL;
}

int migration_listen(const char *addr, const struct mig_dest_ops *ops, struct kite_err *err)
{
	struct sockaddr_storage ss;
	unsigned len;
	if (mig_parse_addr(addr, &ss, &len, err) < 0)
		return -1;
	pthread_mutex_lock(&st.lock);
	bool busy = st.busy;
	pthread_mutex_unlock(&st.lock);
	if (busy)
		return err_set(err, KITE_EXIT_USAGE, "a migration is already running");
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return err_set(err, KITE_EXIT_ERROR, "cannot listen on %s: %s", addr, strerror(e));
	}
	rx.lfd = fd;
	rx.ops = ops;
	pthread_mutex_lock(&st.lock);
	st.busy = true;
	st.state = "listening";
	st.role = "destination";
	st.peer[0] = 0;
	st.error[0] = 0;
	st.round = 0;
	st.bytes = st.pages = st.dirty_pages = 0;
	pthread_mutex_unlock(&st.lock);
	pthread_t t;
	int e = pthread_create(&t, NULL, receiver_main, NULL);
	if (e) {
		close(fd);
		rx.lfd = -1;
		fail("cannot start the receiving thread: %s", strerror(e));
		return err_set(err, KITE_EXIT_ERROR, "cannot start the receiving thread: %s", strerror(e));
	}
	pthread_detach(t);
	return 0;
}
