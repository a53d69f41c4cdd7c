"""Batched augmentations: properties checked by brute force, and the policy operations against torchvision's kernels.

Independent references: loops over pixels (cutout squares, crop windows), torch's own padding, closed forms of mixup
and cutmix, ``F.cross_entropy`` with probability targets and ``label_smoothing``, and torchvision's
``transforms.v2.functional`` kernels applied image by image with the parameters torchvision's TrivialAugmentWide and
RandAugment use.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from milestones.config import DataConfig
from milestones.data import BatchAugment, DataSpec, ImageSplit, TensorLoader
from milestones.data import augment as A
from milestones.errors import ConfigError


def _images(b: int = 8, c: int = 3, h: int = 12, w: int = 10, seed: int = 0, low: int = 0) -> torch.Tensor:
    return torch.randint(low, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _split(n: int = 40, h: int = 12, w: int = 10) -> ImageSplit:
    """``n`` random images without zero pixels, labelled by their index (so a batch's labels say where it came from)."""
    spec = DataSpec("ids", n, 3, (h, w), (0.5,) * 3, (0.25,) * 3, tuple(map(str, range(n))))
    return ImageSplit(_images(n, h=h, w=w, low=1), torch.arange(n), spec)


def _epoch(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(iter(loader))


def _loader(split: ImageSplit, *, batch_size: int, train: bool, seed: int = 0, normalise: bool = True,
            **options) -> TensorLoader:
    """A TensorLoader whose BatchAugment takes ``options`` (``normalise=False``: batches are ``x / 255``)."""
    augment = BatchAugment.for_spec(split.spec, normalise=normalise, **options)
    return TensorLoader(split, batch_size=batch_size, train=train, seed=seed, augment=augment)


# ---------------------------------------------------------------- crop, flip, cutout


def test_crop_is_a_window_of_the_padded_image_and_flip_mirrors_it() -> None:
    x = _images(16, h=7, w=9)
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 7, (2, 16), generator=g)
    mask = torch.rand(16, generator=g) < 0.5
    for mode in ("reflect", "constant"):
        out = A.crop(x, dy, dx, 3, mode=mode, flip=mask)
        padded = F.pad(x.float(), (3,) * 4, mode=mode).to(torch.uint8)  # torch's own padding
        for b in range(16):
            window = padded[b, :, dy[b] : dy[b] + 7, dx[b] : dx[b] + 9]
            assert torch.equal(out[b], window.flip(2) if mask[b] else window)
    assert torch.equal(A.flip(x, mask), torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x))
    assert torch.equal(A.crop(x, torch.full((16,), 3), torch.full((16,), 3), 3), x)  # offset = padding: identity


