/* PCI bus 0 behind the legacy configuration mechanism #1 (ports 0xCF8/0xCFC).
 * Slot 0 is the host bridge; devices (virtio) take the other slots. */
#ifndef KITE_PCI_H
#define KITE_PCI_H

#include <pthread.h>
#include <stdint.h>

#define PCI_SLOTS 32
#define PCI_CFG_SIZE 256

struct pci_dev;

#define PCI_BARS 6
#define PCI_CMD_MEMORY 0x2
#define PCI_BAR0 0x10

struct pci_dev_ops {
	/* Optional hook after the generic config-space access (bus lock held). */
	void (*cfg_write)(struct pci_dev *d, unsigned off, uint32_t value, unsigned size);
	/* Accesses to a memory BAR while memory decoding is on; off < bar size.
	 * Called without the bus lock. */
	void (*bar_read)(struct pci_dev *d, unsigned bar, uint64_t off, uint8_t *data, unsigned size);
	void (*bar_write)(struct pci_dev *d, unsigned bar, uint64_t off, const uint8_t *data, unsigned size);
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* bits the guest may change */
	uint32_t bar_size[PCI_BARS]; /* 32-bit memory BARs: power of two >= 16, 0 = none */
	const struct pci_dev_ops *ops;
	void *opaque;
};

struct pci_bus {
	pthread_mutex_t lock;
	uint32_t addr; /* latched 0xCF8 */
	struct pci_dev *slot[PCI_SLOTS];
	struct pci_dev host_bridge;
	void (*reset)(void *ctx); /* 0xCF9 reset control */
	void *reset_ctx;
	uint64_t next_bar; /* where the next BAR is placed (the "firmware" assignment) */
};

void pci_bus_init(struct pci_bus *b);
/* Returns the slot used, or -1 if none is free or the BARs do not fit the
 * 32-bit window. Memory BARs (bar_size set) get addresses in the window, as
 * firmware would assign them; the guest may move them. */
int pci_bus_add(struct pci_bus *b, struct pci_dev *d);
/* Current guest-physical address of a memory BAR (the guest may be sizing it). */
uint32_t pci_bar_addr(const struct pci_dev *d, unsigned bar);
/* The device whose enabled memory BAR holds addr, with the BAR index and the
 * offset in it; NULL for none. */
struct pci_dev *pci_bar_find(struct pci_bus *b, uint64_t addr, unsigned *bar, uint64_t *off);
/* Access through the 0xCF8..0xCFF window; offset is relative to 0xCF8. */
void pci_io_read(struct pci_bus *b, unsigned offset, uint8_t *data, unsigned size);
void pci_io_write(struct pci_bus *b, unsigned offset, const uint8_t *data, unsigned size);

/* Snapshots of configuration space: a saved image fits a device when every
 * bit the guest cannot write equals this device's (same identity, capabilities,
 * BAR sizes). pci_cfg_check: 0, or -1 with the first offset that differs.
 * pci_cfg_load takes the writable bits of a checked image (bus lock held). */
int pci_cfg_check(const struct pci_dev *d, const uint8_t cfg[PCI_CFG_SIZE], unsigned *bad_off);
void pci_cfg_load(struct pci_dev *d, const uint8_t cfg[PCI_CFG_SIZE]);

struct snap_writer;
struct snap_cursor;
struct kite_err;
/* The bus's own state: the 0xCF8 address latch and the host bridge's
 * configuration space, into the open section of w / from a section's cursor
 * (checked whole before anything changes; KITE_EXIT_IMAGE). Devices on the bus
 * save their own configuration space. */
void pci_bus_save(struct pci_bus *b, struct snap_writer *w);
int pci_bus_restore(struct pci_bus *b, struct snap_cursor *c, struct kite_err *err);

#endif
