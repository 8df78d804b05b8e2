"""Forms of the prompt API authoring pages. JSON is typed into textareas: parsing it here
turns any malformed, huge or absurdly deep document into an error beside its field (never a
500); the rules of a prompt stay in ``llm.prompt_services`` (``prompt_errors``), whose
per-field messages these forms place inline."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from llm.models import ModelRoute, OutputMode
from llm.prompt_services import prompt_errors
from portal.models import ApiVersion
from portal.models.catalog import Visibility

MAX_JSON_CHARS = 64 * 1024  # the data plane's schema size cap
MAX_INPUT_CHARS = 256 * 1024  # a playground sample
JSON_TEXTAREA = {"rows": 12, "spellcheck": "false", "class": "code"}


class JsonField(forms.CharField):
    """A JSON value typed as text; ``want_object`` refuses anything but a JSON object."""

    def __init__(self, *args: Any, want_object: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs=JSON_TEXTAREA))
        kwargs.setdefault("max_length", MAX_JSON_CHARS)
        kwargs.setdefault("strip", True)
        super().__init__(*args, **kwargs)
        self.want_object = want_object

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return {}
        if self.max_length is not None and len(text) > self.max_length:
            # Checked before parsing (the length validator runs only after to_python).
            raise forms.ValidationError(f"Keep this under {self.max_length:,} characters (it has {len(text):,}).")
        if "\x00" in text:
            raise forms.ValidationError("NUL characters are not accepted.")
        try:
            parsed = json.loads(text)
        except RecursionError as error:
            raise forms.ValidationError("This JSON nests too deeply.") from error
        except ValueError as error:
            raise forms.ValidationError(f"This is not valid JSON: {error}.") from error
        if self.want_object and not isinstance(parsed, dict):
            raise forms.ValidationError("Write a JSON object: { ... }.")
        return parsed


class PromptApiForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=None, label="Team", empty_label=None)  # type: ignore[arg-type]
    name = forms.CharField(max_length=120)
    slug = forms.SlugField(max_length=80, help_text="Its address in the catalog, e.g. sentiment.")
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.PUBLIC)

    def __init__(self, *args: Any, tenants: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = tenants  # type: ignore[attr-defined]


class PromptVersionForm(forms.Form):
    version = forms.CharField(max_length=40, initial="v1")
    base_path = forms.CharField(max_length=200, help_text="Where the gateway serves it, e.g. /sentiment/v1.")
    route = forms.ModelChoiceField(
        queryset=ModelRoute.objects.none(), label="Model route", empty_label=None, to_field_name="alias"
    )
    copy_from = forms.ModelChoiceField(
        queryset=ApiVersion.objects.none(),
        required=False,
        label="Start from",
        empty_label="a starter prompt",
        help_text="Copy the prompt of an existing version (a published prompt is changed by a new version).",
    )

    def __init__(self, *args: Any, routes: Any, versions: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["route"].queryset = routes  # type: ignore[attr-defined]
        self.fields["copy_from"].queryset = versions  # type: ignore[attr-defined]


class PromptForm(forms.Form):
    """A draft's prompt. ``clean`` asks the service's rules and puts each problem beside
    the field it concerns."""

    route = forms.ModelChoiceField(
        queryset=ModelRoute.objects.none(), label="Model route", empty_label=None, to_field_name="alias"
    )
    system_prompt = forms.CharField(
        required=False, max_length=50_000, widget=forms.Textarea(attrs={"rows": 4}), strip=False
    )
    user_template = forms.CharField(
        max_length=50_000,
        widget=forms.Textarea(attrs={"rows": 5}),
        strip=False,
        help_text="Text with {{variable}} placeholders, each a property of the input schema.",
    )
    input_schema = JsonField(label="Input schema (JSON Schema)")
    output_mode = forms.ChoiceField(choices=OutputMode.choices)
    output_schema = JsonField(required=False, label="Output schema (JSON mode)", want_object=False)
    temperature = forms.FloatField(required=False, min_value=0.0, max_value=2.0)
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)

    def __init__(self, *args: Any, routes: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["route"].queryset = routes  # type: ignore[attr-defined]

    # Browsers submit a textarea's line breaks as CRLF; the prompt keeps plain newlines.
    def clean_system_prompt(self) -> str:
        return str(self.cleaned_data["system_prompt"]).replace("\r\n", "\n")

    def clean_user_template(self) -> str:
        return str(self.cleaned_data["user_template"]).replace("\r\n", "\n")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        parsed = [name for name in ("input_schema", "output_schema", "user_template") if name in data]
        if len(parsed) == 3:
            for field, problems in prompt_errors(self.prompt_fields(data)).items():
                for problem in problems:
                    self.add_error(field if field in self.fields else None, problem)
        return data

    @staticmethod
    def prompt_fields(data: dict[str, Any]) -> dict[str, Any]:
        return {
            name: data.get(name)
            for name in (
                "system_prompt",
                "user_template",
                "input_schema",
                "output_mode",
                "output_schema",
                "temperature",
                "max_tokens",
            )
        } | {"output_schema": data.get("output_schema") or {}}


class PlaygroundForm(forms.Form):
    inputs = JsonField(label="Sample input (JSON)", max_length=MAX_INPUT_CHARS)
