#ifndef KITE_CPU_H
#define KITE_CPU_H

#include "vmm/mem.h"

/* GDT, empty IDT and identity page tables in low memory (layout.h). */
int cpu_write_boot_tables(struct gmem *m);

#endif
