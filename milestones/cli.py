"""The ``milestones`` command line. Every user error ends in one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import MilestonesError
from .report import format_count as _fmt_count

DEMO_RUN = "runs/demo-lenet5-digits"  # where 'make demo' trains its LeNet-5

if TYPE_CHECKING:
    from .config import RunConfig
    from .data import TensorLoader


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from .models import get_spec, list_models
    from .report import short_authors

    patterns = args.patterns or [None]
    matched = {n for p in patterns for n in list_models(p)}
    names = [n for n in list_models() if n in matched]  # registry order, each once
    if not names:
        shown = " ".join(repr(p) for p in patterns)
        print(f"no model matches {shown}; run 'milestones list' to see all", file=sys.stderr)
        return 2
    rows = []
    for n in names:
        s = get_spec(n)
        c = s.counts
        rows.append([n, s.family, s.paper.year, f"{c.params:,}" if c else "-",
                     _fmt_count(c.macs) if c else "-",
                     f"{short_authors(s.paper)}, {s.paper.title}"])
    print(_table(["name", "family", "year", "params", "MACs", "paper"], rows))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .measure import count_macs, count_params, layer_summary
    from .models import create_model, get_spec, model_options

    spec = get_spec(args.name)
    with torch.device("meta"):
        model = create_model(args.name)
        params = count_params(model)
        macs = count_macs(model, spec.input_size)
        rows = layer_summary(model, spec.input_size) if not args.brief else []
    r = spec.reported
    print(f"{spec.name}  ({spec.family} family)")
    print(f"paper:       {spec.paper.cite()}")
    print(f"input:       {'x'.join(str(v) for v in spec.input_size)} (C x H x W)")
    print(f"options:     {', '.join(model_options(args.name))}")
    print()
    print(_table(["", "paper", "measured"], [
        ["params", f"{r.params_m}M" if r.params_m is not None else "-", str(params)],
        ["GMACs", r.gmacs if r.gmacs is not None else "-", f"{macs / 1e9:.4g}"],
        [f"top-1 err % ({r.dataset})", r.top1_err if r.top1_err is not None else "-", "see docs/results.md"],
        [f"top-5 err % ({r.dataset})", r.top5_err if r.top5_err is not None else "-", "-"],
    ]))
    if r.source:
        print(f"paper numbers from: {r.source}")
    if spec.counts and spec.counts.source:
        print(f"exact count agrees with: {spec.counts.source}")
    if rows:
        print()
        print(_table(["layer", "type", "output", "params", "MACs"],
                     [[x.name, x.kind, "x".join(str(d) for d in x.output_shape[1:]), f"{x.params:,}",
                       f"{x.macs:,}"] for x in rows]))
        print(f"total: {params:,} parameters, {macs:,} multiply-adds")
    return 0


def _split_overrides(extra: Sequence[str]) -> list[str]:
    from .errors import ConfigError

    overrides = []
    for arg in extra:
        if arg.startswith("--") and "=" in arg:
            overrides.append(arg)
        else:
            raise ConfigError(f"unrecognised argument {arg!r}; overrides look like --optim.lr=0.05")
    return overrides


def progress_bar(bar: bool = True) -> object:
    """A training callback that prints one line per epoch and, if ``bar`` and stderr is a terminal, draws one tqdm bar
    over the run's steps on stderr (a log file gets the epoch lines only; the library itself never prints)."""
    from tqdm.auto import tqdm

    from .train.callbacks import Callback

    class ProgressBar(Callback):
        bar = None

        def on_fit_start(self, state, total_steps: int) -> None:
            self.per_epoch = len(state.loader)
            if not (bar and sys.stderr.isatty()):  # no carriage-return updates in a log
                return
            self.bar = tqdm(total=total_steps, initial=state.step, unit="step", dynamic_ncols=True, leave=False)
            self.bar.set_description(self._epoch(state.step))

        def _epoch(self, step: int) -> str:
            return f"epoch {min(step // max(self.per_epoch, 1) + 1, self.bar.total // max(self.per_epoch, 1))}"

        def on_step(self, info) -> None:
            if self.bar is None:
                return
            self.bar.update(1)
            if info.step % self.per_epoch == 1 or self.per_epoch == 1:
                self.bar.set_description(self._epoch(info.step))

        def on_record(self, record: dict) -> None:
            if record["kind"] == "step" and self.bar is not None:
                self.bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
            elif record["kind"] == "epoch":
                line = (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, test accuracy "
                        f"{100 * record['test_acc']:.2f}%, {record['img_per_s']:.0f} img/s")
                if self.bar is not None:
                    self.bar.write(line, file=sys.stdout)  # above the bar
                else:
                    print(line, flush=True)

        def on_fit_end(self, state) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return ProgressBar()


def settings_line() -> object:
    """A training callback that prints, as training starts, how the run computes (precision, memory format,
    torch.compile) and why."""
    from .train.callbacks import Callback

    class SettingsLine(Callback):
        def on_fit_start(self, state, total_steps: int) -> None:
            shown = "; ".join(f"{k.replace('_', ' ')}: {c.describe()}" for k, c in state.choices.items())
            if shown:
                print(shown, flush=True)

    return SettingsLine()


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .config import build_config

    named = args.model or any(a.startswith("--model.name=") for a in extra)
    if not (named or args.config or args.resume):  # nothing says what to train: never a default run
        print(args.format_help(), file=sys.stderr)
        print("error: name the model to train (e.g. milestones train lenet5 --data digits), or give --config FILE or "
              "--resume RUN_DIR; 'milestones list' shows the models", file=sys.stderr)
        return 2
    overrides = _split_overrides(extra)
    shortcuts = {"epochs": "train.epochs", "data_root": "data.root", "out": "out_dir", "name": "name",
                 "device": "train.device", "seed": "train.seed", "precision": "train.precision"}
    for attr, key in shortcuts.items():
        value = getattr(args, attr)
        if value is not None:
            overrides.append(f"--{key}={value}")
    if args.download:
        overrides.append("--data.download=true")
    if args.no_progress:
        overrides.append("--train.progress=false")
    if args.resume:
        # The run's own config.yaml, plus overrides; run_training refuses those that would change the run.
        from .config import apply_overrides
        from .errors import ConfigError
        from .train.run import load_run_config

        clash = [flag for flag, given in (("--config", args.config), ("--out", args.out), ("--name", args.name),
                                          ("--overwrite", args.overwrite)) if given]
        if clash:
            raise ConfigError(f"{' and '.join(clash)} cannot be combined with --resume, which continues "
                              f"{args.resume} in place with its own config.yaml")
        cfg = load_run_config(args.resume)
        if args.model:
            overrides.append(f"--model.name={args.model}")
        if args.data:
            overrides.append(f"--data.name={args.data}")
        apply_overrides(cfg, overrides)
    else:
        cfg = build_config(model=args.model, data=args.data, config_file=args.config, overrides=overrides)
    if args.dry_run:
        return _show_config(cfg, new_run=not args.resume)
    if args.nproc is not None:
        return _launch_torchrun(args, cfg)
    return _train(cfg, args)


