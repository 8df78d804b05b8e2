"""Answers shared by several REST resources."""

from typing import Any

from rest_framework import status
from rest_framework.response import Response


def secret_created(data: Any) -> Response:
    """201 for an answer that carries a secret, shown this once: no cache may keep it."""
    response = Response(data, status=status.HTTP_201_CREATED)
    response["Cache-Control"] = "no-store"
    return response
