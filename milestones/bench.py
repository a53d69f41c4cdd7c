"""Speed, memory and achieved FLOP/s of registered models, against torchvision and the machine's own matmul peak.

:func:`bench_model` times training steps (forward, cross-entropy, backward, optimiser step) or inference batches
(``eval()`` under ``torch.inference_mode``) of one model and, in the same process and with the same settings and the
same weights, of torchvision's implementation of that architecture where there is one (:func:`torchvision_pairs`),
and, for inference, of the ONNX export of our model in onnxruntime. Contenders take turns rep by rep, their order
rotating every round, so a load spike from another process on a shared machine hits them alike; a speed ratio is the
median of the per-rep ratios. :func:`measure_peak_gflops` is the yardstick: a float32 matmul, the best case of the
kernels these models spend their time in; the same probe runs once per round, so a model's share of the peak is
measured under the load its own reps saw. :func:`compare_settings` times one model under several :class:`Settings`
(channels_last, optimizer kernels, attention path, torch.compile, autocast, threads) the same way.

Definitions, so that numbers from different runs mean the same thing:

* ms/batch: median over ``reps`` of one rep's time divided by its steps (a rep runs enough steps to last
  ``min_rep_seconds``, so tiny models are not timed at the clock's resolution). img/s = batch / (ms/batch). The
  clock is elapsed time by default; ``clock="cpu"`` takes this process's CPU time instead, which on a machine shared
  with other work (and one thread) leaves out the time the scheduler gave to other processes.
* Achieved GFLOP/s: 2 FLOPs per multiply-add of a forward pass (``measure.count_macs`` at the input size, attention
  matmuls included), times 3 for a training step (the backward pass costs about twice the forward: one product for
  the input gradient and one for the weight gradient per layer), per second. The optimiser's elementwise work is not
  counted.
* Peak memory on the CPU: the process's resident-set high-water mark (``VmHWM``, reset through
  ``/proc/self/clear_refs``) during the warm-up steps minus the resident size before them, after returning freed heap
  pages to the system (``malloc_trim``). It is what the steps need beyond the weights and the input batch (activations,
  gradients, optimiser state, workspaces), allocator slack included. On CUDA: ``torch.cuda.max_memory_allocated``
  minus the memory allocated before the steps.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import gc
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ConfigError
from .export import ExportError, export_onnx, first_line
from .measure import count_macs
from .models import create_model, explicit_attention, get_converter, get_spec, list_converters, model_options
from .timing import Contender, median_ratio, num_threads, sync, time_interleaved

log = logging.getLogger(__name__)

Mode = Literal["train", "infer"]
Clock = Literal["wall", "cpu"]

# One model of each family: what ``milestones bench`` runs when given no names, and docs/benchmarks.md reports.
DEFAULT_MODELS = ("lenet5_modern", "alexnet_owt", "vgg11", "googlenet_tv", "resnet20", "resnet18", "resnet50",
                  "vit_b16", "swin_t", "cswin_t")

# torchvision builder keywords that make its model the architecture our converter maps (GoogLeNet, Inception v3:
# torchvision builds untrained aux heads by default, which its train-mode forward runs and ours, by default, have not).
_TV_BUILD_KWARGS: dict[str, dict[str, Any]] = {"googlenet": {"aux_logits": False, "init_weights": True},
                                               "inception_v3": {"aux_logits": False, "init_weights": True}}


@dataclass(frozen=True)
class TorchvisionPair:
    """Our registered model and torchvision's implementation of the same architecture.

    Attributes:
        ours: our registered name.
        builder: the ``torchvision.models`` builder.
        ours_kwargs: ``create_model`` options the pairing needs (``version="v1.5"`` for the ResNets).
        tv_kwargs: keywords for torchvision's builder.
    """

    ours: str
    builder: str
    ours_kwargs: Mapping[str, Any] = field(default_factory=dict)
    tv_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def build_torchvision(self, *, num_classes: int, size: int | None = None) -> nn.Module:
        """torchvision's model, randomly initialised (never downloads); ``size`` only matters for its ViTs."""
        import torchvision

        kwargs = {**self.tv_kwargs, "num_classes": num_classes, "weights": None}
        if size is not None and self.builder.startswith("vit_"):
            kwargs["image_size"] = size
        return torchvision.models.get_model(self.builder, **kwargs)


