"""REST API views: validate input, call one service or selector, serialize the result."""

from __future__ import annotations

import mimetypes

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotModified
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .exports import coco_chunks
from .model_runtime import DECODER_GRAPHS, ModelUnavailable, UnknownModel, decoder_path
from .model_versions import model_version_choosable, model_versions_list, project_model_id
from .models import Embedding, Image, ExportJob
from .permissions import EXPORT_ROLES, Action, NotAllowed, require, require_role
from .serializers import (
    AnnotationCreateInput,
    AnnotationOutput,
    AnnotationUpdateInput,
    ExportCreateInput,
    ExportOutput,
    ImportCocoInput,
    ImportReportOutput,
    ImageDetailOutput,
    ImageOutput,
    ImageUploadOutput,
    ModelVersionOutput,
    ProjectCreateInput,
    ProjectModelInput,
    ProjectModelOutput,
    ProjectOutput,
    ProjectUpdateInput,
)

LONG_PRIVATE_CACHE = "private, max-age=31536000, immutable"


class BinaryRenderer(BaseRenderer):
    """Lets clients ask for ``application/octet-stream`` (the views return file responses
    themselves; this only takes part in content negotiation)."""

    media_type = "application/octet-stream"
    format = "bin"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


BINARY_RENDERERS = [JSONRenderer, BinaryRenderer]


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def _service_call(fn, **kwargs):
    """Call a service; map its refusals to DRF errors (400, 403, 409 with who holds a lease)."""
    from .workflow import LeaseConflict, StateConflict

    try:
        return fn(**kwargs)
    except services.ValidationError as exc:
        raise DRFValidationError(exc.errors)
    except NotAllowed as exc:
        raise PermissionDenied(str(exc))
    except LeaseConflict as exc:
        raise Conflict({"detail": str(exc), "lease": {"holder": exc.holder_name,
                                                      "expires_at": exc.image.lease_expires_at.isoformat()}})
    except StateConflict as exc:
        raise Conflict(str(exc))


def _etag_matches(request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    return etag in [t.strip() for t in header.split(",")] or header.strip() == "*"


def _immutable_file_response(request, etag: str, open_file, content_type: str):
    """304 when the client holds ``etag``, else the file; either way with the strong ETag and
    long private caching (content under one URL never changes: its ETag is its hash)."""
    if _etag_matches(request, etag):
        response = HttpResponseNotModified()
    else:
        response = FileResponse(open_file(), content_type=content_type)
    response["ETag"] = etag
    response["Cache-Control"] = LONG_PRIVATE_CACHE
    return response


class ModelListView(APIView):
    @extend_schema(responses=ModelVersionOutput(many=True))
    def get(self, request):
        return Response(ModelVersionOutput(model_versions_list(), many=True).data)


class DecoderView(APIView):
    renderer_classes = BINARY_RENDERERS

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request, model_id: str):
        quantized = request.query_params.get("quantized") in ("1", "true")
        graph = request.query_params.get("graph", "contract")
        if graph not in DECODER_GRAPHS:
            return Response({"detail": f"graph must be one of {', '.join(DECODER_GRAPHS)}, not {graph!r}."},
                            status=status.HTTP_400_BAD_REQUEST)
        try:
            path = decoder_path(model_id, quantized=quantized, graph=graph)
        except UnknownModel:
            raise Http404("This server does not serve that model.")
        except ModelUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        stat = path.stat()
        etag = f'"{model_id}-{graph}-{"q" if quantized else "f"}-{stat.st_size}-{int(stat.st_mtime)}"'
        return _immutable_file_response(request, etag, lambda: open(path, "rb"), "application/octet-stream")


class ProjectListView(APIView):
    @extend_schema(responses=ProjectOutput(many=True))
    def get(self, request):
        projects = selectors.projects_for_user(user=request.user)
        return Response(ProjectOutput(projects, many=True).data)

    @extend_schema(request=ProjectCreateInput, responses={201: ProjectOutput})
    def post(self, request):
        data = ProjectCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields["model_version"] = _service_call(model_version_choosable, version_id=fields.get("model_version"))
        project = _service_call(services.project_create, user=request.user, **fields)
        project = selectors.project_get(user=request.user, project_id=project.pk)
        return Response(ProjectOutput(project).data, status=201)


class ProjectDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=ProjectOutput)
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(ProjectOutput(project).data)

    @extend_schema(request=ProjectUpdateInput, responses=ProjectOutput)
    def patch(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.SETTINGS)
        data = ProjectUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        _service_call(services.project_update, project=project, user=request.user, **data.validated_data)
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(ProjectOutput(project).data)


