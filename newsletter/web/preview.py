"""``newsletter preview``: a local web server that shows an issue the way subscribers see it.

The page at ``/`` shows the email HTML in a 600px (desktop) and a 375px (mobile) frame, the
plain-text part and a link to the web version. A watcher thread rebuilds the issue in memory
whenever a template, the config, the ``.env`` file or a local source changes; the page polls
``/__version`` and reloads itself after a rebuild. Nothing is written to ``issues/``.
"""

from __future__ import annotations

import asyncio
import html
import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import uvicorn
import watchfiles
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter import audience
from newsletter.audience.editions import Editions
from newsletter.audience.segments import VariantPlan, plan_list
from newsletter.compose.issuefiles import BuildResult, build_issue
from newsletter.compose.select import ComposeOptions
from newsletter.compose.sources import is_url
from newsletter.config import Settings, load_settings
from newsletter.core.interests import split
from newsletter.core.states import SubscriberStatus
from newsletter.errors import NewsletterError, ServerError
from newsletter.web import desk
from newsletter.web.guard import local_host_header
from newsletter.web.pages import page

if TYPE_CHECKING:
    from newsletter.storage.db import Database

CONTENT_TYPES = {
    "email.html": "text/html; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
    "email.txt": "text/plain; charset=utf-8",
    "issue.json": "application/json; charset=utf-8",
}


