"""The console's routes: the page itself, and read-only proxies to the controller."""

from __future__ import annotations

import pkgutil
from typing import Any

from hippo_platform.services.common import App, Request, Response, html
from hippo_platform.services.common.client import JsonClient, segment

NAME = "console"
PAGE = "index.html"


def load_page() -> str:
    """The page, through the package's loader (a zipped install too). Not through
    importlib.resources: that imports zipfile, tempfile and shutil (0.9 MB) for it."""
    data = pkgutil.get_data(__package__, PAGE)
    if data is None:
        raise FileNotFoundError(f"{PAGE} is not in {__package__}: reinstall hippodrome")
    return data.decode("utf-8")


def build_app(controller: JsonClient, page: str, *, debug: bool = False) -> App:
    app = App(NAME, debug=debug, health=lambda: {"controllerUrl": controller.base_url})
    r = app.router

    @r.get("/")
    def index(_req: Request) -> Response:
        return html(page)

    @r.get("/api/accounts")
    def accounts(_req: Request) -> Any:
        return controller.call("GET", "/api/v2/accounts")

    @r.get("/api/accounts/{account_id}")
    def account(req: Request) -> Any:
        return controller.call("GET", "/api/v2/accounts/" + segment(req.params["account_id"]))

    @r.get("/api/accounts/{account_id}/indexes")
    def indexes(req: Request) -> Any:
        path = f"/api/v2/accounts/{segment(req.params['account_id'])}/indexes"
        return controller.call("GET", path)

    return app
