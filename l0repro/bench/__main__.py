"""``python -m l0repro.bench <benchmark> [args]``: run one benchmark and print its figures."""

from __future__ import annotations

import importlib
import sys

# name -> (module, what it measures)
BENCHMARKS = {
    "mnist": ("l0repro.bench.mnist", "seconds per epoch of the MNIST training loop, L0 against dense"),
    "wrn": ("l0repro.bench.wrn", "WRN training throughput, L0 against dropout (synthetic images)"),
    "compact": ("l0repro.bench.compact", "inference speed of compacted models against their gated ones"),
    "library": ("l0repro.bench.library", "a gated resnet18 compacted on a device: exact, and images/s"),
    "threads": ("l0repro.bench.threads", "steps/s at 1 and 2 CPU threads, quiet and beside busy cores"),
    "eta": ("l0repro.bench.eta", "how long the Table 2 runs would take on this machine, from a short timing"),
}
HELP = "\n".join([
    "usage: python -m l0repro.bench <benchmark> [args]   (python -m l0repro.bench <benchmark> --help)",
    "",
    "Benchmarks that print figures (speed is measured here, never in the tests):",
    *(f"  {name:8s} {what}" for name, (_, what) in BENCHMARKS.items()),
    "",
    "examples:",
    "  python -m l0repro.bench mnist --epochs 3",
    "  python -m l0repro.bench threads",
    "  python -m l0repro.bench wrn --depth 16 --widen 4 --batch-size 128",
])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(HELP)
        return 0
    if not argv or argv[0] not in BENCHMARKS:
        said = f"unknown benchmark {argv[0]!r}\n" if argv else "no benchmark named\n"
        print(said + HELP, file=sys.stderr)
        return 2
    result = importlib.import_module(BENCHMARKS[argv[0]][0]).main(argv[1:])
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
