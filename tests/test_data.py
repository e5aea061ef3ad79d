"""Tests of flcore.sim.data: loading Fashion-MNIST and CIFAR-10, their errors, and the
batched CIFAR-10 augmentation."""
from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from flcore.sim import data
from flcore.core.errors import DataError

FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No downloads, no user overrides, and a fresh in-process cache for every test."""
    monkeypatch.setenv("FLCORE_OFFLINE", "1")
    monkeypatch.delenv("FLCORE_DATA", raising=False)
    monkeypatch.delenv("FLCORE_CIFAR_JPEG", raising=False)
    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture
def fmnist_files() -> dict[str, Path]:
    files = data._idx_files(FMNIST_DEBIAN) if FMNIST_DEBIAN.is_dir() else None
    if files is None:
        pytest.skip("Fashion-MNIST not installed: apt-get install -y dataset-fashion-mnist")
    return files


@pytest.fixture
def cifar_jpeg() -> Path:
    tarball = data.cifar_jpeg_candidates()[0]
    if not tarball.is_file():
        pytest.skip(f"CIFAR-10 JPEG copy not at {tarball}")
    return tarball


# ---------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------

def test_fmnist_loads(fmnist_files):
    t0 = time.perf_counter()
    ds = data.load_dataset("fmnist")
    print(f"Fashion-MNIST load: {time.perf_counter() - t0:.2f} s")
    assert ds.name == "fmnist" and ds.label == "Fashion-MNIST"
    assert str(FMNIST_DEBIAN) in ds.source
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.train_x.min() == 0.0 and ds.train_x.max() == 1.0  # raw pixels / 255, no normalisation
    assert ds.mean == (0.0,) and ds.std == (1.0,)
    assert torch.equal(torch.bincount(ds.train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.test_y), torch.full((10,), 1000))
    assert set(ds.files) == {p.name for p in fmnist_files.values()}
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in ds.files.values())
    # pixel values are exactly k/255 (ToTensor's arithmetic)
    k = ds.train_x[:100] * 255
    assert torch.equal(k.round() / 255, ds.train_x[:100])
    # loaded once per process
    assert data.load_dataset("fmnist") is ds


def _copy_plain(files: dict[str, Path], dest: Path) -> None:
    """The four IDX files, decompressed, in ``dest``."""
    for src in files.values():
        raw = src.read_bytes()
        name = src.name
        if name.endswith(".gz"):
            raw, name = gzip.decompress(raw), name[:-3]
        (dest / name).write_bytes(raw)


def test_fmnist_from_root_plain_files(fmnist_files, tmp_path):
    _copy_plain(fmnist_files, tmp_path)
    ds = data.load_dataset("fmnist", root=str(tmp_path))
    assert str(tmp_path) in ds.source and "train-images-idx3-ubyte" in ds.files
    assert torch.equal(ds.train_x, data.load_dataset("fmnist").train_x)


@pytest.mark.parametrize("damage", ["truncate_gz", "truncate_plain", "bad_magic"])
def test_fmnist_damaged_file_names_it(fmnist_files, tmp_path, monkeypatch, damage):
    if damage == "truncate_gz":
        for src in fmnist_files.values():
            shutil.copy(src, tmp_path / src.name)
        target = tmp_path / fmnist_files["train_x"].name
        if target.suffix != ".gz":
            pytest.skip("installed files are not gzipped")
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        _copy_plain(fmnist_files, tmp_path)
        target = tmp_path / "t10k-labels-idx1-ubyte"
        raw = target.read_bytes()
        target.write_bytes(raw[:-10] if damage == "truncate_plain" else b"\x00\x00\x08\x03" + raw[4:])
    monkeypatch.setenv("FLCORE_DATA", str(tmp_path))  # the same as root=
    with pytest.raises(DataError) as err:
        data.load_dataset("fmnist")
    msg = str(err.value)
    assert target.name in msg
    assert "reinstall" in msg


def test_fmnist_incomplete_root(fmnist_files, tmp_path):
    _copy_plain(fmnist_files, tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        data.load_dataset("fmnist", root=str(tmp_path))


def test_fmnist_missing_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FMNIST_SYSTEM_DIRS", [tmp_path / "nowhere"])
    monkeypatch.setenv("FLCORE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        data.load_dataset("fmnist")
    msg = str(err.value)
    assert "apt-get update && apt-get install -y dataset-fashion-mnist" in msg
    assert "internet" in msg and "FLCORE_DATA" in msg and "FLCORE_OFFLINE=1" in msg
    # an explicit root is not searched beyond
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        data.load_dataset("fmnist", root=str(tmp_path / "empty"))


def test_unknown_dataset():
    from flcore.core.errors import ConfigError
    with pytest.raises(ConfigError):
        data.load_dataset("mnist")


# ---------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------

def test_cifar_missing_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "cifar_jpeg_candidates", lambda: [tmp_path / "nothing.tar.gz"])
    monkeypatch.setenv("FLCORE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        data.load_dataset("cifar10")
    msg = str(err.value)
    assert "internet" in msg and "FLCORE_CIFAR_JPEG" in msg and "cifar10-jpeg.tar.gz" in msg
    monkeypatch.setenv("FLCORE_CIFAR_JPEG", str(tmp_path / "absent.tar.gz"))
    with pytest.raises(DataError, match="FLCORE_CIFAR_JPEG"):
        data.load_dataset("cifar10")


def test_cifar_truncated_tarball(cifar_jpeg, monkeypatch, tmp_path):
    bad = tmp_path / data.CIFAR_JPEG_TARBALL
    with open(cifar_jpeg, "rb") as f:
        bad.write_bytes(f.read(1 << 20))
    monkeypatch.setenv("FLCORE_CIFAR_JPEG", str(bad))
    monkeypatch.setenv("FLCORE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="altered or truncated"):
        data.load_dataset("cifar10")


def _reference_pixels(tarball: Path, members: list[str]) -> list[torch.Tensor]:
    """Images through PIL + torchvision's ToTensor and Normalize, for comparison."""
    from PIL import Image
    from torchvision import transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.CIFAR_MEAN, data.CIFAR_STD)])
    found = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for m in tar:
            if m.name in members:
                found[m.name] = tf(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB"))
    return [found[name] for name in members]


def test_cifar_jpeg_loads_and_caches(cifar_jpeg):
    # torchvision's official copy, if downloaded into the cache, would take precedence
    root = str(cifar_jpeg) if (data.cache_dir() / "data" / "cifar-10-batches-py").is_dir() else None
    t0 = time.perf_counter()
    ds = data.load_dataset("cifar10", root=root)
    first = time.perf_counter() - t0
    assert ds.label == "CIFAR-10 (JPEG copy)" and "JPEG copy" in ds.source
    assert ds.files == {data.CIFAR_JPEG_TARBALL: data.CIFAR_JPEG_SHA256}
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert ds.train_x.dtype == torch.float32 and ds.test_y.dtype == torch.int64
    assert torch.equal(torch.bincount(ds.train_y), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(ds.test_y), torch.full((10,), 1000))
    assert ds.mean == data.CIFAR_MEAN and ds.std == data.CIFAR_STD
    lo = min((0 - m) / s for m, s in zip(ds.mean, ds.std))
    hi = max((1 - m) / s for m, s in zip(ds.mean, ds.std))
    assert lo - 1e-5 <= ds.train_x.min() and ds.train_x.max() <= hi + 1e-5
    # classes are mixed in index order: every evaluation batch of 1000 holds all classes
    for b in range(10):
        assert torch.bincount(ds.test_y[b * 1000:(b + 1) * 1000], minlength=10).min() > 50

    # the order is fixed: sorted per class, then a seeded permutation; pixels equal torchvision's
    train_order = np.random.RandomState(data.CIFAR_JPEG_ORDER_SEED).permutation(50000)
    picks = [0, 12345, 49999]
    names = []
    for i in picks:
        k = int(train_order[i])
        assert ds.train_y[i] == k // 5000
        names.append(f"cifar10-jpeg/train/{data.CIFAR_CLASSES[k // 5000]}/{k % 5000:04d}.jpg")
    for i, ref in zip(picks, _reference_pixels(cifar_jpeg, names)):
        assert torch.equal(ds.train_x[i], ref)

    data.clear_cache()
    t0 = time.perf_counter()
    again = data.load_dataset("cifar10", root=root)
    cached = time.perf_counter() - t0
    print(f"CIFAR-10 JPEG load: {first:.1f} s, then {cached:.1f} s from the .npy cache")
    assert torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)
    assert cached < 20


