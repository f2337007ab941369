"""Joint image/mask augmentation: shapes, alignment, padding, crop retries, normalisation."""

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from scalecontrast.data import (
    HALF_MEAN,
    HALF_STD,
    PadToSize,
    RandomCropBalanced,
    RandomRescale,
    eval_transforms,
    train_transforms,
)
from scalecontrast.data.base import to_sample

# colours far apart from each other and from black (the image padding)
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 255, 255]], dtype=np.uint8)


def colour_coded(h=90, w=120, seed=0):
    """A mask of large blocks (class 4 used for a few ignore blocks too) and an image whose colour is
    the class colour: a transform that keeps them aligned keeps colour == class."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 4, size=(6, 8))
    rows, cols = np.arange(h) * 6 // h, np.arange(w) * 8 // w
    mask = blocks[rows[:, None], cols[None, :]].astype(np.uint8)
    mask[(rows == 0)[:, None] & (cols == 0)[None, :]] = 255
    image = COLOURS[np.where(mask == 255, 4, mask)]
    return to_sample(image, mask, "coded")


def decode(image: torch.Tensor) -> torch.Tensor:
    """Nearest colour index (0..4) per pixel, 5 for black. image: float (3, H, W) in [0, 1]."""
    palette = torch.tensor(np.vstack([COLOURS, [[0, 0, 0]]]), dtype=torch.float32) / 255
    d = ((image.permute(1, 2, 0)[:, :, None, :] - palette) ** 2).sum(-1)
    return d.argmin(-1)


@pytest.mark.parametrize("seed", range(6))
def test_alignment_through_geometric_augmentation(seed):
    torch.manual_seed(seed)
    tf = train_transforms((64, 80), color_jitter=False, mean=None, std=None)
    out = tf(colour_coded(seed=seed))
    img, mask = out["image"], out["mask"]
    assert img.shape == (3, 64, 80) and mask.shape == (64, 80) and mask.dtype == torch.int64
    colour = decode(img)
    labelled = mask != 255
    # inside labelled regions the colour matches the class (bilinear blending only at edges)
    agree = (colour[labelled] == mask[labelled]).float().mean().item()
    assert agree > 0.9, agree
    # ignore pixels are either the "ignore" block (white) or padding (black)
    ign = colour[~labelled]
    if ign.numel():
        assert ((ign == 4) | (ign == 5)).float().mean().item() > 0.9


def test_alignment_with_colour_jitter_keeps_geometry():
    torch.manual_seed(0)
    sample = colour_coded()
    tf = train_transforms((64, 80), mean=None, std=None)
    out = tf(sample)
    # jitter changes colours, never which pixels are labelled: shape and value set stay valid
    assert out["image"].shape == (3, 64, 80)
    assert set(out["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}


def test_padding_uses_ignore_in_mask_and_zero_in_image():
    sample = to_sample(np.full((20, 30, 3), 200, np.uint8), np.ones((20, 30), np.uint8), "s")
    out = PadToSize((32, 40))(sample)
    assert out["image"].shape == (3, 32, 40) and out["mask"].shape == (32, 40)
    assert (out["mask"][20:, :] == 255).all() and (out["mask"][:, 30:] == 255).all()
    assert (out["mask"][:20, :30] == 1).all()
    assert (out["image"][:, 20:, :] == 0).all() and (out["image"][:, :20, :30] == 200).all()


def test_small_images_are_padded_to_the_crop():
    torch.manual_seed(0)
    sample = to_sample(np.full((10, 12, 3), 90, np.uint8), np.zeros((10, 12), np.uint8), "s")
    out = train_transforms((48, 48), scale_range=(1.0, 1.0), aspect_range=(1.0, 1.0))(sample)
    assert out["image"].shape == (3, 48, 48)
    assert (out["mask"] == 255).float().mean() > 0.9


def test_rescale_range_and_aspect():
    sample = colour_coded(100, 200)
    t = RandomRescale((0.5, 2.0), (0.9, 1.1))
    for s in range(20):
        torch.manual_seed(s)
        out = t(sample)
        h, w = out["image"].shape[-2:]
        assert out["mask"].shape == (h, w)
        assert 100 <= w <= 400 and 45 <= h <= 220
        assert 0.9 - 0.02 <= (h / 100) / (w / 200) <= 1.1 + 0.02
        # nearest-neighbour mask: no new values
        assert set(out["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}


def test_crop_retries_when_one_class_dominates():
    mask = np.zeros((100, 100), np.uint8)
    mask[:, 80:] = 1  # class 0 covers 80%: most 40x40 windows are all class 0
    sample = to_sample(np.zeros((100, 100, 3), np.uint8), mask, "s")
    balanced = RandomCropBalanced((40, 40), max_ratio=0.75, max_tries=10)
    plain = RandomCropBalanced((40, 40), max_ratio=1.0)
    torch.manual_seed(0)
    hits_balanced = sum(bool((balanced(sample)["mask"] == 1).any()) for _ in range(100))
    hits_plain = sum(bool((plain(sample)["mask"] == 1).any()) for _ in range(100))
    assert hits_balanced > 80 > hits_plain


def test_crop_accept_rule():
    crop = RandomCropBalanced(4, max_ratio=0.75)
    assert not crop._accept(torch.zeros(4, 4, dtype=torch.uint8))  # one class
    assert not crop._accept(torch.full((4, 4), 255, dtype=torch.uint8))  # nothing labelled
    m = torch.zeros(4, 4, dtype=torch.uint8)
    m[:, :2] = 1
    assert crop._accept(m)
    m = torch.full((4, 4), 255, dtype=torch.uint8)
    m[0, :3] = 0
    m[0, 3] = 1  # 3 of 4 labelled pixels = 75%: accepted
    assert crop._accept(m)


def test_eval_keeps_original_label_and_normalises():
    sample = colour_coded(50, 70)
    out = eval_transforms(HALF_MEAN, HALF_STD)(sample)
    assert out["mask"].shape == (50, 70) and out["mask"].dtype == torch.int64
    assert torch.equal(out["mask"], sample["mask"].as_subclass(torch.Tensor).long())
    assert not isinstance(out["image"], tv_tensors.Image)
    # 0.5/0.5 normalisation maps [0, 1] to [-1, 1]
    assert out["image"].min() == -1.0 and out["image"].max() == 1.0
    out = eval_transforms()(sample)  # ImageNet mean/std by default
    assert out["image"].min() < -1.5


def test_stem_passes_through():
    out = train_transforms((32, 32))(colour_coded())
    assert out["stem"] == "coded"


def test_eval_image_size_resizes_image_only():
    sample = colour_coded(50, 70)
    out = eval_transforms(image_size=(32, 48))(sample)
    assert out["image"].shape == (3, 32, 48)
    assert torch.equal(out["mask"], sample["mask"].as_subclass(torch.Tensor).long())


def test_public_names():
    import scalecontrast.data as data

    for name in ("get_dataset", "train_transforms", "eval_transforms", "prepare_camvid", "verify_camvid"):
        assert callable(getattr(data, name))
