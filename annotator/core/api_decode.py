"""REST API of server-side decoding: ``POST /api/images/<id>/decode`` (docs/api.md "Images").

The annotate page decodes in the browser; this endpoint is the server round trip it is
measured against (``?decoder=server`` on the page, issue 7), and a decoder for clients that
cannot run onnxruntime-web.
"""

from __future__ import annotations

import math

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import decode, selectors
from .model_runtime import ModelUnavailable, UnknownModel


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@extend_schema_field({"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2})
class PointField(serializers.Field):
    """[x, y]: two finite JSON numbers (strings, booleans, NaN and infinity are refused)."""

    default_error_messages = {"invalid": "Must be [x, y]: two finite numbers."}

    def to_internal_value(self, data):
        if not (isinstance(data, list) and len(data) == 2 and all(_is_number(v) for v in data)):
            self.fail("invalid")
        return [float(data[0]), float(data[1])]

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "integer", "enum": [0, 1, 2, 3]})
class PointLabelField(serializers.Field):
    default_error_messages = {"invalid": "Must be 1 (foreground), 0 (background), 2 (box top-left) or 3 "
                                         "(box bottom-right)."}

    def to_internal_value(self, data):
        if not _is_number(data) or data not in (0, 1, 2, 3):
            self.fail("invalid")
        return int(data)

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "string", "format": "byte", "nullable": True})
class LowResLogitsField(serializers.Field):
    """base64 of fp16 256x256 logits -> 1x1x256x256 float32 (a string that is not is refused)."""

    default_error_messages = {"invalid": "Must be a base64 string (float16 256x256 logits) or null."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return decode.mask_input_from_base64(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc))

    def to_representation(self, value):
        return value


_COUNT_ERRORS = {"min_length": "A prompt needs at least one point (or a box's two corners).",
                 "max_length": "At most {max_length} points in one prompt."}


class DecodeInput(serializers.Serializer):
    """One prompt to decode. Context: ``image`` (coordinates are checked against its size)."""

    point_coords = serializers.ListField(child=PointField(), min_length=1, max_length=decode.MAX_POINTS,
                                         error_messages=_COUNT_ERRORS,
                                         help_text="(x, y) in pixels of the displayed image, box corners included")
    point_labels = serializers.ListField(child=PointLabelField(), min_length=1, max_length=decode.MAX_POINTS,
                                         error_messages=_COUNT_ERRORS)
    mask_input = LowResLogitsField(required=False, allow_null=True, default=None,
                                   help_text="base64 of little-endian float16 256x256 logits (the previous "
                                             "low_res_masks of the chosen candidate), or null")
    model_id = serializers.CharField(help_text="the model the client decodes for: must be the project's")
    quantized = serializers.BooleanField(default=False, help_text="run the QUInt8 decoder")

    def validate(self, data):
        coords, labels = data["point_coords"], data["point_labels"]
        if len(coords) != len(labels):
            raise serializers.ValidationError(
                {"point_labels": [f"{len(coords)} point_coords but {len(labels)} point_labels: one label per point."]})
        image = self.context["image"]
        w, h = image.width, image.height
        outside = [f"point {i} ({x:g}, {y:g}) is outside the {w}x{h} image." for i, (x, y) in enumerate(coords)
                   if not (0 <= x <= w and 0 <= y <= h)]
        if outside:
            raise serializers.ValidationError({"point_coords": outside})
        corners = {lab: [i for i, v in enumerate(labels) if v == lab] for lab in (2, 3)}
        if len(corners[2]) != len(corners[3]) or len(corners[2]) > 1:
            raise serializers.ValidationError({"point_labels": [
                "A box is one point labelled 2 (top-left) and one labelled 3 (bottom-right); "
                f"got {len(corners[2])} and {len(corners[3])}."]})
        if corners[2]:
            (x0, y0), (x1, y1) = coords[corners[2][0]], coords[corners[3][0]]
            if x0 > x1 or y0 > y1:
                raise serializers.ValidationError({"point_coords": [
                    f"The box corner labelled 2 ({x0:g}, {y0:g}) must be above and left of the one labelled 3 "
                    f"({x1:g}, {y1:g})."]})
        return data


class DecodeOutput(serializers.Serializer):
    masks = serializers.ListField(child=serializers.DictField(), help_text="4 COCO compressed RLEs "
                                  '{"size": [H, W], "counts": str}; 0 = single-mask token, 1..3 = candidates')
    iou_predictions = serializers.ListField(child=serializers.FloatField())
    low_res_masks = serializers.CharField(help_text="base64 of little-endian float16 4x256x256 logits")
    timing_ms = serializers.DictField(child=serializers.FloatField(),
                                      help_text="embedding_load, run (session.run), encode (RLE and base64)")


class ImageDecodeView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=DecodeInput, responses={200: DecodeOutput, 409: OpenApiTypes.OBJECT,
                                                   503: OpenApiTypes.OBJECT})
    def post(self, request, image_id: int):
        """Decode one prompt on the server with the image's stored embedding and the project's
        decoder (what the browser's worker does, as a round trip)."""
        image = selectors.image_get(user=request.user, image_id=image_id)
        data = DecodeInput(data=request.data, context={"image": image})
        data.is_valid(raise_exception=True)
        try:
            result = decode.prompts_decode(image=image, **data.validated_data)
        except decode.ModelMismatch as exc:
            return Response({"detail": str(exc), "code": "model_changed", "model_id": exc.project_model},
                            status=status.HTTP_409_CONFLICT)
        except decode.EmbeddingNotReady as exc:
            return Response({"detail": str(exc), "code": "embedding_not_ready",
                             "embedding_status": image.embedding_status, "embedding_error": image.embedding_error,
                             "model_id": exc.model_id}, status=status.HTTP_409_CONFLICT)
        except (UnknownModel, ModelUnavailable) as exc:
            return Response({"detail": f"No decoder for this project's model: {exc}"},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(DecodeOutput(result).data)
