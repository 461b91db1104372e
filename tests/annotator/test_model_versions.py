"""Model versions (issue 9): installing an official checkpoint, a project's version,
switching it (re-embedding in the background, with progress), the embedding/decoder
pairing the browser relies on, the per-version model cache, and throughput per version.

The official checkpoints are 375 MB (ViT-B) to 2.5 GB (ViT-H) and are never downloaded:
``tiny_vit_b`` builds a checkpoint in the official ViT-B key layout (the same
``segment_anything`` builder, the same key names) with a 2-block, 64-wide image encoder,
and registers that builder as ``vit_b`` for the test. Everything after the builder —
torch.load with weights_only, the strict key check, SHA-256, decoder export, registration —
is the real code path.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from annotator.core import model_runtime, services
from annotator.core.model_runtime import ModelUnavailable, current_model_id, model_for_version
from annotator.core.model_versions import (model_version_default, model_version_register, project_model_id,
                                           project_model_switch)
from annotator.core.models import AnnotationEvent, Embedding, Image, ModelVersion
from engine.identity import file_sha256
from engine.rle import mask_to_rle
from tests.annotator.test_workflow import client_for
from tests.factories import UserFactory, grabcut_photo, project_with_photos

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    model_runtime.models_cache_clear()
    yield
    model_runtime.models_cache_clear()


@pytest.fixture
def tiny_vit_b(monkeypatch, tmp_path):
    """A checkpoint file in the official ViT-B key layout (2 encoder blocks, width 64) and
    the registry entry that builds that architecture as ``vit_b``."""
    import engine.build as build
    from segment_anything.build_sam import _build_sam

    tiny = functools.partial(_build_sam, encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2,
                             encoder_global_attn_indexes=[1])
    monkeypatch.setitem(build.MODEL_REGISTRY, "vit_b", build._official_builder(tiny, "vit_b"))
    torch.manual_seed(0)
    state = tiny(checkpoint=None).state_dict()
    path = tmp_path / "sam_vit_b_tiny.pth"
    torch.save(state, path)
    return path, state


def _default_copy(tmp_path: Path, name: str, scale: float) -> Path:
    """The shipped default's weights with the encoder's neck scaled: another model of the
    default architecture (what a retrain produces), with its own id."""
    from safetensors.torch import load_file, save_file

    from engine.identity import DEFAULT_WEIGHTS

    state = load_file(str(DEFAULT_WEIGHTS))
    key = next(k for k in state if k.startswith("image_encoder.") and k.endswith("weight") and state[k].ndim == 4)
    state[key] = state[key] * scale
    path = tmp_path / f"{name}.safetensors"
    save_file(state, str(path))
    return path


def _register_default_copy(tmp_path: Path, name: str, scale: float) -> ModelVersion:
    path = _default_copy(tmp_path, name, scale)
    sha = file_sha256(path)
    version, _ = model_version_register(model_id=f"default-{sha[:12]}", architecture="default", checkpoint=path,
                                        sha256=sha, source="retrained", name=name, parent=model_version_default(),
                                        metrics={"noc85_before": 17.8, "noc85_after": 16.9})
    return version


# ---------------------------------------------------------------- install

def test_model_install_loads_strictly_exports_both_decoders_and_registers(tiny_vit_b, api_client):
    path, _ = tiny_vit_b
    out = io.StringIO()
    call_command("model_install", "vit_b", str(path), "--name", "Tiny ViT-B", stdout=out)
    sha = file_sha256(path)
    version = ModelVersion.objects.get(model_id=f"vit_b-{sha[:12]}")
    assert "installed: version" in out.getvalue() and sha in out.getvalue()
    assert (version.name, version.architecture, version.source, version.promoted) == \
        ("Tiny ViT-B", "vit_b", "installed", True)
    assert version.sha256 == sha and version.checkpoint == str(path.resolve()) and version.parent is None
    fp32 = model_runtime.decoder_dir(version.model_id) / "decoder.onnx"
    quant = model_runtime.decoder_dir(version.model_id) / "decoder.quant.onnx"
    assert fp32.is_file() and quant.is_file()
    assert quant.stat().st_size < fp32.stat().st_size / 2  # QUInt8 weights
    agreement = version.metrics["decoder_quantized_vs_fp32"]
    assert agreement["trials"] == 8 and 0 <= agreement["mask_iou_min"] <= agreement["mask_iou_mean"] <= 1

    # Served: listed after the configured default, its decoder downloadable as exported.
    models = api_client.get("/api/models/").json()
    assert models[0]["model_id"] == current_model_id() and models[0]["source"] == "shipped"
    listed = {m["model_id"]: m for m in models}[version.model_id]
    res = api_client.get(listed["decoder_url"])
    assert res.status_code == 200 and b"".join(res.streaming_content) == fp32.read_bytes()
    res = api_client.get(listed["decoder_url"] + "?quantized=1")
    assert res.status_code == 200 and b"".join(res.streaming_content) == quant.read_bytes()

    # The same file again: one version.
    out = io.StringIO()
    call_command("model_install", "vit_b", str(path), stdout=out)
    assert "already installed" in out.getvalue() and ModelVersion.objects.filter(architecture="vit_b").count() == 1


def test_model_install_refuses_what_is_not_that_checkpoint(tiny_vit_b, tmp_path):
    path, state = tiny_vit_b
    missing = dict(state)
    missing.pop("mask_decoder.iou_prediction_head.layers.0.weight")
    torch.save(missing, tmp_path / "missing.pth")
    unexpected = {**state, "image_encoder.blocks.2.attn.qkv.weight": torch.zeros(192, 64)}
    torch.save(unexpected, tmp_path / "unexpected.pth")
    reshaped = {**state, "image_encoder.pos_embed": torch.zeros(1, 64, 64, 32)}
    torch.save(reshaped, tmp_path / "reshaped.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    cases = {
        "missing.pth": "1 missing keys ['mask_decoder.iou_prediction_head.layers.0.weight']",
        "unexpected.pth": "1 unexpected keys ['image_encoder.blocks.2.attn.qkv.weight']",
        "reshaped.pth": "image_encoder.pos_embed has shape (1, 64, 64, 32), expected (1, 64, 64, 64)",
        "junk.pth": "not a loadable PyTorch checkpoint",
        "absent.pth": "checkpoint not found",
    }
    for name, message in cases.items():
        with pytest.raises(CommandError) as err:
            call_command("model_install", "vit_b", str(tmp_path / name), stdout=io.StringIO())
        assert "not installed" in str(err.value) and message in str(err.value), (name, str(err.value))
    with pytest.raises(CommandError):  # only the official architectures are installed this way
        call_command("model_install", "default", str(path), stdout=io.StringIO())
    assert not ModelVersion.objects.exclude(source="shipped").exists()


# ---------------------------------------------------------------- per-project version, switching

def test_switching_a_project_reembeds_its_images_with_progress_and_pairs_embedding_with_decoder(
        tiny_vit_b, api_client, user, monkeypatch, django_capture_on_commit_callbacks):
    path, _ = tiny_vit_b
    call_command("model_install", "vit_b", str(path), stdout=io.StringIO())
    vit = ModelVersion.objects.get(architecture="vit_b")
    project = project_with_photos(user=user, photos=("124080.jpg", "llama.bmp"))
    images = list(project.images.order_by("id"))
    for image in images:
        services.embedding_compute(image=image)
    default_id = current_model_id()
    body = api_client.get(f"/api/projects/{project.pk}/model").json()
    assert body["follows_default"] is True and body["model_version"]["model_id"] == default_id
    assert body["embeddings"] == {"model_id": default_id, "images": 2, "embedded": 2, "pending": 0, "failed": 0,
                                  "done": True}

    queued: list[int] = []
    monkeypatch.setattr(services, "_enqueue_embeddings", queued.extend)
    with django_capture_on_commit_callbacks(execute=True):
        res = api_client.patch(f"/api/projects/{project.pk}/model", {"model_version": vit.pk}, format="json")
    assert res.status_code == 200, res.content
    assert res.json()["follows_default"] is False and res.json()["model_version"]["model_id"] == vit.model_id
    assert res.json()["embeddings"] == {"model_id": vit.model_id, "images": 2, "embedded": 0, "pending": 2,
                                        "failed": 0, "done": False}
    assert sorted(queued) == [i.pk for i in images]
    assert api_client.get(f"/api/projects/{project.pk}/").json()["model_id"] == vit.model_id

    # While pending, the browser holding the old decoder still gets embeddings of its model
    # (a correct mask) and nothing of the new one.
    url = f"/api/images/{images[0].pk}/embedding"
    res = api_client.get(url, {"model_id": default_id})
    assert res.status_code == 200 and res["X-Model-Id"] == default_id
    res = api_client.get(url)
    assert res.status_code == 409 and res.json()["embedding_status"] == "pending"
    assert res.json()["model_id"] == vit.model_id

    # The worker's service embeds with the project's version (the tiny ViT here).
    from annotator.core.tasks import embed_image

    embed_image.apply(args=[images[0].pk])
    body = api_client.get(f"/api/projects/{project.pk}/model").json()
    assert body["embeddings"]["embedded"] == 1 and body["embeddings"]["pending"] == 1
    embed_image.apply(args=[images[1].pk])
    body = api_client.get(f"/api/projects/{project.pk}/model").json()
    assert body["embeddings"] == {"model_id": vit.model_id, "images": 2, "embedded": 2, "pending": 0, "failed": 0,
                                  "done": True}
    assert set(Embedding.objects.filter(image__project=project).values_list("model_id", flat=True)) == \
        {default_id, vit.model_id}
    res = api_client.get(url, {"model_id": vit.model_id}, HTTP_ACCEPT="application/octet-stream")
    assert res.status_code == 200 and res["X-Model-Id"] == vit.model_id
    data = b"".join(res.streaming_content)
    # It decodes with the installed version's exported decoder.
    import engine
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_runtime.decoder_path(vit.model_id)), providers=["CPUExecutionProvider"])
    image = Image.objects.get(pk=images[0].pk)
    feeds = engine.decoder_feeds(engine.embedding_from_bytes(data), (image.height, image.width),
                                 np.array([[image.width / 2, image.height / 2]]), np.array([1]))
    masks = session.run(None, feeds)[0]
    assert masks.shape == (1, 4, image.height, image.width)
    detail = api_client.get(f"/api/images/{images[0].pk}/").json()
    assert detail["model_id"] == vit.model_id and detail["embedding_status"] == "ready"

    # A page that loaded the old decoder, asking for an image that has no embedding of it,
    # is told the project switched (the browser shows it; it never decodes a mismatch).
    # (Another photo: the same bytes again would be a duplicate, not a new image.)
    third = services.images_upload(project=project, files=[grabcut_photo("153077.jpg")], user=user)[0]
    services.embedding_compute(image=third)
    res = api_client.get(f"/api/images/{third.pk}/embedding", {"model_id": default_id})
    assert res.status_code == 409 and res.json()["code"] == "model_changed"
    assert res.json()["model_id"] == vit.model_id

    # Back to the default: the old embeddings are still there, ready at once, nothing queued.
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        res = api_client.patch(f"/api/projects/{project.pk}/model", {"model_version": None}, format="json")
    assert res.json()["follows_default"] is True
    assert queued == [third.pk]  # the only image never embedded with the default
    assert res.json()["embeddings"]["embedded"] == 2 and res.json()["embeddings"]["pending"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_reembeds_a_switched_project_with_its_version(celery_worker_process, tmp_path, user,
                                                                    api_client):
    from tests.conftest import wait_for

    project = project_with_photos(user=user)
    image = project.images.get()
    wait_for(lambda: Image.objects.get(pk=image.pk).embedding_status == "ready", timeout=180,
             what="the upload's embedding")
    retrained = _register_default_copy(tmp_path, "retrained", 1.05)
    res = api_client.patch(f"/api/projects/{project.pk}/model", {"model_version": retrained.pk}, format="json")
    assert res.status_code == 200 and res.json()["embeddings"]["pending"] == 1

    def done():
        body = api_client.get(f"/api/projects/{project.pk}/model").json()["embeddings"]
        assert body["failed"] == 0, Image.objects.get(pk=image.pk).embedding_error
        return body["done"]

    wait_for(done, timeout=180, what="re-embedding with the retrained version")
    embeddings = {e.model_id: e for e in Embedding.objects.filter(image=image)}
    assert set(embeddings) == {current_model_id(), retrained.model_id}
    assert embeddings[retrained.model_id].sha256 != embeddings[current_model_id()].sha256  # really another model
    res = api_client.get(f"/api/images/{image.pk}/embedding")
    assert res.status_code == 200 and res["X-Model-Id"] == retrained.model_id


def test_switching_needs_the_model_action_and_a_promoted_version(tmp_path, user):
    project = project_with_photos(user=user)
    candidate = _register_default_copy(tmp_path, "candidate", 1.05)
    ModelVersion.objects.filter(pk=candidate.pk).update(promoted=False)
    admin = client_for(user)
    res = admin.patch(f"/api/projects/{project.pk}/model", {"model_version": candidate.pk}, format="json")
    assert res.status_code == 400 and "not promoted" in str(res.json())
    res = admin.patch(f"/api/projects/{project.pk}/model", {"model_version": 10**9}, format="json")
    assert res.status_code == 400 and "No model version" in str(res.json())
    ModelVersion.objects.filter(pk=candidate.pk).update(promoted=True)
    for role, expected in (("annotator", 403), ("reviewer", 403), ("manager", 200)):
        member = UserFactory()
        services.project_add_member(project=project, user=member, role=role)
        client = client_for(member)
        assert client.get(f"/api/projects/{project.pk}/model").status_code == 200, role
        res = client.patch(f"/api/projects/{project.pk}/model", {"model_version": candidate.pk}, format="json")
        assert res.status_code == expected, (role, res.content)
    project.refresh_from_db()
    assert project.model_version_id == candidate.pk
    outsider = client_for(UserFactory())
    assert outsider.get(f"/api/projects/{project.pk}/model").status_code == 404


def test_a_late_embedding_of_the_previous_version_does_not_mark_the_image_ready(tmp_path, user, monkeypatch):
    project = project_with_photos(user=user)
    image = project.images.get()
    other = _register_default_copy(tmp_path, "other", 1.05)
    project_model_switch(project=project, user=user, version=other)
    # A task that loaded the previous (default) model before the switch finishes after it.
    monkeypatch.setattr("annotator.core.model_runtime.model_for_version",
                        lambda version: model_runtime.current_model())
    services.embedding_compute(image=image)
    assert Embedding.objects.filter(image=image, model_id=current_model_id()).exists()
    image.refresh_from_db()
    assert image.embedding_status == "pending"  # still waiting for `other`'s embedding
    monkeypatch.undo()
    services.embedding_compute(image=image)
    image.refresh_from_db()
    assert image.embedding_status == "ready"
    assert Embedding.objects.filter(image=image, model_id=other.model_id).exists()


def test_replaced_shipped_weights_retire_the_old_shipped_version(user):
    project = project_with_photos(user=user)
    current = model_version_default()
    old = ModelVersion.objects.create(model_id="default-000000000000", name="old shipped", architecture="default",
                                      source="shipped", promoted=True)
    current.delete()  # as if the server had never used the present weights
    assert model_version_default().model_id == current_model_id()
    old.refresh_from_db()
    assert old.promoted is False
    res = client_for(user).patch(f"/api/projects/{project.pk}/model", {"model_version": old.pk}, format="json")
    assert res.status_code == 400
    assert "default-000000000000" not in [m["model_id"] for m in client_for(user).get("/api/models/").json()]


def test_versions_load_by_id_in_a_small_lru_and_refuse_changed_weights(tmp_path, settings):
    settings.ANNOTATOR_MODEL_CACHE_SIZE = 1
    a = _register_default_copy(tmp_path, "a", 1.05)
    b = _register_default_copy(tmp_path, "b", 0.95)
    assert a.model_id != b.model_id != current_model_id()
    first = model_for_version(a)
    assert first.model_id == a.model_id and model_for_version(a) is first  # cached
    assert model_for_version(b).model_id == b.model_id
    assert list(model_runtime._versions) == [b.model_id]  # a was evicted
    assert model_for_version(a) is not first  # loaded again
    # The default never takes a cache slot: it is the process-wide current model.
    assert model_for_version(model_version_default()) is model_runtime.current_model()

    # Weights changed under a registered version: refused, never served as that version.
    model_runtime.models_cache_clear()
    Path(b.checkpoint).write_bytes(Path(a.checkpoint).read_bytes())
    with pytest.raises(ModelUnavailable, match="changed since it was registered"):
        model_for_version(b)


def test_an_embedding_task_with_unloadable_weights_fails_with_a_readable_reason(tmp_path, user):
    project = project_with_photos(user=user)
    image = project.images.get()
    gone = _register_default_copy(tmp_path, "gone", 1.1)
    project_model_switch(project=project, user=user, version=gone)
    Path(gone.checkpoint).unlink()
    from annotator.core.tasks import embed_image

    embed_image.apply(args=[image.pk])
    image.refresh_from_db()
    assert image.embedding_status == "failed" and "ModelUnavailable" in image.embedding_error
    assert "not found" in image.embedding_error


# ---------------------------------------------------------------- throughput per version

def test_stats_split_throughput_by_the_version_each_mask_was_made_with(tmp_path, user, api_client):
    project = project_with_photos(user=user)
    image = project.images.get()
    retrained = _register_default_copy(tmp_path, "retrained once", 1.02)

    def save(top: int, **extra) -> None:
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[top: top + 20, 10:60] = 1
        res = api_client.post(f"/api/images/{image.pk}/annotations/", {
            "segmentation": mask_to_rle(mask), "prompts": {"point_coords": [[30, top + 5]], "point_labels": [1]},
            "active_ms": 10_000, **extra}, format="json")
        assert res.status_code == 201, res.content

    default_id = current_model_id()
    save(10, model_id=default_id)  # the browser names its decoder's model
    save(40)  # a client that does not: the project's version is recorded
    project_model_switch(project=project, user=user, version=retrained)
    save(70, model_id=retrained.model_id, active_ms=4_000)
    save(100, active_ms=6_000)
    assert list(AnnotationEvent.objects.filter(project=project, kind="create").order_by("id")
                .values_list("model_id", flat=True)) == [default_id] * 2 + [retrained.model_id] * 2

    body = api_client.get(f"/api/projects/{project.pk}/stats", {"group_by": "model"}).json()
    rows = {r["key"]: r for r in body["rows"]}
    assert set(rows) == {default_id, retrained.model_id}
    assert rows[default_id]["masks"] == 2 and rows[default_id]["seconds_per_mask_median"] == 10.0
    assert rows[retrained.model_id]["masks"] == 2 and rows[retrained.model_id]["seconds_per_mask_median"] == 5.0
    assert body["labels"][retrained.model_id] == "retrained once (retrained)"
    assert body["labels"][default_id].endswith("(shipped)")
    page = client_for(user).get(f"/projects/{project.pk}/dashboard/")
    assert b"retrained once (retrained)" in page.content
    assert project_model_id(project) == retrained.model_id
