"""Export of SAM's prompt encoder + mask decoder to ONNX for the browser.

Our own traceable wrapper instead of ``segment_anything.utils.onnx.SamOnnxModel``: the
PyPI 1.0 helper calls ``int()`` on the pre-padding size while tracing, which bakes the
dummy image size into the graph, so masks come out misaligned for any other aspect ratio.
Here every size stays a tensor, so ``orig_im_size`` is truly dynamic. The contract is
DESIGN.md "Decoder ONNX contract".
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from segment_anything.modeling import Sam

from .build import EMBED_DIM, EMBED_SIZE, IMAGE_SIZE, LoadedModel

INPUT_NAMES = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
OUTPUT_NAMES = ["masks", "iou_predictions", "low_res_masks"]
OPSET = 17


def embed_points(pe, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
    """SAM's point embedding, traceable (``PromptEncoder._embed_points`` with the padding
    point given by the caller, as ``segment_anything.utils.onnx`` does).

    ``pe``: the ``PromptEncoder``; ``point_coords`` 1xNx2 in the 1024 frame; ``point_labels``
    1xN (-1 padding, 0 negative, 1 positive, 2/3 box corners). Returns 1xNx256.
    """
    point_coords = (point_coords + 0.5) / IMAGE_SIZE
    point_embedding = pe.pe_layer._pe_encoding(point_coords)
    point_labels = point_labels.unsqueeze(-1).expand_as(point_embedding)
    point_embedding = point_embedding * (point_labels != -1)
    point_embedding = point_embedding + pe.not_a_point_embed.weight * (point_labels == -1)
    for i in range(pe.num_point_embeddings):
        point_embedding = point_embedding + pe.point_embeddings[i].weight * (point_labels == i)
    return point_embedding


def trace_to_onnx(wrapper: nn.Module, dummy: tuple, path: Path, input_names: list[str], output_names: list[str],
                  dynamic_axes: dict) -> None:
    """``torch.onnx.export`` (TorchScript tracer, opset 17, constant folding) with the tracer's
    warnings about traced shapes silenced (every size here stays a tensor)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(wrapper, dummy, str(path), dynamo=False, export_params=True, opset_version=OPSET,
                          do_constant_folding=True, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes)


