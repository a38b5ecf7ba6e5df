/* virtio-vsock (virtio 1.x, 5.10) with Firecracker's host side: guest stream
 * sockets are bridged to Unix stream sockets on the host.
 *
 *  - guest connects to host (CID 2) port P: kite connects to the Unix socket
 *    "<uds_path>_<P>"; when nobody listens there the guest gets a RST;
 *  - host connects to the guest: kite listens on uds_path; a host process
 *    connects, writes "CONNECT <port>\n", kite asks the guest (REQUEST from a
 *    local port >= 2^30) and answers "OK <local port>\n" once the guest accepted,
 *    or closes the host socket when it refused.
 *
 * Queues: rx 0 (device -> guest packets), tx 1 (guest -> device), event 2 (only
 * TRANSPORT_RESET, once, after a snapshot restore). Config space: le64 guest_cid.
 *
 * This header is what the unit tests drive: the device core reaches the
 * transport only through struct vsock_env, so a test can give it fake queues
 * and run the watched sockets itself. */
#ifndef KITE_VSOCK_H
#define KITE_VSOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "util/log.h"
#include "virtio/virtio.h"
#include "vmm/vm.h"

#define VSOCK_QUEUE_RX 0
#define VSOCK_QUEUE_TX 1
#define VSOCK_QUEUE_EVENT 2
#define VSOCK_QUEUE_SIZE 256

#define VSOCK_HOST_CID 2
#define VSOCK_HDR_SIZE 44
#define VSOCK_TYPE_STREAM 1

enum vsock_op {
	VSOCK_OP_REQUEST = 1,
	VSOCK_OP_RESPONSE = 2,
	VSOCK_OP_RST = 3,
	VSOCK_OP_SHUTDOWN = 4,
	VSOCK_OP_RW = 5,
	VSOCK_OP_CREDIT_UPDATE = 6,
	VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive (RCV) / send (SEND) no more. */
#define VSOCK_SHUTDOWN_RCV 1
#define VSOCK_SHUTDOWN_SEND 2

/* Largest payload of one packet either way (Linux sends at most 64 KiB). */
#define VSOCK_MAX_PAYLOAD 65536
/* Per connection, what we advertise as buf_alloc: guest bytes we hold while the
 * host socket does not take them. The guest must not send more (credit). */
#define VSOCK_BUF_ALLOC 65536
/* Connections at once (both directions); one more gets a RST. */
#define VSOCK_MAX_CONNS 1024
/* Host-side ports of host-initiated connections: [2^30, 2^31). */
#define VSOCK_LOCAL_PORT_FIRST (1u << 30)
#define VSOCK_LOCAL_PORT_LAST ((1u << 31) - 1)
/* Longest "CONNECT <port>\n" line a host process may send. */
#define VSOCK_CONNECT_LINE_MAX 32

/* The packet header, decoded (the wire format is 44 packed little-endian bytes). */
struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags;
	uint32_t buf_alloc, fwd_cnt;
};

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t out[VSOCK_HDR_SIZE]);
void vsock_hdr_decode(const uint8_t in[VSOCK_HDR_SIZE], struct vsock_hdr *h);

/* What the device needs from the transport (virtio.h). The device uses
 * vsock_env_virtio; the unit tests give their own. */
struct vsock_env {
	struct vq *(*queue)(struct virtio_dev *d, unsigned q);
	void (*signal)(struct virtio_dev *d, unsigned q);
	int (*watch)(struct virtio_dev *d, int fd, uint32_t events, virtio_watch_fn cb, void *ctx);
	void (*unwatch)(struct virtio_dev *d, int fd);
	void (*needs_reset)(struct virtio_dev *d, const char *why);
};

struct vsock;

/* The device state for cfg (copied): checks the CID and uds_path, removes a
 * stale socket file at uds_path and listens there. NULL with err set (one line,
 * KITE_EXIT_ERROR) when uds_path is too long, its directory is missing, it is
 * in use by another process or is not a socket. The caller puts it in
 * virtio_dev.priv with vsock_ops. */
struct vsock *vsock_new(const struct vsock_config *cfg, const struct vsock_env *env,
			struct kite_err *err);
/* Closes every socket and removes the uds_path socket file. */
void vsock_free(struct vsock *v);

/* priv is a struct vsock; ops->destroy calls vsock_free. */
extern const struct virtio_dev_ops vsock_ops;

/* For tests: connections in the table, and a lower bound on them. */
unsigned vsock_nr_conns(const struct vsock *v);
void vsock_set_max_conns(struct vsock *v, unsigned max);

#endif
