"""Datasets held whole as tensors on the compute device: Fashion-MNIST and CIFAR-10.

There is no DataLoader: ``load_dataset`` returns every image of a dataset as one
float32 tensor ``[N, C, H, W]`` on the requested device, already transformed as the
protocol (spec §2) says, and ``augment_cifar`` applies the protocol's CIFAR-10
training augmentation to a whole batch at once.

* Fashion-MNIST: raw pixels / 255 in [0, 1], shape [N, 1, 28, 28], no normalisation.
* CIFAR-10: ToTensor then Normalize with the ImageNet mean/std, shape [N, 3, 32, 32];
  the same float32 operations as torchvision's transforms, so the values are the
  same bits as the reference pipeline produces.

Where the data comes from (the first that exists wins):

Fashion-MNIST
  1. ``root`` argument, else ``$FLCORE_DATA``: a directory holding the four IDX files
     (gzipped or not), directly or under ``FashionMNIST/raw``. If given, nothing else
     is searched.
  2. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
  3. torchvision's download into ``<cache>/data`` (needs internet).

CIFAR-10
  1. ``root`` / ``$FLCORE_DATA``: torchvision's ``cifar-10-batches-py`` under it, or
     the JPEG copy (tarball ``cifar10-jpeg.tar.gz`` or directory ``cifar10-jpeg``)
     at or under it. If given, nothing else is searched.
  2. torchvision's CIFAR-10 in ``<cache>/data``, downloaded there if absent.
  3. The JPEG copy: ``$FLCORE_CIFAR_JPEG``, else ``../shared/data/cifar10-jpeg.tar.gz``
     next to the repository, else an extracted ``cifar10-jpeg/`` directory (repository
     root, ``../shared/data``, ``<cache>``). Results from it must be labelled
     "CIFAR-10 (JPEG copy)" (``Dataset.label``).

Environment variables:

``FLCORE_DATA``
    the directory to read datasets from (as ``root=``); disables the search.
``FLCORE_CACHE``
    cache directory, default ``~/.cache/flcore``: torchvision downloads go to
    ``<cache>/data``, decoded JPEG arrays to ``<cache>/cifar10-jpeg-<sha256[:16]>/``.
``FLCORE_CIFAR_JPEG``
    path of the CIFAR-10 JPEG tarball or of its extracted ``cifar10-jpeg`` directory.
``FLCORE_OFFLINE``
    ``1`` (or ``true``/``yes``) forbids torchvision downloads: on machines without
    internet this skips a failing network attempt, and tests use it.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import socket
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flcore.core.constants import CIFAR_JPEG_ORDER_SEED, ROOT
from flcore.core.errors import ConfigError, DataError

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

DATASETS = ("fmnist", "cifar10")

#: Training images per dataset.
TRAIN_SIZE = {"fmnist": 60_000, "cifar10": 50_000}

#: ImageNet statistics, which the reference uses to normalise CIFAR-10 (spec §2).
CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")

#: IDX file stems and image counts of Fashion-MNIST.
FMNIST_FILES = {
    "train_x": ("train-images-idx3-ubyte", 60000),
    "train_y": ("train-labels-idx1-ubyte", 60000),
    "test_x": ("t10k-images-idx3-ubyte", 10000),
    "test_y": ("t10k-labels-idx1-ubyte", 10000),
}
#: System directories searched for Fashion-MNIST (monkeypatched by tests).
FMNIST_SYSTEM_DIRS = [Path("/usr/share/datasets/fashion-mnist")]

CIFAR_JPEG_TARBALL = "cifar10-jpeg.tar.gz"
CIFAR_JPEG_SHA256 = "4cb6470d24553ba6cd23d273b7edd90b7334a7ff837c1b3989726731a5d3d630"
#: The JPEG copy lists images class by class. The protocol's strided client split and
#: its evaluation in batches of 1000 with BatchNorm in train mode both depend on index
#: order, and a class-sorted test set would give single-class evaluation batches. So the
#: sorted list is put in a fixed pseudo-random order (numpy legacy RandomState, whose
#: stream never changes), mixed like the original CIFAR-10 order (``constants.CIFAR_JPEG_ORDER_SEED``).

FMNIST_HOWTO = (
    "To get Fashion-MNIST: `apt-get update && apt-get install -y dataset-fashion-mnist` "
    "(installs the IDX files under /usr/share/datasets/fashion-mnist), or run with internet "
    "access and without FLCORE_OFFLINE=1 so torchvision downloads it into <cache>/data, or set "
    "FLCORE_DATA to a directory holding train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]."
)
CIFAR_HOWTO = (
    "To get CIFAR-10: run with internet access and without FLCORE_OFFLINE=1 so torchvision "
    "downloads it into <cache>/data, or put the JPEG copy at ../shared/data/cifar10-jpeg.tar.gz "
    "next to the repository or set FLCORE_CIFAR_JPEG to that tarball (sha256 "
    f"{CIFAR_JPEG_SHA256}) or its extracted cifar10-jpeg/ directory, or set FLCORE_DATA to a "
    "directory holding cifar-10-batches-py/ or the JPEG copy."
)


# ---------------------------------------------------------------------------
# The dataset and its loader
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Dataset:
    """A whole dataset on one device. The tensors are shared by every caller: read only."""

    name: str            # "fmnist" | "cifar10"
    train_x: Tensor      # float32 [N, C, H, W], transformed as the protocol says
    train_y: Tensor      # int64 [N]
    test_x: Tensor
    test_y: Tensor
    source: str          # where it was read from, for people
    label: str           # how results must be labelled
    files: dict[str, str] = field(default_factory=dict)  # source file name -> sha256
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


_LOADED: dict[tuple[str, str, str | None], Dataset] = {}


def load_dataset(name: str, device: str | torch.device = "cpu", root: str | None = None) -> Dataset:
    """Load ``"fmnist"`` or ``"cifar10"`` onto ``device``; see the module docstring for
    where the files are searched. Loaded datasets are kept for the life of the process,
    keyed by (name, device, root)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; datasets are {', '.join(DATASETS)}")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    root = root if root is not None else (os.environ.get("FLCORE_DATA") or None)
    key = (name, str(device), root)
    if key not in _LOADED:
        loader = _load_fmnist if name == "fmnist" else _load_cifar10
        _LOADED[key] = loader(root, device)
    return _LOADED[key]


