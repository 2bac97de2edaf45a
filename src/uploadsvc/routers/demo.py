"""The browser demo at ``/demo``: upload straight to storage, confirm, list files.

Plain HTML, JS and CSS shipped inside the package (``static/demo/``), no
build step and no CDN. The page calls the API on its own origin and sends
file bytes only to the presigned storage URLs. Every response carries a
Content-Security-Policy that allows scripts from this origin only and
connections to this origin and to storage.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import FileResponse

from uploadsvc.config import Settings
from uploadsvc.deps import SettingsDep
from uploadsvc.errors import NotFound
from uploadsvc.schemas.text import Text

router = APIRouter(prefix="/demo", include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static" / "demo"
# The page's files, by the name they are served under: nothing else in the
# folder (or outside it) can be asked for.
ASSETS: dict[str, str] = {
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}


def storage_origins(settings: Settings) -> list[str]:
    """The origins a browser uploads to: where presigned URLs point."""
    if settings.storage_backend == "local":
        return [_origin(settings.public_base_url)]
    endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
    if endpoint is None:
        # AWS itself: bucket.s3.region.amazonaws.com or s3.region.amazonaws.com/bucket.
        return ["https://*.amazonaws.com"]
    origin = _origin(endpoint)
    if settings.s3_addressing_style == "path":
        return [origin]
    # Virtual-hosted style puts the bucket in front of the endpoint's host.
    scheme, host = origin.split("://", 1)
    return [origin, f"{scheme}://*.{host}"]


def content_security_policy(settings: Settings) -> str:
    connect = " ".join(["'self'", *storage_origins(settings)])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            # Thumbnails are image variants, fetched from storage by their signed URLs.
            f"img-src {connect}",
            f"connect-src {connect}",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        # The page holds a token: no other site may frame it or learn its URL.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


@router.get("")
async def demo_page(settings: SettingsDep) -> FileResponse:
    """The demo page."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers=_security_headers(settings),
    )


@router.get("/{name}")
async def demo_asset(name: Text, settings: SettingsDep) -> FileResponse:
    """The page's script and style sheet."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound("No such file.", code="not_found")
    return FileResponse(
        STATIC_DIR / name, media_type=media_type, headers=_security_headers(settings)
    )
