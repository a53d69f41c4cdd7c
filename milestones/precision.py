"""How a run computes: numeric precision, memory format and ``torch.compile``, each chosen once per process.

Every setting takes ``auto`` (the default) or an explicit value. ``auto`` decides from what can be known or measured
about the machine at hand, never from CPU flags alone:

* ``train.precision``: ``bf16`` autocast on CUDA devices that support bfloat16. On a CPU, bf16 only if the CPU
  advertises a native bf16 matmul (``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``) *and* a short probe
  (:func:`measure_bf16`: a conv-BN-ReLU-conv-BN training step, timed beside float32, interleaved) runs bf16 at least
  :data:`PROBE_MARGIN` times faster, and the model's family is one whose bf16 training was measured faster and checked
  for accuracy (:data:`BF16_CPU_CHECKED`). Otherwise float32. Flags alone should not decide: docs/benchmarks.md
  (2026-11-25) measured bf16 autocast at 0.03-0.23x float32 speed on an AMD EPYC (that run did not record its flags;
  issue 17 calls that kind AVX2-only), while on 2026-12-02 an AMD EPYC listing ``avx512_bf16`` ran resnet20's training
  step 1.42x faster in bf16 (and lenet5_modern's 0.78x). The probe's result is cached per machine (CPU model name,
  torch version, threads) in the project's cache folder (``$MILESTONES_CACHE``, else ``~/.cache/milestones``), so it
  runs once. Autocast leaves the weights, the optimizer, BatchNorm's running statistics and the loss (computed on
  float32 logits, outside autocast) in float32.
* ``data.channels_last``: NHWC tensors for the families measured faster with them in training
  (:data:`CHANNELS_LAST_CPU`, and :data:`CHANNELS_LAST_CPU_BF16` for bf16 runs, from docs/benchmarks.md); on CUDA for
  the convolutional families.
* ``train.compile``: only where the measured saving, times the run's steps, exceeds the compile time
  (:func:`compile_pays`); off where the family was not measured on this kind of device. On a CPU, measured whole
  runs were slower compiled (:data:`COMPILE_CPU`), so ``auto`` compiles there only if the table says otherwise; on
  CUDA, long runs are compiled. Inductor's cache goes to the project's cache folder, so a second run of the same
  model compiles from cache.

Each choice is a :class:`Choice`, a value and the reason for it, which the CLI prints at start and the run records in
``summary.json`` and its checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import ConfigError
from .models import family_traits, measured

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags of CPUs whose matrix units take bfloat16 natively (Intel AMX, AVX512-BF16)."""

PROBE_MARGIN = 1.2
"""bf16 must run the probe this many times faster than float32 for ``auto`` to choose it: a smaller gain is within
what autocast's casts and the model's memory-bound layers can take back."""

PROBE_VERSION = 2
"""Bump when the probe changes: cached results of the old probe are then measured again."""

# The measured tables live with the models, as data (milestones/models/measured.json, keyed by family, with the
# sources of every figure); here they are read into the forms the resolvers use.
_MEASURED = measured()

BF16_CPU_CHECKED = {f: e["cpu_bf16"]["why"] for f, e in _MEASURED.items() if e.get("cpu_bf16", {}).get("use")}
"""Families for which ``auto`` may choose bf16 on a CPU (where the probe allows it): bf16 trained them faster *and*
their accuracy was checked against float32. Every other family stays float32 under ``auto`` until checked: see
:data:`BF16_KEPT_FP32_CPU` for those measured and found wanting."""

BF16_KEPT_FP32_CPU = {f: e["cpu_bf16"]["why"] for f, e in _MEASURED.items()
                      if "cpu_bf16" in e and not e["cpu_bf16"]["use"]}
"""Families measured and kept in float32 by ``auto`` on a CPU, with why. The reasons name the family, not the model
measured, since they are printed for every model of it."""


def _speed_table(key: str) -> dict[str, tuple[bool, float, str]]:
    return {f: (e[key]["use"], e[key]["speedup"], e[key]["model"]) for f, e in _MEASURED.items() if key in e}


CHANNELS_LAST_CPU = _speed_table("cpu_channels_last")
"""Family -> (channels_last by default on a CPU, its measured training speed over NCHW, the model measured).
Families not listed keep NCHW (not measured)."""

