"""Prompt API authoring pages, under /provider/: the owners and admins of a team write the
prompts of the APIs their team owns, try a draft in the playground, and publish it.

Thin callers of ``llm.prompt_services`` (rules, audit) and ``portal.services.lifecycle``
(publishing, which generates the OpenAPI document); the playground calls
``llm.prompt_playground.run_draft``. Every lookup starts from the APIs the person manages
(``provider.managed_api``), so another team's prompt — or any prompt, for a plain member
of the owning team — is a 404.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from llm import prompt_services
from llm.models import PromptVersion
from llm.prompt_openapi import example_of
from llm.prompt_playground import PLAYGROUND_MAX_TOKENS
from portal import ratelimits
from portal.models import Api, VersionState
from portal.prompt_forms import PlaygroundForm, PromptApiForm, PromptForm, PromptVersionForm
from portal.services import provider
from portal.views.service_errors import form_errors, service_errors


def _prompt_api(request: HttpRequest, slug: str) -> Api:
    api = provider.managed_api(request.user, slug)  # NotFound: a 404 (service_errors)
    if not api.is_prompt:
        raise Http404("This API is not a prompt API.")
    return api


def _prompt(api: Api, pk: int) -> PromptVersion:
    prompt = PromptVersion.objects.filter(version__api=api, version__pk=pk).select_related("version", "route").first()
    if prompt is None:
        raise Http404("No such prompt version of this API.")
    return prompt


def version_form(api: Api, data: Any = None) -> PromptVersionForm:
    return PromptVersionForm(
        data,
        routes=prompt_services.available_routes(api.owner_id),
        versions=api.versions.filter(prompt__isnull=False).order_by("-created_at"),
        initial={"base_path": f"/{api.slug}/v{api.versions.count() + 1}", "version": f"v{api.versions.count() + 1}"},
    )


def _shown(output: Any) -> str:
    """The playground's output as the API will return it: text as is, JSON as JSON."""
    return output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False)


@login_required
@service_errors()
def api_create(request: HttpRequest) -> HttpResponse:
    tenants = provider.managed_tenants(request.user)
    if not tenants.exists():
        raise Http404("Only the owners and admins of a team publish its APIs.")
    form = PromptApiForm(request.POST or None, tenants=tenants)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        with form_errors(form) as outcome:
            api = prompt_services.create_prompt_api(
                data["tenant"],
                actor=request.user,
                slug=data["slug"],
                name=data["name"],
                description=data["description"],
                visibility=data["visibility"],
            )
        if outcome.ok:
            messages.success(request, f"{api.name} created. Add a version, write its prompt, then publish it.")
            return redirect("provider_api", slug=api.slug)
    status = 400 if form.is_bound else 200
    return render(request, "portal/provider/prompt_api_new.html", {"form": form}, status=status)


@login_required
@require_POST
@service_errors()
def version_create(request: HttpRequest, slug: str) -> HttpResponse:
    api = _prompt_api(request, slug)
    form = version_form(api, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        with form_errors(form) as outcome:
            prompt = prompt_services.create_prompt_version(
                api,
                actor=request.user,
                version=data["version"],
                base_path=data["base_path"],
                route=data["route"],
                copy_from=data["copy_from"],
            )
        if outcome.ok:
            messages.success(request, f"Version {prompt.version.version} created as a draft: write its prompt.")
            return redirect("provider_prompt", slug=api.slug, pk=prompt.version_id)
    from portal.views.provider import api_page  # the API page shows this form with its errors

    return api_page(request, api, version_form=form)


def _page(
    request: HttpRequest,
    api: Api,
    prompt: PromptVersion,
    *,
    form: PromptForm | None = None,
    playground: PlaygroundForm | None = None,
    result: Any = None,
    status: int = 200,
) -> HttpResponse:
    draft = prompt.version.state == VersionState.DRAFT
    if form is None:
        form = PromptForm(
            routes=prompt_services.available_routes(api.owner_id),
            initial={"route": prompt.route.alias, **PromptForm.prompt_fields(prompt.__dict__)},
        )
    if not draft:
        for field in form.fields.values():
            field.disabled = True
    if playground is None:
        playground = PlaygroundForm(initial={"inputs": example_of(prompt.input_schema)})
    return render(
        request,
        "portal/provider/prompt.html",
        {
            "api": api,
            "version": prompt.version,
            "prompt": prompt,
            "form": form,
            "draft": draft,
            "playground": playground,
            "result": result,
            "playground_max_tokens": PLAYGROUND_MAX_TOKENS,
            "output_text": _shown(result.output) if result is not None and result.ok else "",
        },
        status=status,
    )


@login_required
@service_errors()
def prompt_edit(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """A version's prompt: editable while it is a draft, shown read-only afterwards."""
    api = _prompt_api(request, slug)
    prompt = _prompt(api, pk)
    if request.method != "POST":
        return _page(request, api, prompt)
    form = PromptForm(request.POST, routes=prompt_services.available_routes(api.owner_id))
    if form.is_valid():
        with form_errors(form) as outcome:
            prompt_services.update_prompt(
                prompt,
                actor=request.user,
                route=form.cleaned_data["route"],
                **PromptForm.prompt_fields(form.cleaned_data),
            )
        if outcome.ok:
            messages.success(request, f"The prompt of {prompt.version.version} is saved.")
            return redirect("provider_prompt", slug=api.slug, pk=pk)
    return _page(request, api, prompt, form=form, status=400)


@login_required
@require_POST
@ratelimits.limited(ratelimits.PLAYGROUND_RUNS)
@service_errors()
def playground(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Run the version's saved prompt once on its model route with the sample input."""
    api = _prompt_api(request, slug)
    prompt = _prompt(api, pk)
    form = PlaygroundForm(request.POST)
    if not form.is_valid():
        return _page(request, api, prompt, playground=form, status=400)
    if not ratelimits.playground_team_limit(api.owner_id).take(request):
        form.add_error(None, "Your team has used its playground runs for this hour; try again later.")
        return _page(request, api, prompt, playground=form, status=429)
    from llm.prompt_playground import run_draft  # the data plane's: the gateway's adapters and router

    result = run_draft(prompt, form.cleaned_data["inputs"])
    return _page(request, api, prompt, playground=form, result=result)
