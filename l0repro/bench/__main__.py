"""``python -m l0repro.bench {mnist,wrn,compact} [args]``: run one benchmark and print its figures."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {"mnist": "l0repro.bench.mnist", "wrn": "l0repro.bench.wrn",
              "compact": "l0repro.bench.compact"}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        print(f"usage: python -m l0repro.bench {{{','.join(BENCHMARKS)}}} [args]", file=sys.stderr)
        sys.exit(2)
    importlib.import_module(BENCHMARKS[sys.argv[1]]).main(sys.argv[2:])


if __name__ == "__main__":
    main()
