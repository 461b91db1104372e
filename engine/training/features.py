"""Frozen-backbone feature cache for training the default model's neck + decoder.

The EfficientNet-Lite0 backbone is frozen, so its stride 8/16/32 features are computed
once per (image, augmentation) with onnxruntime and stored on disk as fp16 memmaps;
training steps then only run the neck and SAM's prompt encoder + mask decoder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..build import IMAGE_SIZE
from ..modeling.lite_encoder import LiteImageEncoder

LOWRES = 256  # SAM's low-res mask grid (1024 / 4)
FEATURE_SHAPES = {"f8": (40, 64, 64), "f16": (112, 64, 64), "f32": (320, 32, 32)}


class _BackboneForCache(nn.Module):
    """Backbone -> (avgpooled stride-8, stride-16, stride-32) features.

    The stride-8 map is stored after the parameter-free 2x2 average pool that
    ``LiteImageEncoder.lateral8`` starts with, which makes the cache 4x smaller there.
    """

    def __init__(self, encoder: LiteImageEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8, f16, f32 = self.encoder.backbone_features(x)
        return F.avg_pool2d(f8, 2), f16, f32


def export_backbone_onnx(encoder: LiteImageEncoder, path: Path) -> Path:
    """Export the backbone (1x3x1024x1024 normalised input -> f8p 1x40x64x64, f16
    1x112x64x64, f32 1x320x32x32) to ONNX at ``path`` and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _BackboneForCache(encoder).eval()
    dummy = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        torch.onnx.export(wrapper, (dummy,), str(path), input_names=["image"],
                          output_names=["f8", "f16", "f32"], opset_version=17, dynamo=False)
    return path


