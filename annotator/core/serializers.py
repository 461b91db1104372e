"""Input serializers (validate what a client sends) and output serializers (what it gets)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Bounds that keep client numbers inside the database's integer columns.
MAX_ID = 2**62
MAX_ACTIVE_MS = 24 * 3600 * 1000  # a day of active work on one mask is already absurd

from .models import (Annotation, Category, ExportJob, Image, ImageReview, Membership, ModelVersion, Project, Proposal,
                     RetrainJob)


# ---------------------------------------------------------------- inputs

class CategoryInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False,
                                   error_messages={"invalid": "A colour is #rrggbb, e.g. #e6194b."},
                                   help_text="#rrggbb; without it the next colour of the palette")


@extend_schema_field({"oneOf": [{"type": "string", "maxLength": 100},
                                {"type": "object", "required": ["name"], "properties": {
                                    "name": {"type": "string", "maxLength": 100},
                                    "color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}}}]})
class CategorySpecField(serializers.Field):
    """A label category to create: its name, or ``{"name", "color"}``. An item's errors come
    back under its index: ``{"categories": {"1": {"color": ["..."]}}}``."""

    def to_internal_value(self, data) -> dict:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict):
            raise serializers.ValidationError('A category is a name or {"name", "color"}.')
        item = CategoryInput(data=data)
        item.is_valid(raise_exception=True)
        return dict(item.validated_data)

    def to_representation(self, value):
        return value


class ProjectCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    categories = serializers.ListField(child=CategorySpecField(), required=False, default=list, max_length=1000)
    model_version = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1,
                                             max_value=MAX_ID,
                                             help_text="a promoted version's id (GET /api/models/); null or absent: "
                                                       "follow the server's configured default model")
    prefill_enabled = serializers.BooleanField(required=False, allow_null=True, default=None,
                                               help_text="generate pre-fill proposals; absent: the server's default "
                                                         "(ANNOTATOR_PREFILL_DEFAULT)")


class CategoryChangeInput(serializers.Serializer):
    id = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID,
                                  help_text="an existing label's id: rename and/or recolour it (masks keep it); "
                                            "absent: a new label")
    name = serializers.CharField(max_length=100, required=False)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False,
                                   error_messages={"invalid": "A colour is #rrggbb, e.g. #e6194b."})

    def validate(self, attrs):
        if "id" not in attrs and "name" not in attrs:
            raise serializers.ValidationError({"name": ["A new label needs a name."]})
        return attrs


@extend_schema_field({"oneOf": [{"type": "string", "maxLength": 100},
                                {"type": "object", "properties": {
                                    "id": {"type": "integer"},
                                    "name": {"type": "string", "maxLength": 100},
                                    "color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}}}]})
class CategoryChangeField(serializers.Field):
    """A label change of ``PATCH /api/projects/<id>/``: a name to add (kept as it was when a
    label of that name exists), ``{"name", "color"}`` a new label, ``{"id", "name"?, "color"?}``
    an existing label renamed / recoloured. Errors come back under the item's index."""

    def to_internal_value(self, data) -> dict | str:
        if isinstance(data, str):
            item = CategoryInput(data={"name": data})
            item.is_valid(raise_exception=True)
            return item.validated_data["name"]
        if not isinstance(data, dict):
            raise serializers.ValidationError('A label is a name, {"name", "color"} or {"id", "name", "color"}.')
        item = CategoryChangeInput(data=data)
        item.is_valid(raise_exception=True)
        return dict(item.validated_data)

    def to_representation(self, value):
        return value


class ProjectUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    categories = serializers.ListField(child=CategoryChangeField(), required=False, max_length=1000,
                                       help_text="labels to add or change (labels not listed are kept): a name or "
                                                 "{name, color} adds one, {id, name?, color?} renames/recolours one")


class ProjectModelInput(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True, min_value=1, max_value=MAX_ID,
                                             help_text="a promoted version's id (GET /api/models/), or null to "
                                                       "follow the server's configured default model")


class RLEField(serializers.JSONField):
    """COCO RLE object; checked in the service against the image size."""


