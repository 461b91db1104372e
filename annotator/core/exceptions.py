"""The API's exception handler: DRF's, plus Django's request-size refusals as JSON errors
(Django would answer them with its HTML 400 page)."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": f"The request body is too large ({exc})."}, status=413)
    if isinstance(exc, (TooManyFilesSent, TooManyFieldsSent)):
        return Response({"detail": f"Too many files or fields in one request ({exc})."}, status=400)
    if isinstance(exc, SuspiciousOperation):
        return Response({"detail": f"Bad request ({type(exc).__name__})."}, status=400)
    return drf_exception_handler(exc, context)
