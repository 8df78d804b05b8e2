"""Limit/offset pages, with bounds a database can hold (a huge number is an empty page, not a crash)."""

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

LARGEST_OFFSET = 2**62


class Pagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 200

    def get_offset(self, request: Request) -> int:
        return min(super().get_offset(request), LARGEST_OFFSET)