def quantize_replacing(fp32_path: Path, path: Path) -> None:
    """onnxruntime dynamic quantization (QUInt8 weights) of ``fp32_path`` into ``path``; the
    fp32 file is removed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QUInt8)
    fp32_path.unlink()


class DecoderOnnxModel(nn.Module):
    """Traceable prompt encoder + mask decoder + postprocessing.

    Inputs follow the contract (shapes with N prompt points):
    ``image_embeddings`` 1x256x64x64, ``point_coords`` 1xNx2 (1024 frame),
    ``point_labels`` 1xN, ``mask_input`` 1x1x256x256, ``has_mask_input`` [1],
    ``orig_im_size`` [2] = (H, W).
    Outputs: ``masks`` 1x4xHxW logits (index 0 = single-mask token, 1..3 = multimask
    candidates), ``iou_predictions`` 1x4, ``low_res_masks`` 1x4x256x256.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.sam = sam
        self.img_size = IMAGE_SIZE

    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        return embed_points(self.sam.prompt_encoder, point_coords, point_labels)

    def _embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.sam.prompt_encoder
        mask_embedding = has_mask_input * pe.mask_downscaling(mask_input)
        return mask_embedding + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def _postprocess(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        prepadded = torch.floor(size * (self.img_size / torch.max(size)) + 0.5).to(torch.int64)
        # Tensor bounds (not int()) keep these slices dynamic in the traced graph.
        masks = masks[:, :, : prepadded[0], : prepadded[1]]
        hw = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        low_res_masks, iou_predictions = self.sam.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return self._postprocess(low_res_masks, orig_im_size), iou_predictions, low_res_masks


def _dummy_inputs() -> tuple[torch.Tensor, ...]:
    return (
        torch.randn(1, EMBED_DIM, EMBED_SIZE, EMBED_SIZE),
        torch.randint(0, IMAGE_SIZE, (1, 5, 2)).float(),
        torch.randint(0, 4, (1, 5)).float(),
        torch.randn(1, 1, 256, 256),
        torch.tensor([1.0]),
        torch.tensor([1500.0, 2250.0]),
    )


def export_decoder(model: LoadedModel | Sam, path: str | Path, quantize: bool = False) -> Path:
    """Export the decoder to ONNX (opset 17), then check it in onnxruntime.

    Args:
        model: a built model (only its prompt encoder and mask decoder are exported).
        path: output ``.onnx`` file.
        quantize: also apply onnxruntime dynamic quantization (QUInt8 weights, about 4x
            smaller); the fp32 graph is exported first and replaced.

    Returns:
        The written path.

    Raises:
        RuntimeError: onnxruntime's outputs differ from torch's on the export inputs
            (max abs logit error > 1e-3 for fp32).
    """
    import onnxruntime as ort

    sam = model.sam if isinstance(model, LoadedModel) else model
    sam = sam.cpu().eval()
    wrapper = DecoderOnnxModel(sam).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = _dummy_inputs()
    fp32_path = path.with_suffix(".fp32.onnx") if quantize else path
    trace_to_onnx(wrapper, dummy, fp32_path, INPUT_NAMES, OUTPUT_NAMES,
                  {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"},
                   "masks": {2: "height", 3: "width"}})
    # Parity right after export, on a size other than the dummy's.
    feeds = {name: t.numpy() for name, t in zip(INPUT_NAMES, dummy)}
    feeds["orig_im_size"] = np.array([480.0, 640.0], np.float32)
    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, feeds)
    torch_out = wrapper(*[torch.as_tensor(v) for v in feeds.values()])
    if onnx_out[0].shape != (1, 4, 480, 640):
        raise RuntimeError(f"exported decoder ignores orig_im_size: masks shape {onnx_out[0].shape}")
    err = float(np.max(np.abs(onnx_out[2] - torch_out[2].numpy())))
    if err > 1e-3:
        raise RuntimeError(f"onnxruntime low_res_masks differ from torch by {err:.2e}")
    if quantize:
        quantize_replacing(fp32_path, path)
    return path


def decoder_agreement(reference: str | Path, candidate: str | Path, trials: int = 8, seed: int = 0) -> dict:
    """How close a candidate decoder ONNX (e.g. the QUInt8 one) is to a reference (fp32).

    Runs both in onnxruntime on ``trials`` random feeds (N(0, 1) 1x256x64x64 embeddings,
    1-3 random points in the 1024 frame plus the padding point, no mask input, a 480x640
    ``orig_im_size``) and compares the 4 candidate masks thresholded at 0.

    Returns:
        ``{"trials", "mask_iou_mean", "mask_iou_min", "iou_predictions_max_abs"}`` (mask IoU
        of candidate vs reference; 1.0 when both masks are empty).
    """
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (reference, candidate)]
    ious: list[float] = []
    iou_err = 0.0
    for _ in range(trials):
        n = int(rng.integers(1, 4))
        coords = np.concatenate([rng.uniform(0, IMAGE_SIZE, (1, n, 2)), np.zeros((1, 1, 2))], axis=1)
        labels = np.concatenate([rng.integers(0, 2, (1, n)), -np.ones((1, 1))], axis=1)
        feeds = {
            "image_embeddings": rng.standard_normal((1, EMBED_DIM, EMBED_SIZE, EMBED_SIZE)).astype(np.float32),
            "point_coords": coords.astype(np.float32),
            "point_labels": labels.astype(np.float32),
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([480.0, 640.0], np.float32),
        }
        (ref_masks, ref_iou, _), (cand_masks, cand_iou, _) = (s.run(None, feeds) for s in sessions)
        iou_err = max(iou_err, float(np.max(np.abs(ref_iou - cand_iou))))
        for a, b in zip(ref_masks[0] > 0, cand_masks[0] > 0):
            union = np.logical_or(a, b).sum()
            ious.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
    return {"trials": trials, "mask_iou_mean": round(float(np.mean(ious)), 4),
            "mask_iou_min": round(float(np.min(ious)), 4), "iou_predictions_max_abs": round(iou_err, 4)}
