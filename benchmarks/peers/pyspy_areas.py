"""Sums py-spy's raw (collapsed) samples of a profile_ours.py ``plain`` run by area.

    py-spy record -r 500 -f raw -o worker.txt -- python profile_ours.py --only plain
    python pyspy_areas.py worker.txt [--under run_worker]

py-spy leaves out samples of a thread blocked in a system call (a worker
waiting for the server's reply), so these are on-CPU shares, unlike cProfile's
wall-clock own times. Each sample goes to the area of its innermost frame
that belongs to an area (profile_ours.AREAS), else to "other".
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_ours import AREAS

FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def area(frame: str) -> str | None:
    match = FRAME.match(frame)
    where = f"{match['file']}:{match['name']}" if match else frame
    for name, markers in AREAS:
        if any(m in where for m in markers):
            return name
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("raw", type=Path)
    parser.add_argument("--under", default="run_worker", help="only stacks through this frame")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    areas: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in args.raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if args.under and not any(f.split(" (")[0].endswith(args.under) for f in frames):
            continue
        n = int(count)
        total += n
        leaves[frames[-1]] += n
        for frame in reversed(frames):
            found = area(frame)
            if found:
                areas[found] += n
                break
        else:
            areas["other"] += n
    print(f"{total} samples under {args.under!r}")
    for name, n in areas.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("innermost frames:")
    for frame, n in leaves.most_common(args.top):
        print(f"  {100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