class BrushInput(serializers.Serializer):
    """Hand edits of a mask with the brush / eraser on the annotate page (docs/api.md)."""

    strokes = serializers.IntegerField(min_value=0, max_value=MAX_ID, required=False, default=0)
    painted = serializers.IntegerField(min_value=0, max_value=MAX_ID, required=False, default=0,
                                       help_text="pixels painted into the mask")
    erased = serializers.IntegerField(min_value=0, max_value=MAX_ID, required=False, default=0,
                                      help_text="pixels erased from it")


class PromptsInput(serializers.Serializer):
    point_coords = serializers.ListField(child=serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2), required=False, default=list, max_length=500)
    point_labels = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=1), required=False, default=list, max_length=500)
    box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, required=False, allow_null=True, default=None)
    brush = BrushInput(required=False, help_text="present when the mask was edited by hand (brush / eraser)")


class AnnotationCreateInput(serializers.Serializer):
    category = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=MAX_ID)
    segmentation = RLEField()
    prompts = PromptsInput(required=False, default=dict)
    predicted_iou = serializers.FloatField(required=False, allow_null=True, default=None, min_value=-1, max_value=2)
    candidate_index = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0, max_value=3)
    model_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    active_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                         max_value=MAX_ACTIVE_MS)
    client_key = serializers.RegexField(r"^[A-Za-z0-9_-]{8,64}$", required=False, default="",
                                        help_text="idempotency key: a retried save with the same key returns the "
                                                  "annotation stored the first time (200)")


class AnnotationUpdateInput(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    category = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID)
    segmentation = RLEField(required=False)
    prompts = PromptsInput(required=False)
    predicted_iou = serializers.FloatField(required=False, allow_null=True)
    candidate_index = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=3)
    review_status = serializers.ChoiceField(choices=Annotation.ReviewStatus.choices, required=False)
    active_ms = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=MAX_ACTIVE_MS)


class ExportCreateInput(serializers.Serializer):
    format = serializers.ChoiceField(choices=ExportJob.Format.choices, default=ExportJob.Format.COCO)
    only_approved = serializers.BooleanField(required=False, default=False)
    include_images = serializers.BooleanField(required=False, default=False)


class ImportCocoInput(serializers.Serializer):
    file = serializers.FileField(help_text="a COCO instances JSON file")
    mode = serializers.ChoiceField(choices=["annotations", "proposals"], required=False, default="annotations",
                                   help_text="'annotations', or 'proposals': pre-fill proposals to accept, fix "
                                             "or reject on the annotate page")


# ---------------------------------------------------------------- outputs

