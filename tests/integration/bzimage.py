"""Builds Linux bzImage files around a flat 64-bit payload, for loader tests.

Only the fields kite's loader reads are set (Documentation/arch/x86/boot.rst):
the payload is loaded at pref_address and entered at pref_address + 0x200.
"""
import struct

SETUP_SECTS = 1  # setup = (1 + 1) * 512 bytes: boot sector + one sector of header
LOAD_ADDR = 0x100000


def header(version=0x020F, loadflags=0x01, xloadflags=0x01, cmdline_size=255,
           pref_address=LOAD_ADDR, init_size=0x100000, alignment=0x100000,
           initrd_addr_max=0x7FFFFFFF, setup_sects=SETUP_SECTS):
    """The setup area: (setup_sects + 1) * 512 bytes with a valid header."""
    h = bytearray((setup_sects + 1) * 512)
    h[0x1F1] = setup_sects
    struct.pack_into("<H", h, 0x1FE, 0xAA55)
    h[0x200] = 0xEB                   # jmp short ...
    h[0x201] = 0x268 - 0x202          # ... past the header: its end for the zero page copy
    h[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", h, 0x206, version)
    h[0x211] = loadflags              # LOADED_HIGH
    struct.pack_into("<I", h, 0x22C, initrd_addr_max)
    struct.pack_into("<I", h, 0x230, alignment)
    struct.pack_into("<H", h, 0x236, xloadflags)  # XLF_KERNEL_64
    struct.pack_into("<I", h, 0x238, cmdline_size)
    struct.pack_into("<Q", h, 0x258, pref_address)
    struct.pack_into("<I", h, 0x260, init_size)
    return h


def bzimage(payload, **fields):
    """A bzImage whose protected-mode part is 0x200 bytes of padding then payload
    (a flat binary linked at LOAD_ADDR + 0x200)."""
    return bytes(header(**fields)) + bytes(0x200) + payload
