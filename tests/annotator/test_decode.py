"""Server-side decoding (``POST /api/images/<id>/decode``, issue 7): the masks are what
onnxruntime gives for the contract's feeds on the stored embedding, refinement and boxes
included; bad prompts get clear 400s, a stale model or a missing embedding a 409, and
another project's image a 404."""

from __future__ import annotations

import base64
import statistics

import numpy as np
import onnxruntime as ort
import pytest
from django.core.files.base import ContentFile
from rest_framework.test import APIClient

import engine
from annotator.core import decode, services
from annotator.core.model_runtime import current_model_id, decoder_path
from annotator.core.models import Embedding, Image
from engine.rle import rle_to_mask
from tests.factories import UserFactory, project_with_photos

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Embedding pks repeat across tests (rolled-back transactions): never serve one test's
    # cached embedding to the next.
    decode.caches_clear()
    yield
    decode.caches_clear()


def _post(client, image_id, body):
    return client.post(f"/api/images/{image_id}/decode", body, format="json")


def _f16(logits: np.ndarray) -> str:
    return base64.b64encode(logits.astype("<f2").tobytes()).decode()


def _low_res(body) -> np.ndarray:
    return np.frombuffer(base64.b64decode(body["low_res_masks"]), "<f2").astype(np.float32).reshape(4, 256, 256)


def _stored_zero_embedding(image) -> None:
    """A stored (all-zero) embedding of the current model: enough to reach the decoder."""
    emb = Embedding(image=image, model_id=current_model_id(), shape=[1, 256, 64, 64], sha256="0" * 64)
    emb.file.save("decode-test.f16", ContentFile(bytes(2 * 256 * 64 * 64)), save=False)
    emb.save()
    Image.objects.filter(pk=image.pk).update(embedding_status="ready")


def _reference(image, embedding, **prompt):
    """onnxruntime on the served decoder file with engine.decoder_feeds (the contract's feeds)."""
    session = ort.InferenceSession(str(decoder_path(current_model_id())), providers=["CPUExecutionProvider"])
    masks, iou, low_res = session.run(None, engine.decoder_feeds(embedding, (image.height, image.width), **prompt))
    return masks[0] > 0, iou[0], low_res[0]


