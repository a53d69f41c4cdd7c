"""Export a checkpoint to ONNX (for onnxruntime and other runtimes) or TorchScript, and check the file against PyTorch.

Both formats come from tracing the eval-mode model on an example batch: the layers of these networks have no
data-dependent control flow, so a trace is the whole model. ONNX files use opset 17 (the first with LayerNormalization)
through PyTorch's TorchScript-based exporter, which needs no extra package (the newer ``torch.export`` route needs
``onnxscript``); the batch dimension is dynamic, the image size fixed to the one the checkpoint was trained at. What
a user needs to feed the file (model name and options, input size, normalisation, class names) is stored in it: ONNX
``metadata_props`` keys ``milestones.*``, and a ``milestones.json`` extra file in the TorchScript archive.

:func:`export_checkpoint` verifies every file it writes on a random batch of another size than the traced one, in
onnxruntime (optional: ``pip install milestones[export]``) or by loading the TorchScript archive, and refuses a file
whose logits differ from PyTorch's by more than :data:`TOLERANCE` times the largest logit.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .errors import MilestonesError

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OPSET = 17
# Relative to the largest logit: a fixed bound passes or fails by chance with the logits' size and the CPU's kernels.
# onnxruntime folds batch norm into the convolutions and runs its own kernels: measured up to 4e-5 of the largest logit
# (GoogLeNet, AMD Zen 5), 1e-6 for the transformers; a wrong export is off by 1e-2 and more.
TOLERANCE = 1e-3


class ExportError(MilestonesError):
    """A model that cannot be exported, a file in the way, or an exported file that disagrees with PyTorch."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_checkpoint` wrote.

    Attributes:
        path: the exported file.
        model: the registered model name.
        input_size: ``(C, H, W)`` the file expects (any batch size).
        max_abs_diff: largest logit difference from PyTorch on a random batch; None if not verified.
        note: why it was not verified, if it was not.
    """

    path: Path
    model: str
    input_size: tuple[int, int, int]
    max_abs_diff: float | None
    note: str = ""


def export_onnx(model: nn.Module, example: Tensor, path: str | Path, *,
                metadata: Mapping[str, str] | None = None, opset: int = OPSET) -> Path:
    """Trace ``model`` (put in eval mode) on ``example`` and write an ONNX file with a dynamic batch dimension.

    Args:
        model: the network; exported in float32 on the CPU.
        example: an input batch ``(B, C, H, W)``; H and W are fixed in the file, the batch is not.
        path: the file to write (an existing file is replaced).
        metadata: strings stored in the model's ``metadata_props`` (needs the ``onnx`` package; skipped without).
        opset: ONNX opset version.
    """
    path = Path(path)
    model = model.eval()
    try:
        with warnings.catch_warnings():
            # The tracer's warnings (shape checks frozen to constants, deprecation notices) are expected for
            # fixed-size inputs; exported files are checked numerically instead (export_checkpoint).
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as e:
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {first_line(e)}") from e
    if metadata:
        _add_onnx_metadata(path, metadata)
    return path


def first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else ""


def _add_onnx_metadata(path: Path, metadata: Mapping[str, str]) -> None:
    try:
        import onnx
    except ImportError:
        return
    if path.stat().st_size >= 2**31 - 1:  # weights in external files: rewriting the proto would not keep them
        return
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def export_torchscript(model: nn.Module, example: Tensor, path: str | Path, *,
                       metadata: Mapping[str, str] | None = None) -> Path:
    """Trace ``model`` (put in eval mode) on ``example`` with ``torch.jit.trace`` and save the archive.

    ``metadata`` is stored as the extra file ``milestones.json`` (read it back with ``_extra_files`` in
    ``torch.jit.load``).
    """
    path = Path(path)
    model = model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # as in export_onnx
            traced = torch.jit.trace(model, (example,), check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={"milestones.json": json.dumps(dict(metadata or {}))})
    except Exception as e:
        raise ExportError(f"TorchScript export failed: {type(e).__name__}: {first_line(e)}") from e
    return path


def run_exported(path: str | Path, fmt: Format, x: Tensor, *, threads: int | None = None) -> Tensor:
    """Logits of an exported file on ``x``: onnxruntime for ONNX (raises ImportError without it), ``torch.jit.load``
    for TorchScript."""
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.float().numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return module(x)


def _input_size(meta: Mapping[str, Any]) -> tuple[int, int, int]:
    from .models import get_spec

    size = (meta.get("data") or {}).get("input_size")
    if size:
        c, h, w = (int(v) for v in size)
        return c, h, w
    c, h, w = get_spec(meta["model"]).input_size
    img = (meta.get("model_kwargs") or {}).get("img_size")
    if isinstance(img, int):
        h = w = img
    elif isinstance(img, (list, tuple)):
        h, w = (int(v) for v in img)
    return int((meta.get("model_kwargs") or {}).get("in_chans", c)), h, w


def default_output(checkpoint: Path, fmt: Format) -> Path:
    """``<dir>/<stem>.onnx`` or ``<dir>/<stem>.torchscript.pt`` beside the checkpoint's ``.safetensors`` file."""
    return checkpoint.with_name(checkpoint.stem + SUFFIX[fmt])


