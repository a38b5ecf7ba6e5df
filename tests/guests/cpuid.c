/* CPUID as kite sets it: hypervisor bit, KVM's signature leaf, APIC id = vCPU
 * index, and the local APIC agreeing about the id. */
#include "guest.h"

int main(void)
{
	uint32_t r[4];
	cpuid(1, 0, r);
	GUEST_ASSERT(r[2] & (1u << 31));     /* ECX.hypervisor */
	GUEST_ASSERT_EQ(r[1] >> 24, 0);       /* initial APIC id of vCPU 0 */
	GUEST_ASSERT(r[3] & (1u << 9));      /* EDX.APIC: there is a local APIC */

	cpuid(0x40000000, 0, r);
	GUEST_ASSERT_EQ(r[0], 0x40000001u);   /* highest hypervisor leaf */
	char sig[13];
	for (int i = 0; i < 4; i++) {
		sig[i] = (char)(r[1] >> (8 * i));
		sig[4 + i] = (char)(r[2] >> (8 * i));
		sig[8 + i] = (char)(r[3] >> (8 * i));
	}
	sig[12] = 0;
	GUEST_ASSERT(mem_eq(sig, "KVMKVMKVM\0\0\0", 12));

	GUEST_ASSERT_EQ(lapic_read(LAPIC_ID) >> 24, 0);
	return 0;
}
