"""``milestones serve``: the drawing's preprocessing against the training data's format, the JSON API's answers
against the models computed here, its limits and errors (the server stays up), and the command itself.

Servers are started and stopped by the tests, on free ports of 127.0.0.1."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch
from parity import assert_logits_close
from PIL import Image, ImageDraw
from torch.nn import functional as F

from milestones.models import create_model
from milestones.serve import create_app, is_loopback, load_runs, start_in_thread
from milestones.serve.runs import MIN_INK_EXTENT, digits_format, mnist_format
from milestones.train.checkpoint import save_checkpoint
from milestones.viz import grad_cam, overlay

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_DATA = {"name": "cifar10", "full_name": "cifar10", "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26],
              "in_chans": 3, "img_size": [32, 32], "pad": 0, "input_size": [3, 32, 32]}
DIGITS_DATA = {"name": "digits", "full_name": "digits", "classes": list("0123456789"), "mean": [0.0784314],
               "std": [0.7843137], "in_chans": 1, "img_size": [32, 32], "pad": 0, "input_size": [1, 32, 32]}
MAX_BODY, MAX_PIXELS = 300_000, 1_000_000
APP_JS = Path(__file__).resolve().parents[1] / "milestones" / "serve" / "static" / "app.js"


def make_run(folder: Path, model_name: str, data: dict, **kwargs) -> Path:
    """A run directory holding a randomly initialised checkpoint of ``model_name`` for ``data``."""
    torch.manual_seed(0)
    model = create_model(model_name, **kwargs)
    (folder / "checkpoints").mkdir(parents=True)
    save_checkpoint(folder / "checkpoints" / "best", model, {"model": model_name, "model_kwargs": kwargs, "data": data})
    return folder


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-runs")
    make_run(root / "digits-lenet", "lenet5", DIGITS_DATA)
    make_run(root / "digits-modern", "lenet5_modern", DIGITS_DATA)
    make_run(root / "cifar-resnet", "resnet20", {**CIFAR_DATA, "classes": CIFAR_CLASSES}, num_classes=10)
    make_run(root / "cifar-vit", "vit_ti16", {**CIFAR_DATA, "classes": CIFAR_CLASSES},
             img_size=32, patch_size=8, depth=2, num_classes=10)
    return root


@pytest.fixture(scope="module")
def server(runs_root: Path, tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("serve-cwd")
    old = os.getcwd()
    os.chdir(cwd)  # any file a request wrote relative to the working directory would land here
    runs = load_runs([runs_root / name for name in ("digits-lenet", "digits-modern", "cifar-resnet", "cifar-vit")])
    url, stop = start_in_thread(create_app(runs, max_body=MAX_BODY, max_pixels=MAX_PIXELS))
    try:
        yield {"url": url, "runs": {r.id: r for r in runs}, "cwd": cwd}
    finally:
        stop()
        os.chdir(old)


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            chunked: bool = False) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        if chunked:
            conn.putrequest(method, path)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        assert res.getheader("content-type", "").startswith("application/json"), res.getheader("content-type")
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def drawn_one() -> Image.Image:
    img = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(img).line([(150, 40), (130, 240)], fill=255, width=18)
    return img


def maps_of(payload: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(payload["data"]), np.uint8).reshape(payload["shape"])


def test_mnist_format_boxes_20_pixels_and_centres_the_mass() -> None:
    """MNIST's recipe (LeCun et al.): the digit's box fits 20x20, its centre of mass is at the field's centre."""
    img = Image.new("L", (300, 200), 255)  # dark ink on light paper, off-centre and wide
    ImageDraw.Draw(img).rectangle([20, 30, 120, 80], fill=0)
    ImageDraw.Draw(img).rectangle([20, 30, 40, 170], fill=0)
    out = mnist_format(img).astype(np.float64)
    ys, xs = np.nonzero(out > 32)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 in (20, 21)  # antialiased edges may add one
    mass = out / out.sum()
    cy, cx = (mass * np.arange(28)[:, None]).sum(), (mass * np.arange(28)[None]).sum()
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5


