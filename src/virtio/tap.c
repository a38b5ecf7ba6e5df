/* The TAP backend of virtio-net: open, virtio header size, offloads. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "virtio/net.h"

#define TUN_PATH "/dev/net/tun"

/* Why TUNSETIFF failed, in words a user can act on. */
static const char *setiff_why(int e)
{
	switch (e) {
	case EPERM:
	case EACCES:
		return "not permitted (creating or attaching a TAP needs CAP_NET_ADMIN, or a "
		       "persistent TAP owned by this user)";
	case EBUSY:
		return "already in use by another process";
	case EINVAL:
		return "not a TAP device, or not a valid interface name";
	}
	return NULL;
}

int tap_open(const char *id, const char *name, bool *offloads, struct kite_err *err)
{
	*offloads = false;
	size_t len = strlen(name);
	if (len == 0 || len >= IFNAMSIZ)
		return err_set(err, KITE_EXIT_ERROR,
			       "network interface '%s': TAP '%s': the name must be 1 to %d bytes",
			       id, name, IFNAMSIZ - 1);

	int fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, KITE_EXIT_ERROR, "network interface '%s': TAP '%s': open %s: %s",
			       id, name, TUN_PATH, strerror(errno));

	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, name, len);
	/* IFF_NO_PI: frames without the 4-byte packet-info prefix; IFF_VNET_HDR:
	 * each frame carries a virtio header, so offloads pass through. */
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		const char *why = setiff_why(e);
		close(fd);
		if (why)
			return err_set(err, KITE_EXIT_ERROR, "network interface '%s': TAP '%s': %s (%s)",
				       id, name, why, strerror(e));
		return err_set(err, KITE_EXIT_ERROR, "network interface '%s': TAP '%s': TUNSETIFF: %s",
			       id, name, strerror(e));
	}

	/* 12 bytes: virtio_net_hdr_v1 with num_buffers, the header VERSION_1
	 * drivers use, so guest frames go to the TAP as they are. */
	int hdr = NET_HDR_LEN;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) {
		int e = errno;
		close(fd);
		return err_set(err, KITE_EXIT_ERROR,
			       "network interface '%s': TAP '%s': setting the virtio header size: %s",
			       id, name, strerror(e));
	}

	/* Offloads stay off until a guest accepts them (activate); probing them
	 * once decides whether the device offers GUEST_CSUM/TSO at all. */
	unsigned all = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
	*offloads = tap_set_offload(fd, all) == 0;
	if (tap_set_offload(fd, 0) < 0 && *offloads) {
		int e = errno;
		close(fd);
		return err_set(err, KITE_EXIT_ERROR,
			       "network interface '%s': TAP '%s': resetting offloads: %s", id, name,
			       strerror(e));
	}
	if (strcmp(ifr.ifr_name, name))
		log_info("network interface '%s': TAP '%.*s'", id, IFNAMSIZ, ifr.ifr_name);
	return fd;
}

unsigned tap_offload_flags(uint64_t guest_features)
{
	/* What the TAP may hand us is what the guest accepts: partial checksums
	 * with GUEST_CSUM, and segmentation offloads, which need checksum
	 * offload too (virtio 5.1.3.1), with GUEST_TSO4/6. */
	if (!(guest_features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM)))
		return 0;
	unsigned f = TUN_F_CSUM;
	if (guest_features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4))
		f |= TUN_F_TSO4;
	if (guest_features & VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6))
		f |= TUN_F_TSO6;
	return f;
}

int tap_set_offload(int fd, unsigned flags)
{
	return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags);
}
