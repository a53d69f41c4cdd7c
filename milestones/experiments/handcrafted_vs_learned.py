"""``handcrafted-vs-learned``: do features learned by a convolutional net beat classifiers on raw pixels and on
hand-designed features?

LeCun et al. 1998 (Proc. IEEE), §III-C and Fig. 9 compare many classifiers on the same MNIST split (60,000 training,
10,000 test images). The four we rerun: a linear classifier on the pixels (12.0% test error), k-nearest neighbours
with Euclidean distance (5.0%), a fully connected net with one hidden layer of 300 units (4.7%) and LeNet-5 (0.95%).
To these we add the hand-crafted-feature pipelines that a 2005 vision system would have used: HOG features (Dalal &
Triggs 2005, ``skimage.feature.hog``) with a linear SVM (``sklearn.svm.LinearSVC``) and with an RBF-kernel SVM
(``sklearn.svm.SVC``, its C chosen on a validation split carved from the training images), and we show the paper's own
best non-learned rows (tangent distance, polynomial SVMs), which came within a tenth of a point of LeNet-5.

The nets (LeNet-5 and the 2-layer net) train with several seeds in standard mode; the other methods are
deterministic. The verdict (:func:`milestones.experiments.verdict.decide`) tests LeNet-5's seeds against each of them
by a one-sample t-test at 95%.

LeNet-5 trains through the framework (``lenet5`` with its ``mnist_lenet5`` recipe); the others run in ``analyse``,
each cached, on the same images: pixels scaled to [0, 1] (HOG reads the uint8 image). For every method we measure
the test error, training time, inference time over the test set and the number of learned (or stored) values.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..data import get_dataset, subset
from . import plots
from .base import AVX2_EPYC, Analysis, Context, Experiment, Figure, Measured, RunSpec, Setup, register
from .verdict import HOLDS, OPPOSITE, SubClaim, compare, decide, judge, spread

PAPER_ERR = {"linear": 12.0, "knn": 5.0, "mlp300": 4.7, "lenet5": 0.95}  # Fig. 9, MNIST test error %
PAPER_BEST_NON_LEARNED = {  # Fig. 9 (as PAPERS.md §4 and the MNIST page's table list it; not re-read in the PDF here)
    "tangent distance (16x16 subsampled pixels)": 1.1,
    "SVM, polynomial kernel of degree 4, on pixels": 1.1,
    "reduced-set SVM, polynomial of degree 5": 1.0,
    "virtual SVM, polynomial of degree 9, trained with distortions": 0.8,
}
METHODS = {
    "linear": "linear classifier on pixels (least squares)",
    "knn": "k-NN, Euclidean, k=3, on pixels",
    "mlp300": "2-layer net, 300 hidden units (torch MLP)",
    "hog_svm": "HOG features + linear SVM",
    "hog_rbf": "HOG features + RBF-kernel SVM",
    "lenet5": "LeNet-5 (learned convolutional features)",
}
SHORT = {"linear": "linear", "knn": "k-NN", "mlp300": "2-layer net", "hog_svm": "HOG + linear SVM",
         "hog_rbf": "HOG + RBF SVM", "lenet5": "LeNet-5"}
PIXELS = ("linear", "knn", "mlp300")
HANDCRAFTED = ("hog_svm", "hog_rbf")
HOG = {"orientations": 9, "pixels_per_cell": (7, 7), "cells_per_block": (2, 2)}  # 28x28 -> 3x3 blocks: 324 values
MLP = {"hidden": 300, "lr": 0.01, "momentum": 0.9, "batch_size": 128}
RBF_CS = (1.0, 10.0, 100.0)  # the RBF SVM's C grid, chosen on a validation split of the training images
LENET_MARGIN = 0.3  # LeNet-5 matches the paper's 0.95% if its mean error is within 30% of it (0.67-1.24%)

MODES: dict[str, dict[str, Any]] = {
    "smoke": {"lenet": {"train.epochs": 1, "data.train_subset": 512, "data.test_subset": 200}, "seeds": [0],
              "train": 512, "test": 200, "svm_train": None, "rbf_train": 400, "rbf_val": 100, "mlp_epochs": 1},
    "quick": {"lenet": {}, "seeds": [0], "train": None, "test": None, "svm_train": 20_000, "rbf_train": 10_000,
              "rbf_val": 5_000, "mlp_epochs": 30},
    "standard": {"lenet": {}, "seeds": [0, 1, 2], "train": None, "test": None, "svm_train": None,
                 "rbf_train": 30_000, "rbf_val": 5_000, "mlp_epochs": 30},
    "full": {"lenet": {}, "seeds": [0, 1, 2, 3, 4], "train": None, "test": None, "svm_train": None,
             "rbf_train": None, "rbf_val": 5_000, "mlp_epochs": 30},
}


def within_margin(ours: float, paper: float) -> bool:
    """The agreement we hold each row to: within 1 point for paper errors of 2% and more, within 30% of the paper's
    value below that (LeNet-5's 0.95% would otherwise allow anything from 0 to 1.95%)."""
    if paper >= 2.0:
        return abs(ours - paper) <= 1.0
    return abs(ours - paper) <= 0.3 * paper


def setup(mode: str) -> Setup:
    m = MODES[mode]
    runs = [RunSpec("lenet5", "lenet5", recipe="mnist_lenet5", overrides=m["lenet"])]
    rbf_n = f"{m['rbf_train']:,}" if m["rbf_train"] else "all remaining"
    notes = [
        "LeNet-5 as published (sparse C3, scaled tanh, trainable subsampling, fixed RBF output, MAP loss), trained "
        "with its `mnist_lenet5` recipe: Adam 2e-3 with a one-cycle schedule, batch 128, no distortions (the paper "
        "used 20 passes of stochastic diagonal Levenberg-Marquardt).",
        "Linear classifier: 784 pixels + bias -> 10 outputs, fitted by least squares to one-hot targets (a ridge of "
        "1 keeps the always-black border pixels from making the system singular); 7,850 weights, as in the paper.",
        "k-NN: exact Euclidean distances over all training images (torch, in chunks), majority vote of the 3 "
        "nearest, ties to the nearest.",
        f"2-layer net: 784-300-10, tanh hidden units, softmax cross-entropy, SGD lr {MLP['lr']} momentum "
        f"{MLP['momentum']}, batch {MLP['batch_size']}, {m['mlp_epochs']} epoch(s), inputs normalised with MNIST's "
        "mean and std (a torch MLP trained inside the analysis, not sklearn's MLPClassifier).",
        f"HOG: {HOG['orientations']} orientations, {HOG['pixels_per_cell'][0]}x{HOG['pixels_per_cell'][1]}-pixel "
        "cells, 2x2-cell blocks (L2-Hys), i.e. 324 values per 28x28 digit; scikit-learn's LinearSVC at its default "
        "C=1 (one-vs-rest, squared hinge).",
        f"HOG + RBF SVM: the same HOG features, scikit-learn's SVC with an RBF kernel (gamma 'scale'); C chosen from "
        f"{', '.join(f'{c:g}' for c in RBF_CS)} by the error on {m['rbf_val']:,} validation images held out of the "
        f"training set (never the test set), then fitted on {rbf_n} other training images.",
        "LeNet-5 and the 2-layer net train once per seed (the seed sets the initialisation and the batch order); "
        "the table shows their mean ± seed standard deviation. The other methods are deterministic. LeNet-5's "
        "error is its last epoch's (no checkpoint is chosen on the test set).",
        "Times are wall-clock seconds on the machine below, single process. Inference is over the whole test set.",
    ]
    if mode in ("quick", "standard"):
        notes += [f"**Shrunk:** {'one seed' if mode == 'quick' else '3 seeds'} per net; HOG + RBF SVM fitted on "
                  f"{rbf_n} images and HOG + linear SVM on "
                  f"{'a class-balanced 20,000-image subset' if m['svm_train'] else 'all the training images'} (RBF "
                  "training time grows with the square of the images). LeNet-5's full 20-epoch recipe and every "
                  "other method on all 60,000 training and 10,000 test images."]
    elif mode == "smoke":
        notes += ["Smoke test: 512 training and 200 test images, one epoch; the numbers mean nothing."]
    else:
        notes += ["LeNet-5's full 20-epoch recipe, 5 seeds; every method on all 60,000 training images."]
    return Setup(runs=runs, data="mnist", seeds=list(m["seeds"]), notes=notes)


def _split(ctx: Context, which: str, n: int | None) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 28, 28) and labels, the same stratified subset the training loop takes (seed 0)."""
    split = get_dataset(ctx.setup.data or "mnist", which, root=ctx.data_root)
    if n is not None and n < len(split.labels):
        split = subset(split, n, seed=0)
    return split.images[:, 0], split.labels


def _pixels(images: Tensor) -> Tensor:
    return images.reshape(len(images), -1).float() / 255.0


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _error(pred: Tensor | np.ndarray, labels: Tensor) -> float:
    return round(100.0 * float((torch.as_tensor(pred) != labels).float().mean()), 2)


def linear_least_squares(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
                         ridge: float = 1.0) -> dict[str, Any]:
    """One linear unit per class on the pixels plus a bias, least squares to one-hot targets; argmax classifies."""
    def fit() -> Tensor:
        a = torch.cat([x_train, torch.ones(len(x_train), 1)], 1).double()  # (N, 785)
        targets = F.one_hot(y_train, 10).double()
        gram = a.T @ a + ridge * torch.eye(a.shape[1], dtype=torch.float64)
        return torch.linalg.solve(gram, a.T @ targets).float()  # (785, 10)

    w, train_s = _timed(fit)
    pred, infer_s = _timed(lambda: (x_test @ w[:-1] + w[-1]).argmax(1))
    return {"err": _error(pred, y_test), "train_s": train_s, "infer_s": infer_s, "params": w.numel()}


def knn_predict(x_train: Tensor, y_train: Tensor, x_test: Tensor, k: int = 3, chunk: int = 500) -> Tensor:
    """Majority vote of the ``k`` nearest training images (squared Euclidean distance); a tie goes to the class of
    the nearest one."""
    sq_train = x_train.pow(2).sum(1)
    out = []
    for start in range(0, len(x_test), chunk):
        q = x_test[start:start + chunk]
        d = sq_train.unsqueeze(0) - 2.0 * q @ x_train.T  # ||q||^2 is the same for every candidate of a row
        idx = d.topk(k, dim=1, largest=False).indices  # (chunk, k), nearest first
        votes = F.one_hot(y_train[idx], 10).float().sum(1)
        votes.scatter_add_(1, y_train[idx[:, :1]], torch.full((len(q), 1), 0.5))  # tie-break: the nearest
        out.append(votes.argmax(1))
    return torch.cat(out)


def knn(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor) -> dict[str, Any]:
    pred, infer_s = _timed(lambda: knn_predict(x_train, y_train, x_test))
    # Nothing is fitted: the classifier is the stored training set.
    return {"err": _error(pred, y_test), "train_s": 0.0, "infer_s": infer_s, "params": x_train.numel()}


def mlp(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, epochs: int, seed: int = 0
        ) -> dict[str, Any]:
    """784-300-10 with tanh hidden units, softmax cross-entropy, plain SGD with momentum; ``seed`` sets the
    initialisation and the batch order."""
    torch.manual_seed(seed)
    mean, std = x_train.mean(), x_train.std()
    net = torch.nn.Sequential(torch.nn.Linear(784, MLP["hidden"]), torch.nn.Tanh(), torch.nn.Linear(MLP["hidden"], 10))
    opt = torch.optim.SGD(net.parameters(), lr=MLP["lr"], momentum=MLP["momentum"])
    xs = (x_train - mean) / std

    def train() -> None:
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(xs), generator=g)
            for i in range(0, len(xs), MLP["batch_size"]):
                idx = order[i:i + MLP["batch_size"]]
                loss = F.cross_entropy(net(xs[idx]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()

    _, train_s = _timed(train)
    with torch.no_grad():
        pred, infer_s = _timed(lambda: net((x_test - mean) / std).argmax(1))
    params = sum(p.numel() for p in net.parameters())
    return {"err": _error(pred, y_test), "train_s": train_s, "infer_s": infer_s, "params": params}


def hog_features(images: Tensor) -> np.ndarray:
    from skimage.feature import hog

    return np.stack([hog(im, block_norm="L2-Hys", **HOG) for im in images.numpy()]).astype(np.float32)


def hog_svm(img_train: Tensor, y_train: Tensor, img_test: Tensor, y_test: Tensor) -> dict[str, Any]:
    from sklearn.svm import LinearSVC

    def fit() -> Any:
        return LinearSVC(C=1.0).fit(hog_features(img_train), y_train.numpy())

    svm, train_s = _timed(fit)
    pred, infer_s = _timed(lambda: svm.predict(hog_features(img_test)))
    params = svm.coef_.size + svm.intercept_.size
    return {"err": _error(pred, y_test), "train_s": train_s, "infer_s": infer_s, "params": int(params),
            "features": int(svm.coef_.shape[1])}


def hog_rbf(img_fit: Tensor, y_fit: Tensor, img_val: Tensor, y_val: Tensor, img_test: Tensor, y_test: Tensor
            ) -> dict[str, Any]:
    """HOG features and an RBF-kernel SVM: C from :data:`RBF_CS` by the error on the validation images (fitted on
    ``img_fit``), then the chosen C's machine (already fitted on ``img_fit``) on the test set."""
    from sklearn.svm import SVC

    f_fit, f_val = hog_features(img_fit), hog_features(img_val)
    start = time.perf_counter()
    fitted = {c: SVC(C=c, kernel="rbf", gamma="scale").fit(f_fit, y_fit.numpy()) for c in RBF_CS}
    train_s = (time.perf_counter() - start) / len(RBF_CS)  # one fit's time
    val_err = {c: _error(svm.predict(f_val), y_val) for c, svm in fitted.items()}
    best = min(RBF_CS, key=lambda c: (val_err[c], c))
    pred, infer_s = _timed(lambda: fitted[best].predict(hog_features(img_test)))
    svm = fitted[best]
    params = int(svm.support_vectors_.size + svm.dual_coef_.size + svm.intercept_.size)
    return {"err": _error(pred, y_test), "train_s": train_s, "infer_s": infer_s, "params": params, "C": best,
            "val_err": {f"{c:g}": e for c, e in val_err.items()}, "support_vectors": int(len(svm.support_))}


