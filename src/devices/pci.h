/* PCI bus 0 behind the legacy configuration mechanism #1 (ports 0xCF8/0xCFC).
 * Slot 0 is the host bridge; devices (virtio) take the other slots. */
#ifndef KITE_PCI_H
#define KITE_PCI_H

#include <pthread.h>
#include <stdint.h>

#define PCI_SLOTS 32
#define PCI_CFG_SIZE 256

struct pci_dev;

struct pci_dev_ops {
	/* Optional hooks after the generic config-space access. */
	void (*cfg_write)(struct pci_dev *d, unsigned off, uint32_t value, unsigned size);
};

struct pci_dev {
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* bits the guest may change */
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
};

void pci_bus_init(struct pci_bus *b);
/* Returns the slot used, or -1 if none is free. */
int pci_bus_add(struct pci_bus *b, struct pci_dev *d);
/* Access through the 0xCF8..0xCFF window; offset is relative to 0xCF8. */
void pci_io_read(struct pci_bus *b, unsigned offset, uint8_t *data, unsigned size);
void pci_io_write(struct pci_bus *b, unsigned offset, const uint8_t *data, unsigned size);

#endif