def torchvision_pairs() -> dict[str, TorchvisionPair]:
    """Our name -> its torchvision twin, one per registered weight converter (a converter exists exactly where the
    two implement the same layers: alexnet_owt, vgg*, googlenet_tv, inception_v3, resnet18-152 v1.5, densenet*, vit_*,
    swin_*)."""
    pairs = {}
    for source in list_converters("torchvision"):
        conv = get_converter(source)
        pairs[conv.target] = TorchvisionPair(conv.target, source, dict(conv.target_kwargs),
                                             dict(_TV_BUILD_KWARGS.get(source, {})))
    return pairs


def machine_description(device: str | torch.device = "cpu", threads: int | None = None) -> str:
    """CPU model (or GPU name), cores, torch threads, load average and library versions, for result headers."""
    device = torch.device(device)
    _check_device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    from .machine import cpu_name

    cpu = cpu_name()
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
    used = threads or torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {used} torch thread(s){load}, torch {torch.__version__}"


def measure_peak_gflops(threads: int | None = None, *, n: int = 2048, reps: int = 5,
                        device: str | torch.device = "cpu") -> float:
    """The machine's practical float32 peak: GFLOP/s of an ``n x n`` by ``n x n`` matmul, median of ``reps``.

    A large square matmul is the most efficient kernel BLAS (MKL/oneDNN on the CPU, cuBLAS on a GPU) runs, so it is
    the ceiling convolution and attention layers can approach. TF32 is switched off on CUDA: the result is a float32
    peak, comparable with float32 models.
    """
    device = torch.device(device)
    _check_device(device)
    with num_threads(threads if device.type == "cpu" else None), contextlib.ExitStack() as stack:
        if device.type == "cuda":
            stack.enter_context(_no_tf32())
        probe = _matmul_contender(n, device)
        probe.step()  # warm-up: thread pool, packing buffers
        times = []
        for _ in range(reps):
            sync(device)
            start = time.perf_counter()
            probe.step()
            sync(device)
            times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        return None


def _reset_hwm() -> bool:
    """Reset the kernel's resident-set high-water mark to the current size (Linux >= 4.0, ``clear_refs`` value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> None:
    """Collect garbage and hand glibc's free heap pages back to the system, so the next RSS baseline is honest."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name and platform.system() == "Linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


