"""Retraining API (issue 9): start a fine-tune of the project's model on its accepted masks,
follow it, see its before/after held-out evaluation and decision."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors
from .api import _service_call
from .permissions import Action, require
from .retrain import retrain_start
from .serializers import RetrainJobOutput, RetrainStartInput

JOBS_LISTED = 20


class ProjectRetrainView(APIView):
    """GET: the project's retrain jobs, latest first; POST: start one (202, the job)."""

    parser_classes = [JSONParser]

    @extend_schema(responses=RetrainJobOutput(many=True))
    def get(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.MODEL)
        jobs = selectors.retrain_jobs_for_project(project=project)[:JOBS_LISTED]
        return Response(RetrainJobOutput(jobs, many=True).data)

    @extend_schema(request=RetrainStartInput, responses={202: RetrainJobOutput})
    def post(self, request, project_id: int):
        project = selectors.project_get(user=request.user, project_id=project_id)
        _service_call(require, user=request.user, project=project, action=Action.MODEL)
        data = RetrainStartInput(data=request.data or {})
        data.is_valid(raise_exception=True)
        job = _service_call(retrain_start, project=project, user=request.user, **data.validated_data)
        job = selectors.retrain_job_get(user=request.user, job_id=job.pk)
        response = Response(RetrainJobOutput(job).data, status=202)
        response["Location"] = f"/api/retrain/{job.pk}/"
        return response


class RetrainDetailView(APIView):
    @extend_schema(responses=RetrainJobOutput)
    def get(self, request, retrain_id: int):
        job = selectors.retrain_job_get(user=request.user, job_id=retrain_id)
        _service_call(require, user=request.user, project=job.project, action=Action.MODEL)
        return Response(RetrainJobOutput(job).data)
