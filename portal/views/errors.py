"""Error answers for the portal: JSON for API clients, a page for people."""

from django.http import JsonResponse
from django.shortcuts import render


def wants_json(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def ratelimited(request, exception=None):
    message = "Too many attempts. Wait a minute and try again."
    if wants_json(request):
        response = JsonResponse({"error": {"code": "rate_limited", "message": message}}, status=429)
    else:
        response = render(request, "errors/429.html", {"message": message}, status=429)
    response["Retry-After"] = "60"
    return response
