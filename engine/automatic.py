"""Automatic mask generation from a stored image embedding (SAM's "segment everything":
a point grid through the decoder, filtered by predicted IoU and stability, box NMS).

The method and its defaults are those of Kirillov et al., 2023 (§7.1 and App. A) as
implemented by segment_anything's ``SamAutomaticMaskGenerator``, whose helpers
(``segment_anything.utils.amg``) are reused here. The difference is where the image comes
from: this module starts from the embedding the worker already stored (no second encoder
pass) and runs the decoder with :class:`engine.shared_decoder.SharedImageDecoder`, which
computes the same masks with the image-side work shared across prompts and the mask
upscaling run only for prompts whose predicted IoU passes.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from segment_anything.modeling import Sam
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms, box_area

from .automatic_params import AutomaticMaskParams  # noqa: F401  (part of this module's API)
from .shared_decoder import SharedImageDecoder

# Full-resolution logits are upscaled in chunks of at most this many float32 values
# (256 MB), so that a 12-megapixel photo does not need gigabytes at once.
_UPSCALE_CHUNK_VALUES = 64 * 1024 * 1024


def _validate_embedding(sam: Sam, embedding: np.ndarray | torch.Tensor) -> torch.Tensor:
    d = sam.prompt_encoder.embed_dim
    eh, ew = sam.prompt_encoder.image_embedding_size
    expected = (1, d, eh, ew)
    if isinstance(embedding, np.ndarray):
        if embedding.dtype not in (np.float16, np.float32, np.float64):
            raise ValueError(f"embedding must be float16 or float32, got {embedding.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(embedding))
    elif isinstance(embedding, torch.Tensor):
        tensor = embedding.detach()
    else:
        raise ValueError(f"embedding must be a numpy array or a torch tensor, got {type(embedding).__name__}")
    if tuple(tensor.shape) not in (expected, expected[1:]):
        raise ValueError(f"embedding shape {tuple(tensor.shape)} != {expected}")
    tensor = tensor.reshape(expected).to(device=sam.device, dtype=torch.float32)
    if not torch.isfinite(tensor).all():
        raise ValueError("embedding contains NaN or infinite values")
    return tensor


def _validate_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (H, W), got {image_size!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"image_size must be two positive integers (H, W), got {image_size!r}")
    return int(h), int(w)


def upscale_logits(low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                   img_size: int = 1024) -> torch.Tensor:
    """Kx256x256 low-res logits -> KxHxW logits, the same values as ``Sam.postprocess_masks``.

    ``postprocess_masks`` upsamples to img_size x img_size, crops the resized image's
    ``input_size`` (h, w) and upsamples to ``original_size``. Only the low-res rows and
    columns that the crop reads are upsampled here (bilinear, align_corners=False, so a
    pixel reads at most one low-res row/column past its own): same arithmetic, a quarter
    less work for a 4:3 photo, 40% for 16:9.
    """
    k, lh, lw = low_res.shape
    ih, iw = input_size
    if img_size % lh or img_size % lw:
        up = F.interpolate(low_res[:, None], (img_size, img_size), mode="bilinear", align_corners=False)
    else:
        fy, fx = img_size // lh, img_size // lw
        rh, rw = min(lh, -(-ih // fy) + 1), min(lw, -(-iw // fx) + 1)
        up = F.interpolate(low_res[:, None, :rh, :rw], (rh * fy, rw * fx), mode="bilinear", align_corners=False)
    up = up[..., :ih, :iw]
    return F.interpolate(up, original_size, mode="bilinear", align_corners=False)[:, 0]


def _encode(masks: torch.Tensor) -> list[dict[str, Any]]:
    """KxHxW bool -> compressed COCO RLEs (pycocotools), ``counts`` as bytes."""
    if masks.shape[0] == 0:
        return []
    # KxWxH C-order is HxWxK Fortran-order: what pycocotools reads, without a copy.
    arr = masks.transpose(1, 2).contiguous().cpu().numpy().view(np.uint8).transpose(2, 1, 0)
    return mask_utils.encode(arr)


def _process_batch(dec: SharedImageDecoder, points: np.ndarray, crop_box: list[int],
                   orig_size: tuple[int, int], p: AutomaticMaskParams, transform: ResizeLongestSide,
                   img_size: int, mask_threshold: float) -> MaskData:
    x0, y0, x1, y1 = crop_box
    crop_size = (y1 - y0, x1 - x0)
    device = dec.src.device
    coords = torch.as_tensor(transform.apply_coords(points, crop_size), dtype=torch.float32, device=device)
    hs, keys = dec.tokens(coords)
    iou = dec.iou_predictions(hs)[:, 1:]  # multimask output: tokens 1..3
    keep = iou > p.pred_iou_thresh if p.pred_iou_thresh > 0.0 else torch.ones_like(iou, dtype=torch.bool)
    rows = keep.any(dim=1).nonzero().flatten()
    if len(rows) == 0:
        return MaskData()
    n_mask = iou.shape[1]
    low = dec.masks(hs[rows], keys[rows], token_idx=list(range(1, 1 + n_mask)))[keep[rows]]
    iou_preds = iou[rows][keep[rows]]
    pts = torch.as_tensor(points, dtype=torch.float64)[rows.cpu()].repeat_interleave(keep[rows].sum(1).cpu(), dim=0)
    del hs, keys

    input_size = transform.get_preprocess_shape(crop_size[0], crop_size[1], transform.target_length)
    chunk = max(1, _UPSCALE_CHUNK_VALUES // (crop_size[0] * crop_size[1] + img_size * img_size))
    data = MaskData()
    for start in range(0, len(low), chunk):
        sl = slice(start, start + chunk)
        logits = upscale_logits(low[sl], input_size, crop_size, img_size)
        part = MaskData(iou_preds=iou_preds[sl].cpu(), points=pts[sl])
        part["stability_score"] = calculate_stability_score(logits, mask_threshold, p.stability_score_offset).cpu()
        if p.stability_score_thresh > 0.0:
            ok = part["stability_score"] >= p.stability_score_thresh
            part.filter(ok)
            logits = logits[ok.to(logits.device)]
        masks = logits > mask_threshold
        del logits
        part["boxes"] = batched_mask_to_box(masks).cpu()
        near = is_box_near_crop_edge(part["boxes"], crop_box, [0, 0, orig_size[1], orig_size[0]])
        if near.any():
            part.filter(~near)
            masks = masks[~near.to(masks.device)]
        part["rles"] = _encode(uncrop_masks(masks, crop_box, *orig_size))
        data.cat(part)
    return data


def rle_areas(rles: list[dict[str, Any]]) -> list[int]:
    """Pixel counts of compressed RLEs. ``pycocotools.mask.area`` of a list fails past 255
    masks under numpy 2 (it sizes a placeholder array as uint8), so at most 255 a call."""
    return [int(a) for i in range(0, len(rles), 255) for a in mask_utils.area(rles[i:i + 255])]


def _remove_small_regions(data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
    """segment_anything's ``postprocess_small_regions`` on compressed RLEs, one mask at a time."""
    if len(data["rles"]) == 0:
        return data
    new_rles, boxes, scores = [], [], []
    for rle in data["rles"]:
        mask = mask_utils.decode(rle).astype(bool)
        mask, changed_holes = remove_small_regions(mask, min_area, mode="holes")
        mask, changed_islands = remove_small_regions(mask, min_area, mode="islands")
        changed = changed_holes or changed_islands
        # NMS prefers masks that needed no change (score 1) over changed ones (score 0).
        scores.append(0.0 if changed else 1.0)
        m = torch.from_numpy(np.ascontiguousarray(mask))
        boxes.append(batched_mask_to_box(m))
        new_rles.append(_encode(m[None])[0] if changed else rle)
    boxes_t = torch.stack(boxes)
    keep = batched_nms(boxes_t.float(), torch.tensor(scores), torch.zeros(len(boxes_t)), iou_threshold=nms_thresh)
    data["rles"] = new_rles
    data["boxes"] = boxes_t.to(data["boxes"].dtype)
    data.filter(keep)
    return data