def _square(h: int, w: int, cy: int, cx: int, size: int) -> torch.Tensor:
    """Reference mask by loops: pixels within ``size // 2`` before and ``size - size // 2`` after the centre."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for i in range(h):
        for j in range(w):
            mask[i, j] = cy - size // 2 <= i < cy - size // 2 + size and cx - size // 2 <= j < cx - size // 2 + size
    return mask


@pytest.mark.parametrize("size", [1, 4, 5, 16])
def test_cutout_zeroes_exactly_a_clipped_square(size: int) -> None:
    h, w = 12, 10
    centres = [(0, 0), (11, 9), (6, 5), (2, 8), (11, 0), (5, 1)]
    x = _images(len(centres), h=h, w=w, low=1)  # no zero pixels before the cut
    cy, cx = torch.tensor([c[0] for c in centres]), torch.tensor([c[1] for c in centres])
    out = A.cutout(x, cy, cx, size)
    for b, (i, j) in enumerate(centres):
        mask = _square(h, w, i, j, size)
        assert torch.equal(out[b] == 0, mask.expand(3, h, w))  # zero exactly on the square
        assert torch.equal(out[b][:, ~mask], x[b][:, ~mask])  # untouched elsewhere
        rows = min(i - size // 2 + size, h) - max(i - size // 2, 0)
        cols = min(j - size // 2 + size, w) - max(j - size // 2, 0)
        assert int(mask.sum()) == rows * cols  # the square, clipped at the borders
    inside = A.cutout(x, torch.tensor([6] * 6), torch.tensor([5] * 6), 4)
    assert ((inside == 0).flatten(1).sum(1) == 3 * 16).all()  # fully inside: exactly size x size
    assert torch.equal(A.cutout(x.float(), cy, cx, size, value=-1.5) == -1.5, out == 0)  # floats, any fill


def test_random_cutout_is_seeded_and_anywhere() -> None:
    x = _images(400, h=12, w=10, low=1)
    a = A.random_cutout(x, 6, torch.Generator().manual_seed(1))
    assert torch.equal(a, A.random_cutout(x, 6, torch.Generator().manual_seed(1)))
    zeros = (a == 0).all(1)  # (B, H, W) pixels cut in every channel
    counts = zeros.flatten(1).sum(1)
    assert ((counts > 0) & (counts <= 36)).all()
    assert (counts == 36).any() and (counts < 36).any()  # inside sometimes, clipped sometimes (centre anywhere)
    assert zeros[:, 0, 0].any() and zeros[:, -1, -1].any()  # every corner can be reached


def test_loader_cutout_cuts_one_square_in_normalised_space() -> None:
    split = _split()
    raw = _epoch(_loader(split, batch_size=40, train=True, cutout=4, seed=3, normalise=False))
    x, y = raw[0]
    original = split.images[y].float() / 255
    changed = ((x - original).abs() > 1e-6).any(1)  # (B, H, W)
    assert torch.equal(changed, (x == 0).all(1))  # every changed pixel is zero in every channel
    for b in range(len(x)):
        rows, cols = changed[b].any(1).nonzero(), changed[b].any(0).nonzero()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert int(changed[b].sum()) == len(rows) * len(cols)  # a (clipped) rectangle of the square
    normed, _ = _epoch(_loader(split, batch_size=40, train=True, cutout=4, seed=3))[0]
    assert torch.equal(normed == 0, x == 0)  # 0 after normalising: the mean colour, as DeVries & Taylor cut
    eval_x, _ = _epoch(_loader(split, batch_size=40, train=False, cutout=4, normalise=False))[0]
    assert torch.allclose(eval_x, split.images.float() / 255)  # no augmentation at eval


def test_new_options_leave_the_old_draws_alone() -> None:
    """Cutout and TrivialAugment draw after order, crop and flip, so enabling them changes nothing else."""
    split = _split()
    base = dict(batch_size=8, train=True, flip=True, crop_padding=2, seed=5, normalise=False)
    plain = _epoch(_loader(split, **base))
    cut = _epoch(_loader(split, cutout=3, **base))
    for (xp, yp), (xc, yc) in zip(plain, cut, strict=True):
        assert torch.equal(yp, yc)
        same = (xp == xc).all(1)
        assert (same | (xc == 0).all(1)).all() and same.flatten(1).sum(1).min() >= 12 * 10 - 9


@pytest.mark.parametrize("stop", [0, 3])
def test_resume_with_cutout_and_trivial_augment(stop: int) -> None:
    split = _split()
    kwargs = dict(batch_size=8, train=True, flip=True, crop_padding=2, cutout=4, trivial_augment=True)
    a = _loader(split, seed=7, **kwargs)
    it = iter(a)
    for _ in range(stop):
        next(it)
    state = a.state_dict()
    expected = list(it) + _epoch(a)
    b = _loader(split, seed=99, **kwargs)
    b.load_state_dict(state)
    got = _epoch(b) + _epoch(b)
    assert len(got) == len(expected)
    assert all(torch.equal(xg, xe) and torch.equal(yg, ye) for (xg, yg), (xe, ye) in zip(got, expected, strict=True))


# ---------------------------------------------------------------- mixup, cutmix, soft targets


def test_soft_targets_and_label_smoothing_match_cross_entropy() -> None:
    y = torch.tensor([0, 3, 3, 9])
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    for s in (0.0, 0.1):
        t = A.soft_targets(y, 10, s)
        assert torch.allclose(t.sum(1), torch.ones(4)) and (t >= 0).all()
        assert torch.allclose(F.cross_entropy(logits, t), F.cross_entropy(logits, y, label_smoothing=s))
    assert torch.equal(A.soft_targets(y, 10), F.one_hot(y, 10).float())


def test_mixup_mixes_images_and_labels() -> None:
    x = torch.randn(16, 3, 5, 5)
    y = torch.arange(16)  # distinct labels reveal the pairing: y_b = perm
    for seed in range(20):
        m = A.random_mixup(x, y, alpha=1.0, generator=torch.Generator().manual_seed(seed))
        assert 0.0 <= m.lam <= 1.0 and torch.equal(m.y_a, y)
        assert sorted(m.y_b.tolist()) == list(range(16))  # a permutation
        assert torch.allclose(m.x, m.lam * x + (1 - m.lam) * x[m.y_b], atol=1e-6)
        t = m.soft_targets(16, smoothing=0.1)
        assert torch.allclose(t.sum(1), torch.ones(16))
        moved = m.y_b != y
        assert torch.allclose(t[moved, y[moved]], torch.full((int(moved.sum()),), m.lam * 0.9 + 0.1 / 16))
        logits = torch.randn(16, 16)
        assert torch.allclose(m.loss(logits, 0.1), F.cross_entropy(logits, t), atol=1e-6)
    again = A.random_mixup(x, y, generator=torch.Generator().manual_seed(3))
    assert again.lam == A.random_mixup(x, y, generator=torch.Generator().manual_seed(3)).lam
    with pytest.raises(ValueError, match="floating"):
        A.mixup(x.to(torch.uint8), y, 0.5, torch.arange(16))


def test_mixup_lambda_follows_beta() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.zeros(2, 1, 1, 1), torch.arange(2)
    uniform = torch.tensor([A.random_mixup(x, y, 1.0, g).lam for _ in range(400)])
    assert abs(uniform.mean() - 0.5) < 0.05 and abs(uniform.var() - 1 / 12) < 0.02  # Beta(1, 1) = U(0, 1)
    peaked = torch.tensor([A.random_mixup(x, y, 0.2, g).lam for _ in range(400)])
    assert ((peaked > 0.1) & (peaked < 0.9)).float().mean() < 0.45  # Beta(0.2, 0.2) piles up near 0 and 1


def test_cutmix_pastes_one_box_and_lambda_is_its_complement() -> None:
    b, h, w = 16, 12, 10
    x = torch.arange(1, b + 1, dtype=torch.uint8).view(b, 1, 1, 1).expand(b, 3, h, w).contiguous()  # constant images
    y = torch.arange(b)
    m = A.cutmix(x, y, (2, 3, 5, 4), torch.roll(y, 1))
    assert m.lam == pytest.approx(1 - 20 / 120)
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[2:7, 3:7] = True
    assert torch.equal(m.x[:, :, inside], x[torch.roll(y, 1)][:, :, inside]) and torch.equal(
        m.x[:, :, ~inside], x[:, :, ~inside]
    )
    with pytest.raises(ValueError, match="inside"):
        A.cutmix(x, y, (10, 0, 5, 4), y)
    for seed in range(30):
        r = A.random_cutmix(x, y, 1.0, torch.Generator().manual_seed(seed))
        assert 0.0 <= r.lam <= 1.0
        moved = r.y_b != r.y_a
        own = (r.x == x).all(1).flatten(1).float().mean(1)  # share of each image that is still its own
        assert torch.allclose(own[moved], torch.full((int(moved.sum()),), r.lam))
        t = r.soft_targets(b)
        assert torch.allclose(t.sum(1), torch.ones(b))


# ---------------------------------------------------------------- TrivialAugment / RandAugment vs torchvision


def _torchvision_op(img: torch.Tensor, name: str, m: float) -> torch.Tensor:
    """One operation as torchvision's auto-augment classes apply it (v2 ``_apply_image_or_video_transform``)."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    nearest = InterpolationMode.NEAREST
    bound = 255.0 if img.dtype == torch.uint8 else 1.0
    if name in ("shear_x", "shear_y"):
        shear = [math.degrees(math.atan(m)), 0.0] if name == "shear_x" else [0.0, math.degrees(math.atan(m))]
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=nearest, center=[0, 0])
    if name in ("translate_x", "translate_y"):
        t = [int(m), 0] if name == "translate_x" else [0, int(m)]
        return TF.affine(img, angle=0.0, translate=t, scale=1.0, shear=[0.0, 0.0], interpolation=nearest)
    calls = {
        "identity": lambda: img,
        "rotate": lambda: TF.rotate(img, angle=m, interpolation=nearest),
        "brightness": lambda: TF.adjust_brightness(img, 1.0 + m),
        "color": lambda: TF.adjust_saturation(img, 1.0 + m),
        "contrast": lambda: TF.adjust_contrast(img, 1.0 + m),
        "sharpness": lambda: TF.adjust_sharpness(img, 1.0 + m),
        "posterize": lambda: TF.posterize(img, bits=int(m)),
        "solarize": lambda: TF.solarize(img, threshold=bound * m),
        "autocontrast": lambda: TF.autocontrast(img),
        "equalize": lambda: TF.equalize(img),
    }
    return calls[name]()


