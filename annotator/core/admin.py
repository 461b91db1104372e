from django.contrib import admin

from .models import (Annotation, AnnotationEvent, Category, Embedding, ExportJob, Image, ImageReview, Membership,
                     ModelVersion, Project)


class CategoryInline(admin.TabularInline):
    model = Category
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "model_version", "created_by", "created_at"]
    # Switching goes through model_versions.project_model_switch (it re-embeds the images):
    # PATCH /api/projects/<id>/model, not a form field.
    readonly_fields = ["model_version"]
    inlines = [CategoryInline, MembershipInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "model_id", "name", "architecture", "source", "parent", "promoted", "created_at"]
    list_filter = ["source", "architecture", "promoted"]
    # The identity of the weights is what embeddings are keyed by: never edited by hand.
    readonly_fields = ["model_id", "architecture", "checkpoint", "sha256", "source", "parent", "metrics",
                       "created_by", "created_at"]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "file_name", "width", "height", "embedding_status", "status", "assignee",
                    "lease_holder", "lease_expires_at", "done_by"]
    list_filter = ["embedding_status", "status", "project"]
    raw_id_fields = ["assignee", "lease_holder", "done_by"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "user", "role"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]


@admin.register(ImageReview)
class ImageReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "decision", "reviewer", "annotator", "created_at"]
    list_filter = ["decision"]
    raw_id_fields = ["image"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "category", "area", "origin", "review_status", "author", "version", "updated_at"]
    list_filter = ["origin", "review_status"]
    raw_id_fields = ["image"]


admin.site.register(Embedding)


@admin.register(AnnotationEvent)
class AnnotationEventAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "user", "project", "image_id", "annotation_id", "model_id", "origin",
                    "positive_clicks", "negative_clicks", "boxes", "active_ms", "mask_author", "created_at"]
    list_filter = ["kind", "origin", "project"]
    raw_id_fields = ["image"]


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "format", "status", "progress", "created_by", "created_at", "finished_at"]
    list_filter = ["status", "format"]
    readonly_fields = ["stats", "error"]
