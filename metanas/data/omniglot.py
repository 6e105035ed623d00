"""Few-shot image classification data: full Omniglot (Lake et al. 2015) and user copies of Omniglot / miniImageNet.

Sources (``FewShotImages.layout``):
- ``"npz"`` (default): ``images_background.npz`` + ``images_evaluation.npz`` (1623 characters x 20 drawers,
  105x105 bool, True = white) from ``root`` or ``<data_dir>/omniglot`` (see that folder's README).
- ``"omniglot_folders"``: a user's copy in the original layout
  ``root/images_background/<alphabet>/characterNN/*.png`` and ``root/images_evaluation/...``.
- ``"miniimagenet_csv"``: the Ravi & Larochelle layout ``root/{train,val,test}.csv`` (``filename,label``)
  + ``root/images/<filename>``; RGB resized to ``image_size`` (84 by default in that layout).

Omniglot follows MAML (Finn et al. 2017, Sec. 5.2 and its data generator): ink = 1 - pixel/255, images resized
to 28x28 with PIL LANCZOS, all 1623 characters shuffled with ``split_seed``; of the first 1200 (``n_train_chars``)
the first 1100 are meta-training and the last 100 (``n_val_chars``) meta-validation, the other 423 meta-test
(as in MAML's ``data_generator.py``: ``num_val = 100``). Splits ``train`` / ``val`` / ``test``; each rotation by a
multiple of 90 degrees is a new class (4400 / 400 / 1692 classes). ``n_val_chars=0`` drops the validation split
(1200 / 423, the test split is the same either way). miniImageNet uses its own train / val / test csv files
(``val.csv`` only when ``n_val_chars > 0``) and no rotations.

Sampling is host numpy, seeded by ``(seed, step)``: a task is N classes drawn without replacement, then
K + Q distinct examples per class, labels 0..N-1 in random class order. ``official_one_shot_runs`` reads the
20 official 20-way 1-shot runs of ``all_runs.zip`` as fixed test tasks.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metanas.data.cache import read_cache, write_cache
from metanas.data.tasks import Arrays, TaskFamily, TaskSampler

OMNIGLOT_CHARS = 1623


class DataFormatError(ValueError):
    """A data set that is missing or not in the expected on-disk layout (one-line message)."""


def _resize_gray(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H,W] -> uint8 [size,size] with PIL LANCZOS (MAML's preprocessing)."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS))


def _png_to_ink(data: bytes, size: int) -> np.ndarray:
    """An Omniglot PNG (white background) -> uint8 [size,size] ink (255 = stroke)."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    return 255 - _resize_gray(img, size)


def _npz_to_ink(images: np.ndarray, size: int) -> np.ndarray:
    """bool [C,20,105,105] (True = white) -> uint8 ink [C,20,size,size]."""
    white = images.astype(np.uint8) * 255
    out = np.empty(images.shape[:2] + (size, size), np.uint8)
    for c in range(images.shape[0]):
        for d in range(images.shape[1]):
            out[c, d] = 255 - _resize_gray(white[c, d], size)
    return out


def load_omniglot_npz(root: str | os.PathLike, size: int = 28, cache_dir: str | None = None) -> np.ndarray:
    """All 1623 characters as uint8 ink [1623, 20, size, size] (background rows first, then evaluation).

    The resized array is cached in ``cache_dir`` (if given) as ``omniglot_{size}_<hash of root>.npz``.
    """
    root = Path(root)
    files = [root / "images_background.npz", root / "images_evaluation.npz"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DataFormatError(f"Omniglot npz not found: {', '.join(missing)}; expected images_background.npz and "
                              f"images_evaluation.npz (see shared/data/omniglot/README.md) or set task.root / "
                              f"task.layout=omniglot_folders for a folder copy")
    import hashlib

    tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]  # one cache per source folder
    cache = Path(cache_dir) / f"omniglot_{size}_{tag}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        ink = read_cache(cache, "ink")
        if ink is not None:
            return ink
    parts = []
    for f in files:
        with np.load(f) as d:
            if "images" not in d or d["images"].ndim != 4 or d["images"].shape[1:] != (20, 105, 105):
                raise DataFormatError(f"{f}: expected an array 'images' of shape (n_chars, 20, 105, 105)")
            parts.append(_npz_to_ink(d["images"], size))
    ink = np.concatenate(parts)
    if ink.shape[0] != OMNIGLOT_CHARS:
        raise DataFormatError(f"{root}: found {ink.shape[0]} characters, expected {OMNIGLOT_CHARS} (964 + 659)")
    if cache is not None:
        write_cache(cache, ink=ink)
    return ink


