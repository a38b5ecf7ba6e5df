/* The i8042 keyboard controller: what the VMM may ask of it. */
#ifndef KITE_I8042_H
#define KITE_I8042_H

struct vm;

/* Queues Ctrl+Alt+Del for the guest's keyboard driver (SendCtrlAltDel).
 * Returns -1 when the keyboard cannot take keys now. */
int i8042_send_ctrl_alt_del(struct vm *vm);

#endif
