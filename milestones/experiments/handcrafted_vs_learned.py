"""``handcrafted-vs-learned``: do features learned by a convolutional net beat classifiers on raw pixels and on
hand-designed features?

LeCun et al. 1998 (Proc. IEEE), §III-C and Fig. 9 compare many classifiers on the same MNIST split (60,000 training,
10,000 test images). The four we rerun: a linear classifier on the pixels (12.0% test error), k-nearest neighbours
with Euclidean distance (5.0%), a fully connected net with one hidden layer of 300 units (4.7%) and LeNet-5 (0.95%).
To these we add the hand-crafted-feature pipeline that a 2005 vision system would have used: HOG features (Dalal &
Triggs 2005, ``skimage.feature.hog``) and a linear SVM (``sklearn.svm.LinearSVC``).

LeNet-5 trains through the framework (``lenet5`` with its ``mnist_lenet5`` recipe); the others run in ``analyse``,
each cached, on the same images: pixels scaled to [0, 1] (HOG reads the uint8 image). For every method we measure
the test error, training time, inference time over the test set and the number of learned (or stored) values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..data import get_dataset, subset
from . import plots
from .base import Analysis, Context, Experiment, Figure, RunSpec, Setup, register

PAPER_ERR = {"linear": 12.0, "knn": 5.0, "mlp300": 4.7, "lenet5": 0.95}  # Fig. 9, MNIST test error %
METHODS = {
    "linear": "linear classifier on pixels (least squares)",
    "knn": "k-NN, Euclidean, k=3, on pixels",
    "mlp300": "2-layer net, 300 hidden units (torch MLP)",
    "hog_svm": "HOG features + linear SVM",
    "lenet5": "LeNet-5 (learned convolutional features)",
}
SHORT = {"linear": "linear", "knn": "k-NN", "mlp300": "2-layer net", "hog_svm": "HOG + SVM", "lenet5": "LeNet-5"}
HOG = {"orientations": 9, "pixels_per_cell": (7, 7), "cells_per_block": (2, 2)}  # 28x28 -> 3x3 blocks: 324 values
MLP = {"hidden": 300, "lr": 0.01, "momentum": 0.9, "batch_size": 128}

MODES: dict[str, dict[str, Any]] = {
    "quick": {"lenet": {"train.epochs": 5}, "train": None, "test": None, "svm_train": 20_000, "mlp_epochs": 10},
    "full": {"lenet": {}, "train": None, "test": None, "svm_train": None, "mlp_epochs": 30},
    "smoke": {"lenet": {"train.epochs": 1, "data.train_subset": 512, "data.test_subset": 200},
              "train": 512, "test": 200, "svm_train": None, "mlp_epochs": 1},
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
        "Times are wall-clock seconds on the machine below, single process; a shared machine makes them noisy. "
        "Inference is over the whole test set.",
    ]
    if mode == "quick":
        notes += ["**Shrunk:** LeNet-5 trains 5 epochs instead of 20 (the one-cycle schedule compressed to 5); the "
                  "HOG + SVM pipeline trains on a class-balanced 20,000-image subset of the training set; the "
                  "2-layer net trains 10 epochs. Everything else uses all 60,000 training and 10,000 test images."]
    elif mode == "smoke":
        notes += ["Smoke test: 512 training and 200 test images, one epoch; the numbers mean nothing."]
    else:
        notes += ["LeNet-5's full 20-epoch recipe; every method on all 60,000 training images; the 2-layer net "
                  "trains 30 epochs."]
    return Setup(runs=runs, data="mnist", notes=notes)


def _split(ctx: Context, which: str, n: int | None) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 28, 28) and labels, the same stratified subset the training loop takes (seed 0)."""
    split = get_dataset("mnist", which, root=ctx.data_root)
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


