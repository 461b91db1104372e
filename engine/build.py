"""Model registry: one builder per model family (``default``, ``vit_b``, ``vit_l``, ``vit_h``).

Official SAM checkpoints (Kirillov et al., 2023) load unchanged into the
``segment-anything`` modeling classes; ``default`` is the project's own small model
(EfficientNet-Lite0 encoder + SAM prompt encoder and mask decoder) whose weights ship in
``engine/weights/default.safetensors``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.build_sam import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l

from .identity import DEFAULT_WEIGHTS, WEIGHTS_DIR, file_sha256  # noqa: F401  (re-exported)
from .modeling import LiteImageEncoder

log = logging.getLogger(__name__)

EMBED_DIM = 256
IMAGE_SIZE = 1024
EMBED_SIZE = 64

# Width of the default model's mask decoder MLPs: smaller than SAM's 2048 so that the
# decoder stays fast in the browser (see bench/ and issue 7).
DEFAULT_DECODER_MLP_DIM = 1024


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not match the architecture."""


@dataclass(frozen=True)
class LoadedModel:
    """A built model with the identity that embeddings and decoders are keyed by.

    Attributes:
        name: registry name (``default``, ``vit_b``, ...).
        model_id: ``<name>-<first 12 hex of the weights' SHA-256>``; ``<name>-untrained``
            when no weights were loaded.
        sam: the ``segment_anything.modeling.Sam`` module, in eval mode.
        weights_sha256: full hex digest of the weights file, or "" when untrained.
    """

    name: str
    model_id: str
    sam: Sam
    weights_sha256: str


def build_default_sam(pretrained_backbone: bool = True) -> Sam:
    """The default architecture with the backbone's ImageNet weights and a fresh decoder."""
    return Sam(
        image_encoder=LiteImageEncoder(out_chans=EMBED_DIM, pretrained_backbone=pretrained_backbone),
        prompt_encoder=PromptEncoder(
            embed_dim=EMBED_DIM,
            image_embedding_size=(EMBED_SIZE, EMBED_SIZE),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=EMBED_DIM, mlp_dim=DEFAULT_DECODER_MLP_DIM, num_heads=8
            ),
            transformer_dim=EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        # EfficientNet-Lite takes pixels scaled to [-1, 1].
        pixel_mean=[127.5, 127.5, 127.5],
        pixel_std=[127.5, 127.5, 127.5],
    )


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module``; any missing or unexpected key is an error.

    Raises:
        CheckpointError: keys differ or a tensor's shape does not match.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def load_default(weights: Path | None = None, allow_untrained: bool = False) -> LoadedModel:
    """Build the default model and load its weights (safetensors, fp16 or fp32).

    Args:
        weights: weights file; the shipped ``engine/weights/default.safetensors`` if None.
        allow_untrained: when the weights file does not exist, return the architecture with
            only the ImageNet backbone (model_id ``default-untrained``) instead of raising.
            For wiring and tests only: its masks are meaningless.

    Raises:
        CheckpointError: the file is missing (and ``allow_untrained`` is False) or its keys
            or shapes do not match.
    """
    from safetensors.torch import load_file

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    sam = build_default_sam(pretrained_backbone=not path.exists())
    if not path.exists():
        if not allow_untrained:
            raise CheckpointError(f"default model weights not found at {path}")
        log.warning("default model weights missing at %s: using an UNTRAINED decoder", path)
        return LoadedModel("default", "default-untrained", sam.eval(), "")
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    load_state_strict(sam, state, str(path))
    sha = file_sha256(path)
    return LoadedModel("default", f"default-{sha[:12]}", sam.eval(), sha)


def _official_builder(fn: Callable[..., Sam], name: str) -> Callable[..., LoadedModel]:
    def build(checkpoint: Path | str | None = None, **_: object) -> LoadedModel:
        if checkpoint is None:
            raise CheckpointError(f"{name} needs the path of an official checkpoint file")
        path = Path(checkpoint)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        sam = fn(checkpoint=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({exc})") from exc
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
        load_state_strict(sam, state, str(path))
        sha = file_sha256(path)
        return LoadedModel(name, f"{name}-{sha[:12]}", sam.eval(), sha)

    build.__doc__ = f"Build SAM {name} from an official checkpoint file (strict key check)."
    return build


def _default_builder(checkpoint: Path | str | None = None, allow_untrained: bool = False) -> LoadedModel:
    return load_default(Path(checkpoint) if checkpoint else None, allow_untrained=allow_untrained)


MODEL_REGISTRY: dict[str, Callable[..., LoadedModel]] = {
    "default": _default_builder,
    "vit_b": _official_builder(build_sam_vit_b, "vit_b"),
    "vit_l": _official_builder(build_sam_vit_l, "vit_l"),
    "vit_h": _official_builder(build_sam_vit_h, "vit_h"),
}


def build_model(name: str, checkpoint: Path | str | None = None, allow_untrained: bool = False) -> LoadedModel:
    """Build a registered model.

    Args:
        name: ``default``, ``vit_b``, ``vit_l`` or ``vit_h``.
        checkpoint: weights file (required for the official ViTs; optional for ``default``).
        allow_untrained: see :func:`load_default`; ignored for the official ViTs.

    Raises:
        KeyError: unknown model name.
        CheckpointError: missing/corrupt checkpoint or mismatched keys.
    """
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](checkpoint=checkpoint, allow_untrained=allow_untrained)