def clear_cache() -> None:
    """Forget the datasets loaded in this process (the on-disk caches are kept)."""
    _LOADED.clear()


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$FLCORE_CACHE``, else ``~/.cache/flcore``."""
    return Path(os.environ.get("FLCORE_CACHE") or Path.home() / ".cache" / "flcore")


def offline() -> bool:
    """True when ``$FLCORE_OFFLINE`` forbids downloads."""
    return os.environ.get("FLCORE_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _to_device(x: np.ndarray, y: np.ndarray, device: torch.device,
               mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """uint8 images [N, H, W, C] -> float32 [N, C, H, W] on ``device``: ToTensor (/255)
    then Normalize(mean, std), with torchvision's float32 operations."""
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).contiguous()
    xt = xt.to(torch.float32).div_(255)
    if any(m != 0.0 for m in mean) or any(s != 1.0 for s in std):
        m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        xt.sub_(m).div_(s)
    return xt, torch.from_numpy(y.astype(np.int64)).to(device)


@contextlib.contextmanager
def _quiet(timeout: float = 30.0):
    """Around torchvision calls: silence its download messages on stdout, and give
    sockets a timeout (torchvision sets none), so an unreachable server fails instead
    of hanging. Both are restored afterwards."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        socket.setdefaulttimeout(previous)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


# ---------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# ---------------------------------------------------------------------------

def _idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (or its ``FashionMNIST/raw``); None if there
    are none; DataError if only some are there."""
    for d in (directory, directory / "FashionMNIST" / "raw"):
        found = {}
        for key, (stem, _) in FMNIST_FILES.items():
            for candidate in (d / stem, d / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FMNIST_FILES):
            return found
        if found:
            missing = [FMNIST_FILES[k][0] for k in FMNIST_FILES if k not in found]
            raise DataError(f"Fashion-MNIST in {d} is incomplete: {', '.join(missing)} "
                            f"(plain or .gz) missing. {FMNIST_HOWTO}")
    return None


