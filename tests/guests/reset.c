/* Each way a guest can end the VM, chosen by the command line: i8042, acpi-reset,
 * pci-cf9, acpi-s5. The VM must stop at the write; reaching the next line fails. */
#include "guest.h"

int main(void)
{
	const char *how = boot_cmdline();
	if (str_eq(how, "i8042")) {
		outb(0x64, 0xfe); /* pulse the CPU reset line */
	} else if (str_eq(how, "acpi-reset")) {
		outb(0x3c1, 0x0f); /* FADT RESET_REG / RESET_VALUE */
	} else if (str_eq(how, "pci-cf9")) {
		/* Linux's reboot=p sequence: select a hard reset, then set bit 2 to start it. */
		outb(0xcf9, 0x02);
		guest_print("cf9: still running after 0x02");
		outb(0xcf9, 0x06);
	} else if (str_eq(how, "acpi-s5")) {
		outb(0x3c0, (5 << 2) | 0x20); /* SLP_TYP = S5, SLP_EN */
	} else {
		GUEST_ASSERT(!"unknown reset method on the command line");
	}
	GUEST_ASSERT(!"the VM is still running after the reset/poweroff write");
	return 0;
}