@torch.inference_mode()
def generate_masks(
    sam: Any,
    embedding: np.ndarray | torch.Tensor,
    image_size: tuple[int, int],
    params: AutomaticMaskParams | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    encode_fn: Callable[[tuple[int, int, int, int]], np.ndarray | torch.Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Masks of everything in an image, from its stored embedding (SAM's automatic generator).

    Method (Kirillov et al., 2023, §7.1 and App. A; segment_anything's
    ``SamAutomaticMaskGenerator``): a points_per_side x points_per_side grid of single
    positive points, each decoded with multimask output (3 masks); keep masks with predicted
    IoU > ``pred_iou_thresh`` and stability score >= ``stability_score_thresh``; drop masks
    whose box touches a crop edge that is not an image edge; box NMS (``box_nms_thresh``,
    score = predicted IoU) within each crop, then between crops (``crop_nms_thresh``,
    smaller crops win); optionally remove holes and islands under ``min_mask_region_area``
    and NMS again. With the same embedding and parameters the result equals
    ``SamAutomaticMaskGenerator(sam, ..., output_mode="coco_rle").generate(image)`` up to
    float rounding in the decoder (a pixel or a borderline mask), except for ``bbox``, see below.

    Args:
        sam: a ``segment_anything.modeling.Sam`` or an ``engine.LoadedModel``; only its prompt
            encoder and mask decoder run.
        embedding: the image's 1x256x64x64 (or 256x64x64) embedding, float16 or float32,
            numpy or torch, as ``engine.embed`` produces and the worker stores.
        image_size: (H, W) of the original (EXIF-corrected) image in pixels.
        params: :class:`AutomaticMaskParams`; SAM's defaults if None.
        progress: called as ``progress(done, total)`` with decoder batches done (0 first).
        encode_fn: needed only when ``params.crop_n_layers > 0``: called with a crop box
            (x0, y0, x1, y1) in original pixels, returns the embedding of
            ``image[y0:y1, x0:x1]`` (e.g. ``lambda b: engine.embed(model, image[b[1]:b[3], b[0]:b[2]])``).
            Crops are new encoder passes: they cannot be cut out of the stored embedding.

    Returns:
        One dict per mask, best predicted IoU first (per crop), as SamAutomaticMaskGenerator's:
        ``segmentation`` COCO compressed RLE ``{"size": [H, W], "counts": str}``;
        ``area`` int pixels; ``bbox`` [x, y, w, h] pixels, COCO's convention (the extent:
        ``pycocotools.mask.toBbox`` of the RLE; SAM's own records give w and h one pixel
        less, ``x_max - x_min``); ``predicted_iou`` float; ``point_coords`` [[x, y]] the
        prompt in original pixels; ``stability_score`` float; ``crop_box`` [x, y, w, h] int pixels.

    Raises:
        ValueError: an embedding of the wrong shape, dtype or with non-finite values, an
            image_size that is not two positive integers, or crop layers without ``encode_fn``.
    """
    params = AutomaticMaskParams() if params is None else params
    if not isinstance(params, AutomaticMaskParams):
        raise ValueError(f"params must be AutomaticMaskParams, got {type(params).__name__}")
    sam = getattr(sam, "sam", sam)  # LoadedModel -> Sam
    emb = _validate_embedding(sam, embedding)
    orig_size = _validate_size(image_size)
    if params.crop_n_layers > 0 and encode_fn is None:
        raise ValueError("crop_n_layers > 0 needs encode_fn: every crop is a new encoder pass")
    img_size = int(getattr(sam.image_encoder, "img_size", 1024))
    transform = ResizeLongestSide(img_size)

    crop_boxes, layer_idxs = generate_crop_boxes(orig_size, params.crop_n_layers, params.crop_overlap_ratio)
    grids = build_all_layer_point_grids(params.points_per_side, params.crop_n_layers,
                                        params.crop_n_points_downscale_factor)
    total = sum(math.ceil(len(grids[i]) / params.points_per_batch) for i in layer_idxs)
    done = 0
    if progress is not None:
        progress(0, total)

    data = MaskData()
    for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
        x0, y0, x1, y1 = crop_box
        if layer_idx == 0:
            crop_emb = emb
        else:
            crop_emb = _validate_embedding(sam, encode_fn((x0, y0, x1, y1)))
        dec = SharedImageDecoder(sam, crop_emb)
        points_for_crop = grids[layer_idx] * np.array([[x1 - x0, y1 - y0]])
        crop_data = MaskData()
        for (points,) in batch_iterator(params.points_per_batch, points_for_crop):
            crop_data.cat(_process_batch(dec, points, crop_box, orig_size, params, transform, img_size,
                                         sam.mask_threshold))
            done += 1
            if progress is not None:
                progress(done, total)
        del dec
        if len(crop_data.items()) == 0 or len(crop_data["rles"]) == 0:
            continue
        keep = batched_nms(crop_data["boxes"].float(), crop_data["iou_preds"],
                           torch.zeros(len(crop_data["boxes"])), iou_threshold=params.box_nms_thresh)
        crop_data.filter(keep)
        crop_data["boxes"] = uncrop_boxes_xyxy(crop_data["boxes"], crop_box)
        crop_data["points"] = uncrop_points(crop_data["points"], crop_box)
        crop_data["crop_boxes"] = torch.tensor([crop_box] * len(crop_data["rles"]))
        data.cat(crop_data)

    if len(data.items()) == 0:
        return []
    if len(crop_boxes) > 1:
        scores = 1 / box_area(data["crop_boxes"])
        keep = batched_nms(data["boxes"].float(), scores, torch.zeros(len(data["boxes"])),
                           iou_threshold=params.crop_nms_thresh)
        data.filter(keep)
    if params.min_mask_region_area > 0:
        data = _remove_small_regions(data, params.min_mask_region_area,
                                     max(params.box_nms_thresh, params.crop_nms_thresh))

    rles = data["rles"]
    areas = rle_areas(rles)
    bboxes = mask_utils.toBbox(rles) if rles else []
    records = []
    for i, rle in enumerate(rles):
        cx0, cy0, cx1, cy1 = (int(v) for v in data["crop_boxes"][i])
        records.append({
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": int(areas[i]),
            "bbox": [float(v) for v in bboxes[i]],
            "predicted_iou": float(data["iou_preds"][i]),
            "point_coords": [[float(v) for v in data["points"][i]]],
            "stability_score": float(data["stability_score"][i]),
            "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
        })
    return records
