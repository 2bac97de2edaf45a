"""Swagger UI at ``/docs`` and ReDoc at ``/redoc``, with their files served by the app.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine
without internet ``/docs`` is a blank page. This is FastAPI's documented
self-hosting instead (the app is made with ``docs_url=None`` and
``redoc_url=None``; the pages name local script URLs), with the files of the
``fastapi-offline`` package, which ships current Swagger UI 5 and ReDoc 2
builds. Nothing on either page is fetched from another host.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
# Where the files are served: swagger-ui-bundle.js, swagger-ui.css,
# redoc.standalone.js and favicon.png.
STATIC_URL = "/static/docs"
# (package, folder inside it) for Starlette's StaticFiles.
STATIC_PACKAGE = ("fastapi_offline", "static")


# ReDoc's sidebar shows Redocly's logo from Redocly's CDN, whatever the
# options; the page works without it. This policy keeps the browser from
# asking for it (or for anything else off this origin). ReDoc itself needs
# inline styles (styled-components) and a worker made from a blob: URL.
REDOC_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self' blob:",
        "worker-src 'self' blob:",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)


def install_docs(app: FastAPI) -> None:
    """Serve the documentation pages and their files (none of them in the OpenAPI document)."""
    if app.docs_url or app.redoc_url:
        raise RuntimeError("make the app with docs_url=None and redoc_url=None")
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(STATIC_URL, StaticFiles(packages=[STATIC_PACKAGE]), name="docs-static")

    def root(request: Request) -> str:
        # Behind a proxy that mounts the app under a prefix, every URL keeps it.
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger_ui(request: Request) -> HTMLResponse:
        prefix = root(request)
        return get_swagger_ui_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{prefix}{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{prefix}{STATIC_URL}/favicon.png",
            oauth2_redirect_url=prefix + redirect_url if redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        prefix = root(request)
        page = get_redoc_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{prefix}{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{prefix}{STATIC_URL}/favicon.png",
            # ReDoc's default page loads Montserrat and Roboto from Google.
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = REDOC_CSP
        return page

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    if redirect_url:
        app.add_route(redirect_url, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
