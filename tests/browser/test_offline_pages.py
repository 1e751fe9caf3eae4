"""Headless Chromium with no network but the server's: ``/api/v1/docs`` renders the API
(its Swagger UI is served by the platform, not a CDN), ``/play/`` is a page, not a debug
404, and there is a favicon."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.process, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_and_the_pages_work_offline(asgi_server, browser):
    context = browser.new_context()
    ours = urlsplit(asgi_server).netloc
    refused: list[str] = []

    def only_ours(route) -> None:
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:  # no internet: anything else fails, as in a production network
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_ours)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{asgi_server}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)  # the operations, rendered
    assert page.evaluate("typeof window.SwaggerUIBundle") == "function"
    assert page.locator(".swagger-ui .opblock").count() > 10
    assert refused == [], refused

    reply = page.goto(f"{asgi_server}/play/")
    assert reply is not None and reply.status == 200, reply
    assert urlsplit(page.url).path == "/"  # the home page lists the bosses to play
    icon = context.request.get(f"{asgi_server}/favicon.ico")  # follows the redirect
    assert icon.status == 200 and "svg" in icon.headers["content-type"], icon
    page.goto(f"{asgi_server}/")
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("/static/favicon.svg")
    assert refused == [] and not errors, (refused, errors)