def _train(cfg: RunConfig, args: argparse.Namespace) -> int:
    """Train ``cfg`` (``train`` and ``finetune``): progress bar, interruption, the summary lines."""
    from .train.distributed import from_env
    from .train.loop import TrainingInterrupted
    from .train.run import run_training

    main_rank = from_env().is_main  # under torchrun only rank 0 shows progress and the summary
    try:
        shown = [settings_line(), progress_bar(bar=cfg.train.progress)] if main_rank else []
        result = run_training(cfg, resume=args.resume, overwrite=args.overwrite, callbacks=shown)
    except TrainingInterrupted as e:  # not an error: one line saying how to go on, exit 130 (SIGINT) / 143 (SIGTERM)
        if main_rank:
            print(str(e), file=sys.stderr)
        return e.exit_code
    if not main_rank:
        return 0
    if result.resumed_from is not None:
        print(f"resumed {result.run.path} from step {result.resumed_from}")
    s = result.summary
    if s.get("final_test_acc") is None:  # a training set smaller than one batch: no step
        from .errors import ConfigError

        raise ConfigError(f"no training step ran: data.batch_size={cfg.data.batch_size} is more than the training "
                          f"images of {cfg.data.name}; lower data.batch_size (and --overwrite {result.run.path})")
    print(f"{s['model']} on {s['dataset']}: test accuracy {100 * s['final_test_acc']:.2f}% "
          f"(best {100 * s['best_test_acc']:.2f}% at epoch {s['best_epoch']}), {s['epochs']} epochs in "
          f"{s['wall_seconds']:.1f} s, {s['img_per_s']:.0f} img/s on {s['device']}"
          + (f" ({s['world_size']} processes together)" if s.get("world_size", 1) > 1 else ""))
    if s.get("time_to_target") is not None:
        print(f"reached {100 * s['target_accuracy']:.2f}% after {s['time_to_target']:.1f} s")
    if s.get("final_val_acc") is not None:
        print(f"validation accuracy {100 * s['final_val_acc']:.2f}% (best {100 * s['best_val_acc']:.2f}%)")
    if s.get("stopped"):
        stopped = s["stopped"]
        print(f"stopped at step {stopped['step']}: training error {100 * stopped['train_error_window']:.2f}% over the "
              f"last {cfg.train.stop_window} steps (train.stop_at_train_error={cfg.train.stop_at_train_error})")
    print(f"run directory: {result.run.path}")
    return 0


def cmd_finetune(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .transfer import check_config, finetune_config

    overrides = _split_overrides(extra)
    shortcuts = {"epochs": "train.epochs", "data_root": "data.root", "out": "out_dir", "name": "name",
                 "device": "train.device", "seed": "train.seed"}
    overrides += [f"--{key}={getattr(args, a)}" for a, key in shortcuts.items() if getattr(args, a) is not None]
    if args.no_progress:
        overrides.append("--train.progress=false")
    cfg = finetune_config(args.source, data=args.data, model=args.model, recipe=args.config, freeze=args.freeze or [],
                          head_only=args.head_only, backbone_lr_mult=args.backbone_lr_mult,
                          new_head=not args.keep_head, overrides=overrides)
    check_config(cfg)
    if args.dry_run:
        return _show_config(cfg)
    args.resume = None
    return _train(cfg, args)


def cmd_features(args: argparse.Namespace) -> int:
    import numpy as np

    from .errors import ConfigError, RunDirError
    from .train.checkpoint import restore_model
    from .transfer import extract_features

    out = Path(args.out)
    if out.suffix not in (".npy", ".npz"):
        raise ConfigError(f"--out must end in .npy (labels go beside it in .labels.npy) or .npz, got {out.name!r}")
    model, meta = restore_model(args.checkpoint, prefer=args.which)
    loader = _checkpoint_test_loader(meta, args, batch_size=args.batch_size)
    feats, labels = extract_features(model, loader, args.layer, pool_how=args.pool)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".npz":
            np.savez(out, features=feats.numpy(), labels=labels.numpy(), classes=np.array(loader.spec.classes))
            where = str(out)
        else:
            labels_file = out.with_name(out.stem + ".labels.npy")
            np.save(out, feats.numpy())
            np.save(labels_file, labels.numpy())
            where = f"{out} (labels: {labels_file})"
    except OSError as e:
        raise RunDirError(f"could not write {out}: {e.strerror or e}") from None
    layer = args.layer or "forward_features"
    print(f"{meta['model']} {layer} on {loader.spec.full_name} ({args.split}): {feats.shape[0]} x {feats.shape[1]} "
          f"features -> {where}")
    return 0


LAUNCH_OPTIONS = {"--nproc": True, "--nnodes": True, "--node-rank": True, "--rdzv-endpoint": True, "--rdzv-id": True}
"""``milestones train`` options that configure the torchrun launch (each takes a value); the workers never see them."""


def _launch_torchrun(args: argparse.Namespace, cfg: RunConfig) -> int:
    """``train --nproc N``: check what would fail on every rank (one line, exit 2, before anything starts), then
    replace this process with ``torchrun`` running ``python -m milestones train`` with the same arguments."""
    import os

    import torch

    from .errors import ConfigError
    from .train.run import check_config

    check_config(cfg, new_run=not args.resume)  # once here, not once per worker
    nproc, nnodes = args.nproc, args.nnodes
    if nproc < 1 or nnodes < 1:
        raise ConfigError(f"--nproc and --nnodes must be at least 1, got {nproc} and {nnodes}")
    gpu = cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and torch.cuda.is_available())
    if gpu and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc {nproc} is more than the {torch.cuda.device_count()} GPU(s) of this machine: "
                          "start one process per GPU at most")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not gpu and nproc > cores:
        raise ConfigError(f"--nproc {nproc} is more than the {cores} CPU core(s) this process may use: start at "
                          f"most {cores} processes on this machine")
    if nnodes > 1 and not args.rdzv_endpoint:
        raise ConfigError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT, the address every node's launcher "
                          "meets at (node 0's host and a free port)")
    if args.rdzv_endpoint:
        host, _, port = args.rdzv_endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--rdzv-endpoint must be HOST:PORT, got {args.rdzv_endpoint!r}")
    world = nproc * nnodes
    if cfg.data.batch_size % world:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} (the global batch) does not split into {world} "
                          f"equal parts: make it a multiple of --nproc x --nnodes")
    if args.resume:
        _check_resume_world(Path(args.resume), world)
    rdzv = (["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", args.rdzv_endpoint,
             "--rdzv-id", args.rdzv_id or "milestones"] if args.rdzv_endpoint else ["--standalone"])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *rdzv,
               "-m", "milestones", "train", *_without_launch_options(args.argv)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 0  # not reached


