"""Cross-origin isolation for every page, so onnxruntime-web can use wasm threads
(DESIGN.md "Browser runtime"; without it onnxruntime-web silently runs one thread)."""


class CrossOriginIsolationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.setdefault("Cross-Origin-Embedder-Policy", "require-corp")
        response.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response


class RequestSizeLimitMiddleware:
    """Refuses a request whose declared body is too large with 413 and a DRF-shaped JSON
    error, before anything reads the body: multipart uploads above
    ``ANNOTATOR_MAX_REQUEST_BYTES``, any other body (JSON) above
    ``DATA_UPLOAD_MAX_MEMORY_SIZE``. (Django applies its own limits to form fields only;
    uploaded files and DRF's JSON parser read the stream as it comes.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings
        from django.http import JsonResponse

        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Invalid Content-Length header."}, status=400)
        multipart = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
        limit = settings.ANNOTATOR_MAX_REQUEST_BYTES if multipart else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            return JsonResponse(
                {"detail": f"The request body is {length} bytes, over the limit of {limit} bytes"
                           f"{' for an upload' if multipart else ''}."},
                status=413,
            )
        return self.get_response(request)
