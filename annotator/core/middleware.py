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