def _cases(policy: str, size: tuple[int, int]) -> list[tuple[int, float]]:
    table = A.magnitude_bins(policy, 31, size)
    cases = []
    for k in range(len(A.OPS)):
        for b in (0, 4, 15, 23, 30):
            m = float(table[k, b])
            cases.append((k, m))
            if bool(A._SIGNED[k]) and m:
                cases.append((k, -m))
    return cases


@pytest.mark.parametrize("size", [(32, 32), (20, 28)])
@pytest.mark.parametrize("policy", ["trivial", "rand"])
def test_ops_match_torchvision_image_by_image(size: tuple[int, int], policy: str) -> None:
    cases = _cases(policy, size)
    x = _images(len(cases), h=size[0], w=size[1], seed=1)
    x[::7] = x[::7] // 4 + 60  # low-contrast images, so autocontrast and equalize have work to do
    x[3, 1] = 9  # a constant channel: autocontrast leaves it alone
    op = torch.tensor([k for k, _ in cases])
    magnitude = torch.tensor([m for _, m in cases], dtype=torch.float64)
    ours = A.apply_ops(x, op, magnitude)  # the whole batch at once, grouped by operation
    assert ours.dtype == torch.uint8 and ours.shape == x.shape
    for b, (k, m) in enumerate(cases):
        ref = _torchvision_op(x[b], A.OPS[k], m)
        diff = (ours[b].int() - ref.int()).abs()
        # float rounding may move a truncated value by one on a rare pixel; nothing else may differ
        assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01, f"{A.OPS[k]} at {m}: {diff.max()} max"


