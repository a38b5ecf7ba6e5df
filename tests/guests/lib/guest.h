/* The tiny guests' whole runtime: port I/O, a COM1 printer and the ucall channel to
 * kite's --test-device (src/devices/testdev.h). GUEST_ASSERT reports file and line. */
#ifndef KITE_GUEST_H
#define KITE_GUEST_H

#include <stdint.h>

#include "devices/testdev.h"

/* Port I/O is ordered against memory ("memory" clobber): a ucall's struct must be
 * in RAM before the OUT that hands its address to kite. */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port) : "memory"); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port) : "memory"); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port) : "memory"); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory"); return v; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* Guest-physical address of the Linux zero page kite passed in rsi. */
extern uint64_t boot_params_gpa;
/* The kernel command line the zero page points at (cmd_line_ptr). */
const char *boot_cmdline(void);

/* Small string helpers (no libc here). */
int str_eq(const char *a, const char *b);
int mem_eq(const void *a, const void *b, unsigned n);
unsigned str_len(const char *s);

/* A 64-bit IDT in the guest image: install gates, then load it. Handlers are
 * `__attribute__((interrupt)) void h(struct interrupt_frame *f)`. */
struct interrupt_frame;
void idt_set_gate(uint8_t vector, void (*handler)(struct interrupt_frame *));
void idt_load(void);
static inline void irq_enable_and_halt(void) { __asm__ volatile("sti; hlt; cli" ::: "memory"); }

/* The local APIC's registers (in-kernel LAPIC of kite's irqchip). */
#define LAPIC_BASE 0xfee00000ULL
#define LAPIC_ID 0x20
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_IRR 0x200
#define LAPIC_ICR_LO 0x300
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
static inline uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static inline void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
/* Is vector vec requested (IRR) at the local APIC? */
static inline int lapic_irr_has(unsigned vec)
{
	return (lapic_read(LAPIC_IRR + (vec / 32) * 0x10) >> (vec % 32)) & 1;
}

/* The IOAPIC's indirect registers: index at +0x00, data at +0x10. */
#define IOAPIC_BASE 0xfec00000ULL
static inline void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(IOAPIC_BASE, reg);
	mmio_write32(IOAPIC_BASE + 0x10, v);
}
static inline uint32_t ioapic_read(uint32_t reg)
{
	mmio_write32(IOAPIC_BASE, reg);
	return mmio_read32(IOAPIC_BASE + 0x10);
}

void serial_puts(const char *s);
void ucall(uint32_t cmd, const char *file, uint32_t line, const char *msg, uint64_t a0, uint64_t a1);
void guest_print(const char *msg);
void guest_done(void) __attribute__((noreturn));
/* Ends the VM with a triple fault (what kite reports as a guest reset). */
void guest_shutdown(void) __attribute__((noreturn));

#define GUEST_ASSERT(cond)                                                               \
	do {                                                                                 \
		if (!(cond))                                                                 \
			ucall(UCALL_ASSERT, __FILE__, __LINE__, "GUEST_ASSERT(" #cond ")", 0, 0); \
	} while (0)
#define GUEST_ASSERT_EQ(a, b)                                                            \
	do {                                                                                 \
		uint64_t _a = (uint64_t)(a), _b = (uint64_t)(b);                             \
		if (_a != _b)                                                                \
			ucall(UCALL_ASSERT, __FILE__, __LINE__, "GUEST_ASSERT_EQ(" #a ", " #b ")", _a, _b); \
	} while (0)

#endif