def _check_resume_world(run: Path, world: int) -> None:
    """Refuse to resume a run with a number of processes other than the one it was saved with."""
    import json

    from .errors import CheckpointError
    from .train.checkpoint import STATE_JSON

    try:
        saved = int(json.loads((run / "checkpoints" / STATE_JSON).read_text()).get("world_size", 1))
    except (OSError, ValueError, AttributeError):
        return  # missing or unreadable: the workers report it in their own words
    if saved != world:
        raise CheckpointError(f"{run} was trained by {saved} process(es), not {world}: resume it with the same "
                              f"number (--nproc {saved}{' across nodes' if saved > 1 and world > 1 else ''})")


def _without_launch_options(argv: Sequence[str]) -> list[str]:
    """``argv`` after ``train``, without the launcher's options and their values."""
    out, skip = [], False
    rest = list(argv)[list(argv).index("train") + 1:] if "train" in argv else list(argv)
    for arg in rest:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_OPTIONS:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def _show_config(cfg: RunConfig, *, new_run: bool = True) -> int:
    """``train --dry-run``: every check a run makes before it reads data (:func:`~milestones.train.run.check_config`),
    the model's options (on the meta device, free), then the resolved config."""
    import torch

    from .config import to_yaml
    from .models import create_model
    from .train.run import check_config

    check_config(cfg, new_run=new_run)
    with torch.device("meta"):
        create_model(cfg.model.name, **cfg.model.kwargs)
    print(to_yaml(cfg), end="")
    return 0


def _checkpoint_test_loader(meta: dict[str, Any], args: argparse.Namespace, *, same_classes: bool = False,
                            **kwargs: Any) -> TensorLoader:
    """The test loader of ``args.data`` (default: the checkpoint's own data) fed as the checkpoint's input contract;
    ``same_classes``: refuse data whose number of classes is not the model's, in one line."""
    from .data import make_test_loader
    from .errors import ConfigError

    d = meta["data"]
    classes = d.get("classes") or []
    if not (args.data or d.get("name")):  # converted weights: trained on data we do not have
        raise ConfigError(f"{args.checkpoint} holds weights trained on {d.get('full_name', 'data it does not name')}, "
                          f"not a dataset milestones reads: pass --data NAME or --data folder:PATH (with its "
                          f"{len(classes)} classes to evaluate it)")
    loader = make_test_loader(d, split=args.split, name=args.data, root=args.data_root, **kwargs)
    if same_classes and classes and len(classes) != loader.spec.num_classes:
        raise ConfigError(f"{args.checkpoint} predicts {len(classes)} classes ({d.get('full_name') or d.get('name')}) "
                          f"but {loader.spec.full_name} has {loader.spec.num_classes}: evaluate it on data with the "
                          f"same classes, or fine-tune it on {loader.spec.full_name} first (milestones finetune)")
    return loader


