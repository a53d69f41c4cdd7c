"""Generate docs/benchmarks.md: speed, memory and FLOP/s of every family, ours against torchvision, on this machine.

Sections, each measured in this process with ``milestones.bench``:

1. The machine and its float32 matmul peak (1 and 2 threads).
2. Every family, training and inference, at default settings: img/s, ms/batch, peak memory, achieved GFLOP/s and
   its share of the matmul peak (the probe runs between the reps, under the same load), torchvision's twin where
   there is one (same weights, outputs compared) and, for inference, onnxruntime.
3. Default against the other CPU paths, per family (``compare_settings``: one copy of the weights per setting,
   interleaved reps): channels_last, the SGD for-loop/foreach/fused kernels, no_grad against inference_mode,
   explicit attention against SDPA, and torch.compile and bf16 autocast (quick mode: on the 32x32 nets only). The
   best setting of each row is named.
4. Optimizer kernels: SGD and AdamW, for-loop/foreach/fused, on three models, and how far their updates differ.
5. Threads: 1 against 2 torch threads, by wall clock.
6. Ours against torchvision: the "never slower" check (median ratio >= 0.97) for the models both implement.
7. ResNet-20 training (batch 128, 32x32) against the matmul peak, with a torch.profiler breakdown.
8. Precision, memory format and compile per machine kind: the CPU's native-bf16 flags and the bf16 probe of
   ``milestones.precision``, then float32 against bf16 autocast, channels_last and torch.compile for the CNN families
   (resnet20 and resnet18 for ResNet), with what ``auto`` picks. One subsection per machine kind (CPU name, kernel
   level, bf16 flags), each between HTML comment markers: ``--precision-table`` measures only this machine's kind
   and replaces its subsection in the existing file, leaving the other kinds' as they were; a whole-file run keeps
   them too. These tables decide the defaults in ``milestones/precision.py``; run it once on each machine kind.
9. GPU: measured when CUDA is available (bf16 autocast, torch.compile), otherwise a line saying there was none.

A summary of the measured gains opens the file.

Usage::

    python benchmarks/make_benchmarks_doc.py --quick          # ~20-40 min on a busy 2-core CPU
    python benchmarks/make_benchmarks_doc.py                  # full: batch 8, 10 reps, compile and bf16 candidates
    python benchmarks/make_benchmarks_doc.py --quick --precision-table --threads 2 --clock wall  # this kind only

The default clock is this process's CPU time with one torch thread (``--clock cpu --threads 1``): on a machine
shared with other work, wall time mostly measures the neighbours; CPU time measures what our process computed. Pass
``--clock wall`` on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import re
import shlex
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch

from milestones import precision
from milestones.bench import (
    DEFAULT_MODELS,
    TABLE_HEADERS,
    Settings,
    _sig,
    bench_model,
    compare_settings,
    default_batch,
    machine_description,
    measure_peak_gflops,
    num_threads,
    table_rows,
)
from milestones.machine import cpu_name
from milestones.measure import count_macs, count_params
from milestones.models import create_model, get_spec

REPO = Path(__file__).resolve().parent.parent
TV_CHECK = ("resnet18", "resnet50", "vgg11", "alexnet_owt", "googlenet_tv", "vit_b16", "swin_t")
ATTENTION = ("vit", "swin", "cswin")
PRECISION_MODELS = ("lenet5_modern", "alexnet_owt", "vgg11", "googlenet_tv", "resnet20", "resnet18")
NO_GPU = ("CUDA was not available on the machine that generated this file, so there are no GPU numbers. On a CUDA "
          "machine this script adds float32, bf16-autocast and torch.compile rows here.")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


class Doc:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.parts: list[str] = []
        self.raw: list[dict] = []
        self.quick = args.quick
        self.probe = probe_side(args.quick)
        self.tv_ratios: list[tuple[str, str, float]] = []
        self.precision_models = args.precision_models

    def add(self, text: str) -> None:
        self.parts.append(text.rstrip() + "\n")
        print(text, flush=True)

    def batch(self, name: str, mode: str) -> int:
        """Quick: 2 (training) or 4 images at 224 px, 32 at 32 px; full: ``default_batch`` (8 and 128)."""
        if not self.quick:
            return default_batch(name)
        c, h, w = get_spec(name).input_size
        return 32 if h * w <= 32 * 32 else (2 if mode == "train" else 4)

    def common(self) -> dict:
        a = self.args
        return {"threads": a.threads, "reps": a.reps, "warmup": a.warmup, "clock": a.clock}


def section_machine(doc: Doc) -> None:
    a = doc.args
    n = doc.probe
    peaks = {t: measure_peak_gflops(t, n=n, reps=7) for t in (1, 2)}
    onednn = "available" if torch.backends.mkldnn.is_available() else "absent"
    clock = " (this process's CPU time; img/s is per CPU-second)" if a.clock == "cpu" else " (elapsed time)"
    doc.add("## Machine\n")
    doc.add("\n".join([
        f"- {machine_description('cpu', a.threads)}",
        f"- machine kind: {kind_key()} (vector flags: {vector_flags() or 'none read'})",
        f"- Python {platform.python_version()}, torchvision {_version('torchvision')}, onnxruntime "
        f"{_version('onnxruntime')}; oneDNN {onednn}",
        f"- float32 matmul peak ({n}x{n}x{n}, median of 7): {peaks[1]:.1f} GFLOP/s with 1 thread, {peaks[2]:.1f} "
        "GFLOP/s with 2 (wall clock, measured at the start; each row's '% peak' below uses the same probe run "
        "between that row's reps)",
        f"- settings of this run: {'quick' if doc.quick else 'full'} mode, {a.threads} torch thread(s), {a.reps} reps "
        f"after {a.warmup} warm-up step(s), clock = {a.clock}{clock}",
    ]))


def section_families(doc: Doc) -> None:
    doc.add("\n## Every family at default settings\n")
    doc.add("Default settings: float32, contiguous (NCHW) tensors, eager mode, SDPA attention; training = forward, "
            "cross-entropy, backward and an SGD-momentum step (``foreach`` kernels); inference = ``eval()`` under "
            "``torch.inference_mode``. GFLOP/s counts 2 FLOPs per multiply-add, x3 for a training step. 'tv' is "
            "torchvision's implementation of the same architecture with the same weights; 'ours/tv' and 'ORT/ours' "
            "are medians of per-rep speed ratios (ours/tv > 1: ours faster; ORT/ours > 1: onnxruntime faster). "
            "Peak MiB: resident-memory growth during the warm-up steps (activations, gradients, optimizer state).\n")
    results = []
    for mode in ("train", "infer"):
        rows = []
        for name in doc.args.models:
            t0 = time.perf_counter()
            r = bench_model(name, mode, batch=doc.batch(name, mode), probe=doc.probe, **doc.common())
            results.append(r)
            doc.raw.append({"section": "families", **r.to_dict()})
            rows.append(table_rows([r])[0])
            print(f"  {name} {mode}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        doc.add(f"\n### {'Training' if mode == 'train' else 'Inference'}\n")
        keep = len(TABLE_HEADERS) - (2 if mode == "train" else 0)  # onnxruntime runs inference only
        doc.add(md_table(TABLE_HEADERS[:keep], [row[:keep] for row in rows]))
    notes = sorted({f"{r.model}: {n}" for r in results for n in r.notes})
    agree = [f"{r.model}: logits equal torchvision's to {r.tv_max_abs_diff:.1g}" for r in results
             if r.tv_max_abs_diff is not None]
    agree += [f"{r.model}: onnxruntime's logits within {r.ort_max_abs_diff:.1g}" for r in results
              if r.ort_max_abs_diff is not None]
    if notes or agree:
        doc.add("\nNotes: " + "; ".join(notes + agree) + ".")


def _candidates(name: str, mode: str, full: bool) -> dict[str, Settings]:
    family = get_spec(name).family
    # torch.compile costs about a minute of compilation per small model on this CPU, several for the large ones:
    # quick mode tries it (and bf16) on the 32x32 nets only.
    full = full or get_spec(name).input_size[1] <= 32
    out = {"default": Settings()}
    if mode == "train":
        out["sgd for-loop"] = Settings(optimizer="sgd-loop")
        out["sgd fused"] = Settings(optimizer="sgd-fused")
    else:
        out["no_grad"] = Settings(inference_mode=False)
    out["channels_last"] = Settings(channels_last=True)
    if family in ATTENTION:
        out["explicit attention"] = Settings(attention="explicit")
    if full:
        out["bf16 autocast"] = Settings(amp="bf16")
        out["torch.compile"] = Settings(compile=True)
        out["compile + channels_last"] = Settings(compile=True, channels_last=True)
    return out


def section_settings(doc: Doc) -> None:
    doc.add("\n## Default against the other CPU paths\n")
    doc.add("Speed of each setting over the default's (median of per-rep ratios, one copy of the same weights per "
            "setting, reps interleaved); > 1 is faster. Inference settings also compare logits with the default's "
            "(all within float32 rounding unless marked). "
            + ("Quick mode: torch.compile and bf16 autocast are tried on the 32x32 nets only (compiling a large "
               "model takes minutes on this CPU)." if doc.quick else ""))
    table = []
    cols: list[str] = []
    for mode in ("train", "infer"):
        for name in doc.args.models:
            cands = _candidates(name, mode, not doc.quick)
            batch = doc.batch(name, mode)
            notes: list[str] = []
            t0 = time.perf_counter()
            res = compare_settings(name, mode, cands, batch=batch, notes=notes, **doc.common())
            print(f"  settings {name} {mode}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            best = max(res, key=lambda r: r.speedup)
            doc.raw.append({"section": "settings", "model": name, "mode": mode, "notes": notes,
                            "results": {r.label: {"ms": r.ms_per_batch, "speedup": r.speedup, "compiled": r.compiled,
                                                  "max_abs_diff": r.max_abs_diff, "peak_mib": r.peak_mib}
                                        for r in res}})
            for r in res:
                if r.label not in cols:
                    cols.append(r.label)
            cells = {r.label: f"{r.speedup:.2f}" + ("" if r.max_abs_diff is None or r.max_abs_diff <= 1e-3
                                                    else f" (diff {r.max_abs_diff:.1g})") for r in res}
            default_ms = res[0].ms_per_batch
            table.append((name, mode, batch, _sig(1000 * batch / default_ms),
                          cells, f"{best.label} ({best.speedup:.2f}x)"))
    headers = ["model", "mode", "batch", "default img/s", *cols[1:], "best"]
    rows = [[n, m, b, ips, *[c.get(k, "-") for k in cols[1:]], best] for n, m, b, ips, c, best in table]
    doc.add(md_table(headers, rows))


def section_optimizers(doc: Doc) -> None:
    doc.add("\n## Optimizer kernels\n")
    doc.add("One training step with each optimizer implementation, interleaved; speed over the for-loop SGD (the "
            "PyTorch default on the CPU, where ``foreach`` is only the default for CUDA tensors). Max |diff| after "
            "5 steps on ResNet-20 (batch 16) against the for-loop version of the same optimizer: "
            + _optimizer_agreement() + ".\n")
    impls = {f"{kind} {impl}": Settings(optimizer=f"{kind}-{impl}") for kind in ("sgd", "adamw")
             for impl in ("loop", "foreach", "fused")}
    rows = []
    for name in ("resnet20", "resnet18", "vit_b16"):
        batch = doc.batch(name, "train")
        res = compare_settings(name, "train", impls, batch=batch, **doc.common())
        doc.raw.append({"section": "optimizers", "model": name,
                        "results": {r.label: {"ms": r.ms_per_batch, "speedup": r.speedup} for r in res}})
        with torch.device("meta"):
            params = count_params(create_model(name))
        rows.append([name, f"{params / 1e6:.1f}M", batch, *[f"{r.speedup:.2f}" for r in res]])
    doc.add(md_table(["model", "params", "batch", *impls], rows))


def _optimizer_agreement() -> str:
    torch.manual_seed(0)
    base = create_model("resnet20")
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    out = []
    for kind, cls, kw in (("SGD", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}),
                          ("AdamW", torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.05})):
        final = {}
        for impl in ("loop", "foreach", "fused"):
            m = copy.deepcopy(base)
            opt = cls(m.parameters(), foreach=impl == "foreach", fused=True if impl == "fused" else None, **kw)
            for _ in range(5):
                loss = torch.nn.functional.cross_entropy(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            final[impl] = torch.cat([p.detach().flatten() for p in m.parameters()])
        for impl in ("foreach", "fused"):
            out.append(f"{kind} {impl} {float((final[impl] - final['loop']).abs().max()):.1g}")
    return ", ".join(out)


def section_threads(doc: Doc) -> None:
    doc.add("\n## Threads\n")
    doc.add("One model timed with 1 and with 2 torch threads, interleaved, by wall clock (CPU time would charge the "
            "second thread's spinning). A second OpenMP thread pays only while a core is free for it: on a machine "
            "shared with other busy processes (see the load average above) it waits for a core at every barrier and "
            "can make steps several times slower, so use `--threads 1` (or `train.threads: 1`) there.\n")
    rows = []
    for name, mode, batch in (("resnet20", "train", 128), ("resnet50", "infer", 4)):
        res = compare_settings(name, mode, {"1 thread": Settings(threads=1), "2 threads": Settings(threads=2)},
                               batch=batch if not doc.quick else min(batch, 32), reps=doc.args.reps,
                               warmup=doc.args.warmup, clock="wall")
        doc.raw.append({"section": "threads", "model": name, "mode": mode,
                        "results": {r.label: {"ms": r.ms_per_batch, "speedup": r.speedup} for r in res}})
        rows.append([name, mode, f"{res[0].img_per_s:.3g}", f"{res[1].img_per_s:.3g}", f"{res[1].speedup:.2f}"])
    doc.add(md_table(["model", "mode", "img/s, 1 thread", "img/s, 2 threads", "2 threads over 1"], rows))


def section_torchvision(doc: Doc) -> None:
    a = doc.args
    reps = a.tv_reps or (31 if doc.quick else 61)
    doc.add("\n## Ours against torchvision\n")
    doc.add(f"Target: ours never slower, median ratio >= 0.97, at the same settings. Each model here gets its own run "
            f"at batch 2 with {reps} interleaved reps (more than above: on a shared machine one rep's ratio "
            "scatters by +-10-30%, so a median needs many). Both sides run the same ATen kernels for the same layers "
            "with the same weights (logits compared in the notes above), so the ratios measure only the module "
            "structure (nesting, in-place additions, views) and noise. 'best-rep ratio' compares the two fastest "
            "reps, the estimate least touched by interference.\n")
    kw = {"batch": 2, "threads": a.threads, "warmup": a.warmup, "clock": a.clock, "probe": None,
          "onnxruntime": False, "min_rep_seconds": 0.02}
    rows = []
    for mode in ("train", "infer"):
        for name in [m for m in TV_CHECK if m in a.models]:
            r = bench_model(name, mode, reps=reps, **kw)
            doc.raw.append({"section": "torchvision", **r.to_dict()})
            first = ""
            if r.ratio < 0.97:  # noise or a real slowdown? A second, longer run tells them apart; both are shown.
                first = f"{r.ratio:.3f}, then "
                r = bench_model(name, mode, reps=2 * reps, **kw)
                doc.raw.append({"section": "torchvision", "rerun": True, **r.to_dict()})
            doc.tv_ratios.append((name, mode, r.ratio))
            q25, q75 = r.ratio_iqr or (r.ratio, r.ratio)
            ok = "yes" if r.ratio >= 0.97 else "**no**"
            rows.append([r.model, r.torchvision, r.mode, r.batch, _sig(r.img_per_s), _sig(r.tv_img_per_s),
                         f"{first}{r.ratio:.3f}", f"{q25:.2f}-{q75:.2f}", f"{r.ratio_best:.3f}", r.reps, ok])
            print(f"  torchvision {name} {mode}: {first}{r.ratio:.3f}", file=sys.stderr, flush=True)
    doc.add(md_table(["ours", "torchvision", "mode", "batch", "ours img/s", "tv img/s", "ours/tv (median)",
                      "per-rep quartiles", "best-rep ratio", "reps", ">= 0.97"], rows))
    doc.add("\nA row below 0.97 is measured a second time with twice the reps ('first, then second' in the median "
            "column); the verdict is the second run's.")


def section_resnet20(doc: Doc) -> None:
    from torch.profiler import ProfilerActivity, profile, record_function

    doc.add("\n## ResNet-20 training against the matmul peak\n")
    probe = doc.probe
    variants = {"default (eager, NCHW)": Settings(), "channels_last": Settings(channels_last=True),
                "torch.compile": Settings(compile=True),
                "torch.compile + channels_last": Settings(compile=True, channels_last=True)}
    notes: list[str] = []
    res = compare_settings("resnet20", "train", variants, batch=128, probe=probe, notes=notes, **doc.common())
    doc.raw.append({"section": "resnet20", "notes": notes, "results": {
        r.label: {"ms": r.ms_per_batch, "gflops": r.gflops, "pct_of_peak": r.pct_of_peak, "compiled": r.compiled}
        for r in res}})
    with torch.device("meta"):
        gmacs = count_macs(create_model("resnet20"), (3, 32, 32)) / 1e9
    step_gflop = 3 * 2 * gmacs * 128
    doc.add(f"resnet20, batch 128, 3x32x32, SGD-momentum step (foreach), {doc.args.threads} thread(s); "
            f"{step_gflop:.1f} GFLOP per step (3 x 2 x {gmacs * 1e3:.2f} MMACs x 128). The settings and the "
            f"{probe}^3 matmul probe take turns in every round; '% of peak' is the median per-round ratio of the "
            "step's GFLOP/s to the probe's." + (f" Notes: {'; '.join(notes)}." if notes else "") + "\n")
    rows = [[r.label + ("" if r.compiled == r.settings.compile else " (compiler failed: ran eager)"),
             f"{r.img_per_s:.0f}", f"{r.ms_per_batch:.0f}", f"{r.gflops:.1f}", f"{r.speedup:.2f}",
             f"**{r.pct_of_peak:.0f}%**"] for r in res]
    doc.add(md_table(["setting", "img/s", "ms/step", "GFLOP/s", "speed over default", "% of matmul peak"], rows))
    achieved = res[0].gflops

    torch.manual_seed(0)
    model = create_model("resnet20").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=True)
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))

    def step() -> None:
        with record_function("phase: forward + loss"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        with record_function("phase: backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("phase: optimizer"):
            opt.step()

    with num_threads(doc.args.threads):
        for _ in range(2):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step()
    events = list(prof.key_averages())
    phases = {e.key.removeprefix("phase: "): e.cpu_time_total for e in events if e.key.startswith("phase: ")}
    ops = [e for e in events if not e.key.startswith("phase: ") and e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in ops)
    in_phases = sum(phases.values())
    doc.add("\ntorch.profiler over 3 default steps: "
            + ", ".join(f"{k} {100 * v / in_phases:.1f}%" for k, v in phases.items())
            + " of the step. The ten costliest operators (self time):\n")
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:10]
    doc.add(md_table(["operator", "calls / step", "self ms / step", "share"],
                     [[f"`{e.key}`", e.count // 3, f"{e.self_cpu_time_total / 3 / 1e3:.1f}",
                       f"{100 * e.self_cpu_time_total / total:.1f}%"] for e in top]))
    # First match wins: "convolution_backward" is not the forward. On the CPU, foreach optimizer kernels fall back to
    # per-tensor add_/mul_, which land in the elementwise group.
    groups = {"convolution backward": ("convolution_backward",),
              "convolution forward": ("mkldnn_convolution", "convolution"),
              "batch norm (forward + backward)": ("batch_norm",),
              "ReLU (forward + backward)": ("relu", "clamp_min", "threshold_backward"),
              "elementwise: residual additions, option-A padding, optimizer update, copies": (
                  "add", "mul", "pad", "slice", "copy", "fill", "zero", "_foreach")}
    shares = dict.fromkeys(groups, 0.0)
    other = 0.0
    for e in ops:
        g = next((g for g, keys in groups.items() if any(k in e.key for k in keys)), None)
        if g is None:
            other += e.self_cpu_time_total
        else:
            shares[g] += e.self_cpu_time_total
    grouped = [[g, f"{100 * v / total:.1f}%"] for g, v in shares.items()] + [["other", f"{100 * other / total:.1f}%"]]
    doc.add("\nGrouped:\n")
    doc.add(md_table(["group", "share of step time"], grouped))
    conv_share = (shares["convolution forward"] + shares["convolution backward"]) / total
    doc.raw.append({"section": "resnet20_profile", "phases": {k: v / total for k, v in phases.items()},
                    "groups": {g: v / total for g, v in shares.items()}, "other": other / total,
                    "top": [(e.key, e.count // 3, e.self_cpu_time_total / 3) for e in top]})
    doc.add(f"\nThe convolutions (forward and backward, {100 * conv_share:.0f}% of the time) run at about "
            f"{achieved / conv_share:.0f} GFLOP/s: every counted FLOP is a convolution FLOP, so that is the default "
            f"row's {achieved:.1f} GFLOP/s over their share of the time. What stands "
            "between the step and the matmul peak is therefore (1) the memory-bound passes that carry no counted "
            "FLOPs, batch norm and ReLU forward and backward, the option-A shortcut and the residual additions, "
            "and (2) ResNet-20's thin convolutions (16-64 channels on 8-32 px maps: GEMMs with K = 9 x 16..64) that "
            "oneDNN cannot block as well as a square 1024-2048 matmul. torch.compile fuses the batch norm, ReLU and "
            "addition passes into fewer loops (and, with channels_last, hands oneDNN its preferred layout), which "
            "is what the compiled rows above gain.")


def _precision_candidates(name: str, compile_too: bool) -> dict[str, Settings]:
    out = {"fp32": Settings(), "channels_last": Settings(channels_last=True), "bf16": Settings(amp="bf16"),
           "bf16 + channels_last": Settings(amp="bf16", channels_last=True)}
    if compile_too:
        out["compile"] = Settings(compile=True)
        out["compile + channels_last"] = Settings(compile=True, channels_last=True)
        out["compile + bf16 + channels_last"] = Settings(compile=True, amp="bf16", channels_last=True)
    return out


def _auto_label(name: str) -> str:
    """The candidate that ``auto`` runs for ``name`` on this machine (precision and memory format; compile depends on
    the run's length, see milestones.precision.resolve_compile)."""
    family = get_spec(name).family
    bf16 = precision.resolve_precision("auto", "cpu", family).value == "bf16"
    nhwc = precision.resolve_channels_last("auto", family, "cpu", "bf16" if bf16 else "fp32").value
    return {(False, False): "fp32", (False, True): "channels_last", (True, False): "bf16",
            (True, True): "bf16 + channels_last"}[(bf16, nhwc)]


PER_KIND = "## Precision, memory format and compile per machine kind"
KIND_BEGIN, KIND_END = "<!-- machine kind: {} -->", "<!-- end of machine kind: {} -->"
KIND_BLOCK = re.compile(r"<!-- machine kind: (.+?) -->\n.*?<!-- end of machine kind: \1 -->\n", re.S)


def kind_key() -> str:
    """This machine's kind as the per-kind subsections name it: the CPU, the level torch's kernels run at, and the
    native bf16 flags, the three things that decide which path is fastest."""
    return (f"{cpu_name()}, {precision.cpu_capability()} kernels, native bf16: "
            f"{'+'.join(precision.native_bf16()) or 'none'}")


def vector_flags() -> str:
    """The CPU's AVX and AMX flags from /proc/cpuinfo, the ones that decide which kernels run."""
    return ", ".join(sorted(f for f in precision.cpu_flags() if f.startswith(("avx", "amx"))))


def kind_blocks(text: str) -> dict[str, str]:
    """The per-kind subsections of a generated file, by kind, markers included."""
    return {m[1]: m[0] for m in KIND_BLOCK.finditer(text)}


def merge_kinds(text: str, keep: dict[str, str]) -> str:
    """``text`` (a file with at most this machine's subsection) with the subsections in ``keep`` of other kinds added
    after its own, in their old order."""
    own = kind_blocks(text)
    others = "".join(block for key, block in keep.items() if key not in own)
    if not others:
        return text
    if own:
        last = list(own.values())[-1]
        i = text.index(last) + len(last)
        return text[:i] + "\n" + others + text[i:]
    gpu = text.find("\n## GPU\n")
    section = f"\n{PER_KIND}\n\n{others}"
    return text + section if gpu < 0 else text[:gpu] + section + text[gpu:]


def replace_kind(text: str, block: str) -> str:
    """``text`` with this kind's subsection replaced by ``block`` (or added: under the per-kind heading, which is
    created before the GPU section when missing)."""
    key = KIND_BLOCK.match(block)[1]
    old = kind_blocks(text).get(key)
    if old:
        return text.replace(old, block)
    if PER_KIND in text:
        i = text.index(PER_KIND) + len(PER_KIND)
        nxt = text.find("\n## ", i)
        i = len(text) if nxt < 0 else nxt
        return text[:i].rstrip("\n") + "\n\n" + block + text[i:]
    return merge_kinds(text, {key: block})


def _measuring_args(argv: Sequence[str]) -> list[str]:
    """The command line without the options that only say where results go (``--out``, ``--json``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--out", "--json"):
            skip = True
        elif not arg.startswith(("--out=", "--json=")):
            out.append(arg)
    return out


def section_precision(doc: Doc) -> str:
    """This machine kind's subsection (markers included), also added to the document."""
    a = doc.args
    flags = precision.native_bf16()
    probe = precision.measure_bf16("cpu")
    key = kind_key()
    cmd = shlex.join(["python", "benchmarks/make_benchmarks_doc.py", *_measuring_args(doc.argv)])
    lines = [KIND_BEGIN.format(key), f"### {key}\n",
             f"Measured on {datetime.date.today().isoformat()} by `{cmd}`.\n", "\n".join([
                 f"- machine: {machine_description('cpu', a.threads)}; clock = {a.clock}, {a.reps} reps after "
                 f"{a.warmup} warm-up step(s)",
                 f"- native bf16 flags in /proc/cpuinfo: {', '.join(flags) or 'none'} (of "
                 f"{', '.join(precision.NATIVE_BF16_FLAGS)}); torch CPU kernels: {precision.cpu_capability()}; "
                 f"vector flags: {vector_flags() or 'none read'}",
                 f"- bf16 probe (``milestones.precision.measure_bf16``, a conv-BN-ReLU-conv-BN training step at batch "
                 f"16, interleaved, measured now): float32 {probe['fp32_ms']:.1f} ms, bf16 {probe['bf16_ms']:.1f} ms, "
                 f"bf16 at {probe['speedup']:.2f}x float32 speed (auto needs {precision.PROBE_MARGIN}x)",
                 "- what ``auto`` picks here: " + ", ".join(f"{n} {_auto_label(n)}" for n in doc.precision_models),
             ]),
             "\nTraining steps (forward, cross-entropy, backward, SGD), speed over float32 NCHW eager (median of "
             "per-rep ratios, reps interleaved, one copy of the same weights each); > 1 is faster. 'auto' is the "
             "candidate the library's ``auto`` runs for that family on this machine kind. "
             + ("torch.compile is tried on the 32x32 nets only in quick mode." if doc.quick and not a.tiny else "")
             + ("Tiny mode (a test of this script): 1 rep at batch 4, no compile; not a measurement."
                if a.tiny else "") + "\n"]
    table, cols = [], []
    for name in doc.precision_models:
        compile_too = not a.tiny and (not doc.quick or get_spec(name).input_size[1] <= 32)
        batch = 4 if a.tiny else doc.batch(name, "train")
        notes: list[str] = []
        res = compare_settings(name, "train", _precision_candidates(name, compile_too), batch=batch, notes=notes,
                               **doc.common())
        auto = _auto_label(name)
        doc.raw.append({"section": "precision", "kind": key, "model": name, "mode": "train", "batch": batch,
                        "auto": auto, "flags": flags, "probe": probe, "notes": notes,
                        "results": {r.label: {"ms": r.ms_per_batch, "speedup": r.speedup, "compiled": r.compiled}
                                    for r in res}})
        cols += [r.label for r in res if r.label not in cols]
        cells = {r.label: f"{r.speedup:.2f}" for r in res}
        best = max(res, key=lambda r: r.speedup)
        table.append((name, batch, _sig(1000 * batch / res[0].ms_per_batch), cells, auto,
                      f"{best.label} ({best.speedup:.2f}x)"))
    headers = ["model", "batch", "fp32 img/s", *cols[1:], "auto", "best"]
    rows = [[n, b, ips, *[c.get(k, "-") for k in cols[1:]], f"{auto} ({c.get(auto, '-')})", best]
            for n, b, ips, c, auto, best in table]
    block = "\n".join(lines) + "\n" + md_table(headers, rows).rstrip("\n") + "\n" + KIND_END.format(key) + "\n"
    doc.add(f"\n{PER_KIND}\n")
    doc.add(block)
    return block


def section_gpu(doc: Doc) -> None:
    doc.add("\n## GPU\n")
    if not torch.cuda.is_available():
        doc.add(NO_GPU)
        return
    doc.add(f"{machine_description('cuda')}\n")
    rows = []
    for name in doc.args.models:
        for mode in ("train", "infer"):
            for amp, comp in ((None, False), ("bf16", False), ("bf16", True)):
                r = bench_model(name, mode, batch=64 if get_spec(name).input_size[1] > 32 else 256, amp=amp,
                                compile=comp, device="cuda", reps=doc.args.reps, warmup=3, onnxruntime=False,
                                clock="wall")
                doc.raw.append({"section": "gpu", **r.to_dict()})
                rows.append(table_rows([r])[0][:11] + [r.amp or "fp32"])
    doc.add(md_table([*TABLE_HEADERS[:11], "precision"], rows))


def summary(doc: Doc) -> str:
    """Measured gains, one line per setting, from the sections' raw records (speed over the default, > 1 faster)."""
    lines = ["## Summary\n", "Speed over the default settings (float32, NCHW, eager, foreach SGD, inference_mode, "
             "SDPA), per model, from the sections below; > 1 is faster.\n"]
    if doc.tv_ratios:
        ok = sum(r >= 0.97 for *_, r in doc.tv_ratios)
        vals = [r for *_, r in doc.tv_ratios]
        lines.append(f"- **Ours against torchvision**: {ok} of {len(vals)} model/mode pairs at a median speed ratio "
                     f">= 0.97 (range {min(vals):.3f}-{max(vals):.3f}).")
    settings = [r for r in doc.raw if r.get("section") == "settings"]
    labels = {"channels_last": "channels_last (NHWC)", "sgd fused": "fused SGD (vs foreach)",
              "sgd for-loop": "for-loop SGD, PyTorch's CPU default (vs foreach)",
              "no_grad": "no_grad (vs inference_mode)", "explicit attention": "explicit softmax(QK^T)V (vs SDPA)",
              "torch.compile": "torch.compile", "compile + channels_last": "torch.compile + channels_last",
              "bf16 autocast": "bf16 autocast"}
    for label, what in labels.items():
        for mode in ("train", "infer"):
            got = [(r["model"], r["results"][label]["speedup"]) for r in settings
                   if r["mode"] == mode and label in r["results"]]
            if got:
                lines.append(f"- {what}, {'training' if mode == 'train' else 'inference'}: "
                             + ", ".join(f"{m} {v:.2f}" for m, v in got))
    for r in doc.raw:
        if r.get("section") == "optimizers":
            lines.append(f"- optimizer kernels, {r['model']} training (vs for-loop SGD): "
                         + ", ".join(f"{k} {v['speedup']:.2f}" for k, v in r["results"].items() if k != "sgd loop"))
        elif r.get("section") == "threads":
            two = r["results"]["2 threads"]["speedup"]
            lines.append(f"- 2 threads over 1, {r['model']} {r['mode']} (wall clock): {two:.2f}")
        elif r.get("section") == "resnet20" and "results" in r:
            lines.append("- resnet20 training at batch 128, share of the matmul peak: "
                         + ", ".join(f"{k} {v['pct_of_peak']:.0f}%" for k, v in r["results"].items()))
    prec = [r for r in doc.raw if r.get("section") == "precision"]
    if prec:
        flags = ", ".join(prec[0]["flags"]) or "no native bf16 flag"
        lines.append(f"- bf16 autocast, training, on this CPU ({flags}; probe {prec[0]['probe']['speedup']:.2f}x): "
                     + ", ".join(f"{r['model']} {r['results']['bf16']['speedup']:.2f}" for r in prec))
        lines.append("- what auto runs, training: " + ", ".join(
            f"{r['model']} {r['auto']} {r['results'][r['auto']]['speedup']:.2f}" for r in prec))
    ort = [(r["model"], r["ort_speedup"]) for r in doc.raw
           if r.get("section") == "families" and r.get("ort_speedup") is not None]
    if ort:
        lines.append("- onnxruntime over PyTorch eager, inference: " + ", ".join(f"{m} {v:.2f}" for m, v in ort))
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="small batches, 5 reps, 1024^3 probe; compile/bf16 candidates on the 32x32 nets only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--reps", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--tv-reps", type=int, help="reps of the torchvision check (default 31, full 61)")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    p.add_argument("--json", help="also write every measurement to this JSON file")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["families", "settings", "optimizers", "threads", "torchvision", "resnet20", "precision",
                            "gpu"])
    p.add_argument("--precision-table", action="store_true",
                   help="measure only this machine kind's precision/memory-format/compile subsection and replace it in "
                        "--out (run once per machine kind)")
    p.add_argument("--precision-models", nargs="+", default=list(PRECISION_MODELS))
    p.add_argument("--tiny", action="store_true",
                   help="1 rep at batch 4, no compile: tests the script, measures nothing")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line with the quick/full defaults filled in (reps, warm-up steps)."""
    args = build_parser().parse_args(list(argv))
    args.reps = args.reps or (1 if args.tiny else 5 if args.quick else 10)
    args.warmup = args.warmup or (1 if args.quick or args.tiny else 2)
    return args


def probe_side(quick: bool) -> int:
    """Side of the float32 matmul peak probe."""
    return 1024 if quick else 2048


def intro(argv: Sequence[str], date: str) -> str:
    """The paragraph under the title: the generating command line and the ``milestones bench`` line that reproduces
    any row at the same settings (``tests/test_docs.py`` checks the committed file's against this)."""
    args = parse_args(argv)
    cmd = shlex.join(["python", "benchmarks/make_benchmarks_doc.py", *argv])
    return (f"Generated by `{cmd}` on {date}. Every number below was measured in that one run on the machine "
            "described next; timings compare only within it. Reproduce any row with "
            f"`milestones bench MODEL --mode train|infer --batch N --threads {args.threads} --clock {args.clock} "
            f"--reps {args.reps} --warmup {args.warmup} --probe {probe_side(args.quick)}`.\n")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    doc = Doc(args)
    doc.argv = list(argv)
    out = Path(args.out)
    before = out.read_text(encoding="utf-8") if out.is_file() else ""
    if args.precision_table:  # only this kind's subsection of the existing file is replaced
        block = section_precision(doc)
        fresh = f"# Benchmarks\n\n{PER_KIND}\n\n{block}"
        text = replace_kind(before, block) if before.startswith("# Benchmarks") else fresh
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        if args.json:
            Path(args.json).write_text(json.dumps(doc.raw, indent=1, default=str))
        return
    started = time.perf_counter()
    doc.add("# Benchmarks\n")
    doc.add(intro(argv, datetime.date.today().isoformat()))
    section_machine(doc)
    at = len(doc.parts)
    if "families" not in args.skip:
        section_families(doc)
    if "settings" not in args.skip:
        section_settings(doc)
    if "optimizers" not in args.skip:
        section_optimizers(doc)
    if "threads" not in args.skip:
        section_threads(doc)
    if "torchvision" not in args.skip:
        section_torchvision(doc)
    if "resnet20" not in args.skip:
        section_resnet20(doc)
    if "precision" not in args.skip:
        section_precision(doc)
    if "gpu" not in args.skip:
        section_gpu(doc)
    doc.parts.insert(at, "\n" + summary(doc))
    doc.add(f"\n_Total generation time: {(time.perf_counter() - started) / 60:.0f} min._")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(merge_kinds("\n".join(doc.parts), kind_blocks(before)), encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(doc.raw, indent=1, default=str))


if __name__ == "__main__":
    main()