class ProjectCategoryDetailView(APIView):
    """One label of a project: DELETE removes it unless saved masks carry it (409)."""

    @extend_schema(responses={204: None, 409: OpenApiTypes.OBJECT})
    def delete(self, request, project_id: int, category_id: int):
        from .models import Category

        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.SETTINGS)
        try:
            _service_call(services.category_delete, project=project, user=request.user, category_id=category_id)
        except Category.DoesNotExist:
            raise Http404("No such label in this project.")
        except services.CategoryInUse as exc:
            return Response({"detail": str(exc), "code": "category_in_use", "masks": exc.masks},
                            status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectModelView(APIView):
    """The project's model version and how far its images are embedded with it; PATCH
    switches the version (its images are embedded again in the background)."""

    parser_classes = [JSONParser]

    @staticmethod
    def _body(project) -> dict:
        from .model_versions import project_embedding_progress, project_model_version

        return ProjectModelOutput({
            "model_version": project_model_version(project),
            "follows_default": project.model_version_id is None,
            "embeddings": project_embedding_progress(project=project),
        }).data

    @extend_schema(responses=ProjectModelOutput)
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(self._body(project))

    @extend_schema(request=ProjectModelInput, responses=ProjectModelOutput)
    def patch(self, request, project_id: int):
        from .model_versions import project_model_switch

        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.MODEL)
        data = ProjectModelInput(data=request.data)
        data.is_valid(raise_exception=True)
        version = _service_call(model_version_choosable, version_id=data.validated_data["model_version"])
        _service_call(project_model_switch, project=project, user=request.user, version=version)
        return Response(self._body(selectors.project_get(user=request.user, project_id=project_id)))


class ProjectImagesView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=ImageOutput(many=True))
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        images = selectors.images_for_user(user=request.user).filter(project=project).prefetch_related("embeddings").order_by("id")
        return Response(ImageOutput(images, many=True).data)

    @extend_schema(
        request={"multipart/form-data": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        responses={201: ImageUploadOutput(many=True), 200: ImageUploadOutput(many=True)},
    )
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.SETTINGS)
        uploads = request.FILES.getlist("files")
        files = [(f.name, f.read()) for f in uploads]
        images = _service_call(services.images_upload, project=project, files=files, user=request.user)
        # 200, not 201, when every file was already in the project: nothing was created.
        created = any(not image.duplicate for image in images)
        return Response(ImageUploadOutput(images, many=True).data, status=201 if created else 200)