def test_ops_on_float_images_match_torchvision() -> None:
    cases = [(k, m) for k, m in _cases("trivial", (16, 16)) if A.OPS[k] != "equalize"]
    x = _images(len(cases), h=16, w=16, seed=2).float() / 255
    ours = A.apply_ops(x, torch.tensor([k for k, _ in cases]), torch.tensor([m for _, m in cases]))
    assert ours.dtype == torch.float32 and ours.min() >= 0 and ours.max() <= 1
    for b, (k, m) in enumerate(cases):
        assert torch.allclose(ours[b], _torchvision_op(x[b], A.OPS[k], m), atol=1e-5), f"{A.OPS[k]} at {m}"


def test_magnitude_tables_are_torchvisions() -> None:
    from torchvision.transforms.v2 import RandAugment, TrivialAugmentWide

    names = {"shear_x": "ShearX", "shear_y": "ShearY", "translate_x": "TranslateX", "translate_y": "TranslateY",
             "autocontrast": "AutoContrast"}  # fmt: skip
    for policy, cls in (("trivial", TrivialAugmentWide), ("rand", RandAugment)):
        space = getattr(cls, "_AUGMENTATION_SPACE", None)
        if space is None:
            pytest.skip("torchvision no longer exposes its augmentation space")
        ours = A.magnitude_bins(policy, 31, (24, 40))
        assert len(space) == len(A.OPS)
        for k, op in enumerate(A.OPS):
            key = names.get(op, op.title())
            fn, signed = space[key]
            ref = fn(31, 24, 40)
            assert bool(A._SIGNED[k]) == signed, op
            assert torch.equal(ours[k], torch.zeros(31, dtype=torch.float64) if ref is None else ref.double()), op


