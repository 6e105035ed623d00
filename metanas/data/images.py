"""Small image classification sets for the default CPU NAS runs (host numpy) and standard augmentation.

``load_omniglot_classification`` turns the REAL Omniglot background set (Lake et al. 2015;
``shared/data/omniglot/images_background.npz``, bool ``[964 chars, 20 drawers, 105, 105]``, True = background)
into a plain ``num_classes``-way classification task: the first ``num_classes`` characters, drawers
``0..train_per_class-1`` for training and the rest for testing, ink = 1, area-resized to ``image_size``. This is not
a few-shot sampler (that is ``metanas.data.omniglot``); it is a small real image set that a 2-core CPU can search on.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np


class ImageDataset(NamedTuple):
    name: str
    x_train: np.ndarray  # float32 [N, H, W, C], standardised
    y_train: np.ndarray  # int32 [N]
    x_test: np.ndarray  # float32 [M, H, W, C]
    y_test: np.ndarray  # int32 [M]
    num_classes: int


def standardize(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x_train.mean(axis=(0, 1, 2), keepdims=True)
    std = x_train.std(axis=(0, 1, 2), keepdims=True) + 1e-6
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def area_resize(x: np.ndarray, size: int) -> np.ndarray:
    """Area (box) resize of ``[N, H, W]`` images to ``size x size`` via exact fractional box weights."""
    n, h, w = x.shape

    def weights(src: int) -> np.ndarray:
        m = np.zeros((size, src), np.float32)
        edges = np.linspace(0, src, size + 1)
        for i in range(size):
            lo, hi = edges[i], edges[i + 1]
            for j in range(int(np.floor(lo)), int(np.ceil(hi))):
                m[i, j] = min(hi, j + 1) - max(lo, j)
            m[i] /= m[i].sum()
        return m

    return np.einsum("ih,nhw,jw->nij", weights(h), x.astype(np.float32), weights(w))


def load_omniglot_classification(path: str | Path, num_classes: int = 20, image_size: int = 28,
                                 train_per_class: int = 15) -> ImageDataset:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Omniglot npz not found at {path}: expected images_background.npz (bool images "
                                "[chars, 20, 105, 105], labels) as in shared/data/omniglot; set train.data_root")
    with np.load(path) as d:
        if "images" not in d.files:
            raise ValueError(f"{path}: expected an npz with an 'images' array [chars, drawers, H, W], got {d.files}")
        imgs = d["images"]
    if imgs.ndim != 4 or imgs.shape[0] < num_classes or not 0 < train_per_class < imgs.shape[1]:
        raise ValueError(f"{path}: images {imgs.shape} cannot give {num_classes} classes with {train_per_class} "
                         "training drawers each")
    ink = 1.0 - imgs[:num_classes].astype(np.float32)  # [C, 20, H, W]
    small = area_resize(ink.reshape(-1, *ink.shape[2:]), image_size).reshape(num_classes, imgs.shape[1],
                                                                              image_size, image_size, 1)
    y = np.broadcast_to(np.arange(num_classes, dtype=np.int32)[:, None], small.shape[:2])
    xtr, ytr = small[:, :train_per_class].reshape(-1, image_size, image_size, 1), y[:, :train_per_class].ravel()
    xte, yte = small[:, train_per_class:].reshape(-1, image_size, image_size, 1), y[:, train_per_class:].ravel()
    xtr, xte = standardize(xtr, xte)
    return ImageDataset(f"omniglot{num_classes}", xtr, ytr.astype(np.int32), xte, yte.astype(np.int32), num_classes)


def augment(x: np.ndarray, rng: np.random.Generator, *, crop_pad: int = 4, flip: bool = True,
            cutout: int = 0) -> np.ndarray:
    """Standard CIFAR augmentation on a host batch ``[B, H, W, C]``: random crop after zero padding, horizontal
    flip, and (``cutout > 0``) a zeroed ``cutout x cutout`` square (DeVries & Taylor 2017)."""
    b, h, w, _ = x.shape
    if crop_pad:
        p = np.pad(x, ((0, 0), (crop_pad, crop_pad), (crop_pad, crop_pad), (0, 0)))
        oy, ox = rng.integers(0, 2 * crop_pad + 1, b), rng.integers(0, 2 * crop_pad + 1, b)
        x = np.stack([p[i, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(b)])
    if flip:
        f = rng.random(b) < 0.5
        x = np.where(f[:, None, None, None], x[:, :, ::-1], x)
    if cutout:
        x = x.copy()
        cy, cx = rng.integers(0, h, b), rng.integers(0, w, b)
        for i in range(b):
            x[i, max(cy[i] - cutout // 2, 0):cy[i] + cutout // 2, max(cx[i] - cutout // 2, 0):cx[i] + cutout // 2] = 0
    return x.astype(np.float32)