def export_checkpoint(source: str | Path, fmt: Format, *, out: str | Path | None = None, overwrite: bool = False,
                      prefer: str = "best", verify: bool = True, example_batch: int = 2) -> ExportResult:
    """Rebuild the model of a run directory or checkpoint, export it, and check the file against PyTorch.

    Args:
        source: a run directory, or a checkpoint's ``.safetensors``/``.json`` file or stem.
        fmt: ``"onnx"`` or ``"torchscript"``.
        out: the file to write; default :func:`default_output`.
        overwrite: replace an existing ``out`` (refused otherwise).
        prefer: for a run directory, ``"best"`` or ``"last"`` checkpoint.
        verify: compare the file's logits with PyTorch's on a random batch of ``example_batch + 1`` images (ONNX
            needs onnxruntime; without it the file is written unverified, with a note).
        example_batch: batch size of the traced example.

    Raises:
        ExportError: ``out`` exists without ``overwrite``, the export fails, or the file's logits differ from
            PyTorch's by more than :data:`TOLERANCE` times the largest logit (the file is then removed).
        CheckpointError: the checkpoint cannot be read, or has no metadata naming its model.
    """
    from .train.checkpoint import resolve_checkpoint, restore_model

    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    weights = resolve_checkpoint(source, prefer)
    target = Path(out) if out is not None else default_output(weights, fmt)
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists; pass --overwrite to replace it, or --out for another file")
    model, meta = restore_model(weights)  # a checkpoint without metadata naming its model raises here
    input_size = _input_size(meta)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(example_batch, *input_size, generator=gen)
    data = meta.get("data") or {}
    info = {
        "milestones.model": meta["model"],
        "milestones.model_kwargs": json.dumps(meta.get("model_kwargs") or {}),
        "milestones.input_size": json.dumps(list(input_size)),
        **{f"milestones.{k}": json.dumps(data[k]) for k in ("mean", "std", "classes") if k in data},
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        if fmt == "onnx":
            export_onnx(model, example, tmp, metadata=info)
        else:
            export_torchscript(model, example, tmp, metadata=info)
        diff, note = None, ""
        if verify:
            x = torch.randn(example_batch + 1, *input_size, generator=gen)  # another batch size than the trace's
            with torch.no_grad():
                ref = model(x)
            try:
                got = run_exported(tmp, fmt, x)
            except ImportError:
                note = "onnxruntime is not installed (pip install milestones[export]); the file was not verified"
            else:
                diff = float((got - ref).abs().max()) if got.shape == ref.shape else float("inf")
                limit = TOLERANCE * float(ref.abs().max())
                if not diff <= limit:
                    raise ExportError(f"the exported {fmt} file disagrees with PyTorch (max abs logit difference "
                                      f"{diff:.3g} > {limit:.3g}, {TOLERANCE:g} of the largest logit); "
                                      "nothing was written")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(target, meta["model"], input_size, diff, note)