class PeakMemory:
    """Context manager measuring peak memory growth during a block; ``.bytes`` holds the result (None if unknown)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        _release_free_memory()
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self._hwm = True
        else:
            self._base = _rss_bytes()
            self._hwm = _reset_hwm()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._hwm:
            peak = _hwm_bytes()
            self.bytes = None if peak is None else max(peak - self._base, 0)


@dataclass
class BenchResult:
    """One :func:`bench_model` measurement. Times are medians over reps; ``None`` means not measured.

    ``ratio`` is our speed over torchvision's, the median of per-rep ratios (above 1: ours is faster);
    ``ratio_iqr`` holds the quartiles of those ratios and ``ratio_best`` the ratio of the two best reps, the estimate
    least touched by interference. ``ort_speedup`` is onnxruntime's speed over ours (above 1: onnxruntime is faster),
    also a median of per-rep ratios. ``*_max_abs_diff`` compare logits with ours on the benchmark batch (infer mode
    only).
    """

    model: str
    mode: Mode
    batch: int
    input_size: tuple[int, int, int]
    threads: int
    device: str
    channels_last: bool
    compiled: bool
    amp: str | None
    optimizer: str
    reps: int
    steps_per_rep: int
    clock: Clock
    model_kwargs: dict[str, Any]
    gmacs: float
    ms_per_batch: float
    peak_mib: float | None
    peak_gflops: float | None = None
    peak_fraction: float | None = None
    torchvision: str | None = None
    tv_ms_per_batch: float | None = None
    tv_peak_mib: float | None = None
    ratio: float | None = None
    ratio_iqr: tuple[float, float] | None = None
    ratio_best: float | None = None
    tv_max_abs_diff: float | None = None
    ort_ms_per_batch: float | None = None
    ort_speedup: float | None = None
    ort_max_abs_diff: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def img_per_s(self) -> float:
        return 1000 * self.batch / self.ms_per_batch

    @property
    def tv_img_per_s(self) -> float | None:
        return None if self.tv_ms_per_batch is None else 1000 * self.batch / self.tv_ms_per_batch

    @property
    def ort_img_per_s(self) -> float | None:
        return None if self.ort_ms_per_batch is None else 1000 * self.batch / self.ort_ms_per_batch

    @property
    def flops_per_batch(self) -> float:
        """FLOPs of one batch: 2 per multiply-add, times 3 for a training step (forward + backward)."""
        return _flops_per_batch(self.gmacs, self.batch, self.mode)

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s."""
        return self.flops_per_batch / (self.ms_per_batch / 1000) / 1e9

    @property
    def pct_of_peak(self) -> float | None:
        """Achieved over the matmul probe's GFLOP/s, median of the per-rep ratios, in percent."""
        return None if self.peak_fraction is None else 100 * self.peak_fraction

    def to_dict(self) -> dict[str, Any]:
        """Every field plus the derived rates, JSON-ready."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["input_size"] = list(self.input_size)
        out.update(img_per_s=self.img_per_s, tv_img_per_s=self.tv_img_per_s, ort_img_per_s=self.ort_img_per_s,
                   gflops=self.gflops, pct_of_peak=self.pct_of_peak)
        return out


def _flops_per_batch(gmacs: float, batch: int, mode: Mode) -> float:
    return 2 * gmacs * 1e9 * batch * (3 if mode == "train" else 1)


def default_batch(name: str) -> int:
    """128 for 32x32-or-smaller inputs (the CIFAR/MNIST nets' training batch), else 8: a small batch for a CPU."""
    c, h, w = get_spec(name).input_size
    return 128 if h * w <= 32 * 32 else 8


def _input_size(name: str, size: int | None) -> tuple[tuple[int, int, int], dict[str, Any]]:
    """The (C, H, W) input and the ``create_model`` options a non-default ``size`` needs (``img_size``)."""
    spec = get_spec(name)
    c, h, w = spec.input_size
    if size is None or (size, size) == (h, w):
        return (c, h, w), {}
    kwargs = {"img_size": size} if "img_size" in model_options(name) else {}
    return (c, size, size), kwargs


@dataclass(frozen=True)
class Settings:
    """How a model is run; :func:`compare_settings` times several side by side.

    Attributes:
        channels_last: NHWC memory format for the model and the input.
        compile: ``torch.compile`` (eager, with a note, where the compiler fails).
        amp: ``"bf16"`` for bfloat16 autocast, None for float32.
        optimizer: ``sgd`` or ``adamw`` with ``-loop``, ``-foreach`` or ``-fused`` kernels (train mode).
        inference_mode: infer under ``torch.inference_mode`` rather than ``torch.no_grad``.
        attention: ``"sdpa"`` (``F.scaled_dot_product_attention``, the default path of ``_layers.attend``) or
            ``"explicit"`` (softmax(QK^T)V, ``explicit_attention()``).
        threads: torch intra-op threads; None keeps the run's.
    """

    channels_last: bool = False
    compile: bool = False
    amp: str | None = None
    optimizer: str = "sgd-foreach"
    inference_mode: bool = True
    attention: Literal["sdpa", "explicit"] = "sdpa"
    threads: int | None = None

    def check(self) -> None:
        if self.amp not in (None, "bf16"):
            raise ConfigError(f"amp must be 'bf16' or None, not {self.amp!r}")
        if self.attention not in ("sdpa", "explicit"):
            raise ConfigError(f"attention must be 'sdpa' or 'explicit', not {self.attention!r}")
        _parse_optimizer(self.optimizer)


def _parse_optimizer(name: str) -> tuple[str, str]:
    """``sgd[-impl]`` or ``adamw[-impl]`` -> (kind, impl), the implementation defaulting to ``foreach``."""
    kind, _, impl = name.partition("-")
    impl = impl or "foreach"
    if impl not in ("loop", "foreach", "fused") or kind not in ("sgd", "adamw"):
        raise ConfigError(f"optimizer must be sgd or adamw, optionally with -loop, -foreach or -fused, not {name!r}")
    return kind, impl


def _optimizer(params: Sequence[nn.Parameter], name: str) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW, in the for-loop, ``foreach`` or ``fused`` implementation: ``sgd[-impl]``."""
    kind, impl = _parse_optimizer(name)
    flags = {"foreach": impl == "foreach", "fused": True if impl == "fused" else None}
    if kind == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-5, **flags)
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, **flags)


def _matmul_contender(n: int, device: torch.device) -> Contender:
    """The probe of :func:`measure_peak_gflops` as a contender, so that it runs under the models' conditions."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen).to(device), torch.randn(n, n, generator=gen).to(device)
    out = torch.empty(n, n, device=device)
    return Contender("matmul", lambda: torch.mm(a, b, out=out), lambda: None, steps=1)


def _torch_contender(label: str, model: nn.Module, x: Tensor, y: Tensor, *, mode: Mode, settings: Settings,
                     device: torch.device, compiled: bool) -> Contender:
    """Wrap ``model`` (moved to ``device`` and the settings' memory format, compiled if asked) in a step function."""
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=fmt)
    x = x.to(device).contiguous(memory_format=fmt)
    y = y.to(device)
    net = torch.compile(model) if compiled else model

    def contexts() -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        if settings.amp == "bf16":
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        stack.enter_context(explicit_attention(settings.attention == "explicit"))
        return stack

    if mode == "train":
        model.train()
        opt = _optimizer([p for p in model.parameters() if p.requires_grad], settings.optimizer)

        def step() -> None:
            with contexts():
                loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        c = Contender(label, step, lambda: None, threads=settings.threads)
    else:
        model.eval()
        grad_mode = torch.inference_mode if settings.inference_mode else torch.no_grad

        def infer() -> Tensor:
            with grad_mode(), contexts():
                return net(x)

        c = Contender(label, infer, infer, threads=settings.threads)
    c.compiled = compiled
    return c