class CategoryOutput(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name", "color"]


def _project_model_id(context: dict, project: Project) -> str:
    """The project's model id, looked up once per project per response."""
    from .model_versions import project_model_id

    cache = context.setdefault("_project_model_ids", {})
    if project.pk not in cache:
        cache[project.pk] = project_model_id(project)
    return cache[project.pk]


class ModelVersionOutput(serializers.ModelSerializer):
    decoder_url = serializers.SerializerMethodField(help_text="the decoder ONNX: DESIGN.md contract, fp32; ?quantized=1: QUInt8; ?graph=browser: the page's low-res graph")

    class Meta:
        model = ModelVersion
        fields = ["id", "model_id", "name", "architecture", "source", "parent", "sha256", "metrics", "promoted",
                  "created_at", "decoder_url"]

    def get_decoder_url(self, obj) -> str:
        return reverse("api-decoder", args=[obj.model_id])


class EmbeddingProgressOutput(serializers.Serializer):
    model_id = serializers.CharField()
    images = serializers.IntegerField()
    embedded = serializers.IntegerField(help_text="images with an embedding of the project's version")
    pending = serializers.IntegerField()
    failed = serializers.IntegerField()
    done = serializers.BooleanField()


class ProjectModelOutput(serializers.Serializer):
    model_version = ModelVersionOutput()
    follows_default = serializers.BooleanField(help_text="the project has no version of its own: it uses the "
                                                         "server's configured default")
    embeddings = EmbeddingProgressOutput()


class ProjectOutput(serializers.ModelSerializer):
    categories = CategoryOutput(many=True, read_only=True)
    image_count = serializers.IntegerField(read_only=True, default=0)
    model_id = serializers.SerializerMethodField(help_text="the model its embeddings and decoder come from")
    role = serializers.CharField(source="my_role", read_only=True, default=None,
                                 help_text="the requesting user's role (null for a site admin who is no member)")
    actions = serializers.SerializerMethodField(help_text="what the requesting user may do (permissions.Action)")

    class Meta:
        model = Project
        fields = ["id", "name", "model_id", "categories", "image_count", "prefill_enabled", "role", "actions",
                  "created_at"]

    def get_model_id(self, obj) -> str:
        return _project_model_id(self.context, obj)

    def get_actions(self, obj) -> list[str]:
        from .permissions import ROLE_ACTIONS, Action

        if getattr(obj, "my_superuser", False):
            return sorted(Action)
        return sorted(ROLE_ACTIONS.get(getattr(obj, "my_role", None), ()))


class ImageOutput(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    embedding_url = serializers.SerializerMethodField()
    model_id = serializers.SerializerMethodField()
    annotation_count = serializers.IntegerField(read_only=True, default=0)
    assignee = serializers.CharField(source="assignee.username", read_only=True, default=None)
    done_by = serializers.CharField(source="done_by.username", read_only=True, default=None)
    lease = serializers.SerializerMethodField(help_text='{"holder", "expires_at"} while someone holds the image')

    class Meta:
        model = Image
        fields = ["id", "project", "file_name", "width", "height", "checksum", "file_url",
                  "status", "assignee", "lease", "done_by",
                  "embedding_status", "embedding_error", "model_id", "embedding_url",
                  "annotation_count", "proposals_status", "proposals_error", "created_at"]

    def get_file_url(self, obj) -> str:
        return reverse("api-image-file", args=[obj.pk])

    def get_embedding_url(self, obj) -> str:
        return reverse("api-image-embedding", args=[obj.pk])

    def get_lease(self, obj) -> dict | None:
        from .workflow import lease_is_active

        if not lease_is_active(obj):
            return None
        return {"holder": obj.lease_holder.username, "expires_at": obj.lease_expires_at}

    def get_model_id(self, obj) -> str | None:
        """The project's model id when the image has an embedding of it, else the newest
        other embedding's (null for none)."""
        ids = [e.model_id for e in obj.embeddings.all()]
        current = _project_model_id(self.context, obj.project)
        if current in ids:
            return current
        return ids[-1] if ids else None


class ImageUploadOutput(ImageOutput):
    """One entry of an upload's answer: the image stored, or the one it duplicates."""

    duplicate = serializers.BooleanField(read_only=True, default=False,
                                         help_text="the file's bytes were already this image of the project: "
                                                   "nothing was stored")
    upload_name = serializers.CharField(read_only=True, help_text="the file's name in this upload "
                                                                  "(the member path inside an archive)")

    class Meta(ImageOutput.Meta):
        fields = ImageOutput.Meta.fields + ["duplicate", "upload_name"]


class ImageDetailOutput(ImageOutput):
    prev_id = serializers.IntegerField(read_only=True, allow_null=True)
    next_id = serializers.IntegerField(read_only=True, allow_null=True)
    neighbour_order = serializers.ChoiceField(
        choices=["queue", "project"], read_only=True, default="project",
        help_text="what prev_id / next_id follow: the caller's work queue (annotators) or the project's image ids")
    last_review = serializers.SerializerMethodField(help_text="the latest review verdict on the image, or null")

    class Meta(ImageOutput.Meta):
        fields = ImageOutput.Meta.fields + ["prev_id", "next_id", "neighbour_order", "last_review"]

    def get_last_review(self, obj) -> dict | None:
        review = obj.reviews.select_related("reviewer").first()
        return None if review is None else ImageReviewOutput(review).data


class AnnotationOutput(serializers.ModelSerializer):
    segmentation = serializers.JSONField(source="rle")
    author = serializers.CharField(source="author.username", read_only=True)
    reviewed_by = serializers.CharField(source="reviewed_by.username", read_only=True, default=None)

    class Meta:
        model = Annotation
        fields = ["id", "image", "category", "segmentation", "bbox", "area", "prompts", "predicted_iou",
                  "candidate_index", "model_id", "origin", "review_status", "review_comment", "reviewed_by",
                  "reviewed_at", "iscrowd", "author", "version", "client_key", "created_at", "updated_at"]


class ExportOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    download_url = serializers.SerializerMethodField()
    expires_at = serializers.SerializerMethodField(help_text="when the file of a done export is deleted "
                                                             "(ANNOTATOR_EXPORT_RETENTION_HOURS); null otherwise")

    size = serializers.SerializerMethodField(help_text="bytes of a done export's file; null otherwise")

    class Meta:
        model = ExportJob
        fields = ["id", "project", "format", "options", "status", "progress", "stats", "error", "created_by",
                  "created_at", "started_at", "finished_at", "expires_at", "size", "download_url"]

    def get_download_url(self, obj) -> str | None:
        return reverse("api-export-download", args=[obj.pk]) if obj.status == ExportJob.Status.DONE else None

    def get_size(self, obj) -> int | None:
        if obj.status != ExportJob.Status.DONE or not obj.file:
            return None
        try:
            return obj.file.size
        except OSError:  # the file went missing under a done job: say nothing rather than fail the list
            return None

    def get_expires_at(self, obj) -> datetime | None:
        if obj.status != ExportJob.Status.DONE or obj.finished_at is None:
            return None
        return obj.finished_at + timedelta(hours=settings.ANNOTATOR_EXPORT_RETENTION_HOURS)


# ---------------------------------------------------------------- team work (queue, review, members, stats)

def _lease_token() -> serializers.RegexField:
    return serializers.RegexField(
        r"^[A-Za-z0-9_-]{8,64}$", required=False, default="",
        error_messages={"invalid": "A lease token is 8-64 of A-Z a-z 0-9 _ -."},
        help_text="a random id of the page (browser tab) holding the lease; absent: the user's lease, whatever page")


class LeaseInput(serializers.Serializer):
    """``POST /api/images/<id>/lease``: take (open the image) or renew (heartbeat)."""

    token = _lease_token()
    renew = serializers.BooleanField(required=False, default=False,
                                     help_text="a heartbeat: refused (409 lease_elsewhere) when another page of the "
                                               "user took the lease over since")
    takeover = serializers.BooleanField(required=False, default=False,
                                        help_text="take the lease also from someone else who holds it (managers and "
                                                  "admins: 403 otherwise)")


class LeaseReleaseInput(serializers.Serializer):
    """``DELETE /api/images/<id>/lease?token=``: give the lease back."""

    token = _lease_token()


class LeaseOutput(serializers.Serializer):
    image = serializers.IntegerField(source="pk")
    holder = serializers.CharField(source="lease_holder.username")
    expires_at = serializers.DateTimeField(source="lease_expires_at")
    lease_seconds = serializers.SerializerMethodField()

    def get_lease_seconds(self, obj) -> int:
        from django.conf import settings

        return settings.ANNOTATOR_LEASE_SECONDS


class AssignInput(serializers.Serializer):
    images = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), min_length=1,
                                   max_length=100000)
    user = serializers.IntegerField(allow_null=True, min_value=1, max_value=MAX_ID,
                                    help_text="the annotator's user id; null = open to every annotator")


