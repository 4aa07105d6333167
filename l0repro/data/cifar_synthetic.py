"""Small synthetic CIFAR files in the official binary format, for tests and CI.

No copy of CIFAR-100 is available offline, so its loader is tested on these. They fail the
official checks by design: load them with ``load_cifar(..., source='binary', verify='size')``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from l0repro.data.cifar import LAYOUTS


def encode_records(images: np.ndarray, labels: np.ndarray, label_bytes: int) -> bytes:
    """Records of ``label_bytes`` label bytes + 3072 pixel bytes (R, G, B planes, row-major).

    With two label bytes (CIFAR-100) the first is a coarse label, here ``fine // 5``
    (the real coarse labels group the fine ones differently; the loader ignores them).
    """
    images = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    labels = np.asarray(labels)
    if images.shape[1] != 3 * 32 * 32 or labels.shape != (len(images),):
        raise ValueError(f"expected (N, 3, 32, 32) images and N labels, got {images.shape} "
                         f"and {labels.shape}")
    if labels.min() < 0 or labels.max() > 255:
        raise ValueError("labels must fit in one byte")
    head = [labels // 5, labels] if label_bytes == 2 else [labels]
    return np.concatenate([np.stack(head, 1).astype(np.uint8), images], 1).tobytes()


def write_cifar_binary(root: str | Path, name: str, n_train: int = 50, n_test: int = 20,
                       seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write random images and labels as ``name``'s binary files under ``root``.

    CIFAR-10's training records are split over its five batch files in order. Returns
    ``{'train': (images, labels), 'test': (images, labels)}`` with uint8 (N, 3, 32, 32)
    images and int64 labels, in the order the loader reads them back.
    """
    layout = LAYOUTS[name]
    if n_train < len(layout.train_files) or n_test < 1:
        raise ValueError(f"{name} needs at least {len(layout.train_files)} training and 1 test "
                         f"record (one per file), got {n_train} and {n_test}")
    rng = np.random.default_rng(seed)
    folder = Path(root) / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n, files in (("train", n_train, layout.train_files),
                            ("test", n_test, layout.test_files)):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, layout.num_classes, n).astype(np.int64)
        for f, idx in zip(files, np.array_split(np.arange(n), len(files)), strict=True):
            (folder / f).write_bytes(encode_records(images[idx], labels[idx], layout.label_bytes))
        written[split] = (images, labels)
    return written
