"""The browser's decoder graph: SAM's prompt encoder + mask decoder, computed in a cheaper
order and returning only the low-res logits (issue 7).

Same inputs as DESIGN.md's decoder contract except that the embedding comes channel-last,
``image_tokens`` 1x4096x256 (the page transposes it once per image, not once per click), and
``orig_im_size`` is not needed; outputs
``iou_predictions`` 1x4 and ``low_res_masks`` 1x4x256x256 — the same values as the contract
graph (:mod:`engine.onnx_export`) up to float rounding. The page upsamples the low-res
logits to the photo itself (``frontend/src/lib/upsample.ts``, exactly SAM's two bilinear
steps folded into one separable map), so the graph no longer resizes 4 masks to 1024x1024
and then to the photo's size on every click.

Where the multiply-adds go (SAM decoder, width 256, one point; MAC = multiply-add):

- ``MaskDecoder.predict_masks`` projects all 4096 image tokens in every attention between
  prompt tokens and the image (k/v projections for token->image, q/out projections for
  image->token): 4 x 4096 x 256 x 128 = 0.54 GMAC per layer, 1.3 GMAC in all. Here the few
  prompt tokens are projected instead (:func:`engine.shared_decoder._tokens_to_image` and
  ``_image_to_tokens``: ``(Q W_k) X^T`` for ``Q (X W_k)^T``, ``out_proj`` folded into the
  values), about 0.12 GMAC per attention with 7 tokens: 0.55 GMAC in all.
- The output upscaling (two 2x2 stride-2 transposed convolutions, 0.4 GMAC) runs as two
  MatMuls on channel-last pixels (a 2x2 stride-2 transposed convolution maps each input
  pixel to 4 output pixels independently), so the 1M- and 2M-element NCHW transposes
  between layers disappear; one transpose of the final 4x256x256 logits restores the
  layout.

Method: SAM (Kirillov et al., 2023), ``segment_anything.modeling.MaskDecoder`` and
``TwoWayTransformer``; the algebra is exact (softmax ignores per-row constants; rows of the
attention weights sum to 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from segment_anything.modeling import Sam

from .build import EMBED_DIM, EMBED_SIZE, IMAGE_SIZE, LoadedModel
from .onnx_export import DecoderOnnxModel, embed_points, quantize_replacing, trace_to_onnx
from .shared_decoder import _heads, _tokens_to_image

INPUT_NAMES = ["image_tokens", "point_coords", "point_labels", "mask_input", "has_mask_input"]
OUTPUT_NAMES = ["iou_predictions", "low_res_masks"]


def _conv_transpose_as_matmul(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 stride-2 ``ConvTranspose2d`` as a Cin x (4*Cout) matrix on channel-last pixels.

    Output column order is (a, b, cout): input pixel (i, j) becomes output pixels
    (2i + a, 2j + b). Returns (weight Cin x 4*Cout, bias 4*Cout).
    """
    if tuple(conv.kernel_size) != (2, 2) or tuple(conv.stride) != (2, 2) or tuple(conv.padding) != (0, 0):
        raise ValueError(f"expected a 2x2 stride-2 transposed convolution, got {conv}")
    w = conv.weight.detach()  # Cin x Cout x 2 x 2
    cin, cout = w.shape[:2]
    weight = w.permute(0, 2, 3, 1).reshape(cin, 4 * cout)
    bias = conv.bias.detach().repeat(4) if conv.bias is not None else torch.zeros(4 * cout)
    return weight.contiguous(), bias.contiguous()


def _image_to_tokens(attn, q_img: torch.Tensor, k_tok: torch.Tensor, v_tok: torch.Tensor) -> torch.Tensor:
    """``attn(q=q_img, k=k_tok, v=v_tok)`` for 1 x N image tokens attending to 1 x T prompt tokens.

    The regrouping of :func:`engine.shared_decoder._image_to_tokens`, laid out N x (h*T) so the
    softmax runs over the last axis (onnxruntime transposes for any other axis). Returns 1 x N x C.
    """
    h = attn.num_heads
    c = attn.internal_dim // h
    n, d = q_img.shape[1], q_img.shape[2]
    k = _heads(attn.k_proj(k_tok), h)[0]  # h T c
    v = _heads(attn.v_proj(v_tok), h)[0]
    wq = attn.q_proj.weight.reshape(h, c, d)
    m = torch.einsum("htc,hcd->dht", k, wq).reshape(d, -1)  # C x hT
    bias = torch.einsum("htc,hc->ht", k, attn.q_proj.bias.reshape(h, c)).reshape(1, -1)
    scores = (torch.matmul(q_img[0], m) + bias) * (1.0 / math.sqrt(c))  # N x hT
    weights = torch.softmax(scores.reshape(n, h, -1), dim=-1).reshape(n, -1)
    d_out = attn.out_proj.weight.shape[0]
    wo = attn.out_proj.weight.reshape(d_out, h, c).permute(1, 2, 0)  # h c C
    u = torch.matmul(v, wo).reshape(-1, d_out)  # hT x C: out_proj folded into the values
    return (torch.matmul(weights, u) + attn.out_proj.bias).unsqueeze(0)