def test_digits_format_is_the_loaders_pipeline() -> None:
    """A 32x32 bitmap that already fills its box comes out exactly as the digits loader makes a sample from the 8x8
    counts of that bitmap (counted here with numpy, upsampled as milestones.data.sources does)."""
    bitmap = np.zeros((32, 32), np.uint8)
    bitmap[:, 10:22] = 255
    bitmap[5:27, 13:19] = 0
    ours = digits_format(Image.fromarray(bitmap))
    counts = (bitmap > 127).reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.float32)  # 0..16 as in load_digits
    x = torch.from_numpy(counts)[None, None].mul(255 / 16)
    ref = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_array_equal(ours, ref.round().clamp(0, 255).to(torch.uint8)[0, 0].numpy())


def test_runs_are_listed_with_limits(server: dict) -> None:
    status, body = request(server["url"], "GET", "/api/runs")
    assert status == 200
    by_id = {r["id"]: r for r in body["runs"]}
    assert by_id["digits-lenet"]["drawable"] and not by_id["cifar-resnet"]["drawable"]
    assert by_id["digits-lenet"]["output"] == "distances" and by_id["digits-modern"]["output"] == "probabilities"
    assert by_id["cifar-resnet"]["classes"] == CIFAR_CLASSES
    assert body["limits"] == {"max_body_bytes": MAX_BODY, "max_pixels": MAX_PIXELS,
                              "types": ["image/jpeg", "image/png"]}


@pytest.mark.parametrize("rid", ["digits-lenet", "digits-modern"])
def test_draw_answers_with_the_models_scores_and_feature_maps(server: dict, rid: str) -> None:
    """The scores and the C1/C3 maps are those of the run's model on the digits-format input, recomputed here: the
    paper's LeNet-5 answers with its RBF layer's ten squared distances (and no probabilities, which a softmax over
    distances would put at ~100% for any drawing), the modern form with softmax probabilities."""
    status, body = request(server["url"], "POST", f"/api/runs/{rid}/draw", png(drawn_one()),
                           {"Content-Type": "image/png"})
    assert status == 200, body
    run = server["runs"][rid]
    pixels = torch.from_numpy(digits_format(drawn_one()))
    np.testing.assert_array_equal(maps_of(body["input"]), pixels.numpy())
    x = (pixels.double()[None, None] / 255 - run.data["mean"][0]) / run.data["std"][0]
    model = run.model.double()
    try:
        with torch.no_grad():
            c1 = model.c1(x)
            c3 = model.c3(model.s2(model.act(c1)))
            logits = model(x)
            f6 = model.forward_features(x)[0]
            prototypes = getattr(model.head, "prototypes", None)
    finally:
        run.model.float()
    assert_logits_close(torch.tensor(body["logits"], dtype=torch.float64), logits[0], rel=1e-4)
    assert body["prediction"] == str(int(logits.argmax()))
    if rid == "digits-lenet":
        distances = (f6[None] - prototypes).pow(2).sum(1)  # the paper's y_i = sum_j (x_j - w_ij)^2
        assert body["output"] == "distances" and "probs" not in body
        assert_logits_close(torch.tensor(body["distances"], dtype=torch.float64), distances, rel=1e-4)
        assert body["prediction"] == str(int(distances.argmin()))
    else:
        assert body["output"] == "probabilities" and "distances" not in body
        assert sum(body["probs"]) == pytest.approx(1.0, rel=1e-5)
    for name, ref in (("c1", c1[0]), ("c3", c3[0])):
        got = maps_of(body["features"][name]).astype(np.float64)
        lo, hi = ref.amin((1, 2), keepdim=True), ref.amax((1, 2), keepdim=True)
        expect = ((ref - lo) / (hi - lo) * 255).numpy()
        assert got.shape == expect.shape == ((6, 28, 28) if name == "c1" else (16, 10, 10))
        assert np.abs(got - expect).max() <= 1.0  # one grey level: the float32 model's rounding


