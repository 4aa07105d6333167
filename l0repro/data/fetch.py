"""Put the datasets into the data directory and check them: ``make data``.

``python -m l0repro.data.fetch [--root DIR] [mnist] [cifar10] [cifar100]`` (default: MNIST and
CIFAR-10 into ``$L0REPRO_DATA``, else ``./data``):

- MNIST through ``torchvision.datasets.MNIST`` into ``<root>/MNIST/raw`` (what ``load_mnist`` reads),
- CIFAR-10 / CIFAR-100 as the official *binary* version, the one ``load_cifar`` prefers
  (``<root>/cifar-10-batches-bin``, ``<root>/cifar-100-binary``), downloaded and extracted with
  torchvision's download utilities, which check the archive's md5.

Every file is then checked against its official md5 (CIFAR-100: its official size, its per-file
md5s being unknown). A dataset already present and valid is left alone (no network needed); a
present file that fails its check is named and not replaced. Downloads can be turned off with
``L0REPRO_NO_DOWNLOAD=1``, which every command honours (``l0repro.data.load_dataset``).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from l0repro.data.cifar import LAYOUTS
from l0repro.data.errors import DataError, check_md5
from l0repro.data.mnist import MNIST_MD5

DATASETS = ("mnist", "cifar10", "cifar100")
DEFAULT = ("mnist", "cifar10")
LABELS = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
NO_DOWNLOAD_ENV = "L0REPRO_NO_DOWNLOAD"

# the official binary archives (https://www.cs.toronto.edu/~kriz/cifar.html) and their md5s
ARCHIVES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                "c32a1d4ab5d03f1284b67883e8d87530"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                 "03b5dce01913d631647c71ecec9e9cb8"),
}


class FetchError(DataError):
    """A dataset is absent and could not be downloaded."""


def next_step(root: str | Path) -> str:
    """What to do about a dataset missing from the data directory ``root``."""
    return (f"next: `make data DATA={root}` downloads it there (plain `make data`: into $L0REPRO_DATA, "
            "else ./data), or point L0REPRO_DATA (make: DATA=<dir>, l0repro.train: data.root=<dir>) at "
            "a directory that holds it; offline, copy the official files in (README, 'Set-up and the "
            "commands')")


def default_root() -> Path:
    """The data directory every command defaults to: ``$L0REPRO_DATA``, else ``./data``."""
    return Path(os.environ.get("L0REPRO_DATA") or "data").expanduser()


def folder(name: str, root: str | Path) -> Path:
    """The directory that holds ``name``'s files under the data directory ``root``."""
    _check_name(name)
    return Path(root) / ("MNIST/raw" if name == "mnist" else LAYOUTS[name].folder)


def files(name: str, root: str | Path) -> list[Path]:
    """The files the loader reads for ``name``."""
    if name == "mnist":
        names = list(MNIST_MD5)
    else:
        names = [*LAYOUTS[name].train_files, *LAYOUTS[name].test_files]
    return [folder(name, root) / f for f in names]


def missing(name: str, root: str | Path) -> list[Path]:
    return [p for p in files(name, root) if not p.is_file()]


def verify(name: str, root: str | Path) -> None:
    """Check every file of ``name`` against its official md5 (or size); ``DataError`` names a bad one."""
    for path in files(name, root):
        if name == "mnist":
            check_md5(path, MNIST_MD5[path.name])
            continue
        layout = LAYOUTS[name]
        if path.name in layout.md5:
            check_md5(path, layout.md5[path.name])
        else:
            if not path.is_file():
                raise DataError(f"dataset file {path} is missing")
            size, want = path.stat().st_size, layout.records[path.name] * layout.record_size
            if size != want:
                raise DataError(f"dataset file {path} has {size} bytes, expected {want} (truncated "
                                "or not the official file; delete it to re-download)")


def downloads_disabled() -> bool:
    return os.environ.get(NO_DOWNLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")


def _download(name: str, root: Path) -> None:
    if name == "mnist":
        from torchvision.datasets import MNIST

        MNIST(root=str(root), train=True, download=True)
    else:
        from torchvision.datasets.utils import download_and_extract_archive

        url, md5 = ARCHIVES[name]
        download_and_extract_archive(url, download_root=str(root), filename=url.rsplit("/", 1)[1],
                                     md5=md5, remove_finished=True)


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fetch(name: str, root: str | Path, timeout: float = 60.0) -> str:
    """Make ``name`` present and valid under ``root``: ``'present'`` or ``'downloaded'``.

    Raises ``FetchError`` when it is absent and cannot be downloaded (downloads disabled, no
    network, ...), ``DataError`` naming the file when a file fails its check.
    """
    _check_name(name)
    root = Path(root).expanduser()
    where = folder(name, root)
    if not missing(name, root):
        verify(name, root)
        return "present"
    if downloads_disabled():
        raise FetchError(f"{LABELS[name]} not found in {where} and downloads are disabled "
                         f"({NO_DOWNLOAD_ENV} is set)")
    # torchvision makes the dataset's folder before downloading: on failure leave no empty one
    created = [p for p in (where, *where.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"{LABELS[name]} not found in {where}, and the data directory {root} "
                         f"cannot be created: {e}") from e
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torchvision's urlopen has none: a dead network must not hang
    try:
        _download(name, root)
    except Exception as e:  # any download failure (network, HTTP, integrity) is reported alike
        for p in created:  # deepest first; a folder holding a partial file stays
            if not p.exists():
                continue
            try:
                p.rmdir()
            except OSError:
                break
        raise FetchError(f"{LABELS[name]} not found in {where} and could not be downloaded: "
                         f"{_one_line(e)}") from e
    finally:
        socket.setdefaulttimeout(previous)
    if missing(name, root):
        raise FetchError(f"{LABELS[name]} was downloaded into {root} but {missing(name, root)[0]} "
                         "is still missing")
    verify(name, root)
    return "downloaded"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m l0repro.data.fetch", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Put MNIST and CIFAR into the data directory (downloading what is absent) and "
                    "check every file against its official md5; what `make data` runs.",
        epilog="examples:\n"
               "  python -m l0repro.data.fetch                      # MNIST and CIFAR-10 into "
               "$L0REPRO_DATA, else ./data\n"
               "  python -m l0repro.data.fetch --root /data/l0 cifar100\n\n"
               f"{NO_DOWNLOAD_ENV}=1 turns downloads off: an absent dataset is then an error.")
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"any of {', '.join(DATASETS)} (default: {' '.join(DEFAULT)})")
    parser.add_argument("--root", type=Path, default=None,
                        help="data directory (default: $L0REPRO_DATA, else ./data)")
    args = parser.parse_args(argv)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset {unknown[0]!r}; expected any of {', '.join(DATASETS)}")
    root = (args.root or default_root()).expanduser()
    failed = 0
    for name in args.datasets or DEFAULT:
        try:
            outcome = fetch(name, root)
        except DataError as e:
            print(f"error ({type(e).__name__}): {e}", file=sys.stderr)
            failed += 1
            continue
        checked = "md5s" if name != "cifar100" else "official sizes"
        print(f"{LABELS[name]}: {outcome}, {checked} ok: {folder(name, root)}")
    if failed:
        print(f"{failed} dataset(s) missing; {next_step(root)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
