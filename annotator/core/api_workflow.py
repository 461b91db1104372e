"""REST API of team work: the annotator's queue and leases, "done", review, assignment,
members and throughput statistics. Thin views, as in ``api.py``: validate, call one
service or selector, serialize."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, stats, workflow
from .api import _service_call
from .models import Image, Membership
from .permissions import Action, require
from .serializers import (
    AnnotationOutput,
    AnnotationReviewInput,
    AssignInput,
    ImageDetailOutput,
    ImageOutput,
    ImageReviewInput,
    ImageReviewOutput,
    LeaseInput,
    LeaseOutput,
    LeaseReleaseInput,
    MemberInput,
    MemberOutput,
    MemberUpdateInput,
    StatsOutput,
)

GROUP_BY = OpenApiParameter("group_by", str, enum=list(stats.GROUPS), default="user")


def _image_detail(request, image: Image) -> dict:
    image = selectors.image_get(user=request.user, image_id=image.pk)
    image.prev_id, image.next_id, image.neighbour_order = selectors.image_navigation(user=request.user, image=image)
    return ImageDetailOutput(image).data


class QueueNextView(APIView):
    @extend_schema(request=None, responses={200: ImageDetailOutput, 204: None})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        image = _service_call(workflow.queue_next, user=request.user, project=project)
        if image is None:
            return Response(status=204)
        return Response(_image_detail(request, image))


class ImageLeaseView(APIView):
    @extend_schema(request=LeaseInput, responses={200: LeaseOutput, 403: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        data = LeaseInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            leased = _service_call(workflow.lease_acquire, user=request.user, image=image, **data.validated_data)
        except workflow.LeaseElsewhere as exc:
            return Response({"detail": str(exc), "code": "lease_elsewhere",
                             "lease": {"holder": request.user.username,
                                       "expires_at": exc.image.lease_expires_at.isoformat()}}, status=409)
        leased = Image.objects.select_related("lease_holder").get(pk=leased.pk)
        return Response(LeaseOutput(leased).data)

    @extend_schema(parameters=[OpenApiParameter("token", str, required=False)], responses={204: None})
    def delete(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        data = LeaseReleaseInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        _service_call(workflow.lease_release, user=request.user, image=image, token=data.validated_data["token"])
        return Response(status=204)


class ImageDoneView(APIView):
    @extend_schema(request=None, responses={200: ImageDetailOutput, 409: OpenApiTypes.OBJECT})
    def post(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        image = _service_call(workflow.image_mark_done, user=request.user, image=image)
        return Response(_image_detail(request, image))


class ProjectAssignView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=AssignInput, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.ASSIGN)
        data = AssignInput(data=request.data)
        data.is_valid(raise_exception=True)
        n = _service_call(workflow.images_assign, user=request.user, project=project,
                          image_ids=data.validated_data["images"], assignee_id=data.validated_data["user"])
        return Response({"assigned": n})


class ProjectReviewListView(APIView):
    @extend_schema(parameters=[OpenApiParameter("status", str, enum=list(Image.WorkStatus.values), default="done")],
                   responses=ImageOutput(many=True))
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.REVIEW)
        status = request.query_params.get("status", Image.WorkStatus.DONE)
        if status not in Image.WorkStatus.values:
            raise DRFValidationError({"status": [f"Must be one of {', '.join(Image.WorkStatus.values)}."]})
        images = selectors.images_for_user(user=request.user).filter(project=project, status=status).order_by("id")
        return Response(ImageOutput(images, many=True).data)


class ImageReviewView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=ImageReviewInput, responses={200: ImageReviewOutput, 409: OpenApiTypes.OBJECT})
    def post(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        _service_call(require, user=request.user, project=image.project_id, action=Action.REVIEW)
        data = ImageReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        decisions = [workflow.MaskDecision(annotation_id=d["id"], status=d["status"], comment=d["comment"])
                     for d in v["annotations"]]
        review = _service_call(workflow.image_review, user=request.user, image=image, decision=v["decision"],
                               comment=v["comment"], annotations=decisions)
        return Response(ImageReviewOutput(review).data)


class AnnotationReviewView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=AnnotationReviewInput, responses={200: AnnotationOutput})
    def post(self, request, annotation_id: int):
        annotation = selectors.annotation_get(user=request.user, annotation_id=annotation_id)
        _service_call(require, user=request.user, project=annotation.image.project_id, action=Action.REVIEW)
        data = AnnotationReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        annotation = _service_call(workflow.annotation_review, user=request.user, annotation_id=annotation.pk,
                                   **data.validated_data)
        return Response(AnnotationOutput(selectors.annotation_get(user=request.user, annotation_id=annotation.pk)).data)


class ProjectMembersView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.MEMBERS)
        return Response(MemberOutput(selectors.members_of(project=project), many=True).data)

    @extend_schema(request=MemberInput, responses={201: MemberOutput})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.MEMBERS)
        data = MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        membership = _service_call(workflow.member_add, user=request.user, project=project, **data.validated_data)
        return Response(MemberOutput(membership).data, status=201)


class ProjectMemberDetailView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=MemberUpdateInput, responses={200: MemberOutput})
    def patch(self, request, project_id: int, user_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.MEMBERS)
        data = MemberUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            membership = _service_call(workflow.member_update, user=request.user, project=project, member_id=user_id,
                                       role=data.validated_data["role"])
        except Membership.DoesNotExist:
            raise Http404("No such member.")
        return Response(MemberOutput(membership).data)

    @extend_schema(responses={204: None})
    def delete(self, request, project_id: int, user_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.MEMBERS)
        try:
            _service_call(workflow.member_remove, user=request.user, project=project, member_id=user_id)
        except Membership.DoesNotExist:
            raise Http404("No such member.")
        return Response(status=204)


def _stats(request, project_id: int) -> dict:
    project = selectors.project_get(user=request.user, project_id=project_id)
    _service_call(require, user=request.user, project=project, action=Action.DASHBOARD)
    group_by = request.query_params.get("group_by", "user")
    if group_by not in stats.GROUPS:
        raise DRFValidationError({"group_by": [f"Must be one of {', '.join(stats.GROUPS)}."]})
    return stats.project_stats(project=project, group_by=group_by)


class ProjectStatsView(APIView):
    @extend_schema(parameters=[GROUP_BY], responses=StatsOutput)
    def get(self, request, project_id: int):
        return Response(_stats(request, project_id))


class ProjectStatsCsvView(APIView):
    @extend_schema(parameters=[GROUP_BY], responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request, project_id: int):
        data = _stats(request, project_id)
        response = HttpResponse(stats.stats_csv(data), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="project-{project_id}-stats-by-{data["group_by"]}.csv"'
        return response