def cmd_eval(args: argparse.Namespace) -> int:
    from .models import get_spec
    from .precision import resolve_precision
    from .train.checkpoint import restore_model
    from .train.loop import evaluate

    model, meta = restore_model(args.checkpoint, prefer=args.which)
    precision = resolve_precision(args.precision, "cpu", get_spec(meta["model"]).family)
    print(f"precision: {precision.describe()}", flush=True)
    loader = _checkpoint_test_loader(meta, args, same_classes=True)
    res = evaluate(model, loader, flip_tta=args.tta, precision=precision.value)
    tta = ", flip TTA" if args.tta else ""
    print(f"{meta['model']} on {loader.spec.full_name} ({args.split}, {res['n']} images{tta}): top-1 "
          f"{100 * res['acc']:.2f}%, top-5 {100 * res['acc5']:.2f}%, loss {res['loss']:.4f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .data import InputSpec
    from .predict import read_image, to_model_input
    from .train.checkpoint import restore_model

    if args.topk < 1:
        from .errors import ConfigError

        raise ConfigError(f"--topk must be at least 1 (the number of classes shown per image), got {args.topk}")
    model, meta = restore_model(args.checkpoint)
    classes = meta["data"]["classes"]
    spec = InputSpec.from_dict(meta["data"])  # the digit recipe of handwriting sets, resizing for photos
    if args.style != "auto":
        spec = spec.with_style("digit" if args.style == "digit" else "photo")
    for path in args.images:
        x = to_model_input(read_image(path), spec)  # as the page and viz feed it
        with torch.inference_mode():
            probs = model(x).softmax(1)[0]
        top = probs.topk(min(args.topk, len(classes)))
        shown = ", ".join(f"{classes[i]} {100 * p:.1f}%" for p, i in zip(top.values.tolist(), top.indices.tolist()))
        print(f"{path}: {shown}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import create_app, is_loopback, load_runs, make_server

    if not 0 <= args.port <= 65535:  # before the runs load
        from .errors import ConfigError

        raise ConfigError(f"--port must be 0 to 65535 (0: any free port), got {args.port}")
    paths = args.runs
    if not paths and Path(DEMO_RUN).is_dir():
        paths = [DEMO_RUN]
    runs = load_runs(paths)
    server, sock, url = make_server(create_app(runs), args.host, args.port)
    for r in runs:
        print(f"loaded {r.id}: {r.meta['model']} on {r.data.get('full_name', r.data['name'])}")
    if not any(r.drawable for r in runs):
        print(f"no LeNet-5 digit run loaded: 'make demo' trains one into {DEMO_RUN}")
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host}, reachable from other machines; the page has no login")
    print(f"serving on {url} (Ctrl-C stops)", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .errors import CheckpointError
    from .models import create_model, get_converter
    from .train.checkpoint import load_weights_into, save_checkpoint
    from .weights import converted_data, load_pickle_weights

    conv = get_converter(args.source)
    state = load_pickle_weights(args.file)
    out = Path(args.out or Path(args.file).with_suffix("").name + f".{conv.target}.safetensors")
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    if (out.exists() or out.with_suffix(".json").exists()) and not args.overwrite:
        raise CheckpointError(f"{out} exists; pass --overwrite or another --out")
    converted = conv.fn(state)
    num_classes = next((v.shape[0] for k, v in converted.items() if k.startswith("head") and v.ndim == 2), None)
    kwargs = dict(conv.target_kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    model = create_model(conv.target, **kwargs)
    load_weights_into(model, converted, source=str(args.file), model_name=conv.target)
    meta = {"model": conv.target, "model_kwargs": kwargs, "converted_from": f"{conv.library} {args.source}",
            "source_file": str(args.file), "data": converted_data(args.source, conv.library, conv.target, kwargs)}
    save_checkpoint(out.with_suffix(""), model, meta)
    print(f"converted {conv.library} {args.source} -> {conv.target}: {out}")
    print(f"metadata (model options, input size and normalisation, class names): {out.with_suffix('.json')}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.what == "experiments":
        from .experiments.base import index_markdown

        print(index_markdown(Path(args.docs)), end="")
        return 0
    from .report import models_markdown

    print(models_markdown(), end="")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import contextlib

    from .bench import DEFAULT_MODELS, TABLE_HEADERS, bench_model, machine_description, measure_peak_gflops, table_rows
    from .errors import ConfigError
    from .models import list_models

    names: list[str] = []
    for pattern in args.models or DEFAULT_MODELS:
        found = list_models(pattern) if any(c in pattern for c in "*?[") else [pattern]
        if not found:
            raise ConfigError(f"no model matches {pattern!r}; run 'milestones list' to see all")
        names += [n for n in found if n not in names]
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    amps = _bench_precisions(names, device, args.precision, args.amp)
    layouts = _bench_layouts(names, device, args.channels_last, amps)
    print(f"machine: {machine_description(device, args.threads)}; precision: {amps.pop('')}; channels_last: "
          f"{layouts.pop('')}")
    if args.probe:
        peak = measure_peak_gflops(args.threads, n=args.probe, device=device)
        print(f"matmul peak: {peak:.1f} GFLOP/s ({args.probe}^3 float32, median of 5; '% peak' uses the same probe "
              "run between the reps)")
    results = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.json, "a")) if args.json else None  # one line per model as it finishes
        for name in names:
            amp = amps[name]
            r = bench_model(name, args.mode, batch=args.batch, size=args.size, threads=args.threads,
                            channels_last=layouts[name], compile=args.compile, amp=amp, reps=args.reps,
                            warmup=args.warmup, torchvision=not args.no_torchvision,
                            onnxruntime=not args.no_onnxruntime, optimizer=args.optimizer, device=device,
                            probe=args.probe or None, clock=args.clock,
                            progress=not args.no_progress and sys.stderr.isatty())
            results.append(r)
            if out is not None:
                out.write(json.dumps(r.to_dict(), default=str) + "\n")
                out.flush()
    print(_table(TABLE_HEADERS, table_rows(results)))
    notes = [f"{r.model}: {n}" for r in results for n in r.notes]
    notes += [f"{r.model}: outputs match torchvision's (max abs diff {r.tv_max_abs_diff:.2g})"
              for r in results if r.tv_max_abs_diff is not None]
    notes += [f"{r.model}: onnxruntime outputs match (max abs diff {r.ort_max_abs_diff:.2g})"
              for r in results if r.ort_max_abs_diff is not None]
    if notes:
        print("\n" + "\n".join(notes))
    what = (f"forward, cross-entropy, backward, {args.optimizer} step; GFLOP/s = 3 x 2 x MACs" if args.mode == "train"
            else "eval forward under inference_mode; GFLOP/s = 2 x MACs")
    print(f"\n{args.mode}: {what} per second; medians of interleaved reps; ours/tv > 1: ours faster; "
          "ORT/ours > 1: onnxruntime faster")
    return 0


def _bench_precisions(names: Sequence[str], device: str, precision: str, amp: str | None) -> dict[str, str | None]:
    """Each model's autocast dtype (``"bf16"`` or None) for ``bench``, and under the key "" one line saying what was
    chosen and why (models grouped by choice)."""
    from .models import get_spec
    from .precision import resolve_precision

    if amp is not None:  # the older --amp bf16 spelling
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


def _bench_layouts(names: Sequence[str], device: str, asked: bool | None,
                   amps: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Each model's memory format for ``bench`` (True: channels_last), and under the key "" one line saying which:
    the flag where given, else what ``data.channels_last: auto`` picks for the family and the precision ``amps``
    gives it (:func:`_bench_precisions`), as a training run would."""
    from .models import get_spec
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


def _precision_option(parser: argparse.ArgumentParser, default: str | None, help: str) -> None:
    """``--precision auto|fp32|bf16`` (``train.precision``, :data:`milestones.precision.PRECISIONS`, spelled out here
    so that building the parser does not import torch) with this command's default and help."""
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=default, help=help)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    res = export_checkpoint(args.checkpoint, args.format, out=args.out, overwrite=args.overwrite, prefer=args.which,
                            verify=not args.no_verify)
    size = res.path.stat().st_size / 2**20
    print(f"exported {res.model} ({'x'.join(map(str, res.input_size))} input, any batch size) to {res.path} "
          f"({size:.1f} MiB)")
    if res.max_abs_diff is not None:
        print(f"checked against PyTorch on a random batch: max abs logit difference {res.max_abs_diff:.2g}")
    elif res.note:
        print(res.note)
    return 0


def _viz_options(pairs: Sequence[str]) -> dict[str, object]:
    import yaml

    from .errors import ConfigError

    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE (e.g. --option img_size=64), got {pair!r}")
        options[key] = yaml.safe_load(raw)
    return options


def _pixel(text: str | None) -> tuple[float, float] | None:
    from .errors import ConfigError

    if text is None:
        return None
    try:
        row, col = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--pixel takes ROW,COL in input pixels (e.g. --pixel 16,16), got {text!r}") from None
    return row, col


def cmd_viz(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .viz import figures
    from .viz.cam import grad_cam
    from .viz.inputs import image_input, load_model

    out = Path(args.out or f"viz-{args.what}.png")
    if args.what == "curves":
        fig = figures.training_curves(args.target, title=args.title or "")
    else:
        if len(args.target) != 1:
            raise ConfigError(f"viz {args.what} takes one model name, run directory or checkpoint, "
                              f"got {len(args.target)}")
        model, data = load_model(args.target[0], options=_viz_options(args.option), seed=args.seed,
                                 which=args.which)
        if args.what == "filters":
            fig = figures.filter_grid(model, args.layer, per_filter=args.per_filter, title=args.title or "")
        else:
            if not args.image:
                raise ConfigError(f"viz {args.what} needs --image PATH (a PNG or JPEG file)")
            _, x = image_input(args.image, data)
            if args.what == "features":
                if not args.layers:
                    raise ConfigError("viz features needs --layers NAME[,NAME...] (e.g. --layers c1,c3); "
                                      "'milestones info MODEL' shows the layer names")
                fig = figures.feature_maps(model, x, args.layers.split(","), channels=args.channels)
            elif args.what == "gradcam":
                cam = grad_cam(model, x, target_class=args.target_class, layer=args.layer)
                fig = figures.gradcam_figure(x, cam, data.get("classes"))
            else:
                fig = figures.attention_figure(model, x, pixel=_pixel(args.pixel))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=args.dpi)
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        figures._plt().close(fig)
    print(f"wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import collect, load_suite, plan, run_suite, status, write_reports

    suite = load_suite(args.suite)
    settings: dict[str, object] = {}
    if args.data_root:
        settings["data.root"] = args.data_root
    if args.device:
        settings["train.device"] = args.device
    if args.precision:
        settings["train.precision"] = args.precision
    if args.no_progress:
        settings["train.progress"] = False
    out = Path(args.out)
    if args.dry_run:
        planned = plan(suite, out, settings=settings)
        print(f"suite {suite.name}: {len(planned)} runs ({len(suite.runs)} models x {len(suite.seeds)} seeds) "
              f"on {suite.data}, into {out / suite.name}")
        for p in planned:
            c = p.cfg
            print(f"  {p.title:<24} {status(p):<9} {c.train.epochs} epochs, batch {c.data.batch_size}, "
                  f"{c.optim.name} lr {c.optim.lr:g}, {c.schedule.name}")
        return 0

    def event(what: str, p, i: int, n: int) -> None:
        words = {"skip": "finished earlier, skipped", "skip-failed": "failed earlier, skipped (--retry-failed to "
                 "run it again)", "start": "training", "resume": "resuming", "failed": "FAILED", "done": "done"}
        extra = ""
        if what == "done":
            s = json.loads((p.path / "summary.json").read_text())
            extra = f": {100 * s['final_test_acc']:.2f}% in {s['train_seconds']:.0f} s"
        print(f"[{i + 1}/{n}] {p.title}: {words[what]}{extra}", flush=True)

    if args.report_only:
        outcomes = collect(suite, out, settings=settings)
    else:
        from .train.loop import TrainingInterrupted

        try:
            outcomes = run_suite(suite, out, settings=settings, retry_failed=args.retry_failed, on_event=event,
                                 callbacks=[progress_bar(bar=not args.no_progress)])
        except TrainingInterrupted as e:
            print(f"{e}\nthe suite stopped; run the same 'milestones compare' command again to go on",
                  file=sys.stderr)
            return e.exit_code
    paths = write_reports(suite, outcomes, args.report_dir or out / suite.name)
    failed = sum(o.status == "failed" for o in outcomes)
    missing = sum(o.status == "missing" for o in outcomes)
    print(f"leaderboard: {paths['leaderboard']}")
    print(f"results: {paths['csv']}" + (f"; {failed} failed" if failed else "") + (f"; {missing} not run yet"
                                                                                   if missing else ""))
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments import MODES, list_experiments, run_experiment

    if args.action == "list":
        if args.name or args.report_dir or args.out:
            from .errors import ConfigError

            raise ConfigError("'milestones experiment list' takes no experiment name or folders")
        rows = [[e.name, "; ".join(f"{m} {v.minutes:g} min ({v.kind})" for m, v in e.measured.items()) or "-",
                 e.full_cost, e.question, e.source] for e in list_experiments()]
        print(_table(["name", "measured wall time (machine kind)", "full", "question", "paper's claim from"], rows))
        print(f"\nmodes: {', '.join(MODES)} (smoke: seconds, what the tests run; quick: at most 15 minutes on 2 CPU "
              "cores, one seed; standard: at most 45 minutes (90 where stated), 3 seeds per arm, the committed "
              "reports; full: paper scale, for a GPU)")
        return 0
    if not args.name:
        from .errors import ConfigError

        raise ConfigError("name the experiment to run: milestones experiment run NAME (see 'milestones experiment "
                          "list')")
    from .train.loop import TrainingInterrupted

    def event(what: str, p, i: int, n: int) -> None:
        words = {"skip": "finished earlier, skipped", "skip-failed": "failed earlier, skipped", "start": "training",
                 "resume": "resuming", "failed": "FAILED (recorded; the experiment goes on)", "done": "done"}
        print(f"[{i + 1}/{n}] {p.title}: {words[what]}", flush=True)

    try:
        result = run_experiment(args.name, mode=args.mode, out=args.out, seeds=args.seeds, device=args.device,
                                precision=args.precision, data_root=args.data_root, data=args.data,
                                report_dir=args.report_dir,
                                on_event=event,
                                callbacks=[progress_bar(bar=not args.no_progress)])
    except TrainingInterrupted as e:
        print(f"{e}\nthe experiment stopped; run the same command again to go on", file=sys.stderr)
        return e.exit_code
    a = result.analysis
    print(f"{result.experiment.name} ({result.mode}): {a.verdict}. {a.reason}")
    print(f"report: {result.report} ({result.seconds:.0f} s)")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from .compare import list_suites
    from .config import list_recipes

    print("recipes (milestones train --config NAME, or picked by model and --data):")
    for name in list_recipes():
        print(f"  {name}")
    print("suites (milestones compare NAME):")
    for name in list_suites():
        print(f"  {name}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse without prefix matching (``allow_abbrev=False``): ``--epoch`` is an unknown option, not ``--epochs``.
    Subcommand parsers are made of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="milestones", description="Landmark image classifiers, faithful and measured.")
    p.add_argument("--version", action="version", version=f"milestones {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="one of these ('milestones COMMAND --help' shows its options)")

    s = sub.add_parser("list", help="list registered models")
    s.add_argument("patterns", nargs="*", metavar="PATTERN", help="glob patterns, e.g. 'resnet*' 'vgg1?' (any matches)")

    s = sub.add_parser("info", help="paper, reported vs measured numbers, layer summary")
    s.add_argument("name", help="registered model name, e.g. resnet50 ('milestones list' shows them)")
    s.add_argument("--brief", action="store_true", help="skip the layer-by-layer summary")

    s = sub.add_parser("train", help="train a model (extra --section.key=value arguments override the recipe)",
                       description="Train a model. SIGINT (Ctrl-C) or SIGTERM finishes the current step, saves the "
                       "training state and exits with status 130 or 143 and a line saying how to resume; a second "
                       "signal stops at once. Errors exit with status 2.")
    s.set_defaults(format_help=s.format_help)  # shown when nothing says what to train
    s.add_argument("model", nargs="?", help="registered model name, e.g. lenet5 (may be left out with --config, "
                   "whose recipe names one, or --resume)")
    s.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last saved state, with its own config.yaml (only "
                   "--epochs, --no-progress, --device, --data-root and logging/checkpoint settings may change)")
    s.add_argument("--data", help="dataset: mnist, fashion-mnist, kmnist, digits, ...")
    s.add_argument("--config", help="recipe: a YAML file or a shipped recipe's name, e.g. cifar10_resnet20_full "
                   "(default: the shipped recipe for MODEL on DATA; 'milestones recipes' lists them)")
    s.add_argument("--epochs", type=int, help="passes over the training set (train.epochs; default: the recipe's)")
    s.add_argument("--data-root", help="data folder (default: $MILESTONES_DATA or ~/.cache/milestones)")
    s.add_argument("--download", action="store_true", help="download missing data (checksums verified)")
    s.add_argument("--out", help="folder for run directories (default: runs)")
    s.add_argument("--name", help="run directory name (default: MODEL-DATA-TIMESTAMP)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run directory of that name")
    s.add_argument("--device", help="cpu, cuda, cuda:1 or auto")
    s.add_argument("--seed", type=int, help="seed of the initialisation, shuffling and augmentation (train.seed; "
                   "default: the recipe's, else 0)")
    _precision_option(s, None, help="train.precision: bf16 autocast or fp32 (default auto: bf16 where this device "
                                    "runs it faster)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars (the epoch lines stay)")
    s.add_argument("--dry-run", action="store_true",
                   help="print the resolved config (recipe and overrides) and check the model's options; train nothing")
    s.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel training on N processes of this machine (one per GPU, or CPU processes with "
                   "gloo): starts torchrun, which runs 'python -m milestones train' with the other arguments; "
                   "data.batch_size stays the global batch")
    s.add_argument("--nnodes", type=int, default=1, help="with --nproc: machines taking part (default 1)")
    s.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                   help="with --nnodes > 1: where the nodes' launchers meet (torchrun's c10d rendezvous)")
    s.add_argument("--rdzv-id", help="with --rdzv-endpoint: a name shared by the nodes of one job")
    s.add_argument("--node-rank", type=int, help=argparse.SUPPRESS)  # c10d assigns ranks; accepted for torchrun users

    s = sub.add_parser("finetune", help="train a trained run or weight file on new data (new head, frozen layers, "
                       "lower backbone lr)",
                       description="Fine-tune: start from the weights of SOURCE, replace its head for the classes of "
                       "--data (an image folder: folder:PATH) and train as 'milestones train' does (a run directory, "
                       "--resume, Ctrl-C). The same run is 'milestones train MODEL --finetune.weights=SOURCE ...'. "
                       "Extra --section.key=value arguments override the recipe. Errors exit with status 2.")
    s.add_argument("source", help="run directory or .safetensors checkpoint (a run's, or from 'milestones convert')")
    s.add_argument("--data", required=True, help="the new data: a dataset name or folder:PATH (train/<class>/*, "
                   "test/<class>/*)")
    s.add_argument("--freeze", action="append", metavar="PATTERN",
                   help="do not train parameters matching this glob over parameter names (repeatable), e.g. "
                   "'stem.*' or 'stages.[01].*'")
    s.add_argument("--head-only", action="store_true",
                   help="train only the new head: a linear probe on frozen features")
    s.add_argument("--backbone-lr-mult", type=float, default=1.0, metavar="X",
                   help="learning rate of everything but the head, as a multiple of optim.lr (e.g. 0.1)")
    s.add_argument("--keep-head", action="store_true",
                   help="keep the trained head (the data must have its number of classes)")
    s.add_argument("--model", help="the model of bare weights without metadata (else the checkpoint's)")
    s.add_argument("--config", help="recipe (default: the shipped one for the model on --data, else SOURCE's own)")
    s.add_argument("--epochs", type=int, help="passes over the new training set (train.epochs; default: the "
                   "recipe's)")
    s.add_argument("--data-root", help="data folder (default: $MILESTONES_DATA or ~/.cache/milestones)")
    s.add_argument("--out", help="folder for run directories (default: runs)")
    s.add_argument("--name", help="run directory name (default: MODEL-DATA-TIMESTAMP)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run directory of that name")
    s.add_argument("--device", help="cpu, cuda, cuda:1 or auto")
    s.add_argument("--seed", type=int, help="seed of the new head, shuffling and augmentation (train.seed; default: "
                   "the recipe's, else 0)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars (the epoch lines stay)")
    s.add_argument("--dry-run", action="store_true", help="print the resolved config; train nothing")

    s = sub.add_parser("features", help="features of a trained network's layer for every image of a dataset",
                       description="Run SOURCE over a dataset split and save one feature vector per image (a layer's "
                       "output, averaged over space or tokens) with the labels. Errors exit with status 2.")
    s.add_argument("checkpoint", metavar="source", help="run directory or .safetensors checkpoint")
    s.add_argument("--layer", help="layer name from named_modules(), e.g. stages.2 (default: forward_features, the "
                   "vector the head reads); an unknown name lists close ones")
    s.add_argument("--data", help="dataset or folder:PATH (default: the one SOURCE was trained on)")
    s.add_argument("--split", default="test", help="split (default: test)")
    s.add_argument("--out", required=True, help="features.npy (labels in features.labels.npy) or features.npz "
                   "(arrays features, labels, classes)")
    s.add_argument("--pool", default="avg", choices=["avg", "flatten"],
                   help="a spatial or token output: average it (default) or keep it all, flattened")
    s.add_argument("--batch-size", type=int, default=500, help="images per forward pass (default 500)")
    s.add_argument("--data-root", help="data folder (default: $MILESTONES_DATA or ~/.cache/milestones)")
    s.add_argument("--which", default="best", choices=["best", "last"], help="for a run directory")

    s = sub.add_parser("compare", help="train a suite of models x seeds (resumable) and write a leaderboard",
                       description="Train every run of SUITE (a YAML file, or a shipped suite: quick, full) that has "
                       "not finished yet, one after another, then write results.csv, leaderboard.md and plots. "
                       "Running it again skips finished runs and resumes an interrupted one.")
    s.add_argument("suite", help="suite file or shipped suite name (see 'milestones recipes')")
    s.add_argument("--out", default="runs", help="folder for the suite's folder (default: runs)")
    s.add_argument("--report-dir", help="where results.csv, leaderboard.md and the plots go (default: the suite's "
                   "folder)")
    s.add_argument("--data-root", help="data folder (default: $MILESTONES_DATA or ~/.cache/milestones)")
    s.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: the recipes')")
    _precision_option(s, None, help="train.precision of every run (default: the recipes', auto)")
    s.add_argument("--dry-run", action="store_true", help="list the runs and their state; train nothing")
    s.add_argument("--report-only", action="store_true", help="write the reports from the finished runs only")
    s.add_argument("--retry-failed", action="store_true", help="train again the runs that failed earlier")
    s.add_argument("--no-progress", action="store_true", help="no progress bars (the epoch lines stay)")

    s = sub.add_parser("recipes", help="list the shipped training recipes and compare suites")

    s = sub.add_parser("experiment", help="list or run the experiments that test the papers' claims",
                       description="'milestones experiment list' shows every experiment with its question, source and "
                       "cost; 'milestones experiment run NAME' trains what it needs (finished runs are skipped, an "
                       "interrupted one resumes), analyses it and writes report.md, results.csv and figures.")
    s.add_argument("action", choices=["list", "run"], help="list: every experiment; run: run the one named")
    s.add_argument("name", nargs="?", help="the experiment to run (see 'milestones experiment list')")
    s.add_argument("--mode", default="quick", help="quick (CPU, one seed, <= 15 min), standard (CPU, 3 seeds, <= 45 "
                   "min: the committed reports), full (paper scale, GPU) or smoke (seconds)")
    s.add_argument("--out", help="the experiment's folder (default: runs/experiments/NAME-MODE)")
    s.add_argument("--report-dir", help="also write report.md, results.csv and the figures here")
    s.add_argument("--seeds", type=int, help="seeds per run (default: the mode's)")
    s.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: the recipes')")
    _precision_option(s, None, help="the one precision of all the experiment's runs, kept by its folder (default: "
                      "auto, resolved once: bf16 only where auto picks it for every family the experiment trains)")
    s.add_argument("--data-root", help="data folder (default: $MILESTONES_DATA or ~/.cache/milestones)")
    s.add_argument("--data", help="another dataset for an experiment whose question is not tied to one (MNIST-like "
                   "sets for the MNIST experiments; see its report)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars (the epoch lines stay)")

    s = sub.add_parser("eval", help="evaluate a run or checkpoint on its dataset")
    s.add_argument("checkpoint", help="run directory or .safetensors file")
    s.add_argument("--split", default="test", choices=["train", "test"], help="the split to evaluate on (default: "
                   "test)")
    s.add_argument("--data", help="evaluate on another dataset with the same classes")
    s.add_argument("--data-root", help="data folder (default: $MILESTONES_DATA or ~/.cache/milestones)")
    s.add_argument("--which", default="best", choices=["best", "last"], help="for a run directory")
    s.add_argument("--tta", action="store_true", help="test-time augmentation: average each image's logits with its "
                   "mirror image's")
    _precision_option(s, "auto", help="bf16 autocast or fp32 forward passes (default auto: bf16 where this CPU runs "
                                      "it faster)")

    s = sub.add_parser("predict", help="top-k classes for image files")
    s.add_argument("checkpoint", help="run directory or .safetensors file")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...; any size or mode)")
    s.add_argument("--topk", type=int, default=3, help="classes shown per image, most probable first (default 3)")
    s.add_argument("--style", choices=["auto", "digit", "plain"], default="auto",
                   help="digit: invert dark-on-light and format as the digit set's samples were made (MNIST's "
                   "recipe unless the run's data has its own); plain: resize (auto: as the run's data declares)")

    s = sub.add_parser("serve", help="a local page: draw a digit for LeNet-5, upload images for any run",
                       description="Serve the page and its JSON API (see the README) for the runs given (default: "
                       f"{DEMO_RUN} if it exists). Binds 127.0.0.1 unless --host says otherwise.")
    s.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories (or .safetensors checkpoints)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")

    s = sub.add_parser("viz", help="look inside a model or run: filters, feature maps, Grad-CAM, attention, curves",
                       description="TARGET is a registered model name (random init), a run directory or a "
                       ".safetensors checkpoint (trained weights); for 'curves', one or more run directories.")
    s.add_argument("what", choices=["filters", "features", "gradcam", "attention", "curves"],
                   help="filters: a convolution's kernels; features: feature maps of --image; gradcam: where the "
                   "prediction for --image looks; attention: a ViT's attention from one pixel; curves: training "
                   "curves of runs")
    s.add_argument("target", nargs="+", metavar="TARGET", help="model name, run directory or .safetensors file "
                   "(curves: run directories)")
    s.add_argument("--out", help="PNG to write (default: viz-WHAT.png)")
    s.add_argument("--image", help="input image (PNG/JPEG, any size or mode) for features, gradcam and attention")
    s.add_argument("--layer", help="filters: the Conv2d (default: the first); gradcam: where to read the maps "
                   "(default: the family's last convolutional stage)")
    s.add_argument("--layers", help="features: comma-separated layer names, e.g. c1,c3")
    s.add_argument("--channels", type=int, default=8, help="features: maps shown per layer (default 8)")
    s.add_argument("--class", dest="target_class", type=int, help="gradcam: class index to explain (default: the "
                   "top prediction)")
    s.add_argument("--pixel", help="attention: ROW,COL of the query token in input pixels (default: the centre)")
    s.add_argument("--per-filter", action="store_true", help="filters: stretch each filter to full contrast")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option for a registered name, e.g. --option img_size=64 (repeatable)")
    s.add_argument("--seed", type=int, default=0, help="random-init seed for a registered name")
    s.add_argument("--which", default="best", choices=["best", "last"], help="for a run directory")
    s.add_argument("--title", help="figure title")
    s.add_argument("--dpi", type=int, default=100, help="resolution of the PNG (default 100)")

    s = sub.add_parser("convert", help="convert a downloaded torchvision or timm weight file to a milestones "
                       "checkpoint")
    s.add_argument("source", help="torchvision or timm model name, e.g. resnet50, legacy_xception")
    s.add_argument("file", help="the .pth (or timm's .safetensors) file torchvision or timm downloaded")
    s.add_argument("--out", help="output .safetensors path")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file (and its .json)")

    s = sub.add_parser("report", help="generated documentation, e.g. 'milestones report models > docs/models.md'")
    s.add_argument("what", choices=["models", "experiments"], help="models: the table of every registered model "
                   "(docs/models.md); experiments: the index of experiments and their verdicts "
                   "(docs/experiments/README.md)")
    s.add_argument("--docs", default="docs/experiments", help="where the committed experiment reports are (for "
                   "'experiments')")

    s = sub.add_parser("bench", help="speed, memory and FLOP/s against torchvision and the machine's matmul peak")
    s.add_argument("models", nargs="*", metavar="MODEL",
                   help="names or glob patterns (default: one model of each family; slow on a CPU)")
    s.add_argument("--mode", choices=["train", "infer"], default="train",
                   help="train: forward, loss, backward and optimizer step; infer: eval forward passes (default: "
                   "train)")
    s.add_argument("--batch", type=int, help="default: 128 for inputs up to 32x32, else 8")
    s.add_argument("--size", type=int, help="input side (default: the model's)")
    s.add_argument("--threads", type=int, help="torch (and onnxruntime) threads (default: torch's)")
    s.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: as data.channels_last=auto picks it for each model's family)")
    s.add_argument("--compile", action="store_true", help="torch.compile (falls back to eager if unavailable)")
    _precision_option(s, "auto", help="fp32, or bf16 autocast (default auto: bf16 where this device runs it "
                                      "faster)")
    s.add_argument("--amp", choices=["bf16"], help=argparse.SUPPRESS)  # older spelling of --precision bf16
    s.add_argument("--reps", type=int, default=10, help="timed reps per contender, interleaved (default 10)")
    s.add_argument("--warmup", type=int, default=2, help="untimed steps first (peak memory is measured over them)")
    s.add_argument("--optimizer", default="sgd-foreach",
                   help="train mode: sgd or adamw, with -loop, -foreach or -fused kernels (default sgd-foreach)")
    s.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    s.add_argument("--probe", type=int, default=2048, help="matmul peak probe side; 0 skips it")
    s.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: this process's CPU time, steadier on a busy machine with --threads 1")
    s.add_argument("--no-torchvision", action="store_true", help="skip the torchvision comparison")
    s.add_argument("--no-onnxruntime", action="store_true", help="skip onnxruntime (infer mode)")
    s.add_argument("--json", help="append one JSON line per model to this file")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")

    s = sub.add_parser("export", help="export a run or checkpoint to ONNX or TorchScript, checked against PyTorch")
    s.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory or .safetensors file")
    s.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="onnx (a .onnx file) or "
                   "torchscript (a .torchscript.pt file)")
    s.add_argument("--out", help="output file (default: beside the checkpoint, .onnx or .torchscript.pt)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    s.add_argument("--which", default="best", choices=["best", "last"], help="for a run directory")
    s.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .progress import show_progress, tqdm_bars

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with show_progress(None if getattr(args, "no_progress", False) else tqdm_bars):
        return _dispatch(parser, args, extra)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: Sequence[str]) -> int:
    try:
        if args.command == "train":
            return cmd_train(args, extra)
        if args.command == "finetune":
            return cmd_finetune(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        handler = {"list": cmd_list, "info": cmd_info, "eval": cmd_eval, "predict": cmd_predict,
                   "convert": cmd_convert, "report": cmd_report, "bench": cmd_bench,
                   "export": cmd_export, "compare": cmd_compare, "recipes": cmd_recipes,
                   "experiment": cmd_experiment, "serve": cmd_serve, "viz": cmd_viz,
                   "features": cmd_features}[args.command]
        return handler(args)
    except MilestonesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
