"""What the website's browser tests share beyond fixtures: the browser Omnicard's tests drive
(Debian's chromium, never a downloaded one), logging a browser in through the site's own
login page, and the accessibility check (axe-core, WCAG 2.1 A and AA).

    from tests.web.browser import check_accessibility, log_in
"""

from __future__ import annotations

import os
import re
from importlib.resources import files

from playwright.sync_api import BrowserContext, Page, expect

#: Where the browser is: Debian's chromium (scripts/ensure-chromium installs it).
CHROMIUM = os.environ.get("OMNICARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long a step may take before the test fails (the machine is shared and slow at times).
TIMEOUT_MS = 10_000

#: axe-core as the axe-playwright-python package bundles it (pinned in requirements.txt).
AXE_SCRIPT = (files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
#: The rules checked: WCAG 2.0 and 2.1, levels A and AA.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: What fails a page; "minor" and "moderate" findings are left to review.
FAILING_IMPACTS = frozenset({"serious", "critical"})


def accessibility_violations(page: Page) -> list[dict]:
    """axe-core's serious and critical WCAG 2.1 A/AA violations on the page as it is now.

    axe is evaluated through the browser's debugging protocol, which the page's
    Content-Security-Policy (no inline script) does not govern: the page itself stays as
    served, with its own CSP."""
    page.evaluate(AXE_SCRIPT)
    results = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})",
        WCAG_TAGS,
    )
    return [v for v in results["violations"] if v["impact"] in FAILING_IMPACTS]


def describe(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"][:5]:
            lines.append(f"    {' '.join(node['target'])}: {node['html'][:160]}")
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            if summary:
                lines.append(f"      {summary[:300]}")
        if len(v["nodes"]) > 5:
            lines.append(f"    ... and {len(v['nodes']) - 5} more")
    return "\n".join(lines)


def check_accessibility(page: Page) -> None:
    """Fails, listing them, if axe-core finds serious or critical WCAG 2.1 A/AA violations."""
    violations = accessibility_violations(page)
    assert not violations, f"accessibility violations on {page.url}:\n{describe(violations)}"


def log_in(target: BrowserContext | Page, email: str, password: str) -> Page:
    """Logs in through the website's own login page (/login), as a shopper does: the page,
    on the home page with the cards shown. Given a context, a new page of it."""
    page = target.new_page() if isinstance(target, BrowserContext) else target
    page.goto("/login")
    page.locator("#login-form input[name=email]").fill(email)
    page.locator("#login-form input[name=password]").fill(password)
    page.locator("#login-form button[type=submit]").click()
    page.wait_for_url(HOME)
    expect(page.locator("#cards")).to_have_attribute("aria-busy", "false")
    return page


#: The home page's address, whatever the server's origin.
HOME = re.compile(r"^https?://[^/]+/$")
