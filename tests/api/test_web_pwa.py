"""The installable app's files through HTTP: the manifest (valid, its icons real PNGs of the
sizes it says) and the service worker (at the root, JavaScript, never cached stale, its
version following the static files)."""

from __future__ import annotations

import io
import json
import os
import re

from PIL import Image


def fetch(client, url: str) -> tuple[int, str, bytes]:
    """A static file's status, type and bytes (its file closed at once)."""
    with client.get(url) as response:
        return response.status_code, response.mimetype, response.get_data()


def test_the_manifest_is_valid_json_with_the_right_type_and_the_sites_green(client):
    response = client.get("/manifest.webmanifest")

    assert response.status_code == 200
    assert response.mimetype == "application/manifest+json"
    manifest = json.loads(response.get_data(as_text=True))
    assert manifest["name"] == "Omnicard" and manifest["short_name"] == "Omnicard"
    assert manifest["start_url"] == "/" and manifest["scope"] == "/"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"] == manifest["background_color"] == "#00563b"
    assert b"--green: #00563b;" in fetch(client, "/static/web/app.css")[2]


def test_the_manifests_icons_exist_as_pngs_of_the_sizes_it_says(client):
    icons = client.get("/manifest.webmanifest").json["icons"]

    purposes = {(icon["sizes"], icon.get("purpose", "any")) for icon in icons}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= purposes
    for icon in icons:
        status, mimetype, data = fetch(client, icon["src"])
        assert status == 200, icon
        assert mimetype == icon["type"] == "image/png"
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG"
        assert f"{image.width}x{image.height}" == icon["sizes"]


def test_the_maskable_icon_is_opaque_to_its_edges(client):
    """A launcher crops a maskable icon to its own shape: no transparent corner may show."""
    icon = next(
        i for i in client.get("/manifest.webmanifest").json["icons"] if i["purpose"] == "maskable"
    )
    image = Image.open(io.BytesIO(fetch(client, icon["src"])[2])).convert("RGBA")
    corners = [(0, 0), (image.width - 1, 0), (0, image.height - 1)]
    assert all(image.getpixel(xy)[3] == 255 for xy in corners)
    assert image.getpixel((0, 0))[:3] == (0, 86, 59)


def test_the_manifest_describes_the_app_in_the_shoppers_language(client):
    manifest = client.get("/manifest.webmanifest", headers={"Accept-Language": "es"}).json
    assert manifest["lang"] == "es"
    assert "tarjetas" in manifest["description"]


def test_the_service_worker_is_served_from_the_root_as_javascript_and_checked_every_time(client):
    response = client.get("/sw.js")

    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"
    # It fetches this site's pages and files, and may run nothing else.
    csp = response.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp
    assert "Service-Worker-Allowed" not in response.headers


def shell_of(text: str) -> list[str]:
    return json.loads(re.search(r"^const SHELL = (.*);$", text, re.M).group(1))


def version_of(text: str) -> str:
    return json.loads(re.search(r"^const VERSION = (.*);$", text, re.M).group(1))


def test_the_service_worker_precaches_the_shell_and_every_file_it_names_exists(client):
    shell = shell_of(client.get("/sw.js").get_data(as_text=True))

    for needed in ("core.js", "app.css", "home.js", "product.js", "product.css"):
        assert f"/static/web/{needed}" in shell
    assert "/static/web/icons/icon-192.png" in shell
    assert not any(url.startswith("/v1/") for url in shell)
    for url in shell:
        assert fetch(client, url)[0] == 200, url


def test_the_service_workers_version_changes_when_a_static_file_does(app, client):
    before = version_of(client.get("/sw.js").get_data(as_text=True))
    assert version_of(client.get("/sw.js").get_data(as_text=True)) == before

    extra = app.static_folder + "/web/zz-version-test.css"
    try:
        with open(extra, "w") as f:
            f.write("/* a new file */\n")
        added = client.get("/sw.js").get_data(as_text=True)
        with open(extra, "w") as f:
            f.write("/* the file changed */\n")
        changed = client.get("/sw.js").get_data(as_text=True)
    finally:
        os.remove(extra)

    assert "/static/web/zz-version-test.css" in shell_of(added)
    assert len({before, version_of(added), version_of(changed)}) == 3
    assert version_of(client.get("/sw.js").get_data(as_text=True)) == before


def test_the_service_worker_never_caches_the_api_or_anything_but_get(client):
    """What the worker's fetch handler does is tested in a browser (tests/web/test_pwa.py);
    here, that its rules are the ones written down."""
    text = client.get("/sw.js").get_data(as_text=True)
    assert 'url.pathname.startsWith("/v1/")) return;' in text
    assert 'if (request.method !== "GET")' in text


def test_pages_link_the_manifest_and_carry_no_store(world, client):
    world.product(sku="AP-TOTE")
    for path in ("/login", "/p/AP-TOTE"):
        response = client.get(path)
        assert '<link rel="manifest" href="/manifest.webmanifest">' in response.get_data(
            as_text=True
        )
        assert response.headers["Cache-Control"] == "no-store"


def test_the_offline_text_of_the_worker_is_in_both_languages(client):
    text = client.get("/sw.js").get_data(as_text=True)
    offline = json.loads(re.search(r"^const OFFLINE_TEXT = (.*);$", text, re.M).group(1))
    assert offline["en"].startswith("You are offline")
    assert offline["es"].startswith("Sin conexión")
