"""Commands on a trained network: ``eval``, ``predict``, ``features``, ``export``, and ``convert`` (weights from
torchvision or timm to a milestones checkpoint)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .options import add_data_root, add_precision, add_which

if TYPE_CHECKING:
    from ..data import TensorLoader


def checkpoint_test_loader(meta: dict[str, Any], args: argparse.Namespace, *, same_classes: bool = False,
                           **kwargs: Any) -> TensorLoader:
    """The test loader of ``args.data`` (default: the checkpoint's own data) fed as the checkpoint's input contract;
    ``same_classes``: refuse data whose number of classes is not the model's, in one line."""
    from ..data import make_test_loader
    from ..errors import ConfigError

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
    from ..models import get_spec
    from ..precision import resolve_precision
    from ..train.checkpoint import restore_model
    from ..train.loop import evaluate

    model, meta = restore_model(args.checkpoint, prefer=args.which)
    precision = resolve_precision(args.precision, "cpu", get_spec(meta["model"]).family)
    print(f"precision: {precision.describe()}", flush=True)
    loader = checkpoint_test_loader(meta, args, same_classes=True)
    res = evaluate(model, loader, flip_tta=args.tta, precision=precision.value)
    tta = ", flip TTA" if args.tta else ""
    print(f"{meta['model']} on {loader.spec.full_name} ({args.split}, {res['n']} images{tta}): top-1 "
          f"{100 * res['acc']:.2f}%, top-5 {100 * res['acc5']:.2f}%, loss {res['loss']:.4f}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from ..data import InputSpec
    from ..predict import read_image, to_model_input
    from ..train.checkpoint import restore_model

    if args.topk < 1:
        from ..errors import ConfigError

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


def cmd_features(args: argparse.Namespace) -> int:
    from ..train.checkpoint import restore_model
    from ..transfer import extract_features, features_file, save_features

    out = features_file(args.out)  # a wrong suffix is an error before any work
    model, meta = restore_model(args.checkpoint, prefer=args.which)
    loader = checkpoint_test_loader(meta, args, batch_size=args.batch_size)
    feats, labels = extract_features(model, loader, args.layer, pool_how=args.pool)
    where = save_features(out, feats, labels, loader.spec.classes)
    layer = args.layer or "forward_features"
    print(f"{meta['model']} {layer} on {loader.spec.full_name} ({args.split}): {feats.shape[0]} x {feats.shape[1]} "
          f"features -> {where}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_checkpoint

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


def cmd_convert(args: argparse.Namespace) -> int:
    from ..train.checkpoint import save_checkpoint
    from ..weights import convert_weights, converted_path

    out = converted_path(args.source, args.file, args.out, overwrite=args.overwrite)
    model, meta = convert_weights(args.source, args.file)
    save_checkpoint(out.with_suffix(""), model, meta)
    print(f"converted {meta['converted_from']} -> {meta['model']}: {out}")
    print(f"metadata (model options, input size and normalisation, class names): {out.with_suffix('.json')}")
    return 0


def add_features(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("features", help="features of a trained network's layer for every image of a dataset",
                       description="Run SOURCE over a dataset split and save one feature vector per image (a layer's "
                       "output, averaged over space or tokens) with the labels. Errors exit with status 2.")
    s.set_defaults(handler=cmd_features)
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
    add_data_root(s)
    add_which(s)


def add_eval(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("eval", help="evaluate a run or checkpoint on its dataset")
    s.set_defaults(handler=cmd_eval)
    s.add_argument("checkpoint", help="run directory or .safetensors file")
    s.add_argument("--split", default="test", choices=["train", "test"], help="the split to evaluate on (default: "
                   "test)")
    s.add_argument("--data", help="evaluate on another dataset with the same classes")
    add_data_root(s)
    add_which(s)
    s.add_argument("--tta", action="store_true", help="test-time augmentation: average each image's logits with its "
                   "mirror image's")
    add_precision(s, "auto", help="bf16 autocast or fp32 forward passes (default auto: bf16 where this CPU runs it "
                                  "faster)")


def add_predict(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("predict", help="top-k classes for image files")
    s.set_defaults(handler=cmd_predict)
    s.add_argument("checkpoint", help="run directory or .safetensors file")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...; any size or mode)")
    s.add_argument("--topk", type=int, default=3, help="classes shown per image, most probable first (default 3)")
    s.add_argument("--style", choices=["auto", "digit", "plain"], default="auto",
                   help="digit: invert dark-on-light and format as the digit set's samples were made (MNIST's "
                   "recipe unless the run's data has its own); plain: resize (auto: as the run's data declares)")


def add_convert(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("convert", help="convert a downloaded torchvision or timm weight file to a milestones "
                       "checkpoint")
    s.set_defaults(handler=cmd_convert)
    s.add_argument("source", help="torchvision or timm model name, e.g. resnet50, legacy_xception")
    s.add_argument("file", help="the .pth (or timm's .safetensors) file torchvision or timm downloaded")
    s.add_argument("--out", help="output .safetensors path")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file (and its .json)")


def add_export(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("export", help="export a run or checkpoint to ONNX or TorchScript, checked against PyTorch")
    s.set_defaults(handler=cmd_export)
    s.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="run directory or .safetensors file")
    s.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="onnx (a .onnx file) or "
                   "torchscript (a .torchscript.pt file)")
    s.add_argument("--out", help="output file (default: beside the checkpoint, .onnx or .torchscript.pt)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_which(s)
    s.add_argument("--no-verify", action="store_true", help="skip the check against PyTorch")


PARSERS = {"features": add_features, "eval": add_eval, "predict": add_predict, "convert": add_convert,
           "export": add_export}
