from django.contrib import admin

from .models import Annotation, AnnotationEvent, Category, Embedding, ExportJob, Image, Membership, Project


class CategoryInline(admin.TabularInline):
    model = Category
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "created_by", "created_at"]
    inlines = [CategoryInline, MembershipInline]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "file_name", "width", "height", "embedding_status"]
    list_filter = ["embedding_status", "project"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "category", "area", "origin", "review_status", "author", "version", "updated_at"]
    list_filter = ["origin", "review_status"]
    raw_id_fields = ["image"]


admin.site.register(Embedding)
admin.site.register(AnnotationEvent)


@admin.register(ExportJob)
class ExportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "format", "status", "progress", "created_by", "created_at", "finished_at"]
    list_filter = ["status", "format"]
    readonly_fields = ["stats", "error"]
