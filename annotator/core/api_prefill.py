"""REST API of the semi-automatic mode: pre-fill settings and progress per project,
proposals per image, accept / reject / accept-above-threshold (docs/api.md "Pre-fill")."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import prefill, selectors
from .api import _service_call
from .models import Proposal
from .serializers import (
    AnnotationOutput,
    PrefillRunInput,
    PrefillSettingsInput,
    ProposalAcceptInput,
    ProposalOutput,
    ProposalRejectInput,
    ProposalsAcceptAboveInput,
)


def _settings_payload(project) -> dict:
    params = _service_call(prefill.prefill_params, project=project)
    return {"enabled": project.prefill_enabled, "params": params.to_dict(),
            "overrides": project.automatic_params, **selectors.prefill_summary(project=project)}


def _decided(exc: prefill.ProposalDecided) -> Response:
    p = exc.proposal
    who = f" by {p.decided_by.username}" if p.decided_by else ""
    return Response({"detail": f"This proposal was already {p.status}{who}.", "current": ProposalOutput(p).data},
                    status=status.HTTP_409_CONFLICT)


class ProjectPrefillView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request, project_id: int):
        """Pre-fill settings (generator parameters, defaults merged) and progress counts."""
        project = selectors.project_get(user=request.user, project_id=project_id)
        return Response(_settings_payload(project))

    @extend_schema(request=PrefillSettingsInput, responses=OpenApiTypes.OBJECT)
    def patch(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = PrefillSettingsInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = _service_call(prefill.prefill_settings_update, project=project, user=request.user,
                                **data.validated_data)
        return Response(_settings_payload(project))


class ProjectPrefillRunView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=PrefillRunInput, responses={202: OpenApiTypes.OBJECT})
    def post(self, request, project_id: int):
        """(Re)generate proposals for the project's embedded images (all, or ``image_ids``)."""
        project = selectors.project_get(user=request.user, project_id=project_id)
        data = PrefillRunInput(data=request.data)
        data.is_valid(raise_exception=True)
        queued = _service_call(prefill.prefill_run_project, project=project, user=request.user,
                               image_ids=data.validated_data["image_ids"])
        return Response({"queued": queued}, status=status.HTTP_202_ACCEPTED)


class ImageProposalsView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("status", str, description="pending (default), accepted, edited, rejected "
                                     "or all")],
        responses=ProposalOutput(many=True),
    )
    def get(self, request, image_id: int):
        image = selectors.image_get(user=request.user, image_id=image_id)
        wanted = request.query_params.get("status", Proposal.Status.PENDING)
        if wanted != "all" and wanted not in Proposal.Status.values:
            raise DRFValidationError({"status": [f"Must be 'all' or one of {', '.join(Proposal.Status.values)}."]})
        qs = selectors.proposals_for_image(image=image, status=None if wanted == "all" else wanted)
        return Response(ProposalOutput(qs, many=True).data)


class ImageProposalsAcceptView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=ProposalsAcceptAboveInput, responses={201: AnnotationOutput(many=True)})
    def post(self, request, image_id: int):
        """Accept every pending proposal of the image with predicted IoU >= the threshold."""
        image = selectors.image_get(user=request.user, image_id=image_id)
        data = ProposalsAcceptAboveInput(data=request.data)
        data.is_valid(raise_exception=True)
        annotations = _service_call(prefill.proposals_accept_above, image=image, user=request.user,
                                    **data.validated_data)
        return Response(AnnotationOutput(annotations, many=True).data, status=status.HTTP_201_CREATED)


class ProposalDetailView(APIView):
    @extend_schema(responses=ProposalOutput)
    def get(self, request, proposal_id: int):
        return Response(ProposalOutput(selectors.proposal_get(user=request.user, proposal_id=proposal_id)).data)


class ProposalAcceptView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=ProposalAcceptInput, responses={201: AnnotationOutput, 409: OpenApiTypes.OBJECT})
    def post(self, request, proposal_id: int):
        """Accept as proposed, or (with ``segmentation``) as edited; creates an annotation."""
        selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        data = ProposalAcceptInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            annotation = _service_call(prefill.proposal_accept, proposal_id=proposal_id, user=request.user,
                                       **data.validated_data)
        except prefill.ProposalDecided as exc:
            return _decided(exc)
        return Response(AnnotationOutput(annotation).data, status=status.HTTP_201_CREATED)


class ProposalRejectView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=ProposalRejectInput, responses={200: ProposalOutput, 409: OpenApiTypes.OBJECT})
    def post(self, request, proposal_id: int):
        selectors.proposal_get(user=request.user, proposal_id=proposal_id)
        data = ProposalRejectInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            proposal = _service_call(prefill.proposal_reject, proposal_id=proposal_id, user=request.user,
                                     **data.validated_data)
        except prefill.ProposalDecided as exc:
            return _decided(exc)
        return Response(ProposalOutput(proposal).data)
