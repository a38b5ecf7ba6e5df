/* The tiny guests' whole runtime: port I/O, a COM1 printer and the ucall channel to
 * kite's --test-device (src/devices/testdev.h). GUEST_ASSERT reports file and line. */
#ifndef KITE_GUEST_H
#define KITE_GUEST_H

#include <stdint.h>

#include "devices/testdev.h"

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

void serial_puts(const char *s);
void ucall(uint32_t cmd, const char *file, uint32_t line, const char *msg, uint64_t a0, uint64_t a1);
void guest_print(const char *msg);
void guest_done(void) __attribute__((noreturn));

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