def mlp(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, epochs: int) -> dict[str, Any]:
    """784-300-10 with tanh hidden units, softmax cross-entropy, plain SGD with momentum."""
    torch.manual_seed(0)
    mean, std = x_train.mean(), x_train.std()
    net = torch.nn.Sequential(torch.nn.Linear(784, MLP["hidden"]), torch.nn.Tanh(), torch.nn.Linear(MLP["hidden"], 10))
    opt = torch.optim.SGD(net.parameters(), lr=MLP["lr"], momentum=MLP["momentum"])
    xs = (x_train - mean) / std

    def train() -> None:
        g = torch.Generator().manual_seed(0)
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


def lenet_inference(run_path: str, img_test: Tensor) -> tuple[Any, float]:
    """The run's best checkpoint, and the seconds it takes to classify ``img_test`` (padded and scaled as trained)."""
    from ..train.checkpoint import restore_model

    model, meta = restore_model(run_path, prefer="best")
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
        svm_split = get_dataset("mnist", "train", root=ctx.data_root)
        svm_split = subset(svm_split, m["svm_train"], seed=0)
        svm_imgs, svm_labels = svm_split.images[:, 0], svm_split.labels
    else:
        svm_imgs, svm_labels = img_train, y_train
    results: dict[str, dict[str, Any]] = {
        "linear": ctx.cached(f"linear-{n_tr}-{n_te}", lambda: linear_least_squares(x_train, y_train, x_test, y_test)),
        "knn": ctx.cached(f"knn3-{n_tr}-{n_te}", lambda: knn(x_train, y_train, x_test, y_test)),
        "mlp300": ctx.cached(f"mlp300-{n_tr}-{n_te}-e{m['mlp_epochs']}",
                             lambda: mlp(x_train, y_train, x_test, y_test, m["mlp_epochs"])),
        "hog_svm": ctx.cached(f"hog-svm-{len(svm_labels)}-{n_te}",
                              lambda: hog_svm(svm_imgs, svm_labels, img_test, y_test)),
    }
    for r, n in ((results["linear"], n_tr), (results["knn"], n_tr), (results["mlp300"], n_tr),
                 (results["hog_svm"], len(svm_labels))):
        r["train_images"] = n
    kernels = None
    for o in ctx.runs("lenet5"):
        if o.summary is None:
            continue
        model, infer_s = lenet_inference(str(o.planned.path), img_test)
        kernels = model.c1.weight.detach()[:, 0].numpy()
        results["lenet5"] = {"err": round(100 * (1 - o.summary["final_test_acc"]), 2),
                             "train_s": o.summary["train_seconds"], "infer_s": infer_s,
                             "params": o.summary["params"], "train_images": n_tr}
    rows = [_row(name, results.get(name)) for name in METHODS]
    verdict, reason, findings = _verdict(rows, ctx.mode)
    findings += _explanations(rows, ctx.mode)
    ok = [r for r in rows if r.get("status") == "ok"]
    figures = [Figure("test_error.png", "MNIST test error of each method, ours beside the paper's Fig. 9 (log "
                      "scale); HOG + SVM has no Fig. 9 entry.",
                      plots.paired_bars([r["method"] for r in ok], [float(r["test err %"]) for r in ok],
                                        [PAPER_ERR.get(r["key"]) for r in ok], "MNIST test error (%)"))]
    if kernels is not None:
        figures.append(Figure("kernels.png", "Top: LeNet-5's six learned C1 kernels (5x5, best checkpoint). Bottom: "
                              "hand-designed edge detectors: Sobel x and y, and odd Gabor filters (5x5) at four "
                              "orientations. Red positive, blue negative, each on its own symmetric scale.",
                              plots.kernel_grid({"learned (LeNet-5 C1)": {f"C1 map {i}": k for i, k in
                                                                          enumerate(kernels)},
                                                 "designed by hand": edge_detectors()})))
    columns = ["method", "test err %", "paper err % (Fig. 9)", "within margin", "train images", "train s",
               "inference s (test set)", "learned / stored values"]
    return Analysis(rows=rows, verdict=verdict, reason=reason, columns=columns, findings=findings, figures=figures)