def load_omniglot_folders(root: str | os.PathLike, size: int = 28) -> np.ndarray:
    """A user's Omniglot copy in the original layout -> uint8 ink [n_chars, n_drawers, size, size].

    Characters are ordered by (background, evaluation), then alphabet, then character folder; every character
    needs the same number of drawings (20 in Omniglot).
    """
    root = Path(root)
    subsets = [root / "images_background", root / "images_evaluation"]
    missing = [s.name for s in subsets if not s.is_dir()]
    if missing:
        raise DataFormatError(f"{root}: missing folder(s) {', '.join(missing)}; expected the Omniglot layout "
                              f"images_background/<alphabet>/characterNN/*.png and images_evaluation/...")
    chars = []
    for subset in subsets:
        for alphabet in sorted(p for p in subset.iterdir() if p.is_dir()):
            for char in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                pngs = sorted(char.glob("*.png"))
                if not pngs:
                    raise DataFormatError(f"{char}: no .png drawings in this character folder")
                chars.append(np.stack([_png_to_ink(p.read_bytes(), size) for p in pngs]))
    if not chars:
        raise DataFormatError(f"{root}: no <alphabet>/characterNN/ folders under images_background/")
    counts = {c.shape[0] for c in chars}
    if len(counts) != 1:
        raise DataFormatError(f"{root}: characters have different numbers of drawings {sorted(counts)}; expected "
                              f"the same number (20) for each")
    return np.stack(chars)


def load_miniimagenet_csv(root: str | os.PathLike, split: str, size: int = 84) -> np.ndarray:
    """A miniImageNet copy in the Ravi & Larochelle layout -> uint8 [n_classes, n_per_class, size, size, 3]."""
    from PIL import Image

    root = Path(root)
    csv_path, img_dir = root / f"{split}.csv", root / "images"
    for p, what in ((csv_path, f"{split}.csv (filename,label)"), (img_dir, "images/ folder")):
        if not p.exists():
            raise DataFormatError(f"miniImageNet: {p} not found; expected the Ravi & Larochelle layout with "
                                  f"{what} under {root}")
    by_label: dict[str, list[str]] = {}
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["filename", "label"]:
            raise DataFormatError(f"{csv_path}: header must be 'filename,label', got {header}")
        for row in reader:
            by_label.setdefault(row[1], []).append(row[0])
    counts = {len(v) for v in by_label.values()}
    if len(counts) != 1:
        raise DataFormatError(f"{csv_path}: classes have different numbers of images {sorted(counts)}")
    out = []
    for label in sorted(by_label):
        imgs = []
        for name in by_label[label]:
            p = img_dir / name
            if not p.exists():
                raise DataFormatError(f"miniImageNet: {p} listed in {csv_path.name} is missing")
            imgs.append(np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)))
        out.append(np.stack(imgs))
    return np.stack(out)


