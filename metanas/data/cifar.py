"""CIFAR-10 / CIFAR-100 from a user's copy in the standard "python version" batch format (host numpy).

Layout expected under ``root`` (either the folder that contains the batch folder, or the batch folder itself):

- CIFAR-10: ``cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch}``; each a pickle of a dict with
  ``b"data"`` (uint8 ``[N, 3072]``, channel-major 3x32x32) and ``b"labels"`` (list of int).
- CIFAR-100: ``cifar-100-python/{train, test}`` with ``b"data"`` and ``b"fine_labels"``.

(https://www.cs.toronto.edu/~kriz/cifar.html). Only load files you trust: the format is a pickle.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from metanas.data.images import ImageDataset, standardize

_LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}


def _read(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        try:
            d = pickle.load(f, encoding="bytes")
        except Exception as e:  # not a pickle of the python version
            raise ValueError(f"{path}: not a CIFAR python-version batch (a pickled dict with b'data', "
                             f"{label_key!r}): {type(e).__name__}") from None
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        keys = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"{path}: expected a dict with keys b'data' and {label_key!r}, got {keys}")
    x = np.asarray(d[b"data"], np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' must be uint8 [N, 3072] (3x32x32 channel-major), got shape {x.shape}")
    y = np.asarray(d[label_key], np.int32)
    if y.shape != (x.shape[0],):
        raise ValueError(f"{path}: {label_key!r} has {y.shape[0]} labels for {x.shape[0]} images")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y


def load_cifar(root: str | Path, name: str = "cifar10") -> ImageDataset:
    """Standardised NHWC float32 CIFAR train/test arrays from ``root``."""
    if name not in _LAYOUT:
        raise ValueError(f"unknown CIFAR variant {name!r}; expected one of {sorted(_LAYOUT)}")
    folder, train_files, test_files, label_key, ncls = _LAYOUT[name]
    root = Path(root)
    base = root if (root / train_files[0]).exists() else root / folder
    missing = [f for f in train_files + test_files if not (base / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{name} not found: expected {base}/{{{','.join(train_files + test_files)}}} "
                                f"(the CIFAR 'python version'); missing {', '.join(missing)}; set train.data_root")
    tr = [_read(base / f, label_key) for f in train_files]
    te = [_read(base / f, label_key) for f in test_files]
    xtr, ytr = np.concatenate([a for a, _ in tr]), np.concatenate([b for _, b in tr])
    xte, yte = np.concatenate([a for a, _ in te]), np.concatenate([b for _, b in te])
    xtr, xte = standardize(xtr.astype(np.float32) / 255.0, xte.astype(np.float32) / 255.0)
    return ImageDataset(name, xtr, ytr, xte, yte, ncls)