def _row(name: str, r: dict[str, Any] | None) -> dict[str, Any]:
    paper = PAPER_ERR.get(name)
    if r is None:
        return {"key": name, "method": METHODS[name], "paper err % (Fig. 9)": None if paper is None else f"{paper:.2f}",
                "status": "failed"}
    return {
        "key": name,
        "method": METHODS[name],
        "test err %": f"{r['err']:.2f}",
        "paper err % (Fig. 9)": None if paper is None else f"{paper:.2f}",
        "within margin": None if paper is None else ("yes" if within_margin(r["err"], paper) else "no"),
        "train images": f"{r['train_images']:,}",
        "train s": round(r["train_s"], 1),
        "inference s (test set)": round(r["infer_s"], 3),
        "learned / stored values": f"{r['params']:,}",
        "status": "ok",
    }


def _verdict(rows: list[dict[str, Any]], mode: str) -> tuple[str, str, list[str]]:
    """Reproduced: every Fig. 9 row within the margin and LeNet-5 strictly the lowest error of all methods (HOG + SVM
    included). Partly reproduced: one of the two holds. Not reproduced: neither. Not testable: a row is missing."""
    ok = {r["key"]: r for r in rows if r.get("status") == "ok"}
    missing = [SHORT[k] for k in PAPER_ERR if k not in ok]
    if missing:
        return "not testable here", f"no result for {', '.join(missing)}", []
    err = {k: float(r["test err %"]) for k, r in ok.items()}
    off = [k for k in PAPER_ERR if not within_margin(err[k], PAPER_ERR[k])]
    lowest = all(err["lenet5"] < e for k, e in err.items() if k != "lenet5")
    best = min(err, key=err.get)
    findings = [f"Lowest test error: {SHORT[best]} ({err[best]:.2f}%)."]
    if "hog_svm" in err:
        pixels = ("linear", "knn", "mlp300")
        better = [SHORT[k] for k in pixels if err["hog_svm"] < err[k]]
        worse = [SHORT[k] for k in pixels if err["hog_svm"] >= err[k]]
        beats = ("beats all three" if not worse else "beats none" if not better else
                 f"beats {' and '.join(better)} but not {' or '.join(worse)}")
        findings.append(f"Hand-crafted features: HOG + linear SVM reaches {err['hog_svm']:.2f}%; of the methods on "
                        f"raw pixels it {beats}. LeNet-5's error ({err['lenet5']:.2f}%) is "
                        f"{err['hog_svm'] / max(err['lenet5'], 0.01):.1f}x lower.")
    shrunk = " (in this shortened run)" if mode != "full" else ""
    margin = "of 1 point (30% of the paper's value for errors below 2%)"
    outside = "; ".join(f"{SHORT[k]} {err[k]:.2f}% vs {PAPER_ERR[k]:.2f}%" for k in off)
    ranking = (f"LeNet-5 has the lowest error of all methods, hand-crafted features included{shrunk}" if lowest
               else f"LeNet-5 is not the best method{shrunk} ({METHODS[best]} is)")
    if not off and lowest:
        return "reproduced", f"every Fig. 9 row is within the margin {margin}, and {ranking}.", findings
    if lowest:
        return "partly reproduced", f"{ranking}, but these rows fall outside the margin {margin}: {outside}.", findings
    if not off:
        return "partly reproduced", f"every Fig. 9 row is within the margin {margin}, but {ranking}.", findings
    return "not reproduced", f"{ranking}, and these rows fall outside the margin {margin}: {outside}.", findings


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


def _explanations(rows: list[dict[str, Any]], mode: str) -> list[str]:
    out = [_WHY[r["key"]] for r in rows if r.get("within margin") == "no" and r["key"] in _WHY]
    return [w + (", and for 5 of the recipe's 20 epochs in quick mode." if mode == "quick" else ".")
            if w.startswith("LeNet-5") else w for w in out]


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
          "with 300 hidden units 4.7%, and LeNet-5, which learns its features, 0.95%.",
    source="LeCun et al., Proc. IEEE 1998, §III-C, Fig. 9",
    quick_minutes=1,  # measured alone on the 2-core AMD EPYC, 2 torch threads
    full_cost="LeNet-5's 20 epochs and the baselines on all 60,000 images: about 10 minutes on a CPU",
    setup=setup,
    analyse=analyse,
))