class ImageDetailView(APIView):
    @extend_schema(responses=ImageDetailOutput)
    def get(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        image.prev_id, image.next_id, image.neighbour_order = selectors.image_navigation(user=request.user, image=image)
        return Response(ImageDetailOutput(image).data)


class ImageFileView(APIView):
    renderer_classes = BINARY_RENDERERS

    @extend_schema(responses={(200, "image/*"): OpenApiTypes.BINARY})
    def get(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        source = image.display_file if image.display_file else image.file
        content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        return _immutable_file_response(request, f'"{image.checksum}"', lambda: source.open("rb"), content_type)


class ImageEmbeddingView(APIView):
    renderer_classes = BINARY_RENDERERS

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 409: OpenApiTypes.OBJECT})
    def get(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        project_model = project_model_id(image.project)
        # The browser names the model of the decoder it holds: it gets that model's embedding
        # or an error, never another model's.
        model_id = request.query_params.get("model_id") or project_model
        embedding = Embedding.objects.filter(image=image, model_id=model_id).first()
        if embedding is None:
            if model_id != project_model:
                return Response(
                    {"detail": f"This project now uses model {project_model}, not {model_id}: reload the page to "
                               f"load its decoder.", "code": "model_changed", "model_id": project_model,
                     "embedding_status": image.embedding_status, "embedding_error": image.embedding_error},
                    status=status.HTTP_409_CONFLICT,
                )
            if image.embedding_status == Image.EmbeddingStatus.READY:
                # Embedded with a model this server no longer runs: compute it again.
                services.image_request_embedding(image=image)
                image.embedding_status = Image.EmbeddingStatus.PENDING
            return Response(
                {"detail": f"The embedding is not ready (status: {image.embedding_status}).",
                 "embedding_status": image.embedding_status, "embedding_error": image.embedding_error,
                 "model_id": project_model},
                status=status.HTTP_409_CONFLICT,
            )
        response = _immutable_file_response(request, f'"{embedding.sha256}"', lambda: embedding.file.open("rb"),
                                            "application/octet-stream")
        response["X-Model-Id"] = embedding.model_id
        response["X-Embedding-Shape"] = ",".join(str(v) for v in embedding.shape)
        response["X-Embedding-Dtype"] = embedding.dtype
        response["Access-Control-Expose-Headers"] = "X-Model-Id, X-Embedding-Shape, X-Embedding-Dtype, ETag"
        return response


class ImageAnnotationsView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=AnnotationOutput(many=True))
    def get(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        return Response(AnnotationOutput(selectors.annotations_for_image(image=image), many=True).data)

    @extend_schema(request=AnnotationCreateInput, responses={201: AnnotationOutput, 200: AnnotationOutput})
    def post(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        data = AnnotationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        key = data.validated_data["client_key"]
        replay = selectors.annotation_by_client_key(image=image, user=request.user, client_key=key)
        if replay is not None:  # a retried save that landed the first time
            return Response(AnnotationOutput(replay).data, status=200)
        annotation = _service_call(services.annotation_create, image=image, user=request.user, **data.validated_data)
        return Response(AnnotationOutput(annotation).data, status=201)


class AnnotationDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=AnnotationOutput)
    def get(self, request, annotation_id: int):
        return Response(AnnotationOutput(selectors.annotation_get(user=request.user, annotation_id=annotation_id)).data)

    @extend_schema(request=AnnotationUpdateInput, responses={200: AnnotationOutput, 409: OpenApiTypes.OBJECT})
    def patch(self, request, annotation_id: int):
        selectors.annotation_get(user=request.user, annotation_id=annotation_id)
        data = AnnotationUpdateInput(data=request.data, partial=False)
        data.is_valid(raise_exception=True)
        try:
            annotation = _service_call(services.annotation_update, annotation_id=annotation_id,
                                       user=request.user, **data.validated_data)
        except services.VersionConflict as exc:
            return Response(
                {"detail": f"Someone else changed this annotation (now version {exc.current.version}).",
                 "current": AnnotationOutput(exc.current).data},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(AnnotationOutput(annotation).data)

    @extend_schema(responses={204: None})
    def delete(self, request, annotation_id: int):
        annotation = selectors.annotation_get(user=request.user, annotation_id=annotation_id)
        _service_call(services.annotation_delete, annotation=annotation, user=request.user)
        return Response(status=204)


class ProjectExportCocoView(APIView):
    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT})
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.EXPORT)
        body = "".join(coco_chunks(project=project))
        response = HttpResponse(body, content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="project-{project.pk}-coco.json"'
        return response


class ProjectExportsView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=ExportOutput(many=True))
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require_role, user=request.user, project=project, roles=EXPORT_ROLES, action="export")
        return Response(ExportOutput(selectors.exports_for_project(project=project), many=True).data)

    @extend_schema(request=ExportCreateInput, responses={201: ExportOutput})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = ExportCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        job = _service_call(services.export_start, project=project, user=request.user, **data.validated_data)
        response = Response(ExportOutput(job).data, status=201)
        response["Location"] = f"/api/exports/{job.pk}/"
        return response


class ExportDetailView(APIView):
    @extend_schema(responses=ExportOutput)
    def get(self, request, export_id: int):
        job = selectors.export_get(user=request.user, export_id=export_id)
        _service_call(require_role, user=request.user, project=job.project, roles=EXPORT_ROLES, action="export")
        return Response(ExportOutput(job).data)


class ExportDownloadView(APIView):
    renderer_classes = BINARY_RENDERERS

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 409: OpenApiTypes.OBJECT,
                              410: OpenApiTypes.OBJECT})
    def get(self, request, export_id: int):
        job = selectors.export_get(user=request.user, export_id=export_id)
        _service_call(require_role, user=request.user, project=job.project, roles=EXPORT_ROLES, action="export")
        if job.status == ExportJob.Status.EXPIRED:
            hours = settings.ANNOTATOR_EXPORT_RETENTION_HOURS
            return Response({"detail": f"This export expired: its file was deleted {hours:g} h after it was written "
                                       "(ANNOTATOR_EXPORT_RETENTION_HOURS). Start a new export to get the data.",
                             "status": job.status}, status=status.HTTP_410_GONE)
        if job.status != ExportJob.Status.DONE or not job.file:
            return Response({"detail": f"The export is not ready (status: {job.status}).", "status": job.status,
                             "progress": job.progress, "error": job.error}, status=status.HTTP_409_CONFLICT)
        name = job.file.name.rsplit("/", 1)[-1]
        content_type = "application/zip" if name.endswith(".zip") else "application/json"
        return FileResponse(job.file.open("rb"), as_attachment=True, filename=name, content_type=content_type)


class ProjectImportCocoView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": ImportCocoInput}, responses={200: ImportReportOutput})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = ImportCocoInput(data=request.data)
        data.is_valid(raise_exception=True)
        # Read as a stream (uploads over FILE_UPLOAD_MAX_MEMORY_SIZE are spooled to disk by
        # Django): a large file is never held in memory as parsed JSON.
        report = _service_call(services.annotations_import_coco, project=project, user=request.user,
                               fh=data.validated_data["file"], mode=data.validated_data["mode"])
        return Response(ImportReportOutput(report).data)