# sha256 of the uncompressed IDX files of the Fashion-MNIST release (the same
# content whether a copy is gzipped by its distributor or not).
FMNIST_CONTENT_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def _read_idx(path: Path, count: int, images: bool) -> tuple[np.ndarray, str]:
    """Parse one IDX file (ubyte; images N x 28 x 28 or labels N), checking magic number,
    sizes and length. Returns the array and the sha256 of the file as stored."""
    fix = ("The file is truncated or corrupted: reinstall it "
           "(`apt-get install --reinstall dataset-fashion-mnist`), or delete it and let "
           "torchvision download it again, or point FLCORE_DATA at an intact copy.")
    raw = path.read_bytes()
    sha = _sha256(raw)
    data = raw
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"cannot decompress {path} ({_short(exc)}). {fix}") from None
    ndim = 3 if images else 1
    dims_expected = (count, 28, 28) if images else (count,)
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DataError(f"{path} is not an IDX {'image' if images else 'label'} file "
                        f"(bad magic number {data[:4].hex() or 'none'}). {fix}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if dims != dims_expected:
        raise DataError(f"{path} has shape {dims}, expected {dims_expected}. {fix}")
    n = int(np.prod(dims))
    if len(data) - header != n:
        raise DataError(f"{path} holds {len(data) - header} bytes of data, expected {n}. {fix}")
    stem = path.name[:-3] if path.suffix == ".gz" else path.name
    expected = FMNIST_CONTENT_SHA256.get(stem)
    if expected is not None and _sha256(data) != expected:
        raise DataError(f"{path}: its content has sha256 {_sha256(data)}, expected {expected} "
                        f"(the Fashion-MNIST release): the file was altered. {fix}")
    arr = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()
    if not images and arr.max() > 9:
        raise DataError(f"{path} holds labels above 9. {fix}")
    return arr, sha


def _fmnist_from(files: dict[str, Path], source: str, device: torch.device) -> Dataset:
    arrays, hashes = {}, {}
    for key, path in files.items():
        arrays[key], hashes[path.name] = _read_idx(path, FMNIST_FILES[key][1], key.endswith("_x"))
    train_x, train_y = _to_device(arrays["train_x"][..., None], arrays["train_y"], device, (0.0,), (1.0,))
    test_x, test_y = _to_device(arrays["test_x"][..., None], arrays["test_y"], device, (0.0,), (1.0,))
    return Dataset("fmnist", train_x, train_y, test_x, test_y, source=source,
                   label="Fashion-MNIST", files=hashes, mean=(0.0,), std=(1.0,))


def _load_fmnist(root: str | None, device: torch.device) -> Dataset:
    if root is not None:
        files = _idx_files(Path(root))
        if files is None:
            raise DataError(f"no Fashion-MNIST IDX files in {root} (given as root / FLCORE_DATA). "
                            f"{FMNIST_HOWTO}")
        return _fmnist_from(files, f"Fashion-MNIST IDX ({root})", device)
    for directory in FMNIST_SYSTEM_DIRS:
        files = _idx_files(Path(directory))
        if files is not None:
            return _fmnist_from(files, f"Fashion-MNIST IDX ({directory})", device)
    tv_root = cache_dir() / "data"
    files = _idx_files(tv_root)
    note = ""
    if files is None and not offline():
        try:
            import torchvision
            with _quiet():
                torchvision.datasets.FashionMNIST(str(tv_root), train=True, download=True)
        except Exception as exc:  # no network, server down, bad checksum
            note = f" (torchvision download failed: {_short(exc)})"
        files = _idx_files(tv_root)
    if files is not None:
        return _fmnist_from(files, f"Fashion-MNIST IDX (torchvision, {tv_root})", device)
    searched = ", ".join(str(d) for d in [*FMNIST_SYSTEM_DIRS, tv_root])
    why = " FLCORE_OFFLINE=1 forbids downloading." if offline() else note
    raise DataError(f"Fashion-MNIST not found (searched {searched}).{why} {FMNIST_HOWTO}")


# ---------------------------------------------------------------------------
# CIFAR-10: torchvision's archive
# ---------------------------------------------------------------------------

def _cifar_torchvision(tv_root: Path, device: torch.device, download: bool) -> Dataset:
    import torchvision
    with _quiet():
        train = torchvision.datasets.CIFAR10(str(tv_root), train=True, download=download)
        test = torchvision.datasets.CIFAR10(str(tv_root), train=False, download=False)
    folder = tv_root / "cifar-10-batches-py"
    hashes = {p.name: _sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    train_x, train_y = _to_device(train.data, np.asarray(train.targets), device, CIFAR_MEAN, CIFAR_STD)
    test_x, test_y = _to_device(test.data, np.asarray(test.targets), device, CIFAR_MEAN, CIFAR_STD)
    return Dataset("cifar10", train_x, train_y, test_x, test_y,
                   source=f"CIFAR-10 (torchvision, {folder})", label="CIFAR-10",
                   files=hashes, mean=CIFAR_MEAN, std=CIFAR_STD)


# ---------------------------------------------------------------------------
# CIFAR-10: the JPEG copy (tarball or extracted tree), decoded once into .npy files
# ---------------------------------------------------------------------------

def _jpeg_at(path: Path) -> Path | None:
    """The JPEG copy at ``path``: the tarball itself, a ``cifar10-jpeg`` tree (holding
    train/ and test/), or a directory holding either."""
    if path.is_file():
        return path
    if (path / "train").is_dir() and (path / "test").is_dir():
        return path
    for candidate in (path / CIFAR_JPEG_TARBALL, path / "cifar10-jpeg"):
        if candidate.is_file() or (candidate / "train").is_dir():
            return candidate
    return None


def cifar_jpeg_candidates() -> list[Path]:
    """Where the JPEG copy is looked for, in order (after ``$FLCORE_CIFAR_JPEG``)."""
    shared = ROOT.parent / "shared" / "data"
    return [shared / CIFAR_JPEG_TARBALL, ROOT / "cifar10-jpeg",
            shared / "cifar10-jpeg", cache_dir() / "cifar10-jpeg"]


def _find_cifar_jpeg() -> Path | None:
    env = os.environ.get("FLCORE_CIFAR_JPEG")
    if env:
        found = _jpeg_at(Path(env)) if Path(env).exists() else None
        if found is None:
            raise DataError(f"FLCORE_CIFAR_JPEG={env} is neither the CIFAR-10 JPEG tarball nor "
                            f"its extracted cifar10-jpeg/ directory. {CIFAR_HOWTO}")
        return found
    for candidate in cifar_jpeg_candidates():
        if candidate.is_file() or (candidate / "train").is_dir():
            return candidate
    return None


def _jpeg_members(path: Path):
    """Yield (split, class, file name, bytes) for every .jpg of the copy."""
    if path.is_file():
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:
                    parts = member.name.split("/")
                    if member.isfile() and parts[-1].endswith(".jpg") and len(parts) >= 3:
                        yield parts[-3], parts[-2], parts[-1], tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"cannot read {path} ({_short(exc)}): the tarball is truncated or "
                            f"corrupted. {CIFAR_HOWTO}") from None
    else:
        for split in ("train", "test"):
            for cls_dir in sorted(d for d in (path / split).iterdir() if d.is_dir()):
                for f in sorted(cls_dir.glob("*.jpg")):
                    yield split, cls_dir.name, f.name, f.read_bytes()


def _decode_jpeg_copy(path: Path) -> dict[str, np.ndarray]:
    """Decode every image with PIL (ImageFolder's loader: RGB). Files are sorted by name
    within each class folder; classes follow CIFAR order; label = class index."""
    from PIL import Image

    groups: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    for split, cls, fname, data in _jpeg_members(path):
        groups.setdefault((split, cls), []).append((fname, data))
    out = {}
    for split, per_class in (("train", 5000), ("test", 1000)):
        found = sorted(c for s, c in groups if s == split)
        if found != sorted(CIFAR_CLASSES):
            raise DataError(f"{path}: {split}/ has class folders {found}, expected "
                            f"{list(CIFAR_CLASSES)}. {CIFAR_HOWTO}")
        xs = np.empty((10 * per_class, 32, 32, 3), dtype=np.uint8)
        ys = np.repeat(np.arange(10, dtype=np.int64), per_class)
        for label, cls in enumerate(CIFAR_CLASSES):
            items = sorted(groups[split, cls])
            if len(items) != per_class:
                raise DataError(f"{path}: {split}/{cls} holds {len(items)} images, expected "
                                f"{per_class}: the copy is incomplete. {CIFAR_HOWTO}")
            for k, (fname, data) in enumerate(items):
                try:
                    with Image.open(io.BytesIO(data)) as im:
                        img = np.asarray(im.convert("RGB"))
                except Exception as exc:
                    raise DataError(f"{path}: cannot decode {split}/{cls}/{fname} "
                                    f"({_short(exc)}). {CIFAR_HOWTO}") from None
                if img.shape != (32, 32, 3):
                    raise DataError(f"{path}: {split}/{cls}/{fname} is {img.shape[1]}x"
                                    f"{img.shape[0]}, expected 32x32. {CIFAR_HOWTO}")
                xs[label * per_class + k] = img
        out[f"{split}_x"], out[f"{split}_y"] = xs, ys
    return out


_NPY_SHAPES = {"train_x": (50000, 32, 32, 3), "train_y": (50000,),
               "test_x": (10000, 32, 32, 3), "test_y": (10000,)}


def _load_npy_cache(folder: Path) -> dict[str, np.ndarray] | None:
    """The cached decoded arrays, or None when any is missing or unreadable."""
    try:
        arrays = {k: np.load(folder / f"{k}.npy", allow_pickle=False) for k in _NPY_SHAPES}
    except (OSError, ValueError, EOFError):
        return None
    ok = all(arrays[k].shape == s and arrays[k].dtype == (np.uint8 if k.endswith("_x") else np.int64)
             for k, s in _NPY_SHAPES.items())
    return arrays if ok else None


def _save_npy_cache(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, folder / f"{key}.npy")


def _tree_sha256(path: Path) -> str:
    """One sha256 over an extracted tree: every .jpg's relative path and bytes, sorted."""
    h = hashlib.sha256()
    for split, cls, fname, data in _jpeg_members(path):
        h.update(f"{split}/{cls}/{fname}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _cifar_jpeg(path: Path, device: torch.device) -> Dataset:
    if path.is_file():
        sha = _sha256_file(path)
        if sha != CIFAR_JPEG_SHA256:
            raise DataError(f"{path} has sha256 {sha}, expected {CIFAR_JPEG_SHA256}: the tarball is "
                            f"altered or truncated. Copy it again from the project's shared/data/ "
                            f"folder (or from wherever it was obtained). {CIFAR_HOWTO}")
        files = {path.name: sha}
    else:
        sha = _tree_sha256(path)
        files = {f"{path.name}/ (all .jpg files, sorted path + bytes)": sha}
    folder = cache_dir() / f"cifar10-jpeg-{sha[:16]}"
    arrays = _load_npy_cache(folder)
    if arrays is None:
        arrays = _decode_jpeg_copy(path)
        try:
            _save_npy_cache(folder, arrays)
        except OSError:
            pass  # a read-only cache only costs the decoding time next run
    rng = np.random.RandomState(CIFAR_JPEG_ORDER_SEED)
    parts = []
    for split in ("train", "test"):
        order = rng.permutation(len(arrays[f"{split}_y"]))
        parts += _to_device(arrays[f"{split}_x"][order], arrays[f"{split}_y"][order],
                            device, CIFAR_MEAN, CIFAR_STD)
    return Dataset("cifar10", *parts, source=f"CIFAR-10 (JPEG copy) from {path}",
                   label="CIFAR-10 (JPEG copy)", files=files, mean=CIFAR_MEAN, std=CIFAR_STD)


def _load_cifar10(root: str | None, device: torch.device) -> Dataset:
    if root is not None:
        r = Path(root)
        if (r / "cifar-10-batches-py").is_dir():
            try:
                return _cifar_torchvision(r, device, download=False)
            except RuntimeError as exc:
                raise DataError(f"CIFAR-10 in {r / 'cifar-10-batches-py'} is unusable "
                                f"({_short(exc)}). {CIFAR_HOWTO}") from None
        jpeg = _jpeg_at(r) if r.exists() else None
        if jpeg is None:
            raise DataError(f"no CIFAR-10 in {root} (given as root / FLCORE_DATA). {CIFAR_HOWTO}")
        return _cifar_jpeg(jpeg, device)
    tv_root = cache_dir() / "data"
    note = ""
    present = (tv_root / "cifar-10-batches-py").is_dir()
    if present or not offline():
        try:
            return _cifar_torchvision(tv_root, device, download=not present)
        except Exception as exc:  # no network, or a damaged download
            if present:
                raise DataError(f"CIFAR-10 in {tv_root / 'cifar-10-batches-py'} is unusable "
                                f"({_short(exc)}): delete that folder to download it again. "
                                f"{CIFAR_HOWTO}") from None
            note = f" (torchvision download failed: {_short(exc)})"
    jpeg = _find_cifar_jpeg()
    if jpeg is not None:
        return _cifar_jpeg(jpeg, device)
    searched = ", ".join(str(p) for p in [tv_root, *cifar_jpeg_candidates()])
    why = " FLCORE_OFFLINE=1 forbids downloading." if offline() else note
    raise DataError(f"CIFAR-10 not found (searched {searched}).{why} {CIFAR_HOWTO}")


# ---------------------------------------------------------------------------
# CIFAR-10 training augmentation, batched on the device
# ---------------------------------------------------------------------------

def augment_draws(n: int, generator: torch.Generator, padding: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """The random draws of :func:`augment_cifar` for ``n`` images, on ``generator``'s device, in
    its order: flips (n uniforms < 0.5), then top and left offsets (n integers each in
    [0, 2*padding])."""
    dev = generator.device
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    return flip, top, left


def padding_fill(channels: int, device, dtype, mean=CIFAR_MEAN, std=CIFAR_STD) -> Tensor:
    """The normalised black of the crop's padding, ``(0 - mean) / std`` per channel computed in
    float32 as ``Normalize`` does, shape [1, C, 1, 1]."""
    fill = (torch.zeros(channels) - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    return fill.to(device=device, dtype=dtype).view(1, channels, 1, 1)


def augment_rows(x: Tensor, flip: Tensor, top: Tensor, left: Tensor, fill: Tensor, padding: int = 4) -> Tensor:
    """Flip then crop with the draws given: ``x`` [N, C, H, W], ``flip`` bool [N],
    ``top``/``left`` offsets [N], ``fill`` from :func:`padding_fill` (made once: a
    host-to-device copy per step would block). Returns a new tensor."""
    b, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    padded = fill.repeat(b, 1, hp, wp)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    # Flipping then padding mirrors the padded image: column m becomes wp - 1 - m.
    rows = top[:, None] + torch.arange(h, device=x.device)                  # [B, H]
    cols = left[:, None] + torch.arange(w, device=x.device)                 # [B, W]
    cols = torch.where(flip[:, None], wp - 1 - cols, cols)
    out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, wp))
    return out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def augment_cifar(x: Tensor, generator: torch.Generator, *, padding: int = 4,
                  mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD) -> Tensor:
    """The protocol's RandomHorizontalFlip(0.5) then RandomCrop(32, padding=4), applied
    to an already normalised batch ``x`` [B, C, H, W], each sample with its own flip and
    offsets, without a per-sample loop. Returns a new tensor; ``x`` is not changed.

    torchvision pads the PIL image with black (0) before ToTensor/Normalize, so here the
    padding is the normalised zero (:func:`padding_fill`). Flip and crop only move pixels,
    so the result equals transforming first and normalising after.

    Random draws happen on ``generator``'s device (then move to ``x``'s), as
    :func:`augment_draws` makes them. A CPU generator gives the same augmentation on CPU and
    CUDA for the same seed; a CUDA generator avoids the small host-to-device copy.
    """
    draws = (t.to(x.device) for t in augment_draws(x.shape[0], generator, padding))
    return augment_rows(x, *draws, padding_fill(x.shape[1], x.device, x.dtype, mean, std), padding)