class PreviewServer:
    """Builds an issue in memory, serves it, and rebuilds it when its inputs change."""

    def __init__(
        self,
        settings: Settings,
        day: date,
        *,
        host: str = "127.0.0.1",
        port: int = 8025,
        on_event: Callable[[str], None] | None = None,
        database: Database | None = None,
        list_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.list_name = list_name
        self.plan: VariantPlan | None = None
        self._editions: dict[tuple[int, str], dict[str, bytes]] = {}
        self._variants: Editions | None = None
        self.day = day
        self.host = host
        self.port = port
        self.on_event = on_event or (lambda message: None)
        self.version = 0
        self.result: BuildResult | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._threads: list[threading.Thread] = []

    # -- building
    def rebuild(self, reload_settings: bool = False) -> None:
        try:
            if reload_settings and self.settings.config_path is not None:
                self.settings = load_settings(self.settings.config_path)
            result = build_issue(
                self.settings.issue_config(), ComposeOptions(self.day), strict=False
            )
        except NewsletterError as exc:
            with self._lock:
                self.error = str(exc)
                self.version += 1
            self.on_event(f"build failed: {exc}")
            return
        plan = self._plan(result)
        with self._lock:
            self.result, self.error, self.plan = result, None, plan
            self._editions.clear()
            self.version += 1
        self.on_event(f"built #{self.version}: {len(result.issue.articles)} articles")

    def watched_paths(self) -> list[Path]:
        s = self.settings
        paths = [s.templates_dir]
        if s.config_path is not None:
            paths += [s.config_path, s.config_path.parent / ".env"]
        paths += [s.path(m) for m in s.sources.markdown]
        paths += [s.path(f) for f in s.sources.feeds if not is_url(f)]
        if s.rates.source and not is_url(s.rates.source):
            paths.append(s.path(s.rates.source))
        paths.append(s.issues_dir / self.day.isoformat())  # the editor's plan.toml lives there
        return [p for p in dict.fromkeys(paths) if p.exists()]

    def _watch(self) -> None:
        paths = self.watched_paths()
        if not paths:
            return
        for changes in watchfiles.watch(
            *paths, stop_event=self._stop, debounce=200, step=50, yield_on_timeout=False
        ):
            if self._stop.is_set():
                return
            names = sorted({Path(p).name for _, p in changes})
            self.on_event(f"changed: {', '.join(names)}; rebuilding")
            config_changed = any(
                self.settings.config_path is not None
                and Path(p).name in (self.settings.config_path.name, ".env")
                for _, p in changes
            )
            self.rebuild(reload_settings=config_changed)

    # -- serving
    def _plan(self, result: BuildResult) -> VariantPlan | None:
        if self.database is None or not self.list_name:
            return None
        try:
            with self.database.connect() as conn:
                return plan_list(conn, result.issue, self.list_name, self.settings.vocabulary())
        except NewsletterError as exc:
            self.on_event(f"variants unavailable: {exc}")
            return None

    def _interests_of(self, email: str) -> tuple[str, str] | None:
        """(canonical interests, status) of a subscriber, or None."""
        if self.database is None:
            return None
        try:
            with self.database.connect() as conn:
                sub = audience.get(conn, email)
        except NewsletterError:
            return None
        return sub.interests, sub.status

    def select(self, query: dict[str, str]) -> tuple[str, str | None, str]:
        """(variant id or "", message, query string) for the shell's choice."""
        result = self.result
        if result is None:
            return "", None, ""
        if query.get("subscriber"):
            email = query["subscriber"].strip()
            found = self._interests_of(email)
            if found is None:
                return "", f"no subscriber {email!r}: showing the full edition", ""
            interests, status = found
            vid, urls = self._variants_of(result).variant_of(interests)
            note = f"{email}: {', '.join(split(interests)) or 'everything'}"
            if status != SubscriberStatus.ACTIVE:
                note += f" ({status}: would not be sent)"
            if not urls:
                note += " — nothing in this issue matches: would be skipped"
            self._remember(vid, urls)
            return vid, note, "?" + urlencode({"variant": vid})
        vid = query.get("variant", "")
        if vid and self.plan is not None:
            try:
                variant = self.plan.variant(vid)
            except KeyError:
                return "", f"no variant {vid!r} in this build: showing the full edition", ""
            self._remember(vid, variant.urls)
            return (
                vid,
                f"variant {vid}: {variant.subscribers} subscriber(s)",
                "?" + urlencode({"variant": vid}),
            )
        return "", None, ""

    def _variants_of(self, result: BuildResult) -> Editions:
        with self._lock:
            if self._variants is None or self._variants.issue is not result.issue:
                self._variants = Editions(
                    result.issue, self.settings.vocabulary(), self.settings.render_options()
                )
            return self._variants

    def _remember(self, vid: str, urls: tuple[str, ...]) -> None:
        with self._lock:
            if (self.version, vid) in self._editions or self.result is None:
                return
            version, result = self.version, self.result
        if not urls:
            return
        _, rendered = self._variants_of(result).rendered(urls)
        files = {
            "email.html": rendered.email_html.encode(),
            "email.txt": rendered.email_txt.encode(),
            "index.html": rendered.web_html.encode(),
        }
        with self._lock:
            self._editions[(version, vid)] = files

    def page(self, name: str, query: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        query = query or {}
        vid, note, qs = self.select(query)
        with self._lock:
            result, error, version = self.result, self.error, self.version
            chosen = self._editions.get((version, vid)) if vid else None
        if name == "__version":
            body = json.dumps({"version": version, "error": error}).encode()
            return 200, "application/json", body
        if name in ("", "index"):
            shell = self._shell(result, error, version, vid, note, qs, chosen)
            return 200, "text/html; charset=utf-8", shell.encode("utf-8")
        if name in CONTENT_TYPES:
            if result is None:
                message = f"<p>No build yet: {html.escape(error or 'building')}</p>"
                return 503, "text/html; charset=utf-8", message.encode()
            if chosen is not None and name in chosen:
                return 200, CONTENT_TYPES[name], chosen[name]
            return 200, CONTENT_TYPES[name], result.files[name]
        return 404, "text/plain; charset=utf-8", b"not found"

    def _shell(
        self,
        result: BuildResult | None,
        error: str | None,
        version: int,
        vid: str = "",
        note: str | None = None,
        query: str = "",
        chosen: dict[str, bytes] | None = None,
    ) -> str:
        """The preview page (``web/templates/preview.html``; autoescaped)."""
        if chosen is not None:
            text = chosen["email.txt"].decode()
        else:
            text = result.rendered.email_txt if result else ""
        variants = []
        for v in self.plan.variants if self.plan else []:
            sections = ", ".join(v.per_section(result.issue)) if result else ""
            label = f"{v.id} — {v.subscribers} subscriber(s), {len(v.urls)} articles: {sections}"
            variants.append({"id": v.id, "label": label})
        return page(
            "preview.html",
            title=result.issue.title if result else f"issue {self.day}",
            version=version,
            error=error,
            warnings=(result.issue.warnings + result.problems) if result else [],
            text=text,
            plan=self.plan,
            list_name=self.list_name or "",
            variants=variants,
            vid=vid,
            query=query,
            edition=note or "full edition",
            desk=desk.desk_view(self.settings, self.day),
        )

    def app(self) -> Starlette:
        """The preview on the same HTTP stack as the subscriber pages (Starlette)."""

        async def endpoint(request: Request) -> Response:
            if not local_host_header(request.headers.get("host", "")):
                return Response(
                    "this preview answers only to its address (127.0.0.1) or localhost\n",
                    status_code=421,
                    media_type="text/plain",
                )
            query = {k: v for k, v in request.query_params.items()}
            status, ctype, body = await asyncio.to_thread(
                self.page, request.path_params["name"].strip("/"), query
            )
            return Response(
                body,
                status_code=status,
                media_type=ctype,
                headers={
                    "Cache-Control": "no-store",
                    "X-Content-Type-Options": "nosniff",
                    "Content-Security-Policy": "frame-ancestors 'self'",
                },
            )

        async def edit_endpoint(request: Request) -> Response:
            response = await desk.edit(request, self.settings, self.day)
            if response.status_code == 303:
                await asyncio.to_thread(self.rebuild)  # the page shows the edit at once
            return response

        return Starlette(
            routes=[
                Route("/__edit", edit_endpoint, methods=["POST"]),
                Route("/{name:path}", endpoint),
            ]
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self.rebuild()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ServerError(
                f"cannot serve the preview on {self.host}:{self.port}: {exc.strerror}"
                " (use --port to pick another)",
                host=self.host,
                port=self.port,
            ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        serve = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="preview-http", daemon=True
        )
        watch = threading.Thread(target=self._watch, name="preview-watch", daemon=True)
        self._threads = [serve, watch]
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and serve.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._socket = sock

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
