"""``newsletter preview``: a local web server that shows an issue the way subscribers see it.

The page at ``/`` shows the email HTML in a 600px (desktop) and a 375px (mobile) frame, the
plain-text part and a link to the web version. A watcher thread rebuilds the issue in memory
whenever a template, the config, the ``.env`` file or a local source changes; the page polls
``/__version`` and reloads itself after a rebuild. Nothing is written to ``issues/``.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from datetime import date
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import watchfiles

from newsletter.build import BuildResult, build_issue
from newsletter.compose import ComposeOptions
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError, ServerError
from newsletter.sources import is_url

CONTENT_TYPES = {
    "email.html": "text/html; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
    "email.txt": "text/plain; charset=utf-8",
    "issue.json": "application/json; charset=utf-8",
}

SHELL = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: {title}</title>
<style>
 body {{ margin:0; font-family: Helvetica, Arial, sans-serif; background:#e9e7e1; color:#1b2631; }}
 header {{ padding:12px 20px; background:#1b2631; color:#ffffff; }}
 header a {{ color:#aed6f1; margin-right:14px; }}
 .status {{ font-size:13px; color:#d5dbdb; }}
 .error {{ margin:16px 20px; padding:12px; background:#fadbd8; color:#78281f; white-space:pre-wrap; }}
 .warnings {{ margin:16px 20px; padding:12px; background:#fcf3cf; font-size:13px; }}
 .frames {{ display:flex; flex-wrap:wrap; gap:24px; padding:20px; align-items:flex-start; }}
 figure {{ margin:0; }}
 figcaption {{ font-size:13px; margin-bottom:6px; }}
 iframe {{ border:1px solid #b3b6b7; background:#ffffff; display:block; }}
 pre {{ background:#ffffff; padding:16px; border:1px solid #b3b6b7; width:80ch; overflow:auto; }}
</style></head>
<body>
<header><strong>{title}</strong>
 <div class="status">build #{version} · <a href="/index.html">web version</a><a href="/email.html">email.html</a><a href="/email.txt">email.txt</a><a href="/issue.json">issue.json</a></div>
</header>
{error}{warnings}
<div class="frames">
 <figure><figcaption>Desktop · 600px</figcaption><iframe id="desktop" title="Email at 600px" src="/email.html" width="600" height="900"></iframe></figure>
 <figure><figcaption>Mobile · 375px</figcaption><iframe id="mobile" title="Email at 375px" src="/email.html" width="375" height="900"></iframe></figure>
 <figure><figcaption>Plain text</figcaption><pre id="text">{text}</pre></figure>
</div>
<script>
 var version = {version};
 function fit(frame) {{
   try {{ frame.style.height = frame.contentDocument.documentElement.scrollHeight + 20 + "px"; }} catch (e) {{}}
 }}
 document.querySelectorAll("iframe").forEach(function (f) {{ f.addEventListener("load", function () {{ fit(f); }}); }});
 setInterval(function () {{
   fetch("/__version").then(function (r) {{ return r.json(); }}).then(function (s) {{
     if (s.version !== version) {{ location.reload(); }}
   }}).catch(function () {{}});
 }}, 500);
</script>
</body></html>
"""


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
    ) -> None:
        self.settings = settings
        self.day = day
        self.host = host
        self.port = port
        self.on_event = on_event or (lambda message: None)
        self.version = 0
        self.result: BuildResult | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- building
    def rebuild(self, reload_settings: bool = False) -> None:
        try:
            if reload_settings and self.settings.config_path is not None:
                self.settings = load_settings(self.settings.config_path)
            result = build_issue(self.settings, ComposeOptions(self.day), strict=False)
        except NewsletterError as exc:
            with self._lock:
                self.error = str(exc)
                self.version += 1
            self.on_event(f"build failed: {exc}")
            return
        with self._lock:
            self.result, self.error = result, None
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
    def page(self, name: str) -> tuple[int, str, bytes]:
        with self._lock:
            result, error, version = self.result, self.error, self.version
        if name == "__version":
            body = json.dumps({"version": version, "error": error}).encode()
            return 200, "application/json", body
        if name in ("", "index"):
            return (
                200,
                "text/html; charset=utf-8",
                self._shell(result, error, version).encode("utf-8"),
            )
        if name in CONTENT_TYPES:
            if result is None:
                message = f"<p>No build yet: {html.escape(error or 'building')}</p>"
                return 503, "text/html; charset=utf-8", message.encode()
            return 200, CONTENT_TYPES[name], result.files[name]
        return 404, "text/plain; charset=utf-8", b"not found"

    def _shell(self, result: BuildResult | None, error: str | None, version: int) -> str:
        title = result.issue.title if result else f"issue {self.day}"
        error_html = f'<div class="error" role="alert">{html.escape(error)}</div>' if error else ""
        warnings = (result.issue.warnings + result.problems) if result else []
        warnings_html = (
            '<div class="warnings"><strong>Warnings</strong><ul>'
            + "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
            + "</ul></div>"
            if warnings
            else ""
        )
        text = html.escape(result.rendered.email_txt) if result else ""
        return SHELL.format(
            title=html.escape(title),
            version=version,
            error=error_html,
            warnings=warnings_html,
            text=text,
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.split("?", 1)[0].strip("/")
                status, ctype, body = server.page(name)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self.rebuild()
        try:
            self._httpd = ThreadingHTTPServer((self.host, self.port), self._handler())
        except OSError as exc:
            raise ServerError(
                f"cannot serve the preview on {self.host}:{self.port}: {exc.strerror}"
                " (use --port to pick another)",
                host=self.host,
                port=self.port,
            ) from None
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        serve = threading.Thread(target=self._httpd.serve_forever, name="preview-http", daemon=True)
        watch = threading.Thread(target=self._watch, name="preview-watch", daemon=True)
        self._threads = [serve, watch]
        for thread in self._threads:
            thread.start()

    def wait(self) -> None:
        while not self._stop.wait(0.5):
            pass

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
