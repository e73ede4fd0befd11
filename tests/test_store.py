"""Image stores: the memory-mapped store gives the device store's batches and training, its file is
trusted only when complete and its key matches, and the memory check picks it when data do not fit."""
import subprocess
import sys
from dataclasses import fields

import pytest
import torch

from semisup.api import prepare, resolve
from semisup.data.store import DeviceStore, MemmapStore, choose_store, free_memory
from semisup.engine.trainer import Trainer, TrainOptions
from semisup.tasks import get_task
from semisup.errors import UserError

CPU = torch.device("cpu")


def images(n=50, shape=(3, 5, 7), seed=0):
    return torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class Chunks:
    """An iterable of uint8 chunks that counts how often it is iterated, and can fail midway."""

    def __init__(self, x, size=8, fail_after=None):
        self.x, self.size, self.fail_after, self.iterated = x, size, fail_after, 0

    def __iter__(self):
        self.iterated += 1
        for k, i in enumerate(range(0, len(self.x), self.size)):
            if k == self.fail_after:
                raise RuntimeError("decoding stopped")
            yield self.x[i:i + self.size].numpy()


def test_gather_equal_in_order_with_repeats(tmp_path):
    x = images()
    dev = DeviceStore(x, CPU)
    mm = MemmapStore.build(tmp_path / "s.u8", Chunks(x), "k", CPU, shape=x.shape, quiet=True)
    assert mm.shape == dev.shape == tuple(x.shape) and len(mm) == len(dev) == 50
    idx = torch.tensor([7, 3, 3, 49, 0, 7, 7, 12])
    a, b = dev.gather(idx), mm.gather(idx)
    assert b.dtype == torch.uint8 and b.device == CPU
    assert torch.equal(a, b) and torch.equal(b, x[idx])
    idx = torch.randint(0, 50, (200,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(dev.gather(idx), mm.gather(idx))
    assert mm.gather(torch.zeros(0, dtype=torch.long)).shape == (0, 3, 5, 7)
    with pytest.raises(IndexError):
        mm.gather(torch.tensor([50]))


def test_same_training_with_either_store(tmp_path):
    cfg = resolve({"method": "fixmatch", "data": "digits", "steps": 20, "batch_size": 8, "unlabeled_ratio": 2,
                   "eval_every": 10_000, "save_every": 10_000, "log_every": 10_000, "quiet": True})

    def train(store_of):
        data, views, method = prepare(dict(cfg))
        opts = TrainOptions(**{f.name: cfg[f.name] for f in fields(TrainOptions)})
        t = Trainer(method, data, views, opts, None, CPU, store=store_of(data), task=get_task(method.task))
        for _ in range(opts.steps):
            t.train_step()
        return t

    on_device = train(lambda data: None)
    mapped = train(lambda data: choose_store(data.images, CPU, cache_dir=tmp_path, store="memmap", quiet=True))
    assert isinstance(on_device.store, DeviceStore) and isinstance(mapped.store, MemmapStore)
    a, b = on_device.m.state_dict(), mapped.m.state_dict()
    assert a.keys() == b.keys()
    start = prepare(dict(cfg))[2].state_dict()
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], start[k])]
    assert moved, "training changed no weights"
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_interrupted_write_is_not_reused_finished_one_is(tmp_path):
    x, path = images(), tmp_path / "cache" / "s.u8"
    broken = Chunks(x, fail_after=3)
    with pytest.raises(RuntimeError, match="decoding stopped"):
        MemmapStore.build(path, broken, "k", CPU, shape=x.shape, quiet=True)
    assert not path.exists() and list(path.parent.iterdir()) == []  # the temporary file is gone too
    cut = Chunks(x[:24])  # a file cut short (a copy killed midway): its size disagrees with its header
    MemmapStore.build(path, cut, "k", CPU, quiet=True)
    path.write_bytes(path.read_bytes()[:-5])
    good = Chunks(x)
    s = MemmapStore.build(path, good, "k", CPU, shape=x.shape, quiet=True)
    assert good.iterated == 1 and torch.equal(s.gather(torch.arange(50)), x)

    again = Chunks(x)
    s = MemmapStore.build(path, again, "k", CPU, shape=x.shape, quiet=True)
    assert again.iterated == 0 and torch.equal(s.gather(torch.arange(50)), x)  # reused, not decoded

    y = images(seed=1)
    changed = Chunks(y)
    s = MemmapStore.build(path, changed, "k2", CPU, shape=y.shape, quiet=True)
    assert changed.iterated == 1 and s.key == "k2" and torch.equal(s.gather(torch.arange(50)), y)
    z = images(n=40)
    resized = Chunks(z)  # the same key with another shape is rebuilt as well
    s = MemmapStore.build(path, resized, "k2", CPU, shape=z.shape, quiet=True)
    assert resized.iterated == 1 and len(s) == 40