def test_policies_are_seeded_and_cover_every_operation() -> None:
    x = _images(64, h=16, w=16)
    a = A.trivial_augment(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == torch.uint8 and not torch.equal(a, x)
    assert torch.equal(a, A.trivial_augment(x, torch.Generator().manual_seed(0)))
    r = A.rand_augment(x, torch.Generator().manual_seed(0), num_ops=2, magnitude=9)
    assert r.shape == x.shape and torch.equal(r, A.rand_augment(x, torch.Generator().manual_seed(0)))
    assert torch.equal(A.rand_augment(x, torch.Generator().manual_seed(0), num_ops=0), x)
    op, m = A.draw_ops(14_000, (16, 16), torch.Generator().manual_seed(1))
    counts = torch.bincount(op, minlength=len(A.OPS))
    assert (counts - 1000).abs().max() < 150  # uniform over the 14 operations
    signed = A._SIGNED[op]
    assert (m[signed] < 0).float().mean() == pytest.approx(0.5, abs=0.05) and (m[~signed] >= 0).all()
    with pytest.raises(ValueError, match="magnitude"):
        A.draw_ops(4, (8, 8), magnitude=31)


def test_loader_trivial_augment_changes_training_batches_only() -> None:
    split = _split(h=16, w=16)
    x, y = _epoch(_loader(split, batch_size=40, train=True, trivial_augment=True, seed=0, normalise=False))[0]
    original = split.images[y].float() / 255
    changed = ((x - original).abs() > 1e-6).flatten(1).any(1)
    assert 0.7 < changed.float().mean() < 1.0  # identity, and a few no-op draws, leave some images alone
    eval_x, _ = _epoch(_loader(split, batch_size=40, train=False, trivial_augment=True, normalise=False))[0]
    assert torch.allclose(eval_x, split.images.float() / 255)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    cases = _cases("trivial", (32, 32))
    x = _images(len(cases), h=32, w=32)
    op, m = torch.tensor([k for k, _ in cases]), torch.tensor([mm for _, mm in cases])
    cpu = A.apply_ops(x, op, m)
    gpu = A.apply_ops(x.cuda(), op.cuda(), m.cuda())
    assert (cpu.int() - gpu.cpu().int()).abs().max() <= 1
    g = torch.Generator("cuda").manual_seed(0)
    assert A.random_cutout(x.cuda(), 8, g).is_cuda and A.random_mixup(x.cuda().float(), op.cuda(), 1.0, g).x.is_cuda


# ---------------------------------------------------------------- mixing and RandAugment in the loader


def _labelled_split(n: int = 40, k: int = 4) -> ImageSplit:
    """Images whose every pixel encodes the index (n <= 255), labelled index % k: each pixel says where it came from."""
    images = torch.arange(1, n + 1, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous()
    spec = DataSpec("mixids", k, 3, (8, 8), (0.0,) * 3, (1 / 255,) * 3, tuple(map(str, range(k))))
    return ImageSplit(images, torch.arange(n) % k, spec)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_loader_mixing_matches_its_labels(kind: str) -> None:
    """Each mixed image is lam parts of one image and 1 - lam of another; its soft target says the same."""
    split = _labelled_split()
    alphas = {"mixup_alpha": 0.4} if kind == "mixup" else {"cutmix_alpha": 1.0}
    loader = _loader(split, batch_size=8, train=True, seed=3, **alphas)  # mean 0, std 1/255: x = pixel value
    for x, y in _epoch(loader):
        assert y.shape == (8, 4) and y.dtype == torch.float32 and torch.allclose(y.sum(1), torch.ones(8))
        for img, target in zip(x, y, strict=True):
            pixels = img.round().long()
            values = pixels.unique().tolist()  # the indices (1..n) whose pixels are in the image
            if kind == "mixup":
                assert len(values) == 1  # mixup blends whole images: one value per image
                continue
            assert 1 <= len(values) <= 2
            expect = torch.zeros(4)
            for v in values:
                expect[(v - 1) % 4] += float((pixels == v).float().mean())
            assert torch.allclose(target, expect, atol=1e-6)
    assert len(_epoch(loader)) == 5


def test_loader_mixup_is_the_closed_form_blend() -> None:
    """With one class per image (label = index, pixel value = index + 1), the soft target names both images and
    their weights, so each pixel must equal sum_c target[c] * (c + 1) = lam * a + (1 - lam) * b."""
    split = _labelled_split(k=40)
    x, y = _epoch(_loader(split, batch_size=8, train=True, seed=1, mixup_alpha=1.0))[0]
    for img, target in zip(x, y, strict=True):
        value = float(img[0, 0, 0])
        nz = target.nonzero().flatten().tolist()
        assert torch.allclose(img, torch.full_like(img, value), atol=1e-4)
        assert 1 <= len(nz) <= 2 and math.isclose(float(target.sum()), 1.0, rel_tol=1e-6)
        assert value == pytest.approx(float((target * torch.arange(1, 41)).sum()), abs=1e-3)


def test_loader_mixing_resumes_exactly_and_leaves_earlier_draws_alone() -> None:
    split = _split()
    kwargs = dict(batch_size=8, train=True, flip=True, crop_padding=2, rand_augment=2, mixup_alpha=0.3,
                  cutmix_alpha=1.0, normalise=False)
    a = _loader(split, seed=4, **kwargs)
    it = iter(a)
    next(it), next(it)
    state = a.state_dict()
    expected = list(it)
    b = _loader(split, seed=0, **kwargs)
    b.load_state_dict(state)
    assert all(torch.equal(xg, xe) and torch.equal(yg, ye) for (xg, yg), (xe, ye) in
               zip(_epoch(b), expected, strict=True))
    # RandAugment and mixing draw after order, crop and flip: the same images in the same places without them
    plain = _epoch(_loader(split, seed=4, batch_size=8, train=True, flip=True, crop_padding=2, normalise=False))
    mixed = _epoch(_loader(split, seed=4, **kwargs))
    for (_, yp), (_, ym) in zip(plain, mixed, strict=True):
        assert ym.shape == (len(yp), split.spec.num_classes)
        assert (ym.gather(1, yp.view(-1, 1)) > 0).all()  # each image keeps a share of its own label


def test_loader_rand_augment_is_randaugment_at_its_magnitude() -> None:
    """RandAugment changes training batches; TrivialAugment and RandAugment together are refused."""
    split = _split()
    base = dict(batch_size=8, train=True, seed=2, normalise=False)
    plain = _epoch(_loader(split, **base))
    changed = _epoch(_loader(split, rand_augment=2, rand_magnitude=9, **base))
    assert any(not torch.equal(p[0], c[0]) for p, c in zip(plain, changed, strict=True))
    with pytest.raises(ValueError, match="not both"):
        _loader(split, trivial_augment=True, rand_augment=1, **base)


# ---------------------------------------------------------------- the one batch-augmentation object


def test_batch_augment_from_config_and_plain_batches() -> None:
    """The data.* keys become its options; data.std overrides the dataset's; without draws a batch is only
    normalised; bad option sets name their data.* keys."""
    spec = _split().spec
    cfg = DataConfig(flip=True, crop_padding=2, cutout=3, rand_augment=1, rand_magnitude=5, mixup_alpha=0.2,
                     std=[0.5, 0.5, 0.5])
    aug = BatchAugment.from_config(cfg, spec)
    assert (aug.flip, aug.crop_padding, aug.cutout, aug.rand_augment, aug.rand_magnitude) == (True, 2, 3, 1, 5)
    assert (aug.mixup_alpha, aug.cutmix_alpha, aug.trivial_augment) == (0.2, 0.0, False)
    assert aug.mean == spec.mean and aug.std == (0.5,) * 3 and aug.num_classes == spec.num_classes
    x, y = _images(), torch.arange(8)
    out, labels = aug(x, y)
    assert torch.equal(out, A.normalise(x, aug.mean, aug.std)) and labels is y
    with pytest.raises(ConfigError, match=r"data\.mixup_alpha"):
        BatchAugment.from_config(DataConfig(mixup_alpha=-1.0), spec)
    with pytest.raises(ValueError, match="num_classes"):
        BatchAugment((0.5,), (0.25,), cutmix_alpha=1.0)


def test_per_batch_draws_are_the_random_wrappers() -> None:
    """The streaming loader draws per batch: its batch is random_crop, random_flip and random_cutout (after
    normalising) in a row on one generator, as it was before both loaders shared the augmentation."""
    x, y = _images(16), torch.arange(16)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    aug = BatchAugment(mean, std, flip=True, crop_padding=2, cutout=4)
    out, _ = aug(x, y, aug.draw(16, (12, 10), torch.Generator().manual_seed(3), batches=1, batch_size=16))
    g = torch.Generator().manual_seed(3)
    ref = A.random_cutout(A.normalise(A.random_flip(A.random_crop(x, 2, g), g), mean, std), 4, g)
    assert torch.equal(out, ref)
