"""Host-side data (numpy): image classification sets for NAS (``load_image_dataset``) and augmentation."""

from __future__ import annotations

from pathlib import Path

from metanas.data.images import ImageDataset, augment, load_omniglot_classification

__all__ = ["ImageDataset", "augment", "load_image_dataset", "load_omniglot_classification"]


def load_image_dataset(name: str, *, data_dir: str, root: str | None = None, num_classes: int = 20,
                       image_size: int = 28, train_per_class: int = 15) -> ImageDataset:
    """``omniglot`` (real, bundled in ``data_dir``; ``root`` may point to your own images_background.npz),
    ``cifar10`` / ``cifar100`` (``root`` = your copy of the python-version batches)."""
    if name == "omniglot":
        path = Path(root) if root else Path(data_dir) / "omniglot" / "images_background.npz"
        return load_omniglot_classification(path, num_classes, image_size, train_per_class)
    if name in ("cifar10", "cifar100"):
        from metanas.data.cifar import load_cifar

        if not root:
            raise FileNotFoundError(f"{name} needs train.data_root=PATH to your copy of the CIFAR python-version "
                                    "batches (no CIFAR is bundled in shared/data)")
        return load_cifar(root, name)
    raise ValueError(f"unknown dataset {name!r}; expected one of omniglot, cifar10, cifar100")