def test_server_masks_are_onnxruntimes_for_the_same_feeds(api_client, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    services.embedding_compute(image=image)
    embedding = engine.embedding_from_bytes(Embedding.objects.get(image=image).file.read())
    model_id = current_model_id()
    h, w = image.height, image.width

    # One click: no box, so a padding point is appended (as the browser does).
    res = _post(api_client, image.pk, {"point_coords": [[240, 160]], "point_labels": [1], "mask_input": None,
                                       "model_id": model_id})
    assert res.status_code == 200, res.content
    body = res.json()
    ref_masks, ref_iou, ref_low = _reference(image, embedding, point_coords=np.array([[240, 160]]),
                                             point_labels=np.array([1]))
    assert len(body["masks"]) == 4 and all(m["size"] == [h, w] and isinstance(m["counts"], str) for m in body["masks"])
    for i, rle in enumerate(body["masks"]):
        assert np.array_equal(rle_to_mask(rle).astype(bool), ref_masks[i]), f"candidate {i} differs"
    assert np.allclose(body["iou_predictions"], ref_iou, atol=1e-5)
    low = _low_res(body)
    assert np.allclose(low, ref_low, rtol=1e-3, atol=1e-2)  # float16 on the wire
    assert set(body["timing_ms"]) == {"embedding_load", "run", "encode"}
    assert all(v >= 0 for v in body["timing_ms"].values())

    # A second click refines: the chosen candidate's low-res logits go back as fp16 mask_input.
    best = 1 + int(np.argmax(body["iou_predictions"][1:]))
    mask_input = low[best]
    res = _post(api_client, image.pk, {"point_coords": [[240, 160], [100.5, 80.25]], "point_labels": [1, 0],
                                       "mask_input": _f16(mask_input), "model_id": model_id})
    assert res.status_code == 200, res.content
    ref_masks, ref_iou, _ = _reference(image, embedding, point_coords=np.array([[240, 160], [100.5, 80.25]]),
                                       point_labels=np.array([1, 0]), mask_input=mask_input[None, None])
    for i, rle in enumerate(res.json()["masks"]):
        assert np.array_equal(rle_to_mask(rle).astype(bool), ref_masks[i]), f"refined candidate {i} differs"
    assert np.allclose(res.json()["iou_predictions"], ref_iou, atol=1e-5)

    # A box (corners labelled 2 and 3, no padding point) with a point.
    res = _post(api_client, image.pk, {"point_coords": [[200, 150], [150, 100], [330, 260]],
                                       "point_labels": [1, 2, 3], "model_id": model_id})
    assert res.status_code == 200, res.content
    ref_masks, _, _ = _reference(image, embedding, point_coords=np.array([[200, 150]]), point_labels=np.array([1]),
                                 box=np.array([150, 100, 330, 260]))
    for i, rle in enumerate(res.json()["masks"]):
        assert np.array_equal(rle_to_mask(rle).astype(bool), ref_masks[i]), f"box candidate {i} differs"

    # The quantized decoder is served too (its masks are within tolerance, not equal).
    res = _post(api_client, image.pk, {"point_coords": [[240, 160]], "point_labels": [1], "model_id": model_id,
                                       "quantized": True})
    assert res.status_code == 200, res.content

    # Informational: the server's own session.run time over a few clicks (warm caches).
    runs = []
    for k in range(15):
        r = _post(api_client, image.pk, {"point_coords": [[60 + 20 * k, 100 + 10 * k]], "point_labels": [1],
                                         "model_id": model_id})
        runs.append(r.json()["timing_ms"]["run"])
        assert r.json()["timing_ms"]["embedding_load"] < 5  # the LRU holds it
    print(f"\nserver decode session.run median {statistics.median(runs):.1f} ms over {len(runs)} clicks "
          f"({model_id}, {w}x{h})")


@pytest.mark.parametrize("body, field, message", [
    ({"point_coords": "240,160", "point_labels": [1]}, "point_coords", "Expected a list"),
    ({"point_coords": [[240, "160"]], "point_labels": [1]}, "point_coords", "two finite numbers"),
    ({"point_coords": [[240, 160, 1]], "point_labels": [1]}, "point_coords", "two finite numbers"),
    ({"point_coords": [[True, 160]], "point_labels": [1]}, "point_coords", "two finite numbers"),
    ({"point_coords": [], "point_labels": []}, "point_coords", "at least one point"),
    ({"point_coords": [[240, 160]], "point_labels": [1, 0]}, "point_labels", "1 point_coords but 2 point_labels"),
    ({"point_coords": [[240, 160]], "point_labels": [-1]}, "point_labels", "Must be 1 (foreground)"),
    ({"point_coords": [[240, 160]], "point_labels": ["1"]}, "point_labels", "Must be 1 (foreground)"),
    ({"point_coords": [[240, 160]], "point_labels": [5]}, "point_labels", "Must be 1 (foreground)"),
    ({"point_coords": [[2000, 160]], "point_labels": [1]}, "point_coords", "point 0 (2000, 160) is outside the"),
    ({"point_coords": [[-1, 160]], "point_labels": [1]}, "point_coords", "is outside the"),
    ({"point_coords": [[10, 10]], "point_labels": [2]}, "point_labels", "got 1 and 0"),
    ({"point_coords": [[10, 10], [20, 20], [5, 5], [9, 9]], "point_labels": [2, 3, 2, 3]}, "point_labels",
     "got 2 and 2"),
    ({"point_coords": [[50, 50], [10, 10]], "point_labels": [2, 3]}, "point_coords", "must be above and left"),
    ({"point_coords": [[240, 160]], "point_labels": [1], "mask_input": "not base64!"}, "mask_input",
     "not valid base64"),
    ({"point_coords": [[240, 160]], "point_labels": [1], "mask_input": base64.b64encode(b"\0" * 100).decode()},
     "mask_input", "is 100 bytes, expected 131072"),
    ({"point_coords": [[240, 160]], "point_labels": [1],
      "mask_input": base64.b64encode(np.full(65536, np.inf, "<f2").tobytes()).decode()}, "mask_input", "non-finite"),
    ({"point_coords": [[240, 160]], "point_labels": [1], "mask_input": 3}, "mask_input", "base64 string"),
    ({"point_coords": [[240, 160]], "point_labels": [1], "model_id": None}, "model_id", "may not be null"),
])
def test_bad_prompts_get_a_clear_400(api_client, user, body, field, message):
    project = project_with_photos(user=user)
    image = project.images.get()
    _stored_zero_embedding(image)
    body = {"model_id": current_model_id(), **body}
    res = _post(api_client, image.pk, body)
    assert res.status_code == 400, res.content
    errors = res.json()
    assert field in errors, errors
    assert message in str(errors[field]), errors


def test_too_many_points_and_a_non_json_body_are_refused(api_client, user):
    image = project_with_photos(user=user).images.get()
    _stored_zero_embedding(image)
    res = _post(api_client, image.pk, {"point_coords": [[1, 1]] * (decode.MAX_POINTS + 1),
                                       "point_labels": [1] * (decode.MAX_POINTS + 1), "model_id": current_model_id()})
    assert res.status_code == 400 and "At most 100 points" in str(res.json()["point_coords"])
    res = api_client.post(f"/api/images/{image.pk}/decode", "x=1", content_type="application/x-www-form-urlencoded")
    assert res.status_code == 415


def test_another_models_prompt_or_a_missing_embedding_is_a_409(api_client, user):
    image = project_with_photos(user=user).images.get()
    prompt = {"point_coords": [[240, 160]], "point_labels": [1], "model_id": current_model_id()}
    res = _post(api_client, image.pk, prompt)
    assert res.status_code == 409
    assert res.json()["code"] == "embedding_not_ready" and res.json()["embedding_status"] == "pending"
    assert "not ready" in res.json()["detail"]

    _stored_zero_embedding(image)
    res = _post(api_client, image.pk, {**prompt, "model_id": "vit_h-0123456789ab"})
    assert res.status_code == 409
    assert res.json()["code"] == "model_changed" and res.json()["model_id"] == current_model_id()
    assert "vit_h-0123456789ab" in res.json()["detail"] and "reload" in res.json()["detail"]
    assert _post(api_client, image.pk, prompt).status_code == 200


def test_members_decode_outsiders_get_404_anonymous_403(api_client, user, client):
    owner = UserFactory()
    project = project_with_photos(user=owner)
    image = project.images.get()
    _stored_zero_embedding(image)
    prompt = {"point_coords": [[240, 160]], "point_labels": [1], "model_id": current_model_id()}
    assert _post(api_client, image.pk, prompt).status_code == 404  # `user` is not a member
    assert _post(api_client, 999999, prompt).status_code == 404
    assert client.post(f"/api/images/{image.pk}/decode", prompt, content_type="application/json").status_code in (401, 403)

    # Every role may decode (it writes nothing: a reviewer could decode the same embedding in
    # the browser), like the embedding itself.
    for role in ("reviewer", "annotator"):
        member = UserFactory()
        services.project_add_member(project=project, user=member, role=role)
        c = APIClient()
        c.force_login(member)
        assert _post(c, image.pk, prompt).status_code == 200, role
