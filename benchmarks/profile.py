"""Sum up a py-spy raw profile (``--profile FILE`` of :mod:`benchmarks.ingest` / :mod:`benchmarks.single`).

``python -m benchmarks.profile FILE [--top N] [--match TEXT]``: the share of samples in which a function
is on the stack (inclusive) and at the top (self), and the inclusive share per source file.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        found = _FRAME.match(frame.strip())
        function, file = (found["function"], found["file"]) if found else (frame.strip(), "?")
        out.append((function, _short(file)))
    return out


def _short(file: str) -> str:
    for marker in ("site-packages/", "/bench-wt/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def summarize(path: Path) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    files: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        seen = frames(stack)
        for name in {f"{function} ({file})" for function, file in seen}:
            inclusive[name] += samples
        for file in {file for _, file in seen}:
            files[file] += samples
        function, file = seen[-1]
        own[f"{function} ({file})"] += samples
    return total, inclusive, own, files


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only functions or files containing this text")
    args = parser.parse_args()
    total, inclusive, own, files = summarize(args.file)
    print(f"{total:,} samples")
    for title, counter in (("inclusive", inclusive), ("self", own), ("files, inclusive", files)):
        print(f"-- {title}")
        shown = [(name, n) for name, n in counter.most_common() if args.match in name][: args.top]
        for name, samples in shown:
            print(f"{100 * samples / total:6.1f}%  {name}")


if __name__ == "__main__":
    main()