def _warm_up(make: Callable[[bool], Contender], steps: int, device: torch.device, *, compiled: bool,
             notes: list[str]) -> Contender:
    """Build a contender and run ``steps`` untimed steps, measuring peak memory.

    With ``compiled``, a compiler failure (which surfaces at the first call, with any exception type) is noted and
    the contender is rebuilt eager.
    """
    try:
        c = make(compiled)
        with num_threads(c.threads), PeakMemory(device) as mem:
            for _ in range(steps):
                c.step()
            sync(device)
    except Exception as e:
        if not compiled:
            raise
        notes.append(f"torch.compile is unavailable here ({type(e).__name__}: {first_line(e, 160)}); ran eager")
        log.warning("torch.compile failed; falling back to eager: %s", e)
        return _warm_up(make, steps, device, compiled=False, notes=notes)
    c.peak = mem.bytes
    return c


def _onnxruntime_contender(model: nn.Module, x: Tensor, threads: int, tmp: Path, notes: list[str]) -> Contender | None:
    """Export ``model`` to ONNX and wrap an onnxruntime CPU session; None (with a note) when that is not possible."""
    try:
        import onnxruntime as ort
    except ImportError:
        notes.append("onnxruntime is not installed (pip install milestones[export]); no ONNX column")
        return None
    x = x.float().cpu().contiguous()
    try:
        path = export_onnx(copy.deepcopy(model).cpu().float().eval(), x, tmp / "model.onnx")
    except ExportError as e:  # an unexportable model only loses its ONNX column
        notes.append(f"{e}; no ONNX column")
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}

    def run() -> Tensor:
        return torch.from_numpy(session.run(None, feed)[0])

    return Contender("onnxruntime", run, run)


