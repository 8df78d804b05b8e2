"""How a portal page answers a refused service call, in one place (as the REST API's
``portal.rest.exceptions.handle`` does for the API):

- ``NotFound`` is a 404: another team's object is as absent as one that never existed.
- Any other ``ServiceError`` is the service's message: flashed above the page the view
  names as ``back`` (``@service_errors("application_detail", "pk")``), or, for a call made
  inside ``with form_errors(form) as outcome:``, an error on the form the page shows again.

Views call services without try/except of their own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from portal.services.errors import InvalidInput, NotFound, ServiceError


def service_errors(
    back: str | None = None, *url_kwargs: str
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorate a view: NotFound → 404; another ServiceError → its message and a redirect to
    the URL named ``back`` (reversed with the view's keyword arguments named in
    ``url_kwargs``). Without ``back`` other errors propagate (a page that calls only
    look-ups)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                return view(request, *args, **kwargs)
            except NotFound as error:
                raise Http404(error.message) from error
            except ServiceError as error:
                if back is None:
                    raise
                messages.error(request, error.message)
                return redirect(back, **{name: kwargs[name] for name in url_kwargs})

        return wrapped

    return decorate


@dataclass
class Outcome:
    """Whether the calls inside ``form_errors`` went through."""

    ok: bool = True


@contextmanager
def form_errors(
    form: forms.BaseForm, field: str | None = None, *, catch: type[ServiceError] = ServiceError
) -> Iterator[Outcome]:
    """Turn a refused service call (of type ``catch``) into an error on ``form`` (InvalidInput
    on ``field`` when one is named, anything else on the whole form) and go on: the view
    shows the form again when ``outcome.ok`` is False. NotFound, and errors not caught here,
    pass through to ``service_errors`` (a 404, or a message)."""
    outcome = Outcome()
    try:
        yield outcome
    except NotFound:
        raise
    except ServiceError as error:
        if not isinstance(error, catch):
            raise
        form.add_error(field if isinstance(error, InvalidInput) else None, error.message)
        outcome.ok = False
