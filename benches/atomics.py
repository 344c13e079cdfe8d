#!/usr/bin/env python3
"""Atomic read-modify-write instructions in a server: how many it executes, and how much
of its time they take. An atomic is a `lock`-prefixed instruction or an `xchg` with
memory, as `objdump -d` shows the binary.

    atomics.py count CALLGRIND_FILE REQUESTS
        From a dump of `valgrind --tool=callgrind --dump-instr=yes`: atomics executed
        per request, by object and by function (self cost only).
    atomics.py time PERF_DATA BINARY
        From `perf record -e cpu-clock -p PID`: the share of all samples, and of those
        in BINARY, that sit on an atomic or on the instruction after it (where a timer
        sample lands once the atomic retires).
"""

import bisect
import collections
import re
import subprocess
import sys


def instructions(path):
    """{address: instruction text} of an ELF file, at its static addresses."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)", line)
        if m:
            found[int(m.group(1), 16)] = m.group(2).strip()
    return found


def is_atomic(text):
    return text.startswith("lock") or (text.startswith("xchg") and "(" in text)


def position(text, last):
    """A callgrind position: absolute, or relative to the last one (`+N`, `-N`, `*`)."""
    if text == "*":
        return last
    if text[0] in "+-":
        return last + int(text)
    return int(text, 0)


def count(path, requests):
    names = {}

    def name(kind, value):
        # `(id) name` defines a compressed name, `(id)` uses it.
        m = re.match(r"\((\d+)\)\s*(.*)", value)
        if not m:
            return value
        if m.group(2):
            names[(kind, m.group(1))] = m.group(2)
        return names.get((kind, m.group(1)), "?")

    cost = collections.Counter()  # (object, function, address) -> Ir
    obj = fn = None
    last = 0
    call_cost_next = False
    for line in open(path):
        key, _, value = line.rstrip("\n").partition("=")
        if key == "ob":
            obj = name("ob", value)
        elif key == "cob":
            name("ob", value)
        elif key == "fn":
            fn = name("fn", value)
        elif key == "cfn":
            name("fn", value)
        elif key in ("fl", "fi", "fe", "cfi", "cfl"):
            name("fl", value)
        elif key == "calls":
            # The next cost line is the call's inclusive cost, not this function's.
            call_cost_next = True
        elif line[:1] in "+-*0123456789" and line[:1]:
            fields = line.split()
            last = position(fields[0], last)
            if call_cost_next:
                call_cost_next = False
            elif len(fields) >= 3:
                cost[(obj, fn, last)] += int(fields[2])
    disassembled = {}
    by_object = collections.Counter()
    by_function = collections.Counter()
    for (obj, fn, address), ir in cost.items():
        if obj not in disassembled:
            disassembled[obj] = instructions(obj)
        if is_atomic(disassembled[obj].get(address, "")):
            by_object[obj] += ir
            by_function[fn] += ir
    total = sum(cost.values())
    print(f"{total / requests:.0f} instructions and "
          f"{sum(by_object.values()) / requests:.1f} atomics per request")
    for obj, n in by_object.most_common():
        print(f"  {n / requests:7.1f}  {obj}")
    print("by function:")
    for fn, n in by_function.most_common(30):
        print(f"  {n / requests:7.2f}  {fn}")


def time_share(perf_data, binary):
    script = subprocess.run(
        ["perf", "script", "-i", perf_data, "--show-mmap-events", "-F", "ip,dso"],
        capture_output=True, text=True,
    ).stdout
    # The executable mapping: runtime start and file offset. Static addresses are file
    # offsets plus the text segment's (vaddr - offset).
    m = re.search(r"\[0x([0-9a-f]+)\(0x[0-9a-f]+\) @ 0x([0-9a-f]+) .*r-xp " + re.escape(binary), script)
    segment = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True).stdout
    text = next(l.split() for l in segment.splitlines() if "LOAD" in l and " R E " in l)
    slide = int(text[2], 16) - int(text[1], 16)
    base = int(m.group(1), 16) - int(m.group(2), 16)
    found = instructions(binary)
    addresses = sorted(found)
    total = in_binary = atomic = 0
    for line in script.splitlines():
        fields = line.split()
        if len(fields) != 2 or not fields[1].startswith("("):
            continue
        total += 1
        if fields[1] != f"({binary})":
            continue
        in_binary += 1
        address = int(fields[0], 16) - base + slide
        i = bisect.bisect_left(addresses, address)
        if i < len(addresses) and addresses[i] == address and (
            is_atomic(found[address]) or (i > 0 and is_atomic(found[addresses[i - 1]]))
        ):
            atomic += 1
    print(f"{total} samples, {in_binary} in {binary}; on or after an atomic: {atomic} "
          f"({100 * atomic / total:.1f}% of all, {100 * atomic / in_binary:.1f}% of the binary's)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "count":
        count(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "time":
        time_share(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
