#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_virtqueue (fuzz/corpus/virtqueue/): a few
well-formed programs in the target's input format, so the fuzzer starts from
queues that work and mutates from there. Run from the repository root."""
import os
import struct

LOW, HIGH = 0, 1  # the two 32 KiB RAM regions either side of the MMIO hole


def sel(region, off):
    """Address selector of fuzz_virtqueue.c's gpa_of(): region base + off."""
    return (0x10000 if region == HIGH else 0) | (off + 0x4000)


def header(log2, event_idx=False, indirect=False, start=0):
    feat = (1 if event_idx else 0) | (2 if indirect else 0)
    return struct.pack("<BBHIII", log2, feat, start,
                       sel(LOW, 0x0000), sel(LOW, 0x1000), sel(LOW, 0x2000))


def desc(i, addr, length, flags=0, nxt=0):
    return struct.pack("<BHIIBHB", 1, i, addr, length, flags, nxt, 0)


def idesc(at, addr, length, flags=0, nxt=0):
    return struct.pack("<BIIIBHB", 2, at, addr, length, flags, nxt, 0)


def avail(head):
    return struct.pack("<BH", 3, head)


def pop(roff=0, woff=0, rlen=64, wlen=64):
    return struct.pack("<BHHHH", 5, roff, woff, rlen, wlen)


def push(pick=0, length=0):
    return struct.pack("<BHI", 6, pick, length)


def notify(used_event=None):
    return struct.pack("<BH", 7, 0) if used_event is None else struct.pack("<BH", 0x87, used_event)


def reset(a, u):
    return struct.pack("<BHH", 8, a, u)


NEXT, WRITE, INDIRECT = 1, 2, 4
seeds = {
    "simple": header(3) + desc(0, sel(LOW, 0x4000), 16, NEXT, 1)
    + desc(1, sel(LOW, 0x4100), 8, NEXT, 2) + desc(2, sel(LOW, 0x4200), 32, WRITE)
    + avail(0) + pop() + push(0, 32) + notify() + pop(),
    "indirect": header(4, indirect=True)
    + idesc(sel(LOW, 0x3000), sel(LOW, 0x4000), 16, NEXT, 2)
    + idesc(sel(LOW, 0x3020), sel(HIGH, 0x0000), 64, NEXT | WRITE, 1)
    + idesc(sel(LOW, 0x3010), sel(HIGH, 0x1000), 64, WRITE)
    + desc(5, sel(LOW, 0x3000), 48, INDIRECT) + avail(5) + pop() + push(0, 128),
    "event_idx_wrap": header(2, event_idx=True, start=65533) + desc(0, sel(LOW, 0x4000), 4)
    + desc(1, sel(HIGH, 0x7ff0), 16, WRITE)
    + b"".join(avail(i % 2) + pop() + push(0, 4) + notify(65535) for i in range(6)),
    "loop_then_reset": header(3) + desc(0, sel(LOW, 0x4000), 4, NEXT, 1)
    + desc(1, sel(LOW, 0x4000), 4, NEXT, 0) + avail(0) + pop() + pop() + push()
    + reset(7, 7) + desc(1, sel(LOW, 0x4000), 4) + avail(0) + pop() + push(0, 0),
    "many_in_flight": header(3, event_idx=True) + desc(0, sel(LOW, 0x7ff0), 16, WRITE)
    + b"".join(avail(0) + pop() for _ in range(9)) + b"".join(push(0, 1) for _ in range(9)),
}

out = "fuzz/corpus/virtqueue"
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