class BrowserDecoderOnnxModel(nn.Module):
    """Prompt encoder + mask decoder for one prompt set, low-res outputs only.

    Inputs (N prompt points): ``image_tokens`` 1x4096x256 (:func:`image_tokens`), ``point_coords`` 1xNx2 (1024
    frame), ``point_labels`` 1xN, ``mask_input`` 1x1x256x256, ``has_mask_input`` [1].
    Outputs: ``iou_predictions`` 1x4, ``low_res_masks`` 1x4x256x256 logits (index 0 = the
    single-mask token, 1..3 = the multimask candidates), equal to
    :class:`engine.onnx_export.DecoderOnnxModel`'s up to float rounding.

    Raises:
        ValueError: a mask decoder whose upscaling is not SAM's (2x2 stride-2 transposed
            convolutions, LayerNorm2d, activation).
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.sam = sam
        dec = sam.mask_decoder
        up = dec.output_upscaling
        if len(up) != 5:
            raise ValueError(f"unexpected output_upscaling: {up}")
        w1, b1 = _conv_transpose_as_matmul(up[0])
        w2, b2 = _conv_transpose_as_matmul(up[3])
        self.register_buffer("up1_w", w1)
        self.register_buffer("up1_b", b1)
        self.register_buffer("up2_w", w2)
        self.register_buffer("up2_b", b2)
        self.norm_up = up[1]
        self.act1, self.act2 = up[2], up[4]
        with torch.no_grad():
            pe = sam.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2).contiguous()  # 1 x 4096 x C
        self.register_buffer("image_pe", pe)

    def _transformer(self, src: torch.Tensor, tokens: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """TwoWayTransformer on 1 x 4096 x C image tokens ``src``; returns (output tokens, keys)."""
        tr = self.sam.mask_decoder.transformer
        pe = self.image_pe
        queries, keys = tokens, src
        for layer in tr.layers:
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + tokens
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            q = queries + tokens
            key_in = keys + pe
            queries = layer.norm2(queries + _tokens_to_image(layer.cross_attn_token_to_image, q, key_in, keys))
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + tokens
            keys = layer.norm4(keys + _image_to_tokens(layer.cross_attn_image_to_token, key_in, q, queries))
        # Only the IoU and mask tokens are read after the transformer.
        queries = queries[:, :n_out]
        q = queries + tokens[:, :n_out]
        out = _tokens_to_image(tr.final_attn_token_to_image, q, keys + pe, keys)
        return tr.norm_final_attn(queries + out), keys

    def _upscale(self, keys: torch.Tensor) -> torch.Tensor:
        """1 x 4096 x C -> 65536 x C/8 channel-last pixels in (i, j, a, b, a2, b2) order."""
        c1 = self.up1_w.shape[1] // 4
        x = torch.matmul(keys[0], self.up1_w) + self.up1_b  # 4096 x 4*C/4
        x = x.reshape(-1, c1)  # 16384 x C/4, pixel (i, j, a, b)
        n = self.norm_up
        x = F.layer_norm(x, (c1,), n.weight, n.bias, n.eps)  # LayerNorm2d over channels
        x = self.act1(x)
        c2 = self.up2_w.shape[1] // 4
        x = torch.matmul(x, self.up2_w) + self.up2_b
        return self.act2(x.reshape(-1, c2))

    @torch.no_grad()
    def forward(
        self,
        image_tokens: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sam = self.sam
        dec = sam.mask_decoder
        pe_mod = sam.prompt_encoder
        sparse = embed_points(pe_mod, point_coords, point_labels)
        # The dense prompt on channel-last tokens: mask_downscaling's last 1x1 convolution is a
        # MatMul, and no_mask_embed folds into its bias, so the 1M-element image side is touched
        # once (image_tokens + dense) instead of in NCHW adds, products and a transpose.
        md = pe_mod.mask_downscaling
        small = md[:-1](mask_input).flatten(2).transpose(1, 2)[0] * has_mask_input  # 4096 x 16
        last = md[-1]
        weight = last.weight.reshape(last.out_channels, last.in_channels).transpose(0, 1)
        bias = has_mask_input * last.bias + (1 - has_mask_input) * pe_mod.no_mask_embed.weight[0]
        src = image_tokens + (torch.matmul(small, weight) + bias)  # 1 x 4096 x C
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0).unsqueeze(0)
        n_out = output_tokens.shape[1]
        tokens = torch.cat([output_tokens, sparse], dim=1)
        hs, keys = self._transformer(src, tokens, n_out)
        iou_predictions = dec.iou_prediction_head(hs[:, 0, :])
        hyper = torch.stack([dec.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in range(dec.num_mask_tokens)], dim=1)
        up = self._upscale(keys)  # 65536 x C/8
        logits = torch.matmul(up, hyper[0].transpose(0, 1))  # 65536 x M, pixel (i, j, a, b, a2, b2)
        g = EMBED_SIZE
        m = dec.num_mask_tokens
        logits = logits.reshape(g, g, 2, 2, 2, 2, m).permute(6, 0, 2, 4, 1, 3, 5).reshape(1, m, 4 * g, 4 * g)
        return iou_predictions, logits


def image_tokens(image_embeddings: np.ndarray) -> np.ndarray:
    """1x256x64x64 (the contract's ``image_embeddings``) -> 1x4096x256 channel-last tokens
    (the browser graph's ``image_tokens``; the page makes them once per image)."""
    b, c, h, w = image_embeddings.shape
    return np.ascontiguousarray(image_embeddings.reshape(b, c, h * w).transpose(0, 2, 1))


def browser_feeds(contract_feeds: dict) -> dict:
    """The browser graph's feeds from :func:`engine.decoder_feeds`'s (contract) feeds."""
    feeds = {k: v for k, v in contract_feeds.items() if k not in ("image_embeddings", "orig_im_size")}
    return {"image_tokens": image_tokens(contract_feeds["image_embeddings"]), **feeds}


def _dummy_inputs() -> tuple[torch.Tensor, ...]:
    return (
        torch.randn(1, EMBED_SIZE * EMBED_SIZE, EMBED_DIM),
        torch.randint(0, IMAGE_SIZE, (1, 5, 2)).float(),
        torch.randint(0, 4, (1, 5)).float(),
        torch.randn(1, 1, 256, 256),
        torch.tensor([1.0]),
    )


def export_browser_decoder(model: LoadedModel | Sam, path: str | Path, quantize: bool = False) -> Path:
    """Export the browser's decoder graph to ONNX (opset 17) and check it against the contract's.

    Args:
        model: a built model (only its prompt encoder and mask decoder are exported).
        path: output ``.onnx`` file.
        quantize: also apply onnxruntime dynamic quantization (QUInt8 weights of the
            MatMuls with constant weights); the fp32 graph is exported first and replaced.

    Returns:
        The written path.

    Raises:
        RuntimeError: the fp32 graph's ``low_res_masks`` differ from the contract graph's
            (:class:`engine.onnx_export.DecoderOnnxModel` in torch) by more than 1e-3, or its
            ``iou_predictions`` by more than 1e-4, on the export inputs.
    """
    import onnxruntime as ort

    sam = model.sam if isinstance(model, LoadedModel) else model
    sam = sam.cpu().eval()
    wrapper = BrowserDecoderOnnxModel(sam).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = _dummy_inputs()
    fp32_path = path.with_suffix(".fp32.onnx") if quantize else path
    trace_to_onnx(wrapper, dummy, fp32_path, INPUT_NAMES, OUTPUT_NAMES,
                  {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    rng = np.random.default_rng(0)
    # A different prompt count than the dummy's (num_points must stay dynamic), with a mask input.
    contract = {
        "image_embeddings": rng.standard_normal((1, EMBED_DIM, EMBED_SIZE, EMBED_SIZE)).astype(np.float32),
        "point_coords": np.array([[[300.0, 200.0], [0.0, 0.0]]], np.float32),
        "point_labels": np.array([[1.0, -1.0]], np.float32),
        "mask_input": rng.standard_normal((1, 1, 256, 256)).astype(np.float32),
        "has_mask_input": np.ones(1, np.float32),
        "orig_im_size": np.array([480.0, 640.0], np.float32),
    }
    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    iou, low = session.run(None, browser_feeds(contract))
    ref = DecoderOnnxModel(sam).eval()
    _, ref_iou, ref_low = ref(*[torch.as_tensor(v) for v in contract.values()])
    err = float(np.max(np.abs(low - ref_low.numpy())))
    iou_err = float(np.max(np.abs(iou - ref_iou.numpy())))
    if err > 1e-3 or iou_err > 1e-4:
        raise RuntimeError(f"browser decoder differs from the contract graph: low_res_masks {err:.2e}, "
                           f"iou_predictions {iou_err:.2e}")
    if quantize:
        quantize_replacing(fp32_path, path)
    return path
