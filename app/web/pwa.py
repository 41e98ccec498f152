"""The installable app: the web app manifest and the service worker.

``/sw.js`` is served from the root so that it may control every page of the site. It is
rendered with the list of the site's static files (app/static/web/) and a version made from
their contents: when any of them changes, the worker's text changes, the browser installs it,
it caches the new files under a new name and deletes the old caches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Response, current_app, json, render_template, url_for

from app.web import i18n

blp = Blueprint("web_pwa", __name__, template_folder="templates")

THEME_COLOUR = "#00563b"  # app.css --green
#: The service worker fetches the site's own pages and files, and nothing else.
WORKER_CSP = "default-src 'none'; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
ICONS = (
    ("web/icons/icon-192.png", "192x192", "any"),
    ("web/icons/icon-512.png", "512x512", "any"),
    ("web/icons/icon-maskable-512.png", "512x512", "maskable"),
)


def shell_files() -> list[str]:
    """The site's static files, as paths under the static folder (``web/...``), sorted."""
    root = Path(current_app.static_folder) / "web"
    return sorted(
        path.relative_to(root.parent).as_posix()
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    )


def shell_version(files: list[str]) -> str:
    """A digest of the static files' names and contents, and of the worker's own template."""
    digest = hashlib.sha256()
    static = Path(current_app.static_folder)
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256((static / name).read_bytes()).digest())
    template = Path(__file__).with_name("templates") / "web" / "sw.js"
    digest.update(template.read_bytes())
    return digest.hexdigest()[:16]


@blp.get("/sw.js")
def service_worker():
    files = shell_files()
    body = render_template(
        "web/sw.js",
        version=shell_version(files),
        shell=[url_for("static", filename=name) for name in files],
        t_en=i18n.translate("pwa.offline", "en"),
        t_es=i18n.translate("pwa.offline", "es"),
    )
    response = Response(body, mimetype="text/javascript")
    # Checked with the server at every update check, so a new version is found at once.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = WORKER_CSP
    return response


@blp.get("/manifest.webmanifest")
def manifest():
    lang = i18n.language()
    body = {
        "id": "/",
        "name": "Omnicard",
        "short_name": "Omnicard",
        "description": i18n.translate("pwa.description", lang),
        "lang": lang,
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "theme_color": THEME_COLOUR,
        "background_color": THEME_COLOUR,
        "icons": [
            {"src": url_for("static", filename=name), "sizes": sizes, "type": "image/png",
             "purpose": purpose}
            for name, sizes, purpose in ICONS
        ],
    }  # fmt: skip
    response = Response(json.dumps(body), mimetype="application/manifest+json")
    response.headers["Cache-Control"] = "no-cache"
    response.vary.add("Accept-Language")
    response.vary.add("Cookie")
    return response
