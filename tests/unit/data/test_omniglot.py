"""Omniglot / miniImageNet loaders and the N-way K-shot sampler (tiny generated folders; real data if present)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metanas.data.omniglot import (DataFormatError, FewShotImages, FewShotSampler, load_miniimagenet_csv,
                                   load_omniglot_folders, maml_split, official_one_shot_runs)


def write_omniglot_folder(root, n_bg=3, n_ev=2, drawers=4):
    """A tiny copy in the original Omniglot layout: white background, one black stroke whose row encodes the class."""
    for subset, alphabet, n in (("images_background", "Alpha", n_bg), ("images_evaluation", "Beta", n_ev)):
        for c in range(n):
            d = root / subset / alphabet / f"character{c + 1:02d}"
            d.mkdir(parents=True)
            for j in range(drawers):
                img = np.full((105, 105), 255, np.uint8)
                img[10 + 10 * c: 20 + 10 * c, 5 + 5 * j: 60] = 0
                Image.fromarray(img).save(d / f"{c + 1:04d}_{j + 1:02d}.png")
    return root


def test_omniglot_folder_loader_reads_the_standard_layout(tmp_path):
    ink = load_omniglot_folders(write_omniglot_folder(tmp_path), size=28)
    assert ink.shape == (5, 4, 28, 28) and ink.dtype == np.uint8
    assert ink.max() > 200 and np.median(ink) == 0  # inverted: strokes bright, background 0
    fam = FewShotImages(ways=2, shots=1, queries=2, layout="omniglot_folders", root=str(tmp_path), n_train_chars=3,
                        n_val_chars=1, rotations=True, cache_dir=None)
    sampler = fam.build(data_dir="/nonexistent")
    assert {k: v.shape[0] for k, v in sampler.splits.items()} == {"train": 2, "val": 1, "test": 2}
    no_val = FewShotImages(layout="omniglot_folders", root=str(tmp_path), n_train_chars=3, n_val_chars=0,
                           cache_dir=None).build(data_dir="/nonexistent")
    assert {k: v.shape[0] for k, v in no_val.splits.items()} == {"train": 3, "test": 2}
    np.testing.assert_array_equal(no_val.splits["test"], sampler.splits["test"])  # the test split never moves
    with pytest.raises(DataFormatError, match="n_val_chars=3"):  # all meta-train characters held out: named
        FewShotImages(layout="omniglot_folders", root=str(tmp_path), n_train_chars=3, n_val_chars=3).build("")
    sx, sy, qx, qy = sampler.sample("train", 0, 0, 3, 2, 1, 2)
    assert sx.shape == (3, 2, 28, 28, 1) and qx.shape == (3, 4, 28, 28, 1)


def test_omniglot_folder_loader_names_what_is_missing(tmp_path):
    (tmp_path / "images_background").mkdir()
    with pytest.raises(DataFormatError, match="images_evaluation"):
        load_omniglot_folders(tmp_path)
    with pytest.raises(DataFormatError, match="images_background.npz"):
        FewShotImages(root=str(tmp_path)).build(data_dir=str(tmp_path))
    with pytest.raises(DataFormatError, match="task.root"):
        FewShotImages(layout="omniglot_folders").build(data_dir=str(tmp_path))


def test_miniimagenet_csv_loader(tmp_path):
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for split, labels in (("train", ["n01", "n02", "n03"]), ("val", ["n05", "n06"]), ("test", ["n09", "n08"])):
        rows = ["filename,label"]
        for lab in labels:
            for i in range(3):
                name = f"{lab}_{i}.jpg"
                Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "images" / name)
                rows.append(f"{name},{lab}")
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    x = load_miniimagenet_csv(tmp_path, "train", size=12)
    assert x.shape == (3, 3, 12, 12, 3)
    sampler = FewShotImages(layout="miniimagenet_csv", root=str(tmp_path), image_size=12).build("")
    assert {k: v.shape[0] for k, v in sampler.splits.items()} == {"train": 3, "val": 2, "test": 2}
    sx, sy, qx, qy = sampler.sample("test", 0, 0, 2, 2, 1, 2)
    assert sx.shape == (2, 2, 12, 12, 3) and qy.shape == (2, 4)
    (tmp_path / "val.csv").unlink()
    with pytest.raises(DataFormatError, match="val.csv.*n_val_chars=0"):
        FewShotImages(layout="miniimagenet_csv", root=str(tmp_path), image_size=12).build("")
    assert "val" not in FewShotImages(layout="miniimagenet_csv", root=str(tmp_path), image_size=12,
                                      n_val_chars=0).build("").splits
    (tmp_path / "test.csv").unlink()
    with pytest.raises(DataFormatError, match="test.csv"):
        load_miniimagenet_csv(tmp_path, "test")


def test_sampler_draws_distinct_classes_and_examples():
    n_cls, per = 7, 6
    data = np.zeros((n_cls, per, 4, 4), np.uint8)
    data[:, :, 0, 0] = np.arange(n_cls)[:, None] * 10  # encodes the class
    data[:, :, 0, 1] = np.arange(per)[None, :] * 10  # encodes the example
    sampler = FewShotSampler({"train": data}, rotations=False)
    sx, sy, qx, qy = sampler.sample("train", 3, 5, 8, ways=3, shots=2, queries=3)
    assert sx.shape == (8, 6, 4, 4, 1) and qx.shape == (8, 9, 4, 4, 1)
    for t in range(8):
        cls_of = lambda x: np.round(x[:, 0, 0, 0] * 25.5).astype(int)
        ex_of = lambda x: np.round(x[:, 0, 1, 0] * 25.5).astype(int)
        s_cls, q_cls = cls_of(sx[t]), cls_of(qx[t])
        assert len(set(s_cls)) == 3  # N distinct classes
        for lab in range(3):  # one class per label, shared by support and query; no example reused
            assert len(set(s_cls[sy[t] == lab]) | set(q_cls[qy[t] == lab])) == 1
            ids = list(ex_of(sx[t])[sy[t] == lab]) + list(ex_of(qx[t])[qy[t] == lab])
            assert len(set(ids)) == 5
    again = sampler.sample("train", 3, 5, 8, ways=3, shots=2, queries=3)
    np.testing.assert_array_equal(again[0], sx)
    assert not np.array_equal(sampler.sample("train", 3, 6, 8, ways=3, shots=2, queries=3)[0], sx)


def test_rotations_are_new_classes():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, 4, 5, 5), dtype=np.uint8)
    sampler = FewShotSampler({"train": data}, rotations=True)
    assert sampler.num_classes("train") == 12
    sx, sy, _, _ = sampler.sample("train", 0, 0, 50, ways=4, shots=1, queries=0)
    seen = set()
    for img in sx.reshape(-1, 5, 5):
        matches = [(c, m, r) for c in range(3) for m in range(4) for r in range(4)
                   if np.allclose(np.rot90(data[c, m], r) / 255.0, img)]
        assert matches, "every sampled image is a rotation of a base image"
        seen.add(matches[0][2])
    assert seen == {0, 1, 2, 3}


def test_maml_split_is_a_deterministic_partition_into_train_val_test():
    train, val, test = maml_split(1623, 1200, seed=1, n_val=100)
    assert (len(train), len(val), len(test)) == (1100, 100, 423)
    assert not np.intersect1d(train, val).size and not np.intersect1d(train, test).size \
        and not np.intersect1d(val, test).size
    assert len(np.union1d(np.union1d(train, val), test)) == 1623
    again = maml_split(1623, 1200, seed=1, n_val=100)
    for a, b in zip((train, val, test), again):
        np.testing.assert_array_equal(a, b)
    train0, val0, test0 = maml_split(1623, 1200, seed=1)  # n_val=0: the old 1200 / 423 split, same test characters
    assert len(train0) == 1200 and len(val0) == 0
    np.testing.assert_array_equal(test0, test)
    np.testing.assert_array_equal(train0, np.union1d(train, val))
    with pytest.raises(DataFormatError, match="n_val_chars"):
        maml_split(1623, 1200, seed=1, n_val=1200)


def test_full_omniglot_and_official_runs(data_dir):
    sampler = FewShotImages().build(str(data_dir))
    assert {k: v.shape for k, v in sampler.splits.items()} == {
        "train": (1100, 20, 28, 28), "val": (100, 20, 28, 28), "test": (423, 20, 28, 28)}
    assert [sampler.num_classes(s) for s in ("train", "val", "test")] == [4400, 400, 1692]
    flat = {k: v.reshape(len(v), -1) for k, v in sampler.splits.items()}  # no character image in two splits
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(map(bytes, flat[a])) & set(map(bytes, flat[b])), (a, b)
    sx, sy, qx, qy = sampler.sample("test", 0, 0, 4, 5, 1, 15)
    assert sx.shape == (4, 5, 28, 28, 1) and qx.shape == (4, 75, 28, 28, 1)
    assert 0.0 <= sx.min() and sx.max() <= 1.0 and 0.02 < sx.mean() < 0.5  # ink is the minority of pixels
    runs = official_one_shot_runs(data_dir / "omniglot" / "all_runs.zip")
    assert len(runs) == 20
    for sx, sy, qx, qy in runs:
        assert sx.shape == (20, 28, 28, 1) and sorted(qy.tolist()) == list(range(20))
