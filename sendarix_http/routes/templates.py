"""``/v1/templates``: templates, their versions, publishing and previews."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.templates import Template, Templates, TemplateVersion
from sendarix_core.keys import Scope
from sendarix_core.representation import format_time
from sendarix_http.http_io import (
    JsonResponse,
    authorize_live,
    engine_of,
    query_int,
    read_json_object,
)
from sendarix_http.registry import Parameter, Reply, operation
from sendarix_http.schemas import define, list_of, nullable, time

__all__ = ["operations", "template_to_dict"]


# Test keys may create templates and add drafts, which no live message uses
# yet, but not publish or delete what live messages render.
_CHANGE = "publish or delete templates, which live mail uses"


def templates_of(request: Request) -> Templates:
    return engine_of(request).content.templates


def template_to_dict(template: Template, *, versions: bool = True) -> dict[str, Any]:
    """Return the API form; the parts are those of the published version."""
    published = template.published
    content: dict[str, Any] = {
        "name": template.name,
        "published_version": template.published_version,
        "latest_version": template.latest.version,
        "subject": published.subject,
        "html": published.html,
        "text": published.text,
        "created_at": format_time(template.created_at),
        "updated_at": format_time(template.updated_at),
    }
    if versions:
        content["versions"] = [
            _version_to_dict(version, template.published_version)
            for version in template.versions
        ]
    return content


def _version_to_dict(version: TemplateVersion, published: int) -> dict[str, Any]:
    if version.version == published:
        status = "published"
    elif version.version > published:
        status = "draft"
    else:
        status = "archived"
    return {
        "version": version.version,
        "status": status,
        "subject": version.subject,
        "html": version.html,
        "text": version.text,
        "created_at": format_time(version.created_at),
        "published_at": format_time(version.published_at),
    }


async def create_template(request: Request) -> Response:
    body, _ = await read_json_object(request)
    template = await templates_of(request).create(body)
    return JsonResponse(template_to_dict(template), status_code=201)


async def list_templates(request: Request) -> Response:
    params = request.query_params
    page = await templates_of(request).list_templates(
        limit=query_int(params, "limit", default=25, low=1, high=100),
        cursor=params.get("cursor"),
    )
    data = [template_to_dict(template, versions=False) for template in page.items]
    return JsonResponse({"data": data, "next_cursor": page.next_cursor})


async def get_template(request: Request) -> Response:
    template = await templates_of(request).get(request.path_params["name"])
    return JsonResponse(template_to_dict(template))


async def update_template(request: Request) -> Response:
    body, _ = await read_json_object(request)
    template = await templates_of(request).update(request.path_params["name"], body)
    return JsonResponse(template_to_dict(template))


async def publish_template(request: Request) -> Response:
    await authorize_live(request, Scope.TEMPLATES_WRITE, _CHANGE)
    body = await _optional_body(request)
    template = await templates_of(request).publish(request.path_params["name"], body)
    return JsonResponse(template_to_dict(template))


async def delete_template(request: Request) -> Response:
    await authorize_live(request, Scope.TEMPLATES_WRITE, _CHANGE)
    await templates_of(request).delete(request.path_params["name"])
    return Response(status_code=204)


async def render_template(request: Request) -> Response:
    body = await _optional_body(request)
    rendered = await templates_of(request).preview(request.path_params["name"], body)
    return JsonResponse(
        {"subject": rendered.subject, "html": rendered.html, "text": rendered.text}
    )


async def _optional_body(request: Request) -> dict[str, Any]:
    """Read a JSON object body; no body at all is an empty object."""
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return {}
    body, _ = await read_json_object(request)
    return body


_PART = nullable({"type": "string"})
_PARTS = {"subject": _PART, "html": _PART, "text": _PART}

TEMPLATE_REQUEST = define(
    "TemplateRequest",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
            **_PARTS,
        },
        "required": ["name"],
        "additionalProperties": False,
    },
)
TEMPLATE_UPDATE = define(
    "TemplateUpdate",
    {"type": "object", "properties": _PARTS, "additionalProperties": False},
)
PUBLISH_REQUEST = define(
    "TemplatePublishRequest",
    {
        "type": "object",
        "properties": {
            "version": {"type": "integer", "description": "default: the latest"}
        },
        "additionalProperties": False,
    },
)
RENDER_REQUEST = define(
    "TemplateRenderRequest",
    {
        "type": "object",
        "properties": {
            "template_data": {"type": "object"},
            "version": {"type": "integer", "description": "default: the latest"},
        },
        "additionalProperties": False,
    },
)
RENDERED = define(
    "RenderedTemplate",
    {
        "type": "object",
        "properties": _PARTS,
        "required": list(_PARTS),
        "additionalProperties": False,
    },
)
_SUMMARY_PROPERTIES = {
    "name": {"type": "string"},
    "published_version": {"type": "integer"},
    "latest_version": {"type": "integer"},
    **_PARTS,
    "created_at": time(),
    "updated_at": time(),
}
TEMPLATE_VERSION = define(
    "TemplateVersion",
    {
        "type": "object",
        "properties": {
            "version": {"type": "integer"},
            "status": {"enum": ["published", "draft", "archived"]},
            **_PARTS,
            "created_at": time(),
            "published_at": nullable(time()),
        },
        "additionalProperties": False,
    },
)
TEMPLATE = define(
    "Template",
    {
        "type": "object",
        "properties": {
            **_SUMMARY_PROPERTIES,
            "versions": {"type": "array", "items": TEMPLATE_VERSION},
        },
        "required": [*_SUMMARY_PROPERTIES, "versions"],
        "additionalProperties": False,
    },
)
TEMPLATE_SUMMARY = define(
    "TemplateSummary",
    {
        "type": "object",
        "properties": _SUMMARY_PROPERTIES,
        "required": list(_SUMMARY_PROPERTIES),
        "additionalProperties": False,
    },
)

_NAME = Parameter(
    name="name", location="path", description="the template", required=True
)
_SCOPE = Scope.TEMPLATES_WRITE
_TEMPLATE_REPLY = Reply(status=200, description="the template", schema=TEMPLATE)

operations = [
    operation(
        "POST",
        "/v1/templates",
        create_template,
        summary="Create a template",
        description="The first version is published at once. Parts are Jinja2 "
        "templates rendered in a sandbox; the html part is HTML-escaped.",
        tag="templates",
        scope=_SCOPE,
        request_schema=TEMPLATE_REQUEST,
        request_example={
            "name": "otp-code",
            "subject": "Your code is {{ code }}",
            "text": "Your code is {{ code }}. It expires in {{ expires_in }}.",
            "html": "<p>Your code is <b>{{ code }}</b>.</p>",
        },
        replies=Reply(status=201, description="the template", schema=TEMPLATE),
    ),
    operation(
        "GET",
        "/v1/templates",
        list_templates,
        summary="List templates by name",
        tag="templates",
        scope=_SCOPE,
        parameters=(
            Parameter(name="limit", location="query", description="1 to 100"),
            Parameter(name="cursor", location="query", description="next page"),
        ),
        replies=Reply(
            status=200,
            description="one page of templates",
            schema=list_of("TemplateList", TEMPLATE_SUMMARY, paged=True),
        ),
    ),
    operation(
        "GET",
        "/v1/templates/{name}",
        get_template,
        summary="Read a template with its versions",
        tag="templates",
        scope=_SCOPE,
        parameters=(_NAME,),
        replies=_TEMPLATE_REPLY,
    ),
    operation(
        "PATCH",
        "/v1/templates/{name}",
        update_template,
        summary="Add a draft version",
        description="The draft is the latest version with the given parts "
        "replaced (null removes a part). Sends use the published version "
        "until the draft is published.",
        tag="templates",
        scope=_SCOPE,
        parameters=(_NAME,),
        request_schema=TEMPLATE_UPDATE,
        replies=_TEMPLATE_REPLY,
    ),
    operation(
        "POST",
        "/v1/templates/{name}/publish",
        publish_template,
        summary="Publish a version",
        description="Publishes the latest version, or the one named by "
        "`version`, which also rolls back to an earlier version.",
        tag="templates",
        scope=_SCOPE,
        parameters=(_NAME,),
        request_schema=PUBLISH_REQUEST,
        request_required=False,
        replies=_TEMPLATE_REPLY,
    ),
    operation(
        "DELETE",
        "/v1/templates/{name}",
        delete_template,
        summary="Delete a template and all its versions",
        description="Messages already accepted keep their rendered content.",
        tag="templates",
        scope=_SCOPE,
        parameters=(_NAME,),
        replies=Reply(status=204, description="deleted"),
    ),
    operation(
        "POST",
        "/v1/templates/{name}/render",
        render_template,
        summary="Preview a rendering without sending",
        description="Renders the latest version (a draft, if there is one) "
        "unless `version` names another. A missing variable is a 422 that "
        "names every missing variable.",
        tag="templates",
        scope=_SCOPE,
        parameters=(_NAME,),
        request_schema=RENDER_REQUEST,
        request_required=False,
        request_example={
            "template_data": {"code": "847291", "expires_in": "5 minutes"}
        },
        replies=Reply(status=200, description="the rendered parts", schema=RENDERED),
    ),
]