class MaskDecisionInput(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    status = serializers.ChoiceField(choices=["approved", "rejected"])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ImageReviewInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    annotations = MaskDecisionInput(many=True, required=False, default=list)


class AnnotationReviewInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=["approved", "rejected"])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ImageReviewOutput(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)
    annotator = serializers.CharField(source="annotator.username", read_only=True, default=None)

    class Meta:
        model = ImageReview
        fields = ["id", "image", "decision", "comment", "reviewer", "annotator", "created_at"]


class MemberInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.ANNOTATOR)


class MemberUpdateInput(serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberOutput(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user", "username", "role"]


class StatsRowOutput(serializers.Serializer):
    key = serializers.CharField(required=False, help_text="username, UTC date (YYYY-MM-DD) or model id")
    masks = serializers.IntegerField()
    images = serializers.IntegerField()
    masks_per_image = serializers.FloatField(allow_null=True)
    seconds_per_mask_median = serializers.FloatField(allow_null=True)
    seconds_per_mask_p90 = serializers.FloatField(allow_null=True)
    active_seconds = serializers.FloatField()
    masks_per_hour = serializers.FloatField(allow_null=True)
    clicks = serializers.IntegerField()
    clicks_per_mask = serializers.FloatField(allow_null=True)
    edits = serializers.IntegerField()
    prefill_accepted = serializers.IntegerField()
    prefill_edited = serializers.IntegerField()
    prefill_rejected = serializers.IntegerField()
    prefill_acceptance_rate = serializers.FloatField(allow_null=True)
    reviewed = serializers.IntegerField()
    review_rejected = serializers.IntegerField()
    review_rejection_rate = serializers.FloatField(allow_null=True)


class StatsOutput(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=["user", "day", "model"])
    columns = serializers.ListField(child=serializers.CharField())
    rows = StatsRowOutput(many=True)
    total = StatsRowOutput(help_text="the same columns over all events (its key is empty)")
    labels = serializers.DictField(child=serializers.CharField(), required=False,
                                   help_text="grouping by model: the name of each registered model version")


class ImportSkipOutput(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.JSONField(allow_null=True)
    reason = serializers.CharField()


class UnmatchedImageOutput(serializers.Serializer):
    id = serializers.JSONField(allow_null=True)
    file_name = serializers.CharField(allow_null=True)
    reason = serializers.CharField()


class ImportReportOutput(serializers.Serializer):
    imported = serializers.IntegerField()
    skipped = ImportSkipOutput(many=True)
    unmatched_images = UnmatchedImageOutput(many=True)
    categories_created = serializers.ListField(child=serializers.CharField())
    area_bbox_corrected = serializers.IntegerField()


# ---------------------------------------------------------------- pre-fill proposals

class ProposalOutput(serializers.ModelSerializer):
    segmentation = serializers.JSONField(source="rle")
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Proposal
        fields = ["id", "image", "source", "model_id", "category", "segmentation", "bbox", "area", "predicted_iou",
                  "stability_score", "point_coords", "crop_box", "status", "annotation", "decided_by",
                  "decided_at", "created_at"]


class ProposalAcceptInput(serializers.Serializer):
    category = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID,
                                        help_text="default: the proposal's own category (imported proposals)")
    segmentation = RLEField(required=False, allow_null=True, default=None,
                            help_text="the mask after editing; omitted = accept the proposal as it is")
    prompts = PromptsInput(required=False, allow_null=True, default=None)
    predicted_iou = serializers.FloatField(required=False, allow_null=True, default=None, min_value=-1, max_value=2)
    candidate_index = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                               max_value=3)
    model_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    active_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                         max_value=MAX_ACTIVE_MS)