def preprocess_np(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """HxWx3 uint8 -> (1x3x1024x1024 float32 in [-1, 1], zero (=mean) padded; (h, w) resized).

    Same as ``engine.predictor.preprocess`` for the default model (mean = std = 127.5):
    resize longest side to 1024 (PIL bilinear, as segment-anything's ResizeLongestSide),
    normalise, pad bottom/right with 0 (the normalised mean).
    """
    from segment_anything.utils.transforms import ResizeLongestSide

    resized = ResizeLongestSide(IMAGE_SIZE).apply_image(image)
    h, w = resized.shape[:2]
    out = np.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    out[0, :, :h, :w] = (resized.transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5
    return out, (h, w)


def mask_to_lowres(mask: np.ndarray) -> np.ndarray:
    """HxW bool/0-1 mask -> 256x256 uint8 (0/1/255) in the padded 1024 frame at 1/4.

    255 marks padding outside the image (ignored by the loss and the click sampler).
    The mask is resized with area averaging and thresholded at 0.5.
    """
    from PIL import Image

    h, w = mask.shape
    scale = LOWRES / max(h, w)
    nh, nw = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    small = np.asarray(Image.fromarray((mask > 0).astype(np.float32)).resize((nw, nh), Image.BOX))
    out = np.full((LOWRES, LOWRES), 255, np.uint8)
    out[:nh, :nw] = (small >= 0.5).astype(np.uint8)
    return out


@dataclass
class Sample:
    """One training example: an RGB image and one or more binary object masks."""

    name: str
    image: np.ndarray  # HxWx3 uint8
    masks: list[np.ndarray]  # each HxW bool


def coco_mval_samples(root: Path, flip: bool = True) -> Iterator[Sample]:
    """COCO_MVal-style folder (``img/<name>.jpg``, ``gt/<name>.png``), optionally also
    each image flipped horizontally (suffix ``:flip``)."""
    from ..predictor import load_image

    root = Path(root)
    for img_path in sorted((root / "img").glob("*.jpg")):
        gt_path = root / "gt" / (img_path.stem + ".png")
        if not gt_path.exists():
            continue
        image = load_image(img_path)
        from PIL import Image

        mask = np.asarray(Image.open(gt_path).convert("L")) > 127
        if mask.shape != image.shape[:2] or not mask.any():
            continue
        yield Sample(img_path.stem, image, [mask])
        if flip:
            yield Sample(img_path.stem + ":flip", image[:, ::-1].copy(), [mask[:, ::-1].copy()])


def _fit_tile(image: np.ndarray, mask: np.ndarray, th: int, tw: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``image``/``mask`` to fit a ``th`` x ``tw`` tile (aspect kept, centred, the
    rest filled with mid-grey = the normalised mean, background in the mask)."""
    from PIL import Image

    h, w = mask.shape
    s = min(th / h, tw / w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    img = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    m = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((nw, nh), Image.BILINEAR)) > 127
    out_i = np.full((th, tw, 3), 128, np.uint8)
    out_m = np.zeros((th, tw), bool)
    y0, x0 = (th - nh) // 2, (tw - nw) // 2
    out_i[y0 : y0 + nh, x0 : x0 + nw] = img
    out_m[y0 : y0 + nh, x0 : x0 + nw] = m
    return out_i, out_m


def mosaic_samples(root: Path, n: int, exclude: set[str] = frozenset(), seed: int = 0,
                   size: int = 1024) -> Iterator[Sample]:
    """``n`` composites of COCO_MVal photos, each with one mask per photo it shows.

    COCO_MVal has one object mask per photo, so on its photos alone the target never
    depends on where the click is: a model can (and the first default model did) learn a
    salient-object segmenter that ignores the prompt's location. In a composite the same
    image holds 2 or 4 targets and only the click tells them apart. Layouts: two photos
    stacked (vertically for landscape photos, side by side for portrait ones; objects at
    about 2/3 of their full-frame scale) or a 2x2 grid (about 1/2 scale), each photo
    randomly flipped. Photos whose base name is in ``exclude`` (validation) are never used.
    Names are the photos' names joined by ``+``.
    """
    from PIL import Image

    from ..predictor import load_image

    root = Path(root)
    paths = [p for p in sorted((root / "img").glob("*.jpg"))
             if p.stem not in exclude and (root / "gt" / (p.stem + ".png")).exists()]
    rng = np.random.default_rng(seed)

    def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
        image = load_image(path)
        mask = np.asarray(Image.open(root / "gt" / (path.stem + ".png")).convert("L")) > 127
        if rng.random() < 0.5:
            image, mask = image[:, ::-1].copy(), mask[:, ::-1].copy()
        return image, mask

    made = 0
    while made < n:
        grid = rng.random() < 0.5
        k = 4 if grid else 2
        picks = [paths[i] for i in rng.choice(len(paths), k, replace=False)]
        tiles = [load(p) for p in picks]
        if any(m.shape != im.shape[:2] or not m.any() for im, m in tiles):
            continue
        canvas = np.full((size, size, 3), 128, np.uint8)
        masks = []
        half = size // 2
        if grid:
            boxes = [(0, 0), (0, half), (half, 0), (half, half)]
            dims = (half, half)
        elif sum(m.shape[1] >= m.shape[0] for _, m in tiles) >= 1:  # landscape: stack
            boxes, dims = [(0, 0), (half, 0)], (half, size)
        else:
            boxes, dims = [(0, 0), (0, half)], (size, half)
        for (im, m), (y0, x0) in zip(tiles, boxes):
            ti, tm = _fit_tile(im, m, *dims)
            canvas[y0 : y0 + dims[0], x0 : x0 + dims[1]] = ti
            full = np.zeros((size, size), bool)
            full[y0 : y0 + dims[0], x0 : x0 + dims[1]] = tm
            masks.append(full)
        yield Sample("+".join(p.stem for p in picks), canvas, masks)
        made += 1


class FeatureCache:
    """Read side of a feature cache directory.

    Layout: ``meta.json`` (list of entries: name, image index, resized (h, w)), memmaps
    ``f8.npy`` Nx40x64x64, ``f16.npy`` Nx112x64x64, ``f32.npy`` Nx320x32x32 (fp16, one
    row per image) and ``masks.npy`` Mx256x256 uint8 with ``mask_image.npy`` (M,) the
    image row of each mask.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        meta = json.loads((self.root / "meta.json").read_text())
        self.names: list[str] = meta["names"]
        self.sizes: list[tuple[int, int]] = [tuple(s) for s in meta["sizes"]]
        self.f8 = np.load(self.root / "f8.npy", mmap_mode="r")
        self.f16 = np.load(self.root / "f16.npy", mmap_mode="r")
        self.f32 = np.load(self.root / "f32.npy", mmap_mode="r")
        self.masks = np.load(self.root / "masks.npy", mmap_mode="r")
        self.mask_image = np.load(self.root / "mask_image.npy")

    def __len__(self) -> int:
        return len(self.mask_image)

    def features(self, rows: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = list(rows)
        return tuple(torch.from_numpy(np.stack([arr[r] for r in rows]).astype(np.float32))
                     for arr in (self.f8, self.f16, self.f32))


def build_cache(samples: Iterable[Sample], out: Path, encoder: LiteImageEncoder,
                max_images: int = 100000, threads: int = 2, progress: bool = True) -> Path:
    """Compute the frozen backbone's features for ``samples`` into the cache dir ``out``.

    Uses an onnxruntime session of the backbone (about 6x faster than torch on CPU).
    Returns ``out``. Existing caches are overwritten.
    """
    import onnxruntime as ort
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = export_backbone_onnx(encoder, out / "backbone.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    tmp: dict[str, list[np.ndarray]] = {"f8": [], "f16": [], "f32": []}
    names, sizes, masks, mask_image = [], [], [], []
    t0 = time.time()
    it = tqdm(samples, desc="features", disable=not progress)
    for sample in it:
        if len(names) >= max_images:
            break
        x, hw = preprocess_np(sample.image)
        f8, f16, f32 = sess.run(None, {"image": x})
        for key, arr in (("f8", f8), ("f16", f16), ("f32", f32)):
            tmp[key].append(arr[0].astype(np.float16))
        for m in sample.masks:
            masks.append(mask_to_lowres(m))
            mask_image.append(len(names))
        names.append(sample.name)
        sizes.append(hw)
    for key, arrs in tmp.items():
        np.save(out / f"{key}.npy", np.stack(arrs))
    np.save(out / "masks.npy", np.stack(masks))
    np.save(out / "mask_image.npy", np.asarray(mask_image, np.int64))
    (out / "meta.json").write_text(json.dumps({"names": names, "sizes": sizes,
                                               "seconds": time.time() - t0}))
    return out


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m engine.training.features DATA_DIR OUT_DIR [--no-flip] [--max N]``."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--max", type=int, default=100000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--every", type=int, default=1, help="only every k-th photo (by name) as a plain image")
    p.add_argument("--mosaics", type=int, default=0,
                   help="also N multi-photo composites (see mosaic_samples); the photos that "
                        "TrainData holds out for validation are never used in them")
    p.add_argument("--val-images", type=int, default=40, help="as train --val-images (for the exclusion)")
    a = p.parse_args(argv)
    if "grabcut" in str(a.data).lower():
        raise SystemExit("GrabCut is the evaluation set: never train on it")
    enc = LiteImageEncoder(pretrained_backbone=True).eval()
    stems = sorted(p.stem for p in (Path(a.data) / "img").glob("*.jpg"))
    chosen = stems[:: a.every]
    keep = set(chosen)
    samples: Iterable[Sample] = (s for s in coco_mval_samples(Path(a.data), flip=not a.no_flip)
                                 if s.name.split(":")[0] in keep)
    if a.mosaics:
        import itertools

        k = max(1, len(chosen) // max(1, a.val_images))
        exclude = set(chosen[::k][: a.val_images])  # the photos TrainData will validate on
        samples = itertools.chain(samples, mosaic_samples(Path(a.data), a.mosaics, exclude))
    build_cache(samples, Path(a.out), enc, max_images=a.max, threads=a.threads)


if __name__ == "__main__":
    main()
