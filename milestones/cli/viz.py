"""``viz``: filters, feature maps, Grad-CAM, attention and training curves as PNG figures."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .options import add_which


def model_options(pairs: Sequence[str]) -> dict[str, object]:
    import yaml

    from ..errors import ConfigError

    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes KEY=VALUE (e.g. --option img_size=64), got {pair!r}")
        options[key] = yaml.safe_load(raw)
    return options


def pixel(text: str | None) -> tuple[float, float] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    try:
        row, col = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--pixel takes ROW,COL in input pixels (e.g. --pixel 16,16), got {text!r}") from None
    return row, col


def cmd_viz(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..viz import figures
    from ..viz.cam import grad_cam
    from ..viz.inputs import image_input, load_model

    out = Path(args.out or f"viz-{args.what}.png")
    if args.what == "curves":
        fig = figures.training_curves(args.target, title=args.title or "")
    else:
        if len(args.target) != 1:
            raise ConfigError(f"viz {args.what} takes one model name, run directory or checkpoint, "
                              f"got {len(args.target)}")
        model, data = load_model(args.target[0], options=model_options(args.option), seed=args.seed,
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
                fig = figures.attention_figure(model, x, pixel=pixel(args.pixel))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=args.dpi)
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        figures._plt().close(fig)
    print(f"wrote {out}")
    return 0


def add_viz(sub: argparse._SubParsersAction) -> None:
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
    add_which(s)
    s.add_argument("--title", help="figure title")
    s.add_argument("--dpi", type=int, default=100, help="resolution of the PNG (default 100)")
    s.set_defaults(handler=cmd_viz)


PARSERS = {"viz": add_viz}
