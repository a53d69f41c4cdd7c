"""``train`` and ``finetune``: a run directory from a recipe, or from a trained network on new data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .options import (
    add_data_root,
    add_device,
    add_no_progress,
    add_precision,
    add_run_dir,
    config_overrides,
)

if TYPE_CHECKING:
    from ..config import RunConfig


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from ..config import build_config

    named = args.model or any(a.startswith("--model.name=") for a in extra)
    if not (named or args.config or args.resume):  # nothing says what to train: never a default run
        print(args.format_help(), file=sys.stderr)
        print("error: name the model to train (e.g. milestones train lenet5 --data digits), or give --config FILE or "
              "--resume RUN_DIR; 'milestones list' shows the models", file=sys.stderr)
        return 2
    overrides = config_overrides(args, extra)
    if args.resume:
        # The run's own config.yaml, plus overrides; run_training refuses those that would change the run.
        from ..config import apply_overrides
        from ..errors import ConfigError
        from ..train.runconfig import load_run_config

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
        return show_config(cfg, new_run=not args.resume)
    if args.nproc is not None:
        return launch(cfg, args)
    return train(cfg, args)


def cmd_finetune(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from ..transfer import check_config, finetune_config

    overrides = config_overrides(args, extra)
    cfg = finetune_config(args.source, data=args.data, model=args.model, recipe=args.config, freeze=args.freeze or [],
                          head_only=args.head_only, backbone_lr_mult=args.backbone_lr_mult,
                          new_head=not args.keep_head, overrides=overrides)
    check_config(cfg)
    if args.dry_run:
        return show_config(cfg)
    args.resume = None
    return train(cfg, args)


def train(cfg: RunConfig, args: argparse.Namespace) -> int:
    """Train ``cfg`` (``train`` and ``finetune``): progress bar, interruption, the summary lines."""
    from ..train.distributed import from_env
    from ..train.loop import TrainingInterrupted
    from ..train.run import run_training
    from .callbacks import progress_bar, settings_line

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
        from ..errors import ConfigError

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


def launch(cfg: RunConfig, args: argparse.Namespace) -> int:
    """``train --nproc N``: the launch checks (one line, exit 2, before anything starts), then this process becomes
    ``torchrun`` running ``python -m milestones train`` with the same arguments."""
    import os

    from ..train.launch import torchrun_command

    command = torchrun_command(cfg, args.argv, nproc=args.nproc, nnodes=args.nnodes, rdzv_endpoint=args.rdzv_endpoint,
                               rdzv_id=args.rdzv_id, resume=args.resume)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
    return 0  # not reached


def show_config(cfg: RunConfig, *, new_run: bool = True) -> int:
    """``--dry-run``: every check a run makes before it reads data (:func:`~milestones.train.run.check_config`), the
    model's options (on the meta device, free), then the resolved config."""
    import torch

    from ..config import to_yaml
    from ..models import create_model
    from ..train.run import check_config

    check_config(cfg, new_run=new_run)
    with torch.device("meta"):
        create_model(cfg.model.name, **cfg.model.kwargs)
    print(to_yaml(cfg), end="")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train", help="train a model (extra --section.key=value arguments override the recipe)",
                       description="Train a model. SIGINT (Ctrl-C) or SIGTERM finishes the current step, saves the "
                       "training state and exits with status 130 or 143 and a line saying how to resume; a second "
                       "signal stops at once. Errors exit with status 2.")
    s.set_defaults(handler=cmd_train, takes_overrides=True, format_help=s.format_help)  # help: nothing to train
    s.add_argument("model", nargs="?", help="registered model name, e.g. lenet5 (may be left out with --config, "
                   "whose recipe names one, or --resume)")
    s.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last saved state, with its own config.yaml (only "
                   "--epochs, --no-progress, --device, --data-root and logging/checkpoint settings may change)")
    s.add_argument("--data", help="dataset: mnist, fashion-mnist, kmnist, digits, ...")
    s.add_argument("--config", help="recipe: a YAML file or a shipped recipe's name, e.g. cifar10_resnet20_full "
                   "(default: the shipped recipe for MODEL on DATA; 'milestones recipes' lists them)")
    s.add_argument("--epochs", type=int, help="passes over the training set (train.epochs; default: the recipe's)")
    add_data_root(s)
    s.add_argument("--download", action="store_true", help="download missing data (checksums verified)")
    add_run_dir(s)
    add_device(s)
    s.add_argument("--seed", type=int, help="seed of the initialisation, shuffling and augmentation (train.seed; "
                   "default: the recipe's, else 0)")
    add_precision(s, None, help="train.precision: bf16 autocast or fp32 (default auto: bf16 where this device runs it "
                                "faster)")
    add_no_progress(s)
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


def add_finetune(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("finetune", help="train a trained run or weight file on new data (new head, frozen layers, "
                       "lower backbone lr)",
                       description="Fine-tune: start from the weights of SOURCE, replace its head for the classes of "
                       "--data (an image folder: folder:PATH) and train as 'milestones train' does (a run directory, "
                       "--resume, Ctrl-C). The same run is 'milestones train MODEL --finetune.weights=SOURCE ...'. "
                       "Extra --section.key=value arguments override the recipe. Errors exit with status 2.")
    s.set_defaults(handler=cmd_finetune, takes_overrides=True)
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
    add_data_root(s)
    add_run_dir(s)
    add_device(s)
    s.add_argument("--seed", type=int, help="seed of the new head, shuffling and augmentation (train.seed; default: "
                   "the recipe's, else 0)")
    add_no_progress(s)
    s.add_argument("--dry-run", action="store_true", help="print the resolved config; train nothing")


PARSERS = {"train": add_train, "finetune": add_finetune}
