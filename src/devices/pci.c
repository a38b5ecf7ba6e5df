#include "devices/pci.h"

#include <string.h>

#include "arch/x86/layout.h"
#include "devices/device.h"
#include "snapshot/snapfile.h"

#define PCI_VENDOR_REDHAT 0x1b36
#define PCI_DEVICE_HOST 0x0008
#define PCI_CLASS_HOST_BRIDGE 0x0600

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

void pci_bus_init(struct pci_bus *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	struct pci_dev *h = &b->host_bridge;
	put16(h->cfg + 0x00, PCI_VENDOR_REDHAT);
	put16(h->cfg + 0x02, PCI_DEVICE_HOST);
	put16(h->cfg + 0x0a, PCI_CLASS_HOST_BRIDGE);
	h->cfg[0x0e] = 0x00; /* header type 0, single function */
	put16(h->wmask + 0x04, 0x0006); /* command: memory, bus master */
	b->slot[0] = h;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

int pci_bus_add(struct pci_bus *b, struct pci_dev *d)
{
	int slot = -1;
	for (int i = 1; i < PCI_SLOTS && slot < 0; i++)
		if (!b->slot[i])
			slot = i;
	if (slot < 0)
		return -1;
	if (!b->next_bar)
		b->next_bar = LAYOUT_PCI_BARS;
	uint64_t at = b->next_bar;
	for (unsigned i = 0; i < PCI_BARS; i++) {
		uint32_t size = d->bar_size[i];
		if (!size)
			continue;
		at = (at + size - 1) & ~(uint64_t)(size - 1);
		if (at + size > LAYOUT_PCI_MMIO32_END)
			return -1;
		/* 32-bit, non-prefetchable memory BAR: the low 4 bits are read-only 0. */
		put32(d->cfg + PCI_BAR0 + 4 * i, (uint32_t)at);
		put32(d->wmask + PCI_BAR0 + 4 * i, ~(size - 1));
		at += size;
	}
	b->next_bar = at;
	b->slot[slot] = d;
	return slot;
}

uint32_t pci_bar_addr(const struct pci_dev *d, unsigned bar)
{
	return get32(d->cfg + PCI_BAR0 + 4 * bar) & ~0xfu;
}

struct pci_dev *pci_bar_find(struct pci_bus *b, uint64_t addr, unsigned *bar, uint64_t *off)
{
	struct pci_dev *found = NULL;
	pthread_mutex_lock(&b->lock);
	for (int s = 1; s < PCI_SLOTS && !found; s++) {
		struct pci_dev *d = b->slot[s];
		if (!d || !(d->cfg[0x04] & PCI_CMD_MEMORY))
			continue;
		for (unsigned i = 0; i < PCI_BARS; i++) {
			uint64_t base = pci_bar_addr(d, i);
			if (d->bar_size[i] && addr >= base && addr - base < d->bar_size[i]) {
				*bar = i;
				*off = addr - base;
				found = d;
				break;
			}
		}
	}
	pthread_mutex_unlock(&b->lock);
	return found;
}

/* The addressed device and register, or NULL for nothing there. */
static struct pci_dev *target(struct pci_bus *b, unsigned *reg)
{
	uint32_t a = b->addr;
	if (!(a & 0x80000000u))
		return NULL;
	unsigned bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;
	*reg = a & 0xfc;
	if (bus != 0 || fn != 0)
		return NULL;
	return b->slot[slot];
}

void pci_io_read(struct pci_bus *b, unsigned offset, uint8_t *data, unsigned size)
{
	pthread_mutex_lock(&b->lock);
	memset(data, 0xff, size);
	if (offset == 0 && size == 4) {
		memcpy(data, &b->addr, 4);
	} else if (offset >= 4) {
		unsigned reg;
		struct pci_dev *d = target(b, &reg);
		unsigned at = reg + (offset - 4);
		if (d && at + size <= PCI_CFG_SIZE)
			memcpy(data, d->cfg + at, size);
	}
	pthread_mutex_unlock(&b->lock);
}

void pci_io_write(struct pci_bus *b, unsigned offset, const uint8_t *data, unsigned size)
{
	pthread_mutex_lock(&b->lock);
	if (offset == 0 && size == 4) {
		memcpy(&b->addr, data, 4);
	} else if (offset == 1 && size == 1) {
		/* 0xCF9 reset control: bit 2 starts the reset (`reboot=p`). */
		if ((data[0] & 0x04) && b->reset)
			b->reset(b->reset_ctx);
	} else if (offset >= 4) {
		unsigned reg;
		struct pci_dev *d = target(b, &reg);
		unsigned at = reg + (offset - 4);
		if (d && at + size <= PCI_CFG_SIZE) {
			uint32_t value = 0;
			for (unsigned i = 0; i < size; i++) {
				uint8_t m = d->wmask[at + i];
				d->cfg[at + i] = (uint8_t)((d->cfg[at + i] & ~m) | (data[i] & m));
				value |= (uint32_t)data[i] << (8 * i);
			}
			if (d->ops && d->ops->cfg_write)
				d->ops->cfg_write(d, at, value, size);
		}
	}
	pthread_mutex_unlock(&b->lock);
}

/* ---- snapshots ---- */

int pci_cfg_check(const struct pci_dev *d, const uint8_t cfg[PCI_CFG_SIZE], unsigned *bad_off)
{
	for (unsigned i = 0; i < PCI_CFG_SIZE; i++)
		if ((cfg[i] ^ d->cfg[i]) & (uint8_t)~d->wmask[i]) {
			*bad_off = i;
			return -1;
		}
	return 0;
}

void pci_cfg_load(struct pci_dev *d, const uint8_t cfg[PCI_CFG_SIZE])
{
	for (unsigned i = 0; i < PCI_CFG_SIZE; i++)
		d->cfg[i] = (uint8_t)((d->cfg[i] & ~d->wmask[i]) | (cfg[i] & d->wmask[i]));
}

/* Section "PCIB": u32 address latch, the host bridge's 256 configuration bytes. */
void pci_bus_save(struct pci_bus *b, struct snap_writer *w)
{
	pthread_mutex_lock(&b->lock);
	snapw_u32(w, b->addr);
	snapw_bytes(w, b->host_bridge.cfg, PCI_CFG_SIZE);
	pthread_mutex_unlock(&b->lock);
}

int pci_bus_restore(struct pci_bus *b, struct snap_cursor *c, struct kite_err *err)
{
	uint32_t addr = snapc_u32(c);
	uint8_t cfg[PCI_CFG_SIZE];
	snapc_bytes(c, cfg, sizeof(cfg));
	if (!snapc_done(c))
		return err_set(err, KITE_EXIT_IMAGE, "pci: bus state section is %s",
			       c->bad ? "short" : "longer than its fields");
	pthread_mutex_lock(&b->lock);
	unsigned off;
	int r = pci_cfg_check(&b->host_bridge, cfg, &off);
	if (r < 0) {
		err_set(err, KITE_EXIT_IMAGE,
			"pci: host bridge configuration byte 0x%02x is 0x%02x in the snapshot, read-only 0x%02x here",
			off, cfg[off], b->host_bridge.cfg[off]);
	} else {
		/* Any latch value is one the guest could have written. */
		b->addr = addr;
		pci_cfg_load(&b->host_bridge, cfg);
	}
	pthread_mutex_unlock(&b->lock);
	return r;
}

/* ---- bus 0 as a kite device ---- */

static struct pci_bus pci0;

static void pci_reset(void *ctx)
{
	vm_request_stop(ctx, KITE_EXIT_OK, "guest reset (PCI reset control)");
}

static void pci_read(void *o, uint64_t off, uint8_t *data, unsigned size)
{
	pci_io_read(o, (unsigned)off, data, size);
}

static void pci_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	pci_io_write(o, (unsigned)off, data, size);
}

