#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_blk (fuzz/corpus/blk/): well-formed requests
in the target's input format (see fuzz/fuzz_blk.c), so the fuzzer starts from
requests the device carries out and mutates from there. Run from the
repository root."""
import os
import struct

IN, OUT, FLUSH, GET_ID = 0, 1, 4, 8


def seed(readable, writable, cap=2048, ro=False, wide=False, payload=b""):
    """readable/writable: buffer lengths; payload: the readable bytes."""
    flags = (1 if ro else 0) | (2 if wide else 0)
    out = struct.pack("<B", flags) + struct.pack("<Q" if wide else "<H", cap)
    n = len(readable) + len(writable)
    out += struct.pack("<BB", n, len(readable))
    for length in readable + writable:
        out += struct.pack("<H", length - 1)
    return out + payload


def hdr(t, sector):
    return struct.pack("<IIQ", t, 0, sector)


SEEDS = {
    "read": seed([16], [1024, 1], payload=hdr(IN, 5)),
    "read_any_layout": seed([3, 12, 1], [700, 1, 300, 24], payload=hdr(IN, 100)),
    "read_last_sector_wide": seed([16], [512, 1], cap=1 << 40, wide=True,
                                  payload=hdr(IN, (1 << 40) - 1)),
    "write": seed([16 + 1024], [1], payload=hdr(OUT, 9) + bytes(range(256)) * 4),
    "write_ro": seed([16, 512], [1], ro=True, payload=hdr(OUT, 0) + b"\x5a" * 512),
    "flush": seed([16], [1], payload=hdr(FLUSH, 0)),
    "get_id": seed([16], [20, 1], payload=hdr(GET_ID, 0)),
    "unsupported": seed([16], [1], payload=hdr(11, 0)),
}


def main():
    d = os.path.join("fuzz", "corpus", "blk")
    os.makedirs(d, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