def photo_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def overlay_pixels(answer: dict) -> np.ndarray:
    head, data = answer["overlay"].split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def test_predict_gives_top5_of_the_model_and_a_grad_cam_overlay(server: dict) -> None:
    """Top-5 and probabilities recomputed in float64; the overlay is viz's Grad-CAM of the top class over the
    image, and it is not the plain image."""
    status, body = request(server["url"], "POST", "/api/runs/cifar-resnet/predict", photo_jpeg(),
                           {"Content-Type": "image/jpeg"})
    assert status == 200, body
    run = server["runs"]["cifar-resnet"]
    buf = io.BytesIO(photo_jpeg())
    decoded = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").resize((32, 32), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(decoded).transpose(2, 0, 1).copy()).double()[None] / 255
    x = (x - torch.tensor(run.data["mean"]).view(1, 3, 1, 1)) / torch.tensor(run.data["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = run.model.double()(x).softmax(1)[0]
    run.model.float()
    top = probs.topk(5)
    assert [t["class"] for t in body["top"]] == [CIFAR_CLASSES[i] for i in top.indices.tolist()]
    assert_logits_close(torch.tensor([t["prob"] for t in body["top"]], dtype=torch.float64), top.values, rel=1e-4)
    cam = grad_cam(run.model, x[0].float(), target_class=int(top.indices[0]))
    assert body["method"] == f"Grad-CAM ({cam.layer})"
    shown = overlay_pixels(body).astype(np.int64)
    plain = F.interpolate(torch.from_numpy(np.asarray(decoded).transpose(2, 0, 1).copy())[None].float(),
                          size=(224, 224), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy() / 255
    expect = overlay(plain.clip(0, 1), cam.coarse).astype(np.int64)
    assert shown.shape == (224, 224, 3) and np.abs(shown - expect).max() <= 2  # float32 vs float64 input, rounding
    assert np.abs(shown - (plain * 255).round()).mean() > 20


def test_predict_on_the_papers_lenet5_gives_the_closest_prototypes_not_probabilities(server: dict) -> None:
    """An upload to the paper's LeNet-5: the five smallest RBF distances, ascending, and no "prob" to read as 100%."""
    status, body = request(server["url"], "POST", "/api/runs/digits-lenet/predict", png(drawn_one()),
                           {"Content-Type": "image/png"})
    assert status == 200, body
    assert body["output"] == "distances" and len(body["top"]) == 5
    assert all(set(t) == {"class", "distance"} for t in body["top"])
    got = [t["distance"] for t in body["top"]]
    assert got == sorted(got) and got[0] >= 0
    _, draw = request(server["url"], "POST", "/api/runs/digits-lenet/draw", png(drawn_one()),
                      {"Content-Type": "image/png"})
    assert body["top"][0]["class"] == draw["prediction"]
    assert got == pytest.approx(sorted(draw["distances"])[:5], rel=1e-5)


def dot(side: int, extent: int) -> Image.Image:
    """A black pad with one square of ink ``extent`` pixels wide at its centre."""
    img = Image.new("L", (side, side), 0)
    lo = (side - extent) // 2
    ImageDraw.Draw(img).rectangle([lo, lo, lo + extent - 1, lo + extent - 1], fill=255)
    return img


INK = [("pen dot", dot(280, 18), "draw a larger digit"),
       ("one under the limit", dot(280, int(np.ceil(MIN_INK_EXTENT * 280)) - 1), "at least 35 pixels"),
       ("empty pad", Image.new("L", (280, 280), 0), "nothing drawn"),
       ("blank paper", Image.new("L", (280, 280), 255), "nothing drawn")]


@pytest.mark.parametrize("case", INK, ids=[c[0] for c in INK])
@pytest.mark.parametrize("rid", ["digits-lenet", "digits-modern"])
def test_draw_refuses_too_little_ink_instead_of_naming_a_class(server: dict, rid: str, case: tuple) -> None:
    """A dot or an empty pad would be scaled up to a full-size blob and read as a class with full confidence: the
    API answers 422 ``too_little_ink`` saying how large to draw. At the limit (an eighth of the side) it reads."""
    _, img, words = case
    status, answer = request(server["url"], "POST", f"/api/runs/{rid}/draw", png(img), {"Content-Type": "image/png"})
    assert status == 422 and answer["code"] == "too_little_ink" and set(answer) == {"error", "code"}, answer
    assert words in answer["error"]
    status, answer = request(server["url"], "POST", f"/api/runs/{rid}/draw", png(dot(280, 35)),
                             {"Content-Type": "image/png"})
    assert status == 200 and "prediction" in answer


def test_predict_on_a_vit_overlays_attention_rollout(server: dict) -> None:
    status, body = request(server["url"], "POST", "/api/runs/cifar-vit/predict", photo_jpeg(),
                           {"Content-Type": "image/jpeg"})
    assert status == 200, body
    assert body["method"] == "attention rollout" and len(body["top"]) == 5
    assert overlay_pixels(body).shape == (224, 224, 3)


PNG, PREDICT = {"Content-Type": "image/png"}, "/api/runs/cifar-resnet/predict"
BAD = [
    ("text", PREDICT, b"hello", {"Content-Type": "text/plain"}, 415, "content type", "unsupported_type"),
    ("no type", PREDICT, b"hello", {}, 415, "content type", "unsupported_type"),
    ("not png", PREDICT, b"GIF89a not a png", PNG, 400, "not a PNG", "unreadable_image"),
    ("empty", PREDICT, b"", PNG, 400, "empty", "empty_body"),
    ("truncated", PREDICT, None, PNG, 400, "corrupt or truncated", "unreadable_image"),
    ("body", PREDICT, b"\0" * (MAX_BODY + 1), PNG, 413, "limit", "too_large"),
    ("pixels", PREDICT, "big", PNG, 413, "pixels", "too_large"),
    ("run", "/api/runs/nope/predict", b"x", PNG, 404, "no run 'nope'", "unknown_run"),
    ("route", "/api/nothing", b"x", PNG, 404, "no such API route", "no_route"),
    ("not drawable", "/api/runs/cifar-resnet/draw", b"x", PNG, 400, "not a LeNet-5", "not_drawable"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_requests_get_a_4xx_and_one_line_and_the_server_stays_up(server: dict, case: tuple) -> None:
    """Each error is one line for a developer and a stable ``code`` for a program (the page words it from that)."""
    _, path, body, headers, want, words, code = case
    if body is None:
        body = png(drawn_one())[:200]
    elif body == "big":  # 1,200x1,000 = 1.2 M pixels, a few KB of PNG: refused on the header, never decoded
        body = png(Image.new("L", (1200, 1000), 0))
        assert len(body) < MAX_BODY
    status, answer = request(server["url"], "POST", path, body, headers)
    assert status == want and sorted(answer) == ["code", "error"] and answer["code"] == code, answer
    assert words in answer["error"] and "\n" not in answer["error"]
    assert request(server["url"], "GET", "/api/runs")[0] == 200


def test_the_page_words_every_upload_and_drawing_error_for_a_person() -> None:
    """The page turns each code an upload or a drawing can get into its own sentence (app.js's PHRASES), rather than
    showing the API's line ("the body is not a PNG image; send the file's bytes with its own content type")."""
    page = APP_JS.read_text()
    phrases = page[page.index("const PHRASES = {"):page.index("};", page.index("const PHRASES = {"))]
    for code in {c[-1] for c in BAD if c[0] != "route"} | {"too_little_ink"}:
        assert f"  {code}: () =>" in phrases, code


def test_chunked_body_over_the_limit_is_refused_as_it_arrives(server: dict) -> None:
    status, answer = request(server["url"], "POST", "/api/runs/cifar-resnet/predict", b"\0" * (3 * MAX_BODY),
                             {"Content-Type": "image/png"}, chunked=True)
    assert status == 413 and "limit" in answer["error"]


def test_wrong_method_is_405_json(server: dict) -> None:
    status, answer = request(server["url"], "GET", "/api/runs/digits-lenet/draw")
    assert status == 405 and "not allowed" in answer["error"]


def test_requests_write_no_files(server: dict, runs_root: Path) -> None:
    """After all the requests above (pytest runs this file in order), the run folders are as they were made and
    the server's working directory is empty."""
    status, _ = request(server["url"], "POST", "/api/runs/digits-lenet/draw", png(drawn_one()),
                        {"Content-Type": "image/png"})
    assert status == 200
    assert sorted(p.name for p in runs_root.rglob("*") if p.is_file()) == sorted(
        ["best.json", "best.safetensors"] * 4)
    assert list(server["cwd"].iterdir()) == []


def test_loopback_check() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_serve_command_binds_loopback_and_says_how_to_make_a_run(tmp_path: Path) -> None:
    """The command, with no run given and no demo run: prints the make-demo hint and the URL on 127.0.0.1, serves
    an empty run list, and stops on SIGTERM."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "milestones.cli", "serve", "--port", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving on"):
                break
        assert any("make demo" in s for s in lines), lines
        url = lines[-1].split()[2]
        assert url.startswith("http://127.0.0.1:")
        status, body = request(url, "GET", "/api/runs")
        assert status == 200 and body["runs"] == []
    finally:
        proc.terminate()
        assert proc.wait(20) in (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal it caught