class FewShotSampler(TaskSampler):
    """Host sampler of N-way K-shot tasks from per-split class arrays uint8 [C, M, H, W(, ch)].

    ``ways`` / ``shots`` / ``queries`` are the episode sizes (``train_shots`` / ``train_queries`` during
    meta-training, when given); ``sample`` takes other sizes as arguments."""

    def __init__(self, splits: dict[str, np.ndarray], *, rotations: bool, ways: int = 5, shots: int = 1,
                 queries: int = 15, train_shots: int | None = None, train_queries: int | None = None):
        self.splits = splits
        self.rotations = rotations
        self.ways, self.shots, self.queries = ways, shots, queries
        self.train_shots = shots if train_shots is None else train_shots
        self.train_queries = queries if train_queries is None else train_queries

    def num_classes(self, split: str) -> int:
        return self.splits[split].shape[0] * (4 if self.rotations else 1)

    def sample(self, split: str, seed: int, step: int, meta_batch: int, ways: int | None = None,
               shots: int | None = None, queries: int | None = None, *, train: bool = False) -> Arrays:
        """(support_x [T, N*K, H, W, ch] f32, support_y [T, N*K] i32, query_x [T, N*Q, ...], query_y [T, N*Q]).

        Examples are grouped by label (label-major); labels are 0..N-1 in a random class order. Sizes not given
        are the sampler's (its meta-training sizes with ``train=True``).
        """
        ways = self.ways if ways is None else ways
        shots = (self.train_shots if train else self.shots) if shots is None else shots
        queries = (self.train_queries if train else self.queries) if queries is None else queries
        data = self.splits[split]
        n_base, per_class = data.shape[:2]
        if shots + queries > per_class:
            raise ValueError(f"shots + queries = {shots + queries} exceeds the {per_class} examples per class")
        rng = np.random.default_rng([seed, step])
        n_cls = self.num_classes(split)
        classes = np.argsort(rng.random((meta_batch, n_cls)), axis=1)[:, :ways]  # [T,N] without replacement
        members = np.argsort(rng.random((meta_batch, ways, per_class)), axis=2)[:, :, :shots + queries]
        base, rot = (classes // 4, classes % 4) if self.rotations else (classes, np.zeros_like(classes))
        imgs = data[base[:, :, None], members]  # [T,N,K+Q,H,W(,ch)]
        if self.rotations:
            for r in (1, 2, 3):
                sel = rot == r
                imgs[sel] = np.rot90(imgs[sel], k=r, axes=(2, 3))
        x = imgs.astype(np.float32) / 255.0
        if x.ndim == 5:
            x = x[..., None]
        y = np.broadcast_to(np.arange(ways, dtype=np.int32)[None, :, None], (meta_batch, ways, shots + queries))
        flat = lambda a, k0, k1: a[:, :, k0:k1].reshape((meta_batch, ways * (k1 - k0)) + a.shape[3:])
        return (flat(x, 0, shots), flat(y, 0, shots), flat(x, shots, shots + queries),
                flat(y, shots, shots + queries))


def maml_split(n_chars: int, n_train: int, seed: int, n_val: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted character indices (train, val, test) of one permutation of all characters (seeded by ``seed``).

    ``perm[:n_train - n_val]`` meta-train, ``perm[n_train - n_val:n_train]`` meta-validation, ``perm[n_train:]``
    meta-test (MAML's order), so the test split does not depend on ``n_val``.
    """
    if not 0 <= n_val < n_train < n_chars:
        raise DataFormatError(f"Omniglot split needs 0 <= n_val_chars < n_train_chars < the {n_chars} characters, "
                              f"got n_val_chars={n_val}, n_train_chars={n_train}; set task.n_val_chars / "
                              f"task.n_train_chars (n_val_chars=0: no validation split)")
    perm = np.random.default_rng(seed).permutation(n_chars)
    cut = n_train - n_val
    return np.sort(perm[:cut]), np.sort(perm[cut:n_train]), np.sort(perm[n_train:])


@dataclass(frozen=True)
class FewShotImages(TaskFamily):
    """N-way K-shot classification task family (config group ``task``)."""

    ways: int = 5
    shots: int = 1
    queries: int = 15  # query examples per class (meta-training and meta-test)
    train_shots: int = 0  # support examples per class during meta-training (Reptile: 10-15); 0 = ``shots``
    train_queries: int = -1  # query examples per class during meta-training; -1 = ``queries`` (Reptile: 0, unused)
    image_size: int = 28
    layout: str = "npz"  # "npz" | "omniglot_folders" | "miniimagenet_csv"
    root: str | None = None  # a user's copy; null = <data_dir>/omniglot
    n_train_chars: int = 1200  # Omniglot: characters for meta-training + validation (MAML split); the rest meta-test
    n_val_chars: int = 100  # of those, held out as meta-validation (MAML: 100); 0 = no ``val`` split (old behaviour)
    split_seed: int = 1
    rotations: bool = True
    max_chars: int = 0  # >0: keep only this many characters per split (tiny tests / debug runs)
    cache_dir: str | None = "~/.cache/metanas"
    loss: str = "cross_entropy"

    def build(self, data_dir: str) -> FewShotSampler:
        """Load the images and return the host sampler with splits ``train``, ``val`` (if ``n_val_chars``), ``test``."""
        if self.n_val_chars < 0:
            raise DataFormatError(f"task.n_val_chars must be >= 0 (0 = no validation split), got {self.n_val_chars}")
        if self.layout == "miniimagenet_csv":
            if self.root is None:
                raise DataFormatError("task.layout=miniimagenet_csv needs task.root=<folder with train.csv, val.csv, "
                                      "test.csv, images/>")
            names = ("train", "val", "test") if self.n_val_chars else ("train", "test")
            if self.n_val_chars and not (Path(self.root) / "val.csv").exists():
                raise DataFormatError(f"miniImageNet: {Path(self.root) / 'val.csv'} not found; the validation split "
                                      f"reads val.csv (filename,label) - add it or set task.n_val_chars=0")
            splits = {s: load_miniimagenet_csv(self.root, s, self.image_size) for s in names}
            return self._sampler(splits, rotations=False)
        if self.layout == "npz":
            root = self.root or str(Path(data_dir) / "omniglot")
            cache = str(Path(self.cache_dir).expanduser()) if self.cache_dir and self.root is None else None
            ink = load_omniglot_npz(root, self.image_size, cache)
        elif self.layout == "omniglot_folders":
            if self.root is None:
                raise DataFormatError("task.layout=omniglot_folders needs task.root=<folder with images_background/ "
                                      "and images_evaluation/>")
            ink = load_omniglot_folders(self.root, self.image_size)
        else:
            raise DataFormatError(f"task.layout '{self.layout}' is unknown; use npz, omniglot_folders or "
                                  f"miniimagenet_csv")
        n_train = min(self.n_train_chars, ink.shape[0] - 1)
        train, val, test = maml_split(ink.shape[0], n_train, self.split_seed, self.n_val_chars)
        splits = {"train": ink[train], "val": ink[val], "test": ink[test]} if self.n_val_chars else \
            {"train": ink[train], "test": ink[test]}
        return self._sampler(splits, rotations=self.rotations)

    def _sampler(self, splits: dict[str, np.ndarray], *, rotations: bool) -> FewShotSampler:
        trimmed = {k: v[:self.max_chars] if self.max_chars else v for k, v in splits.items()}
        return FewShotSampler(trimmed, rotations=rotations, ways=self.ways, shots=self.shots, queries=self.queries,
                              train_shots=self.train_shots or self.shots,
                              train_queries=self.queries if self.train_queries < 0 else self.train_queries)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.image_size, self.image_size, 3 if self.layout == "miniimagenet_csv" else 1)

    @property
    def num_outputs(self) -> int:
        return self.ways

    @property
    def has_val_split(self) -> bool:
        return self.n_val_chars > 0

    @property
    def has_official_test_runs(self) -> bool:
        """The 20 official Omniglot 20-way 1-shot runs (Lake et al. 2015) fit this family's tasks."""
        return self.layout == "npz" and self.ways == 20 and self.shots == 1

    def official_test_runs(self, data_dir: str) -> Arrays:
        if not self.has_official_test_runs:
            return super().official_test_runs(data_dir)
        root = Path(self.root) if self.root else Path(data_dir) / "omniglot"
        runs = official_one_shot_runs(root / "all_runs.zip", self.image_size)
        return tuple(np.stack(a) for a in zip(*runs))  # type: ignore[return-value]


def official_one_shot_runs(path: str | os.PathLike, size: int = 28) -> list[tuple[np.ndarray, ...]]:
    """The 20 official 20-way 1-shot runs (Lake et al. 2015) from ``all_runs.zip``.

    Returns 20 tasks ``(support_x [20,size,size,1], support_y [20], query_x [20,size,size,1], query_y [20])``,
    float32 ink in [0,1]; support class ``classNN.png`` has label NN-1.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} not found; expected all_runs.zip (runXX/training/classNN.png, runXX/test/"
                              f"itemNN.png, runXX/class_labels.txt) from brendenlake/omniglot")
    runs = []
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        for r in range(1, 21):
            labels_name = f"run{r:02d}/class_labels.txt"
            if labels_name not in names:
                raise DataFormatError(f"{path}: {labels_name} is missing")
            sx = np.stack([_png_to_ink(z.read(f"run{r:02d}/training/class{c:02d}.png"), size) for c in range(1, 21)])
            qx, qy = [], []
            for line in z.read(labels_name).decode().split("\n"):
                if not line.strip():
                    continue
                item, cls = line.split()
                qx.append(_png_to_ink(z.read(item), size))
                qy.append(int(Path(cls).stem.replace("class", "")) - 1)
            to_f = lambda a: (a.astype(np.float32) / 255.0)[..., None]
            runs.append((to_f(sx), np.arange(20, dtype=np.int32), to_f(np.stack(qx)), np.array(qy, np.int32)))
    return runs
