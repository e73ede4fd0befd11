"""Image stores: the training images, uint8 (N, C, H, W), gathered by index into a batch on the device.

Data that fit in memory live on the device as one tensor (`DeviceStore`): a batch is an index gather
with no host synchronisation. Data that do not fit are decoded once into a uint8 file that is
memory-mapped (`MemmapStore`): a batch reads its rows from the file and makes one copy to the device,
as nanoGPT's `get_batch`. `choose_store` picks one from the data's size and the free memory."""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError

STORES = ("auto", "device", "memmap")
DEVICE_SHARE = 0.5  # the share of free memory that data may take and still live on the device
CHUNK = 1024  # images per write when a store is built from one tensor


class ImageStore(Protocol):
    shape: tuple[int, ...]  # (N, C, H, W)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """The images at `idx` (a LongTensor on the device), in its order, repeats allowed: uint8
        (len(idx), C, H, W) on the device."""

    def __len__(self) -> int: ...


class DeviceStore:
    """All images in one tensor on the device; a batch is an index gather."""

    def __init__(self, x: torch.Tensor, device: torch.device):
        self.x = x.to(device)
        self.shape = tuple(self.x.shape)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x[idx]

    def __len__(self) -> int:
        return self.shape[0]


class MemmapStore:
    """Images in a uint8 file, memory-mapped read-only: a fixed-size JSON header (magic, shape,
    dtype, the caller's content key), then the rows. `build` writes the file once; a file is
    reused only where its header matches the key (and shape), so changed data are rebuilt."""

    MAGIC = b"semisup-images 1\n"
    HEADER = 4096  # bytes before the rows: a page, so the rows start page-aligned

    def __init__(self, path: str | Path, device: torch.device):
        self.path, self.device = Path(path), torch.device(device)
        meta = self.read_header(self.path)
        if meta is None:
            raise ValueError(f"{self.path}: not a complete image store file")
        self.shape, self.key = tuple(meta["shape"]), meta["key"]
        self.rows = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.HEADER, shape=self.shape)

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """The indices come to the host once (a synchronisation where they were drawn on the device);
        the rows are read in the order asked into pinned memory on CUDA, then copied without waiting."""
        i, n = idx.cpu().numpy(), self.shape[0]
        if i.size and (i.min() < -n or i.max() >= n):
            raise IndexError(f"image store: index out of range for {n} images")
        out = torch.empty((len(i), *self.shape[1:]), dtype=torch.uint8, pin_memory=self.device.type == "cuda")
        np.take(self.rows, i, axis=0, out=out.numpy(), mode="wrap")  # checked above; "raise" would buffer
        return out.to(self.device, non_blocking=True)

    def __len__(self) -> int:
        return self.shape[0]

    @classmethod
    def read_header(cls, path: Path) -> dict | None:
        """The header of a finished store file, or None where the file is absent, not one, or its
        size disagrees with its shape (a copy cut short)."""
        try:
            with open(path, "rb") as f:
                head = f.read(cls.HEADER)
                size = os.fstat(f.fileno()).st_size
        except OSError:
            return None
        if len(head) < cls.HEADER or not head.startswith(cls.MAGIC):
            return None
        try:
            meta = json.loads(head[len(cls.MAGIC):].rstrip(b"\0").decode())
            ok = meta["dtype"] == "uint8" and size == cls.HEADER + math.prod(meta["shape"])
        except (ValueError, KeyError, TypeError):
            return None
        return meta if ok else None

    @classmethod
    def build(cls, path: str | Path, source, key: str, device: torch.device, shape=None,
              quiet: bool = False) -> MemmapStore:
        """The store at `path`, reused where its header holds `key` (and `shape`, where given), else
        written from `source`: a uint8 tensor or array (N, C, H, W), or an iterable of uint8 chunks
        (n, C, H, W) that is iterated only when the file is written (so decoded photos stream in).
        The rows go to a temporary file renamed into place when complete, so an interrupted build
        leaves nothing that a later one trusts. `shape` (N, C, H, W) sets the progress bar's total
        and is checked against what the chunks hold."""
        path = Path(path)
        meta = cls.read_header(path)
        if meta is not None and meta["key"] == key and (shape is None or tuple(meta["shape"]) == tuple(shape)):
            return cls(path, device)
        if isinstance(source, (torch.Tensor, np.ndarray)):
            shape = tuple(source.shape) if shape is None else shape
            source = _chunks(source)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: concurrent builds
        n, row = 0, None if shape is None else tuple(shape[1:])
        bar = tqdm(total=None if shape is None else shape[0], disable=quiet, unit="img", dynamic_ncols=True,
                   desc=f"caching images in {path.parent}")
        try:
            with open(tmp, "wb") as f:
                f.write(b"\0" * cls.HEADER)
                for chunk in source:
                    a = chunk.cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
                    if a.dtype != np.uint8 or a.ndim != 4 or (row is not None and a.shape[1:] != row):
                        raise ValueError(f"image store chunk {a.dtype} {a.shape}: expected uint8 (n, *{row})")
                    row = a.shape[1:]
                    f.write(np.ascontiguousarray(a).data)
                    n += len(a)
                    bar.update(len(a))
                if row is None:
                    raise ValueError("image store: no images to store")
                if shape is not None and n != shape[0]:
                    raise ValueError(f"image store: {n} images written, {shape[0]} expected")
                head = cls.MAGIC + json.dumps({"shape": [n, *row], "dtype": "uint8", "key": key}).encode()
                f.seek(0)
                f.write(head.ljust(cls.HEADER, b"\0"))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            bar.close()
        return cls(path, device)


def _chunks(x, size: int = CHUNK):
    for i in range(0, len(x), size):
        yield x[i:i + size]


def content_key(x) -> str:
    """A key for a tensor or array's contents: its shape and a BLAKE2 hash of its bytes."""
    a = np.ascontiguousarray(x.cpu().numpy() if isinstance(x, torch.Tensor) else x)
    return f"{list(a.shape)}:{hashlib.blake2b(a.data, digest_size=16).hexdigest()}"


def free_memory(device: torch.device) -> int:
    """Free bytes where a DeviceStore would live: the GPU's on CUDA, the host's available RAM else."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:  # MemAvailable counts the page cache the kernel can drop
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose_store(source, device: torch.device, budget_bytes: int | None = None, cache_dir=None,
                 store: str = "auto", key: str | None = None, shape=None, name: str = "train-images",
                 quiet: bool = False) -> ImageStore:
    """A DeviceStore where the images fit in `budget_bytes` (default: half the free memory of the
    device, `free_memory`), else a MemmapStore at `cache_dir`/`name`.u8 (pass the run folder's
    cache/; default ~/.cache/semisup). `store` forces one: "device" or "memmap"; "auto" chooses.
    `source` is a uint8 tensor (N, C, H, W) or an iterable of uint8 chunks; an iterable needs `shape`
    (N, C, H, W), to size the data before decoding it, and `key`, which names its contents (a
    tensor's key defaults to a hash of its bytes)."""
    if store not in STORES:
        raise UserError(f"image store '{store}': choose {', '.join(STORES)}")
    tensor = isinstance(source, (torch.Tensor, np.ndarray))
    if shape is None and not tensor:
        raise ValueError("choose_store: an iterable of chunks needs shape=(N, C, H, W)")
    shape = tuple(source.shape if shape is None else shape)
    if store == "auto":
        budget = DEVICE_SHARE * free_memory(device) if budget_bytes is None else budget_bytes
        store = "device" if math.prod(shape) <= budget else "memmap"
    if store == "device":
        x = torch.as_tensor(source) if tensor else torch.cat([torch.as_tensor(c) for c in source])
        return DeviceStore(x, device)
    if key is None:
        if not tensor:
            raise ValueError("choose_store: an iterable of chunks needs key=, naming its contents")
        key = content_key(source)
    if cache_dir is None:
        cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "semisup"
    return MemmapStore.build(Path(cache_dir) / f"{name}.u8", source, key, device, shape=shape, quiet=quiet)