CHANNELS_LAST_CPU_BF16 = _speed_table("cpu_bf16_channels_last")
"""The same for a bf16 run; families not listed follow :data:`CHANNELS_LAST_CPU`."""

COMPILE_CPU = {f: (e["cpu_compile"]["speedup"], e["cpu_compile"]["seconds"], e["cpu_compile"]["model"])
               for f, e in _MEASURED.items() if "cpu_compile" in e}
"""Family -> (training speed of ``torch.compile`` over eager, compile seconds, the model measured) on a CPU, in
float32. Families not listed are not compiled by ``auto`` on a CPU; as measured, ``auto`` compiles nothing on a CPU."""

CUDA_COMPILE_ASSUMED = (1.3, 60.0)
"""(speed ratio, compile seconds) assumed for ``auto`` on CUDA, where no GPU was measured yet: compile when a run is
long enough that a 1.3x gain would repay a minute of compiling."""



@dataclass(frozen=True)
class Choice:
    """A resolved setting and why: ``value`` (``"fp32"``/``"bf16"``, or a bool) and one line of ``reason``."""

    value: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reason": self.reason}

    def describe(self) -> str:
        shown = ("on" if self.value else "off") if isinstance(self.value, bool) else self.value
        return f"{shown} ({self.reason})"


def cache_dir() -> Path:
    """The project's cache folder: ``$MILESTONES_CACHE``, else ``~/.cache/milestones``."""
    env = os.environ.get("MILESTONES_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/milestones").expanduser()


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def native_bf16(flags: set[str] | None = None) -> list[str]:
    """Which of :data:`NATIVE_BF16_FLAGS` the CPU advertises."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels were dispatched to (``AVX512``, ``AVX2``, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def _probe_key(device: torch.device) -> str:
    from .machine import cpu_name

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return f"{where} | torch {torch.__version__} | {torch.get_num_threads()} thread(s) | probe v{PROBE_VERSION}"


def measure_bf16(device: str | torch.device = "cpu", *, reps: int = 9) -> dict[str, float]:
    """Time a training step of one residual-style block in float32 and under bf16 autocast, side by side.

    The block is ResNet-20's middle stage at batch 16: conv 3x3 (32 -> 32 channels, 16x16), BatchNorm, ReLU, conv,
    BatchNorm; forward and backward, the loss on float32 outputs. A convolution's forward pass alone is not enough:
    where bf16 is not native, the backward pass and the casts around BatchNorm are what make a bf16 step slow. The two
    take turns rep by rep (:func:`milestones.timing.time_interleaved`, the benchmark's own timing), so a load spike
    from another process hits both alike. Returns the medians ``fp32_ms`` and ``bf16_ms``, ``speedup`` (the median of
    the per-rep ratios of float32 time over bf16 time; > 1: bf16 faster) and ``fp32_gflops`` (the block's float32
    rate, 3 x 2 FLOPs per multiply-add of its convolutions). About 10 ms a step in float32 on a 2-core EPYC.
    """
    from torch import nn

    from .timing import Contender, median_ratio, time_interleaved

    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        block = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                              nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)).to(device)
        x = torch.randn(16, 32, 16, 16, device=device)
    flops = 3 * 2 * 2 * (16 * 32 * 32 * 9 * 16 * 16)

    def step_fn(bf16: bool) -> Callable[[], None]:
        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = block(x)
            block.zero_grad(set_to_none=True)
            out.float().square().mean().backward()

        return step

    fp32, bf16 = (Contender(label, step_fn(label == "bf16"), lambda: None, steps=1) for label in ("fp32", "bf16"))
    for _ in range(4):  # warm-up: oneDNN creates its bf16 primitives over the first calls
        fp32.step()
        bf16.step()
    time_interleaved([fp32, bf16], reps, device, min_rep_seconds=0.02, progress=False, desc="bf16 probe",
                      clock="wall")
    f = statistics.median(fp32.times)
    return {"fp32_ms": 1000 * f, "bf16_ms": 1000 * statistics.median(bf16.times),
            "speedup": median_ratio(fp32, bf16), "fp32_gflops": flops / f / 1e9}


def probe(device: str | torch.device = "cpu", *, measure: Callable[[torch.device], dict[str, float]] | None = None
          ) -> dict[str, float]:
    """:func:`measure_bf16` for this machine, read from the cache when it was measured before (and written there
    otherwise); ``cached`` in the result says which."""
    device = torch.device(device)
    path = cache_dir() / "machine_probe.json"
    key = _probe_key(device)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if key in known:
        return {**known[key], "cached": True}
    result = (measure or measure_bf16)(device)
    known[key] = result
    try:
        from .files import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(known, indent=1).encode())
    except OSError as e:  # a read-only cache only costs the probe again next time
        log.warning("could not cache the precision probe in %s: %s", path, e)
    return {**result, "cached": False}


_RESOLVED: dict[tuple[str, str, str | None], Choice] = {}


def reset() -> None:
    """Forget this process's resolved precisions (tests that change the flags or the probe call this)."""
    _RESOLVED.clear()


def check_precision(value: str) -> None:
    if value not in PRECISIONS:
        raise ConfigError(f"train.precision must be auto, fp32 or bf16, got {value!r}")


def resolve_precision(value: str, device: str | torch.device = "cpu", family: str | None = None) -> Choice:
    """``auto``/``fp32``/``bf16`` -> the precision to run in on ``device``, decided once per process (see the module
    docstring); ``family`` (a model family) lets ``auto`` keep float32 on a CPU outside :data:`BF16_CPU_CHECKED`."""
    check_precision(value)
    device = torch.device(device)
    key = (value, device.type, family)
    if key not in _RESOLVED:
        _RESOLVED[key] = _resolve_precision(value, device, family)
    return _RESOLVED[key]


def _resolve_precision(value: str, device: torch.device, family: str | None) -> Choice:
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if value == "fp32":
        return Choice("fp32", "asked for")
    if value == "bf16":
        if device.type == "cuda" and not cuda_bf16:
            raise ConfigError(f"train.precision=bf16, but {torch.cuda.get_device_name(device)} does not support "
                              "bfloat16; use fp32 or auto")
        if device.type == "cpu" and not native_bf16():
            return Choice("bf16", "asked for; this CPU has no native bf16 matmul, so expect it slower than fp32")
        return Choice("bf16", "asked for")
    if device.type == "cuda":
        return Choice("bf16", "auto: CUDA with bfloat16") if cuda_bf16 else Choice("fp32", "auto: this GPU has no "
                                                                                   "bfloat16")
    if device.type != "cpu":
        return Choice("fp32", f"auto: bf16 autocast is not chosen on {device.type}")
    flags = native_bf16()
    if not flags:
        return Choice("fp32", f"auto: no amx_bf16/avx512_bf16 among the CPU's flags (kernels: {cpu_capability()})")
    p = probe(device)
    measured = f"bf16 ran the probe at {p['speedup']:.2f}x float32 speed"
    if p["speedup"] >= PROBE_MARGIN:
        if family is not None and family not in BF16_CPU_CHECKED:
            why = BF16_KEPT_FP32_CPU.get(family, f"bf16 training of the {family} family is not yet checked on a CPU")
            return Choice("fp32", f"auto: {measured}, but {why}")
        return Choice("bf16", f"auto: the CPU has {'+'.join(flags)} and {measured}")
    return Choice("fp32", f"auto: the CPU lists {'+'.join(flags)}, but {measured} (needs {PROBE_MARGIN}x)")


def check_flag(value: Any, key: str) -> None:
    """``auto``, ``true`` or ``false``: anything else is a one-line ConfigError."""
    if not (isinstance(value, bool) or value == "auto"):
        raise ConfigError(f"{key} must be auto, true or false, got {value!r}")


def check_settings(cfg: Any) -> None:
    """``train.precision``, ``data.channels_last`` and ``train.compile`` of a run config: each a one-line ConfigError
    if not a value it takes."""
    check_precision(cfg.train.precision)
    check_flag(cfg.data.channels_last, "data.channels_last")
    check_flag(cfg.train.compile, "train.compile")


def resolve_channels_last(value: bool | str, family: str, device: str | torch.device = "cpu",
                          precision: str = "fp32") -> Choice:
    """``data.channels_last``: an explicit bool as asked; ``auto`` from the measured table of the family, for a
    run in the resolved ``precision`` (``"fp32"`` or ``"bf16"``)."""
    check_flag(value, "data.channels_last")
    if isinstance(value, bool):
        return Choice(value, "asked for")
    if torch.device(device).type == "cuda":
        cnn = family_traits(family).convolutional
        return Choice(cnn, "auto: " + ("a convolutional family on CUDA" if cnn else "not a convolutional family"))
    if precision == "bf16" and family in CHANNELS_LAST_CPU_BF16:
        on, ratio, _ = CHANNELS_LAST_CPU_BF16[family]
        return Choice(on, f"auto: the {family} family trained {ratio:.2f}x as fast with it in bf16 "
                          "(docs/benchmarks.md)")
    if family not in CHANNELS_LAST_CPU:
        return Choice(False, f"auto: the {family} family was not measured with channels_last")
    on, ratio, _ = CHANNELS_LAST_CPU[family]  # the reason names the family: it is printed for all its models
    return Choice(on, f"auto: the {family} family trained {ratio:.2f}x as fast with it (docs/benchmarks.md)")


def compile_pays(speedup: float, compile_seconds: float, step_seconds: float, steps: int) -> bool:
    """Whether compiling saves more time over ``steps`` than it costs: ``steps x step_seconds x (1 - 1/speedup)``
    (eager step time, minus the compiled step's) against ``compile_seconds``."""
    return speedup > 1 and steps * step_seconds * (1 - 1 / speedup) > compile_seconds


def estimate_step_seconds(macs: float, batch: int, device: str | torch.device = "cpu") -> float:
    """Eager float32 training-step time from the model's multiply-adds per image: ``6 x MACs x batch`` FLOPs at the
    probe's float32 rate. The probe is itself a training step of ResNet-20's layers, so a CNN trains at about its
    rate (on the 2-core EPYC, shared: resnet20 at batch 128 ran 37 GFLOP/s, the probe 32-45)."""
    gflops = probe(device)["fp32_gflops"]
    return 6 * macs * batch / (gflops * 1e9)


def resolve_compile(value: bool | str, family: str, device: str | torch.device, *, steps: int,
                    step_seconds: Callable[[], float], precision: str = "fp32") -> Choice:
    """``train.compile``: an explicit bool as asked; ``auto`` when :func:`compile_pays` over the run's ``steps``,
    with ``step_seconds`` (called only when needed) estimating one eager step. On a CPU the measurements are
    float32's, so a bf16 run is not compiled by ``auto``."""
    check_flag(value, "train.compile")
    if isinstance(value, bool):
        return Choice(value, "asked for")
    device = torch.device(device)
    if device.type == "cpu" and precision != "fp32":
        return Choice(False, f"auto: torch.compile was measured in float32 only, and this run is {precision}")
    if device.type == "cuda":
        speedup, seconds = CUDA_COMPILE_ASSUMED
        source = "assumed for CUDA"
    elif device.type == "cpu" and family in COMPILE_CPU:
        speedup, seconds, _ = COMPILE_CPU[family]
        source = f"measured for the {family} family"
    else:
        return Choice(False, f"auto: torch.compile was not measured for the {family} family on {device.type}")
    if speedup <= 1:
        return Choice(False, f"auto: compiled steps ran {speedup:.2f}x eager speed ({source})")
    step = step_seconds()
    saving = steps * step * (1 - 1 / speedup)
    pays = compile_pays(speedup, seconds, step, steps)
    verdict = "repays" if pays else "would not repay"
    return Choice(pays, f"auto: {speedup:.2f}x faster steps ({source}) save ~{saving:.0f} s over {steps} steps, "
                        f"which {verdict} ~{seconds:.0f} s of compiling")


_USER_INDUCTOR_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
"""The user's own ``TORCHINDUCTOR_CACHE_DIR``, read at import: torch sets the variable itself (to
``/tmp/torchinductor_<user>``) the first time something asks for the folder, so it cannot be read later."""


def use_compile_cache() -> Path:
    """Point inductor's cache at the project's cache folder (unless the user set ``TORCHINDUCTOR_CACHE_DIR``), so that
    compiled kernels are reused between runs, and not lost with ``/tmp``; returns the folder."""
    folder = Path(_USER_INDUCTOR_CACHE) if _USER_INDUCTOR_CACHE else cache_dir() / "inductor"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return folder