def _peak_fraction(probe: Contender, c: Contender, flops: float, n: int) -> float:
    """``c``'s achieved FLOP/s over the ``n``-sided matmul probe's, median over rounds: a load spike slows both, so
    the per-round fraction holds steadier than a ratio of medians."""
    return median_ratio(probe, c) * flops / (2 * n**3)


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    """25th and 75th percentiles: the spread of per-rep ratios, i.e. how far one rep's noise reaches."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _check_device(device: torch.device) -> None:
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but CUDA is not available here; use --device cpu")


def _check_common(mode: str, reps: int, warmup: int, clock: str) -> None:
    if mode not in ("train", "infer"):
        raise ConfigError(f"mode must be 'train' or 'infer', not {mode!r}")
    if clock not in ("wall", "cpu"):
        raise ConfigError(f"clock must be 'wall' or 'cpu', not {clock!r}")
    if reps < 1 or warmup < 1:
        raise ConfigError("reps and warmup must be at least 1")


def _setup(name: str, batch: int | None, size: int | None, extra: Mapping[str, Any], seed: int
           ) -> tuple[nn.Module, dict[str, Any], tuple[int, int, int], float, int, Tensor, Tensor]:
    """Our model (seeded), its options, input size, GMACs per image, classes, and a seeded batch ``(x, y)``."""
    batch = batch or default_batch(name)
    input_size, size_kwargs = _input_size(name, size)
    kwargs = {**size_kwargs, **extra}
    torch.manual_seed(seed)
    model = create_model(name, **kwargs)
    _fill_zero_weights(model, seed)
    with torch.device("meta"):
        meta_model = create_model(name, **kwargs)
        gmacs = count_macs(meta_model, input_size) / 1e9
        num_classes = meta_model.eval()(torch.zeros(1, *input_size)).shape[1]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *input_size, generator=gen)
    y = torch.randint(0, num_classes, (batch,), generator=gen)
    return model, kwargs, input_size, gmacs, num_classes, x, y


def bench_model(
    name: str,
    mode: Mode = "train",
    *,
    batch: int | None = None,
    size: int | None = None,
    threads: int | None = None,
    channels_last: bool = False,
    compile: bool = False,
    amp: str | None = None,
    reps: int = 10,
    warmup: int = 2,
    torchvision: bool = True,
    onnxruntime: bool = True,
    optimizer: str = "sgd-foreach",
    inference_mode: bool = True,
    device: str | torch.device = "cpu",
    model_kwargs: Mapping[str, Any] | None = None,
    probe: int | None = 2048,
    min_rep_seconds: float = 0.05,
    clock: Clock = "wall",
    progress: bool = False,
    seed: int = 0,
) -> BenchResult:
    """Time training steps or inference batches of model ``name``, beside torchvision's twin and onnxruntime.

    Args:
        name: a registered model.
        mode: ``"train"`` (forward, cross-entropy, backward, optimiser step) or ``"infer"`` (eval mode, no autograd).
        batch: images per step; default :func:`default_batch`.
        size: input side; default the model's own (a model with an ``img_size`` option is built for it).
        threads: torch intra-op threads (and onnxruntime's); default torch's current setting.
        channels_last: NHWC memory format for the model and the input (both contenders).
        compile: ``torch.compile`` both contenders; falls back to eager, with a note, where the compiler fails.
        amp: ``"bf16"`` for bfloat16 autocast, None for float32.
        reps: timed reps per contender, interleaved.
        warmup: untimed steps per contender before timing (peak memory is measured over these).
        torchvision: also time torchvision's implementation where :func:`torchvision_pairs` has one.
        onnxruntime: in infer mode on the CPU, also time our model's ONNX export in onnxruntime.
        optimizer: ``sgd`` or ``adamw``, with ``-loop``, ``-foreach`` (default) or ``-fused`` kernels.
        inference_mode: infer under ``torch.inference_mode`` (else ``torch.no_grad``).
        device: ``"cpu"``, ``"cuda"``...
        model_kwargs: extra ``create_model`` options for our model (the torchvision pairing then needs them to keep
            the architecture: a strict load of torchvision's converted weights decides).
        probe: side of the float32 matmul (:func:`measure_peak_gflops`) run once per rep beside the contenders, so
            the percentage of peak compares speeds measured under the same load; None skips it.
        min_rep_seconds: each rep runs as many steps as it takes to last about this long.
        clock: ``"wall"`` (elapsed time) or ``"cpu"`` (this process's CPU time: on a machine shared with other
            work and one thread, it leaves out the time the scheduler gave to other processes, so ratios are
            steadier; with several threads it also counts threads spinning at barriers).
        progress: show a progress bar on stderr.
        seed: seeds the weights and the input batch.

    Returns:
        A :class:`BenchResult`.
    """
    _check_common(mode, reps, warmup, clock)
    settings = Settings(channels_last=channels_last, compile=compile, amp=amp, optimizer=optimizer,
                        inference_mode=inference_mode)
    settings.check()
    device = torch.device(device)
    _check_device(device)
    pair = torchvision_pairs().get(name) if torchvision else None
    notes: list[str] = []
    if pair and pair.ours_kwargs:
        opts = ", ".join(f"{k}={v!r}" for k, v in pair.ours_kwargs.items())
        notes.append(f"built with {opts} to match torchvision's {pair.builder}")

    with num_threads(threads if device.type == "cpu" else None), tempfile.TemporaryDirectory() as tmp:
        used_threads = torch.get_num_threads()
        extra = {**(pair.ours_kwargs if pair else {}), **(model_kwargs or {})}
        ours, kwargs, input_size, gmacs, num_classes, x, y = _setup(name, batch, size, extra, seed)
        batch = x.shape[0]
        theirs = _paired_torchvision(pair, ours, num_classes, input_size, notes) if pair is not None else None

        contenders: list[Contender] = []
        compiled = compile
        for label, model in (("ours", ours), ("torchvision", theirs)):
            if model is None:
                continue

            def make(comp: bool, label: str = label, model: nn.Module = model) -> Contender:
                return _torch_contender(label, model, x, y, mode=mode, settings=settings, device=device,
                                        compiled=comp)

            c = _warm_up(make, warmup, device, compiled=compiled, notes=notes)
            compiled = c.compiled  # if ours fell back to eager, torchvision runs eager too
            contenders.append(c)
        if probe:
            contenders.append(_warm_up(lambda _: _matmul_contender(probe, device), 1, device, compiled=False,
                                       notes=notes))
        if mode == "infer" and onnxruntime and device.type == "cpu":
            ort = _onnxruntime_contender(ours, x, used_threads, Path(tmp), notes)
            if ort is not None:
                contenders.append(_warm_up(lambda _: ort, warmup, device, compiled=False, notes=notes))
        steps = time_interleaved(contenders, reps, device, min_rep_seconds=min_rep_seconds, progress=progress,
                                  desc=f"{name} {mode}", clock=clock)

        base = contenders[0]
        result = BenchResult(
            model=name, mode=mode, batch=batch, input_size=input_size, threads=used_threads, device=str(device),
            channels_last=channels_last, compiled=base.compiled, amp=amp,
            optimizer=optimizer if mode == "train" else "-", reps=reps, steps_per_rep=steps, clock=clock,
            model_kwargs=kwargs,
            gmacs=gmacs, ms_per_batch=base.ms(), peak_mib=_mib(base.peak), notes=notes,
        )
        by_label = {c.label: c for c in contenders}
        if "matmul" in by_label:
            mm = by_label["matmul"]
            result.peak_gflops = 2 * probe**3 / statistics.median(mm.times) / 1e9
            result.peak_fraction = _peak_fraction(mm, base, result.flops_per_batch, probe)
        if "torchvision" in by_label:
            tv = by_label["torchvision"]
            result.torchvision = pair.builder if pair else None
            result.tv_ms_per_batch = tv.ms()
            result.tv_peak_mib = _mib(tv.peak)
            result.ratio = median_ratio(tv, base)
            result.ratio_iqr = _quartiles([a / b for a, b in zip(tv.times, base.times, strict=True)])
            result.ratio_best = min(tv.times) / min(base.times)
            if mode == "infer":
                result.tv_max_abs_diff = _max_abs_diff(base, tv)
        if "onnxruntime" in by_label:
            o = by_label["onnxruntime"]
            result.ort_ms_per_batch = o.ms()
            result.ort_speedup = median_ratio(base, o)
            result.ort_max_abs_diff = _max_abs_diff(base, o)
    return result


@dataclass
class SettingResult:
    """One variant of :func:`compare_settings`: its median ms/batch and its speed over the first variant's."""

    label: str
    settings: Settings
    ms_per_batch: float
    img_per_s: float
    speedup: float
    peak_mib: float | None
    compiled: bool
    max_abs_diff: float | None
    gflops: float
    pct_of_peak: float | None = None


def compare_settings(
    name: str,
    mode: Mode,
    variants: Mapping[str, Settings],
    *,
    batch: int | None = None,
    size: int | None = None,
    threads: int | None = None,
    reps: int = 10,
    warmup: int = 2,
    device: str | torch.device = "cpu",
    model_kwargs: Mapping[str, Any] | None = None,
    min_rep_seconds: float = 0.05,
    clock: Clock = "wall",
    progress: bool = False,
    seed: int = 0,
    notes: list[str] | None = None,
    probe: int | None = None,
) -> list[SettingResult]:
    """Time one model under several :class:`Settings`, interleaved, each with a copy of the same weights.

    ``speedup`` is the median over rounds of the first variant's time over this one's (above 1: faster than the
    first); in infer mode ``max_abs_diff`` compares this variant's logits with the first's. With ``probe``, the matmul
    probe runs once per round and each variant gets its ``pct_of_peak``. Other arguments as in :func:`bench_model`;
    ``notes`` collects compiler fallbacks.
    """
    _check_common(mode, reps, warmup, clock)
    if not variants:
        raise ConfigError("compare_settings needs at least one variant")
    for v in variants.values():
        v.check()
    device = torch.device(device)
    _check_device(device)
    notes = [] if notes is None else notes
    with num_threads(threads if device.type == "cpu" else None):
        base_model, _, _, gmacs, _, x, y = _setup(name, batch, size, dict(model_kwargs or {}), seed)
        contenders = []
        for label, st in variants.items():
            model = copy.deepcopy(base_model)

            def make(comp: bool, label: str = label, model: nn.Module = model, st: Settings = st) -> Contender:
                return _torch_contender(label, model, x, y, mode=mode, settings=st, device=device, compiled=comp)

            contenders.append(_warm_up(make, warmup, device, compiled=st.compile, notes=notes))
        mm = _matmul_contender(probe, device) if probe else None
        time_interleaved(contenders + ([mm] if mm else []), reps, device, min_rep_seconds=min_rep_seconds,
                          progress=progress, desc=f"{name} {mode}", clock=clock)
    flops = _flops_per_batch(gmacs, x.shape[0], mode)
    first = contenders[0]
    out = []
    for c, st in zip(contenders, variants.values(), strict=True):
        pct = None if mm is None else 100 * _peak_fraction(mm, c, flops, probe)
        out.append(SettingResult(c.label, st, c.ms(), 1000 * x.shape[0] / c.ms(), median_ratio(first, c),
                                 _mib(c.peak), c.compiled, _max_abs_diff(first, c) if mode == "infer" else None,
                                 flops / c.ms() / 1e6, pct))
    return out


@torch.no_grad()
def _fill_zero_weights(model: nn.Module, seed: int) -> None:
    """Give all-zero weight matrices (ViT's zero-initialised head) small random values, so that comparing two
    implementations' logits tests something; timing does not depend on the values."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.ndim >= 2 and p.is_floating_point() and not p.any():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def _paired_torchvision(pair: TorchvisionPair, ours: nn.Module, num_classes: int, input_size: tuple[int, int, int],
                        notes: list[str]) -> nn.Module | None:
    """torchvision's model with its weights copied into ours, or None (with a note) if the two differ at this size."""
    try:
        theirs = pair.build_torchvision(num_classes=num_classes, size=input_size[-1])
    except ImportError:
        notes.append("torchvision is not installed; no comparison")
        return None
    _fill_zero_weights(theirs, 1)
    converted = get_converter(pair.builder).fn(theirs.state_dict())
    try:
        # The same weights in both: equal outputs (checked in infer mode) show the same architecture is timed.
        ours.load_state_dict(converted, strict=True)
    except RuntimeError:
        notes.append(f"torchvision's {pair.builder} is another architecture at {input_size[-1]}x{input_size[-1]} "
                     "(its weights do not fit ours); no comparison")
        return None
    return theirs


def _mib(n: int | None) -> float | None:
    return None if n is None else n / 2**20


def _max_abs_diff(a: Contender, b: Contender) -> float | None:
    out_a, out_b = a.output(), b.output()
    if out_a is None or out_b is None:
        return None
    return float((out_a.float().cpu() - out_b.float().cpu()).abs().max())


TABLE_HEADERS = ("model", "mode", "batch", "input", "img/s", "ms/batch", "peak MiB", "GFLOP/s", "% peak",
                 "tv img/s", "ours/tv", "ORT ms/batch", "ORT/ours")


def table_rows(results: Sequence[BenchResult]) -> list[list[str]]:
    """One row of :data:`TABLE_HEADERS` cells per result ("-" where not measured)."""

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    rows = []
    for r in results:
        rows.append([
            r.model + (" (compiled)" if r.compiled else ""), r.mode, str(r.batch), "x".join(map(str, r.input_size)),
            _sig(r.img_per_s), _sig(r.ms_per_batch), fmt(r.peak_mib, ".0f"), _sig(r.gflops), fmt(r.pct_of_peak, ".0f"),
            _sig(r.tv_img_per_s), fmt(r.ratio, ".2f"), _sig(r.ort_ms_per_batch), fmt(r.ort_speedup, ".2f"),
        ])
    return rows


def _sig(v: float | None) -> str:
    """Three significant digits, no exponent for the magnitudes a benchmark sees."""
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def bench_precisions(names: Sequence[str], device: str, precision: str = "auto",
                     amp: str | None = None) -> dict[str, str | None]:
    """Each model's autocast dtype (``"bf16"`` or None) for :func:`bench_model`, as ``precision`` (``auto``, ``fp32``
    or ``bf16``) resolves for its family on ``device``, and under the key "" one line saying what was chosen and why
    (models grouped by choice). ``amp="bf16"`` (the older ``--amp bf16``) asks for bf16 everywhere."""
    from .precision import resolve_precision

    if amp is not None:
        return {"": "bf16 (asked for with --amp)", **dict.fromkeys(names, amp)}
    out: dict[str, str | None] = {}
    groups: dict[str, list[str]] = {}
    for name in names:
        choice = resolve_precision(precision, device, get_spec(name).family)
        out[name] = "bf16" if choice.value == "bf16" else None
        groups.setdefault(choice.describe(), []).append(name)
    if len(groups) == 1:
        out[""] = next(iter(groups))
    else:
        out[""] = "; ".join(f"{', '.join(models)}: {what}" for what, models in groups.items())
    return out


def bench_layouts(names: Sequence[str], device: str, asked: bool | None,
                  amps: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Each model's memory format for :func:`bench_model` (True: channels_last), and under the key "" one line saying
    which: ``asked`` where given, else what ``data.channels_last: auto`` picks for the family and the precision
    ``amps`` gives it (:func:`bench_precisions`), as a training run would."""
    from .precision import resolve_channels_last

    if asked is not None:
        return {"": "on (asked for)" if asked else "off (asked for)", **dict.fromkeys(names, asked)}
    amps = amps or {}
    out = {n: bool(resolve_channels_last("auto", get_spec(n).family, device, amps.get(n) or "fp32").value)
           for n in names}
    on = [n for n in names if out[n]]
    out[""] = ("auto: on for " + ", ".join(on) if on else "auto: off") + (
        "" if len(on) in (0, len(names)) else ", off for the others")
    return out