static const struct bus_ops pci_ops = {.read = pci_read, .write = pci_write};

/* The 32-bit BAR window: one bus range, routed to whichever BAR holds the
 * address now, so the guest may move BARs while vCPUs run. */
static void window_read(void *o, uint64_t off, uint8_t *data, unsigned size)
{
	unsigned bar;
	uint64_t at;
	struct pci_dev *d = pci_bar_find(o, LAYOUT_PCI_MMIO32 + off, &bar, &at);
	memset(data, 0xff, size);
	if (d && d->ops && d->ops->bar_read && at + size <= d->bar_size[bar])
		d->ops->bar_read(d, bar, at, data, size);
}

static void window_write(void *o, uint64_t off, const uint8_t *data, unsigned size)
{
	unsigned bar;
	uint64_t at;
	struct pci_dev *d = pci_bar_find(o, LAYOUT_PCI_MMIO32 + off, &bar, &at);
	if (d && d->ops && d->ops->bar_write && at + size <= d->bar_size[bar])
		d->ops->bar_write(d, bar, at, data, size);
}

static const struct bus_ops window_ops = {.read = window_read, .write = window_write};

static int pci_create(struct vm *vm, struct kite_err *err)
{
	pci_bus_init(&pci0);
	pci0.reset = pci_reset;
	pci0.reset_ctx = vm;
	if (bus_register(&vm->pio, PORT_PCI_CONFIG_ADDR, 8, &pci_ops, &pci0, "pci-config") < 0)
		return err_set(err, KITE_EXIT_ERROR, "pci: port range busy");
	if (bus_register(&vm->mmio, LAYOUT_PCI_MMIO32, LAYOUT_PCI_MMIO32_END - LAYOUT_PCI_MMIO32,
			 &window_ops, &pci0, "pci-bars") < 0)
		return err_set(err, KITE_EXIT_ERROR, "pci: BAR window busy");
	vm->pci = &pci0;
	return 0;
}

static int pci_save(struct vm *vm, struct snap_writer *w, struct kite_err *err)
{
	(void)vm;
	(void)err;
	snapw_begin(w, "PCIB", 0);
	pci_bus_save(&pci0, w);
	snapw_end(w);
	return 0;
}

static int pci_restore(struct vm *vm, const struct snap_reader *r, struct kite_err *err)
{
	(void)vm;
	struct snap_cursor c;
	if (!snapr_find(r, "PCIB", 0, &c))
		return err_set(err, KITE_EXIT_IMAGE, "pci: the snapshot has no PCI bus state (section PCIB)");
	return pci_bus_restore(&pci0, &c, err);
}

KITE_DEVICE(pci, {.name = "pci", .create = pci_create, .save = pci_save, .restore = pci_restore});
