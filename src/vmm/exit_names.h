/* Human names for KVM exit reasons, for error reports and trap accounting. */
#ifndef KITE_EXIT_NAMES_H
#define KITE_EXIT_NAMES_H

const char *kvm_exit_name(unsigned reason);
/* "io", "mmio", "hlt", ...; "other" for reasons without a name. */
const char *kvm_exit_short_name(unsigned reason);
const char *kvm_internal_error_name(unsigned suberror);

#endif
