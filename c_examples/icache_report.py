#!/usr/bin/env python3
"""Reads a callgrind output file (valgrind --tool=callgrind --cache-sim=yes) of icache_probe
and prints, per transfer (a call of sunrise_link_transfer_submit_ex or _submit), the
instructions (Ir) and first-level instruction-cache misses (I1mr) of each object, then the
functions of libsunrise_link.so that miss most."""
import collections
import re
import sys


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: icache_report.py CALLGRIND_OUT_FILE", file=sys.stderr)
        return 2
    names = {"ob": {}, "fn": {}}

    def name(kind, text):
        m = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not m:
            return text
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), "?")

    ob = fn = cfn = None
    skip = False
    i1 = None
    transfers = 0
    by_ob = collections.Counter()
    ir_ob = collections.Counter()
    by_fn = collections.Counter()
    try:
        f = open(sys.argv[1], errors="replace")
    except OSError as e:
        print(f"icache_report.py: {e}", file=sys.stderr)
        return 1
    for line in f:
        line = line.rstrip("\n")
        if line.startswith("events:"):
            events = line.split()[1:]
            if "I1mr" not in events:
                print("icache_report.py: no I1mr events: run callgrind with --cache-sim=yes",
                      file=sys.stderr)
                return 1
            i1 = events.index("I1mr")
        elif line.startswith("ob="):
            ob = name("ob", line[3:])
        elif line.startswith("fn="):
            fn = name("fn", line[3:])
        elif line.startswith("cob="):
            name("ob", line[4:])
        elif line.startswith("cfn="):
            cfn = name("fn", line[4:])
        elif line.startswith("calls="):
            skip = True  # the next cost line is the call's inclusive cost
            if cfn in ("sunrise_link_transfer_submit_ex", "sunrise_link_transfer_submit"):
                transfers += int(line[6:].split()[0])
        elif line and (line[0].isdigit() or line[0] in "+-*") and i1 is not None:
            if skip:
                skip = False
                continue
            v = [int(x) for x in line.split()[1:]] + [0] * 16
            by_ob[ob] += v[i1]
            ir_ob[ob] += v[0]
            by_fn[(ob, fn)] += v[i1]
    if transfers == 0:
        print("icache_report.py: no call of sunrise_link_transfer_submit(_ex) in the file",
              file=sys.stderr)
        return 1
    t = float(transfers)
    print(f"{transfers} transfers; per transfer:")
    print(f"{'I1 misses':>10} {'instructions':>13}  object")
    for o, v in by_ob.most_common():
        if "icache_probe" in o or v / t < 0.5:
            continue
        print(f"{v / t:10.1f} {ir_ob[o] / t:13.0f}  {o}")
    print("  (icache_probe itself, which evicts the cache between transfers, is left out)")
    print("\nfunctions of libsunrise_link.so, I1 misses per transfer:")
    for (o, f), v in by_fn.most_common():
        if "libsunrise_link" in o and v / t >= 1.0:
            print(f"{v / t:10.1f}  {f[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