# ---------------------------------------------------------------------------
# augment_cifar
# ---------------------------------------------------------------------------

def _normalise(u8: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(data.CIFAR_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(data.CIFAR_STD).view(1, 3, 1, 1)
    return (u8.float() / 255 - m) / s


def _draws(seed: int, b: int):
    """The flips and offsets augment_cifar draws from a CPU generator seeded ``seed``."""
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(b, generator=g) < 0.5
    top = torch.randint(0, 9, (b,), generator=g)
    left = torch.randint(0, 9, (b,), generator=g)
    return flip, top, left


def test_augment_shape_and_determinism():
    x = _normalise(torch.randint(0, 256, (64, 3, 32, 32), generator=torch.Generator().manual_seed(1)))
    a = data.augment_cifar(x, torch.Generator().manual_seed(7))
    b = data.augment_cifar(x, torch.Generator().manual_seed(7))
    c = data.augment_cifar(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, _normalise(torch.randint(0, 256, (64, 3, 32, 32),
                                                   generator=torch.Generator().manual_seed(1))))


def test_augment_moves_a_known_pixel():
    b, r0, c0 = 256, 2, 5
    u8 = torch.full((b, 3, 32, 32), 100, dtype=torch.uint8)
    u8[:, 0, r0, c0] = 255
    x = _normalise(u8)
    out = data.augment_cifar(x, torch.Generator().manual_seed(3))
    flip, top, left = _draws(3, b)
    assert flip.any() and (~flip).any() and len(set(top.tolist())) == 9
    bright, grey = x[0, 0, r0, c0], x[0, 0, 0, 0]
    pad = (torch.zeros(3) - torch.tensor(data.CIFAR_MEAN)) / torch.tensor(data.CIFAR_STD)
    for i in range(b):
        c = 31 - c0 if flip[i] else c0
        r, c = r0 + 4 - top[i].item(), c + 4 - left[i].item()
        hits = (out[i, 0] == bright).nonzero().tolist()
        assert hits == ([[r, c]] if 0 <= r < 32 and 0 <= c < 32 else [])
        # padding is the normalised black, per channel; the rest is the grey image
        rows = torch.arange(32)[:, None] + top[i] - 4
        cols = torch.arange(32)[None, :] + left[i] - 4
        inside = (rows >= 0) & (rows < 32) & (cols >= 0) & (cols < 32)
        for ch in range(3):
            assert torch.equal(out[i, ch][~inside], pad[ch].expand(int((~inside).sum())))
        assert (out[i, 1][inside] == x[0, 1, 0, 0]).all()
        assert ((out[i, 0][inside] == grey) | (out[i, 0][inside] == bright)).all()


def test_augment_equals_torchvision_transforms():
    """Same flips and offsets through torchvision's functional transforms on uint8 images,
    then ToTensor + Normalize: identical values."""
    from torchvision.transforms import functional as F
    b = 32
    u8 = torch.randint(0, 256, (b, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    out = data.augment_cifar(_normalise(u8), torch.Generator().manual_seed(11))
    flip, top, left = _draws(11, b)
    for i in range(b):
        img = F.hflip(u8[i]) if flip[i] else u8[i]
        img = F.crop(F.pad(img, [4, 4, 4, 4], fill=0), int(top[i]), int(left[i]), 32, 32)
        assert torch.equal(out[i], _normalise(img[None])[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_augment_cuda_matches_cpu():
    x = _normalise(torch.randint(0, 256, (128, 3, 32, 32), generator=torch.Generator().manual_seed(2)))
    cpu = data.augment_cifar(x, torch.Generator().manual_seed(4))
    gpu = data.augment_cifar(x.cuda(), torch.Generator().manual_seed(4))  # CPU draws, moved
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    g = torch.Generator(device="cuda").manual_seed(4)                       # draws on the GPU
    assert data.augment_cifar(x.cuda(), g).shape == x.shape