class ProposalRejectInput(serializers.Serializer):
    active_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                         max_value=MAX_ACTIVE_MS)


class ProposalsAcceptAboveInput(serializers.Serializer):
    min_predicted_iou = serializers.FloatField(min_value=0.0, max_value=1.0)
    category = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=MAX_ID)


class PrefillSettingsInput(serializers.Serializer):
    enabled = serializers.BooleanField(required=False)
    params = serializers.JSONField(required=False, help_text="generator parameters to change "
                                   "(engine.AutomaticMaskParams fields)")


class PrefillRunInput(serializers.Serializer):
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
                                      required=False, allow_null=True, default=None, max_length=100000)


# ---------------------------------------------------------------- retraining (issue 9)

class RetrainStartInput(serializers.Serializer):
    steps = serializers.IntegerField(required=False, min_value=0, max_value=settings.ANNOTATOR_RETRAIN_MAX_STEPS,
                                     help_text="fine-tune steps (default ANNOTATOR_RETRAIN_STEPS); 0 only measures "
                                               "the current version on the held-out images")


class RetrainJobOutput(serializers.ModelSerializer):
    base_version = ModelVersionOutput(read_only=True)
    new_version = ModelVersionOutput(read_only=True, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    decision = serializers.SerializerMethodField(help_text="promoted | rejected once done, else null")

    class Meta:
        model = RetrainJob
        fields = ["id", "project", "status", "phase", "progress", "options", "decision", "metrics", "error",
                  "base_version", "new_version", "created_by", "created_at", "started_at", "finished_at"]

    def get_decision(self, obj) -> str | None:
        return (obj.metrics or {}).get("decision")
