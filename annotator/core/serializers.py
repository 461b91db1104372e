"""Input serializers (validate what a client sends) and output serializers (what it gets)."""

from django.urls import reverse
from rest_framework import serializers

# Bounds that keep client numbers inside the database's integer columns.
MAX_ID = 2**62
MAX_ACTIVE_MS = 24 * 3600 * 1000  # a day of active work on one mask is already absurd

from .models import Annotation, Category, ExportJob, Image, Project, Proposal


# ---------------------------------------------------------------- inputs

class ProjectCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    categories = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)


class RLEField(serializers.JSONField):
    """COCO RLE object; checked in the service against the image size."""


class PromptsInput(serializers.Serializer):
    point_coords = serializers.ListField(child=serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2), required=False, default=list, max_length=500)
    point_labels = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=1), required=False, default=list, max_length=500)
    box = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4, required=False, allow_null=True, default=None)


class AnnotationCreateInput(serializers.Serializer):
    category = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=MAX_ID)
    segmentation = RLEField()
    prompts = PromptsInput(required=False, default=dict)
    predicted_iou = serializers.FloatField(required=False, allow_null=True, default=None, min_value=-1, max_value=2)
    candidate_index = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0, max_value=3)
    model_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    active_ms = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=0,
                                         max_value=MAX_ACTIVE_MS)


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


class ProjectOutput(serializers.ModelSerializer):
    categories = CategoryOutput(many=True, read_only=True)
    image_count = serializers.IntegerField(read_only=True, default=0)
    model_id = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "model_id", "categories", "image_count", "created_at"]

    def get_model_id(self, obj) -> str:
        return self.context.get("model_id", "")


class ImageOutput(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    embedding_url = serializers.SerializerMethodField()
    model_id = serializers.SerializerMethodField()
    annotation_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Image
        fields = ["id", "project", "file_name", "width", "height", "checksum", "file_url",
                  "embedding_status", "embedding_error", "model_id", "embedding_url",
                  "annotation_count", "proposals_status", "proposals_error", "created_at"]

    def get_file_url(self, obj) -> str:
        return reverse("api-image-file", args=[obj.pk])

    def get_embedding_url(self, obj) -> str:
        return reverse("api-image-embedding", args=[obj.pk])

    def get_model_id(self, obj) -> str | None:
        ids = [e.model_id for e in obj.embeddings.all()]
        current = self.context.get("model_id")
        if current in ids:
            return current
        return ids[-1] if ids else None


class ImageDetailOutput(ImageOutput):
    prev_id = serializers.IntegerField(read_only=True, allow_null=True)
    next_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta(ImageOutput.Meta):
        fields = ImageOutput.Meta.fields + ["prev_id", "next_id"]


class AnnotationOutput(serializers.ModelSerializer):
    segmentation = serializers.JSONField(source="rle")
    author = serializers.CharField(source="author.username", read_only=True)

    class Meta:
        model = Annotation
        fields = ["id", "image", "category", "segmentation", "bbox", "area", "prompts", "predicted_iou",
                  "candidate_index", "model_id", "origin", "review_status", "iscrowd", "author", "version",
                  "created_at", "updated_at"]


class ExportOutput(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = ["id", "project", "format", "options", "status", "progress", "stats", "error", "created_by",
                  "created_at", "started_at", "finished_at", "download_url"]

    def get_download_url(self, obj) -> str | None:
        return reverse("api-export-download", args=[obj.pk]) if obj.status == ExportJob.Status.DONE else None


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
