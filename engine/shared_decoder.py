"""SAM's mask decoder for many one-point prompts on the same image, with the image-side
work done once per call instead of once per prompt. Used by the automatic mask generator.

``MaskDecoder.predict_masks`` copies the 64x64x256 image embedding for every prompt and
projects all 4096 image tokens in each attention layer (about 1.3 GMAC per prompt). Here
the same function is computed in a cheaper order, exactly up to float rounding:

- layer 0 sees the same image tokens for every prompt (the dense prompt embedding is the
  constant ``no_mask_embed``), so its image-side projections are computed once;
- attention between a few tokens and 4096 image tokens is regrouped so that the small
  side is projected instead: ``(Q W_k) X^T`` for ``Q (X W_k)^T`` (the query bias term is a
  per-row constant that softmax drops), ``(A X) W_v^T`` for ``A (X W_v^T)`` (rows of A sum
  to 1), and ``out_proj`` folded into the per-head values;
- the IoU head only needs the transformer's tokens, so the mask upscaling (about 0.4 GMAC
  per prompt) runs only for the prompts whose masks the caller keeps.

The prompt tokens are dropped before the final attention (nothing reads them). About 0.38
GMAC per prompt for the transformer instead of 1.34.
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    """B x T x (h*c) -> B x h x T x c."""
    b, t, d = x.shape
    return x.reshape(b, t, h, d // h).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """B x h x T x c -> B x T x (h*c)."""
    b, h, t, c = x.shape
    return x.transpose(1, 2).reshape(b, t, h * c)


def _tokens_to_image(attn: Attention, q_tok: torch.Tensor, k_img: torch.Tensor, v_img: torch.Tensor) -> torch.Tensor:
    """``attn(q=q_tok, k=k_img, v=v_img)`` for per-prompt image tokens, without projecting them.

    q_tok: B x T x C; k_img, v_img: B x N x C. Returns B x T x C.
    """
    h = attn.num_heads
    b, t, _ = q_tok.shape
    c = attn.internal_dim // h
    d = k_img.shape[-1]
    q = _heads(attn.q_proj(q_tok), h)  # B h T c
    wk = attn.k_proj.weight.reshape(h, c, d)
    qk = torch.einsum("bhtc,hcd->bhtd", q, wk).reshape(b, h * t, d)  # k bias: constant per row, dropped
    scores = torch.bmm(qk, k_img.transpose(1, 2)).mul_(1.0 / math.sqrt(c))  # B hT N
    weights = torch.softmax(scores, dim=-1)
    av = torch.bmm(weights, v_img).reshape(b, h, t, d)  # B h T C
    wv = attn.v_proj.weight.reshape(h, c, d)
    out = torch.einsum("bhtd,hcd->bhtc", av, wv) + attn.v_proj.bias.reshape(1, h, 1, c)
    return attn.out_proj(_merge(out))


def _image_to_tokens(attn: Attention, q_img: torch.Tensor, k_tok: torch.Tensor, v_tok: torch.Tensor,
                     q_img_projected: bool = False) -> torch.Tensor:
    """``attn(q=q_img, k=k_tok, v=v_tok)`` for N image tokens attending to T prompt tokens.

    q_img: B x N x C (or 1 x N x (h*c) already passed through ``q_proj`` when
    ``q_img_projected``, shared by all prompts); k_tok, v_tok: B x T x C. Returns B x N x C.
    """
    h = attn.num_heads
    b, t, _ = k_tok.shape
    c = attn.internal_dim // h
    k = _heads(attn.k_proj(k_tok), h)  # B h T c
    v = _heads(attn.v_proj(v_tok), h)
    # Scores laid out B x h x T x N: the softmax over T (7 values) then runs along
    # contiguous rows of image tokens, several times faster than over a last dim of 7.
    if q_img_projected:
        n = q_img.shape[1]
        q = q_img.reshape(n, h, c).permute(1, 2, 0)  # h c N
        scores = torch.matmul(k, q).reshape(b, h * t, n)  # B hT N
    else:
        n, d = q_img.shape[1], q_img.shape[2]
        wq = attn.q_proj.weight.reshape(h, c, d)
        m = torch.einsum("bhtc,hcd->bhtd", k, wq).reshape(b, h * t, d)
        bias = torch.einsum("bhtc,hc->bht", k, attn.q_proj.bias.reshape(h, c)).reshape(b, h * t, 1)
        scores = torch.baddbmm(bias, m, q_img.transpose(1, 2))  # B hT N
    weights = torch.softmax(scores.mul_(1.0 / math.sqrt(c)).reshape(b, h, t, n), dim=2).reshape(b, h * t, n)
    d_out = attn.out_proj.weight.shape[0]
    wo = attn.out_proj.weight.reshape(d_out, h, c).permute(1, 2, 0)  # h c C
    u = torch.matmul(v, wo).reshape(b, h * t, d_out)  # out_proj folded into the values
    return torch.baddbmm(attn.out_proj.bias.reshape(1, 1, d_out), weights.transpose(1, 2), u)


class SharedImageDecoder:
    """SAM's prompt encoder + mask decoder for batches of single positive points on one image.

    Args:
        sam: a ``segment_anything.modeling.Sam`` (its ``prompt_encoder`` and ``mask_decoder``).
        embedding: 1x256x64x64 image embedding (float tensor on ``sam.device``).

    Equivalent to ``sam.prompt_encoder(points=(coords, ones), boxes=None, masks=None)``
    followed by ``sam.mask_decoder.predict_masks`` (segment_anything), split in two steps so
    that the upscaling runs only for prompts that are kept.
    """

    def __init__(self, sam: Sam, embedding: torch.Tensor) -> None:
        self.sam = sam
        dec = sam.mask_decoder
        tr = dec.transformer
        self.dec, self.tr = dec, tr
        _, d, eh, ew = embedding.shape
        self.grid = (eh, ew)
        dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, d, 1, 1)
        self.src = (embedding + dense).flatten(2).transpose(1, 2).contiguous()  # 1 N C
        self.pe = sam.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2).contiguous()  # 1 N C
        first = tr.layers[0]
        # Layer 0's image side is the same for every prompt: project it once.
        self.k0 = first.cross_attn_token_to_image.k_proj(self.src + self.pe)
        self.v0 = first.cross_attn_token_to_image.v_proj(self.src)
        self.q0 = first.cross_attn_image_to_token.q_proj(self.src + self.pe)
        self.output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)

    def tokens(self, coords_1024: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the two-way transformer for B one-point prompts.

        Args:
            coords_1024: Bx2 (x, y) in the 1024 frame (label 1, SAM's padding point added).

        Returns:
            ``hs`` Bx(1+num_mask_tokens)xC output tokens (IoU token first) and ``keys`` BxNxC image tokens
            (N = 64*64), to pass to :meth:`iou_predictions` and :meth:`masks`.
        """
        b = coords_1024.shape[0]
        labels = torch.ones((b, 1), dtype=torch.int, device=coords_1024.device)
        sparse, _ = self.sam.prompt_encoder(points=(coords_1024[:, None, :], labels), boxes=None, masks=None)
        point_embedding = torch.cat([self.output_tokens[None].expand(b, -1, -1), sparse], dim=1)
        queries = point_embedding
        keys = None  # layer 0 uses the shared image tokens
        for i, layer in enumerate(self.tr.layers):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + point_embedding
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            q = queries + point_embedding
            if keys is None:
                attn = layer.cross_attn_token_to_image
                heads = attn.num_heads
                out = torch.matmul(_heads(attn.q_proj(q), heads),
                                   _heads(self.k0, heads).transpose(-1, -2))
                out = torch.softmax(out.mul_(1.0 / math.sqrt(attn.internal_dim // heads)), dim=-1)
                out = attn.out_proj(_merge(torch.matmul(out, _heads(self.v0, heads))))
            else:
                key_in = keys + self.pe
                out = _tokens_to_image(layer.cross_attn_token_to_image, q, key_in, keys)
            queries = layer.norm2(queries + out)
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + point_embedding
            if keys is None:
                out = _image_to_tokens(layer.cross_attn_image_to_token, self.q0, q, queries, q_img_projected=True)
                keys = layer.norm4(self.src + out)
            else:
                out = _image_to_tokens(layer.cross_attn_image_to_token, key_in, q, queries)
                keys = layer.norm4(keys + out)
        # The two prompt tokens are not read after the transformer: the final attention
        # runs for the output tokens only.
        n_out = self.output_tokens.shape[0]
        queries = queries[:, :n_out]
        q = queries + point_embedding[:, :n_out]
        out = _tokens_to_image(self.tr.final_attn_token_to_image, q, keys + self.pe, keys)
        queries = self.tr.norm_final_attn(queries + out)
        return queries, keys

    def iou_predictions(self, hs: torch.Tensor) -> torch.Tensor:
        """B x (1+num_mask_tokens) predicted IoU of every mask token (index 0 = single-mask)."""
        return self.dec.iou_prediction_head(hs[:, 0, :])

    def masks(self, hs: torch.Tensor, keys: torch.Tensor, token_idx: list[int] | None = None) -> torch.Tensor:
        """Low-res mask logits, B x K x 256 x 256 (K = len(token_idx), default all mask tokens)."""
        dec = self.dec
        b, n, d = keys.shape
        src = keys.transpose(1, 2).reshape(b, d, *self.grid)
        up = dec.output_upscaling(src)
        idx = list(range(dec.num_mask_tokens)) if token_idx is None else token_idx
        hyper = torch.stack([dec.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in idx], dim=1)
        _, c, uh, uw = up.shape
        return torch.bmm(hyper, up.reshape(b, c, uh * uw)).reshape(b, len(idx), uh, uw)