def test_wrong_chunks_are_refused(tmp_path):
    x = images()
    with pytest.raises(ValueError, match="expected"):
        MemmapStore.build(tmp_path / "s.u8", [x[:8].numpy(), x[8:16, :, :4].numpy()], "k", CPU, quiet=True)
    with pytest.raises(ValueError, match="expected"):
        MemmapStore.build(tmp_path / "s.u8", Chunks(x), "k", CPU, shape=(60, 3, 5, 7), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_memory_check_picks_the_store(tmp_path):
    x = images()
    n = x.numel()
    assert free_memory(CPU) > 0
    assert isinstance(choose_store(x, CPU, budget_bytes=n, cache_dir=tmp_path), DeviceStore)
    small = choose_store(x, CPU, budget_bytes=n - 1, cache_dir=tmp_path, quiet=True)
    assert isinstance(small, MemmapStore) and small.path.parent == tmp_path
    assert torch.equal(small.gather(torch.arange(50)), x)
    assert isinstance(choose_store(x, CPU, budget_bytes=1, store="device"), DeviceStore)
    assert isinstance(choose_store(x, CPU, budget_bytes=10 * n, cache_dir=tmp_path, store="memmap", quiet=True),
                      MemmapStore)
    chunks = Chunks(x)  # an iterable is sized from `shape` before any decoding
    s = choose_store(chunks, CPU, budget_bytes=n - 1, cache_dir=tmp_path, key="c", shape=x.shape, name="c", quiet=True)
    assert isinstance(s, MemmapStore) and chunks.iterated == 1 and torch.equal(s.gather(torch.arange(50)), x)
    s = choose_store(Chunks(x), CPU, budget_bytes=n, key="c", shape=x.shape)
    assert isinstance(s, DeviceStore) and torch.equal(s.gather(torch.arange(50)), x)
    with pytest.raises(UserError, match="choose auto, device, memmap"):
        choose_store(x, CPU, store="disk")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_a_cpu_trainer_keeps_freed_activations_instead_of_faulting_them_in_again(tmp_path):
    """`keep_freed_memory` (called by a CPU Trainer): a step's 12.8 MB map comes from the heap, not
    from a mapping of its own that is handed back when freed (glibc's default above 128 KB), and
    cycles of a step's maps, allocated and freed again, page-fault less than one cycle's worth
    (a cycle is 38 MB, 9,400 pages). A fresh process each way: the setting lasts the process."""
    script = tmp_path / "faults.py"
    script.write_text(
        "import ctypes, resource, sys, torch\n"
        "from semisup.engine.trainer import keep_freed_memory\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd',\n"
        "                                               'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
        "libc = ctypes.CDLL(None)\n"
        "if not hasattr(libc, 'mallinfo2'):\n"
        "    print(-1, 0, 0); sys.exit()\n"
        "libc.mallinfo2.restype = Info\n"
        "kept = sys.argv[1] == 'keep' and keep_freed_memory()\n"
        "mapped = libc.mallinfo2().hblkhd\n"
        "t = torch.ones(256, 16, 28, 28)\n"
        "mapped = libc.mallinfo2().hblkhd - mapped\n"
        "del t\n"
        "def cycles(n):\n"
        "    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for _ in range(n):\n"
        "        held = [torch.ones(256, 16, 28, 28), torch.ones(256, 32, 14, 14)]\n"
        "        held.append(torch.ones(256, 16, 28, 28) * 2)\n"
        "        del held\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0\n"
        "cycles(10)\n"
        "print(int(kept), mapped, cycles(20))\n")
    runs = {}
    for how in ("default", "keep"):
        out = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, check=True).stdout
        runs[how] = [int(v) for v in out.split()]
    if runs["keep"][0] != 1:
        pytest.skip("this C library has no mallopt or no mallinfo2")
    assert runs["default"][1] >= 12_000_000, runs  # glibc's default: a mapping of its own
    assert runs["keep"][1] == 0, runs  # kept: from the heap
    assert runs["keep"][2] < 9_400, runs  # 20 cycles fault in less than one cycle's pages