def _rbf_split(ctx: Context, m: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The RBF SVM's validation images (``rbf_val``, class-balanced, a fixed draw) and its fitting images
    (``rbf_train`` of the rest, or all of them), both from the training split."""
    split = get_dataset(ctx.setup.data or "mnist", "train", root=ctx.data_root)
    if m["train"] is not None:
        split = subset(split, m["train"], seed=0)
    n = len(split.labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2024))
    val, rest = perm[: m["rbf_val"]], perm[m["rbf_val"]:]
    if m["rbf_train"] is not None:
        rest = rest[: m["rbf_train"]]
    images = split.images[:, 0]
    return images[rest], split.labels[rest], images[val], split.labels[val]


def lenet_inference(run_path: str, img_test: Tensor) -> tuple[Any, float]:
    """The run's last checkpoint, and the seconds it takes to classify ``img_test`` (padded and scaled as trained)."""
    from ..train.checkpoint import restore_model

    model, meta = restore_model(run_path, prefer="last")
    data = meta["data"]
    x = F.pad(img_test.unsqueeze(1).float() / 255.0, [data["pad"]] * 4)
    x = (x - data["mean"][0]) / data["std"][0]
    with torch.no_grad():
        _, seconds = _timed(lambda: torch.cat([model(b).argmax(1) for b in x.split(1000)]))
    return model, seconds


def analyse(ctx: Context) -> Analysis:
    m = MODES[ctx.mode]
    img_train, y_train = _split(ctx, "train", m["train"])
    img_test, y_test = _split(ctx, "test", m["test"])
    x_train, x_test = _pixels(img_train), _pixels(img_test)
    n_tr, n_te = len(y_train), len(y_test)
    if m["svm_train"] is not None and m["svm_train"] < n_tr:
        svm_split = subset(get_dataset(ctx.setup.data or "mnist", "train", root=ctx.data_root), m["svm_train"], seed=0)
        svm_imgs, svm_labels = svm_split.images[:, 0], svm_split.labels
    else:
        svm_imgs, svm_labels = img_train, y_train
    fit_imgs, fit_labels, val_imgs, val_labels = _rbf_split(ctx, m)
    tag = f"{ctx.setup.data}-{n_tr}-{n_te}"
    results: dict[str, list[dict[str, Any]]] = {
        "linear": [ctx.cached(f"linear-{tag}", lambda: linear_least_squares(x_train, y_train, x_test, y_test))],
        "knn": [ctx.cached(f"knn3-{tag}", lambda: knn(x_train, y_train, x_test, y_test))],
        "mlp300": [ctx.cached(f"mlp300-{tag}-e{m['mlp_epochs']}-s{s}",
                              lambda s=s: mlp(x_train, y_train, x_test, y_test, m["mlp_epochs"], seed=s))
                   for s in ctx.setup.seeds],
        "hog_svm": [ctx.cached(f"hog-svm-{ctx.setup.data}-{len(svm_labels)}-{n_te}",
                               lambda: hog_svm(svm_imgs, svm_labels, img_test, y_test))],
        "hog_rbf": [ctx.cached(f"hog-rbf-{ctx.setup.data}-{len(fit_labels)}-{len(val_labels)}-{n_te}",
                               lambda: hog_rbf(fit_imgs, fit_labels, val_imgs, val_labels, img_test, y_test))],
    }
    images = {"linear": n_tr, "knn": n_tr, "mlp300": n_tr, "hog_svm": len(svm_labels), "hog_rbf": len(fit_labels),
              "lenet5": n_tr}
    kernels = None
    results["lenet5"] = []
    for o in ctx.runs("lenet5"):
        if o.summary is None:
            continue
        model, infer_s = lenet_inference(str(o.planned.path), img_test)
        if kernels is None:
            kernels = model.c1.weight.detach()[:, 0].numpy()
        results["lenet5"].append({"err": 100 * (1 - o.summary["final_test_acc"]),
                                  "train_s": o.summary["train_seconds"], "infer_s": infer_s,
                                  "params": o.summary["params"]})
    paper = ctx.setup.data == "mnist"
    rows = [_row(name, results.get(name) or [], images[name], paper) for name in METHODS]
    claims = _claims(results, ctx.mode, paper)
    verdict, reason = decide(claims)
    findings = [c.line() for c in claims]
    findings += _findings(results, paper)
    findings += _explanations(rows) if paper else []
    ok = [r for r in rows if r.get("status") == "ok"]
    figures = [Figure("test_error.png", f"{ctx.setup.data} test error of each method (mean over the nets' seeds), "
                      "ours beside the paper's Fig. 9 (log scale); the HOG pipelines have no Fig. 9 entry.",
                      plots.paired_bars([r["method"] for r in ok], [r["_err"] for r in ok],
                                        [PAPER_ERR.get(r["key"]) if paper else None for r in ok],
                                        f"{ctx.setup.data} test error (%)"))]
    if kernels is not None:
        figures.append(Figure("kernels.png", "Top: LeNet-5's six learned C1 kernels (5x5, seed 0, last epoch). Bottom: "
                              "hand-designed edge detectors: Sobel x and y, and odd Gabor filters (5x5) at four "
                              "orientations. Red positive, blue negative, each on its own symmetric scale.",
                              plots.kernel_grid({"learned (LeNet-5 C1)": {f"C1 map {i}": k for i, k in
                                                                          enumerate(kernels)},
                                                 "designed by hand": edge_detectors()})))
    columns = ["method", "test err %", "seeds", "paper err % (Fig. 9)", "train images", "train s",
               "inference s (test set)", "learned / stored values"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures,
                    answer=_answer(results, paper))


def _errs(results: dict[str, list[dict[str, Any]]], key: str) -> list[float]:
    return [r["err"] for r in results.get(key) or []]


def _row(name: str, rs: list[dict[str, Any]], n_images: int, paper_shown: bool) -> dict[str, Any]:
    paper = PAPER_ERR.get(name) if paper_shown else None
    base = {"key": name, "method": METHODS[name], "paper err % (Fig. 9)": None if paper is None else f"{paper:.2f}"}
    if not rs:
        return {**base, "status": "failed"}
    err = spread([r["err"] for r in rs])
    return {
        **base,
        "test err %": err.describe(2),
        "_err": err.mean,
        "seeds": len(rs) if name in ("lenet5", "mlp300") else "-",
        "train images": f"{n_images:,}",
        "train s": round(statistics.fmean(r["train_s"] for r in rs), 1),
        "inference s (test set)": round(statistics.fmean(r["infer_s"] for r in rs), 3),
        "learned / stored values": f"{rs[0]['params']:,}",
        "status": "ok",
    }


def _claims(results: dict[str, list[dict[str, Any]]], mode: str, paper: bool) -> list[SubClaim]:
    """LeNet-5 below every pixel method, below both hand-crafted pipelines (each beyond seed noise: a one-sample
    t-test of LeNet-5's seeds against a deterministic method's error, a pooled one against the 2-layer net's seeds),
    and, on MNIST, at the paper's 0.95%."""
    lenet = _errs(results, "lenet5")
    if not lenet:
        return [SubClaim("LeNet-5 trains", "not testable here", "no LeNet-5 run finished")]
    claims = []
    for group, name in ((PIXELS, "LeNet-5 beats every classifier on raw pixels"),
                        (HANDCRAFTED, "LeNet-5 beats hand-crafted HOG features with an SVM")):
        parts, statuses = [], []
        for key in group:
            other = _errs(results, key)
            if not other:
                continue
            # the 2-layer net has seeds of its own (a pooled test); the others are deterministic (one-sample test)
            c = (compare(lenet, other, paired=False) if key == "mlp300"
                 else compare(lenet, [other[0]] * len(lenet), paired=True))
            statuses.append(judge(key, c, expect=-1, evidence="").status)
            parts.append(f"{SHORT[key]} {c.describe(digits=2)}")
        status = HOLDS if statuses and all(s == HOLDS for s in statuses) else (
            OPPOSITE if any(s == OPPOSITE for s in statuses) else "within noise")
        claims.append(SubClaim(name, status, "LeNet-5's error minus " + "; ".join(parts)))
    if paper:
        mean = statistics.fmean(lenet)
        ok = abs(mean - PAPER_ERR["lenet5"]) <= LENET_MARGIN * PAPER_ERR["lenet5"]
        claims.append(SubClaim("LeNet-5 reaches the paper's 0.95%", HOLDS if ok else OPPOSITE,
                               f"{spread(lenet).describe(2)}% over {len(lenet)} seed(s), against 0.95% (agreement "
                               f"means within {LENET_MARGIN:.0%} of it)"))
    return claims


def _findings(results: dict[str, list[dict[str, Any]]], paper: bool) -> list[str]:
    out = []
    lenet, rbf = _errs(results, "lenet5"), _errs(results, "hog_rbf")
    if lenet and rbf:
        c = (results["hog_rbf"][0] or {}).get("C")
        out.append(f"HOG + RBF SVM (C = {c:g}, chosen on validation images) reaches {rbf[0]:.2f}%: "
                   f"{rbf[0] / max(statistics.fmean(lenet), 0.01):.1f}x LeNet-5's error.")
    if paper:
        out.append("The paper's own best non-learned rows (Fig. 9): "
                   + "; ".join(f"{k} {v:.1f}%" for k, v in PAPER_BEST_NON_LEARNED.items())
                   + ". LeNet-5's 0.95% beat the plain kernel machines on pixels by about a tenth of a point, and the "
                   "virtual SVM trained with distortions (0.8%) beat it; with distortions LeNet-5 reached 0.8% too.")
    return out


def _answer(results: dict[str, list[dict[str, Any]]], paper: bool) -> str:
    """The first paragraph: how bold was learning from pixels, in the numbers of this run."""
    lenet, rbf, hog = _errs(results, "lenet5"), _errs(results, "hog_rbf"), _errs(results, "hog_svm")
    pixel = {k: statistics.fmean(_errs(results, k)) for k in PIXELS if _errs(results, k)}
    if not lenet:
        return "No LeNet-5 run finished, so this run cannot answer the question."
    le = statistics.fmean(lenet)
    best_pixel = min(pixel, key=pixel.get) if pixel else None
    text = (f"**Answer.** Letting the net learn its own features from pixels paid off clearly: LeNet-5 makes "
            f"{le:.2f}% test errors here, against {pixel[best_pixel]:.2f}% for the best classifier on raw pixels "
            f"({SHORT[best_pixel]}) " if best_pixel else f"**Answer.** LeNet-5 makes {le:.2f}% test errors here ")
    if rbf:
        text += (f"and {rbf[0]:.2f}% for hand-crafted HOG edge-orientation histograms with a well-tuned RBF-kernel "
                 f"SVM (linear SVM on HOG: {hog[0]:.2f}%). " if hog else f"and {rbf[0]:.2f}% for HOG with an RBF "
                 "SVM. ")
    if paper:
        text += ("But the margin in 1998 was small: in the paper's own table, tangent distance and a degree-4 "
                 "polynomial SVM on pixels reached 1.1%, against LeNet-5's 0.95%, and a virtual SVM trained with "
                 "distorted digits reached 0.8%. What made learning bold was less the accuracy on MNIST than that "
                 "one trained network replaced the hand-designed stage and kept improving with more data and "
                 "compute, while the kernel machines' cost grew with the square of the training set.")
    return text


_WHY = {
    "linear": "Linear classifier: the paper does not say how its weights were fitted. The fitting criterion moves a "
              "linear classifier's error by several points (least squares, ours, against softmax regression, which "
              "is usually reported near 8% on MNIST), so 12.0% is one fit among several.",
    "knn": "k-NN: exact Euclidean k-NN on MNIST's raw pixels is widely rerun at about 3% (1-NN 3.1%); Fig. 9's 5.0% "
           "is higher than what this data and distance give, and the paper does not say what made the difference.",
    "mlp300": "2-layer net: the paper's 784-300-10 net reached 4.7%; ours, the same size but trained with softmax "
              "cross-entropy, momentum and normalised inputs, does better, so this row measures the training recipe "
              "as much as the architecture.",
    "lenet5": "LeNet-5: trained with Adam on a one-cycle schedule instead of the paper's stochastic diagonal "
              "Levenberg-Marquardt",
}


def _explanations(rows: list[dict[str, Any]]) -> list[str]:
    """Why a Fig. 9 row of ours lies more than a point (30% below 2%) from the paper's."""
    def off(r: dict[str, Any]) -> bool:
        paper = PAPER_ERR.get(r["key"])
        return r.get("status") == "ok" and paper is not None and not within_margin(r["_err"], paper)

    return [_WHY[r["key"]] + ("." if r["key"] == "lenet5" else "") for r in rows if off(r) and r["key"] in _WHY]


def gabor(theta_deg: float, *, size: int = 5, sigma: float = 1.5, frequency: float = 0.2) -> np.ndarray:
    """The odd (sine-phase) Gabor filter, an oriented edge detector: exp(-(x^2 + y^2) / 2 sigma^2) sin(2 pi f x'),
    with x' the coordinate across edges at ``theta_deg`` (0: a vertical edge, like Sobel x), sampled on a
    ``size`` x ``size`` grid, LeNet-5's kernel size."""
    r = np.arange(size) - (size - 1) / 2
    y, x = np.meshgrid(r, r, indexing="ij")
    t = np.deg2rad(theta_deg)
    across = x * np.cos(t) + y * np.sin(t)
    return np.exp(-(x**2 + y**2) / (2 * sigma**2)) * np.sin(2 * np.pi * frequency * across)


def edge_detectors() -> dict[str, np.ndarray]:
    """Hand-designed kernels: Sobel x and y (3x3), and odd Gabor filters (5x5) at four orientations."""
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
    out = {"Sobel x (3x3)": sobel_x, "Sobel y (3x3)": sobel_x.T.copy()}
    for deg in (0, 45, 90, 135):
        out[f"Gabor {deg}°"] = gabor(deg)
    return out


EXPERIMENT = register(Experiment(
    name="handcrafted-vs-learned",
    question="Do features learned by a convolutional net beat classifiers on raw pixels and on hand-designed "
             "features?",
    claim="On MNIST, a linear classifier on the pixels has 12.0% test error, Euclidean k-NN 5.0%, a 2-layer net "
          "with 300 hidden units 4.7%, and LeNet-5, which learns its features, 0.95%; the best non-learned methods "
          "(tangent distance, SVM with a polynomial kernel) reach 1.1%.",
    source="LeCun et al., Proc. IEEE 1998, §III-C, Fig. 9",
    # the committed standard report (2026-12-07): 2,347 s wall, 3,034 s CPU, beside other engineers' niced tests
    measured={"standard": Measured(39, AVX2_EPYC, "beside niced test runs; 51 CPU-min")},
    full_cost="LeNet-5's 20 epochs x 5 seeds and the baselines (RBF SVM on all 55,000 images) on a CPU: about an hour",
    setup=setup,
    analyse=analyse,
    datasets=("mnist", "fashion-mnist", "kmnist"),
))
