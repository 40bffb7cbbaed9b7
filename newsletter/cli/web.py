"""``newsletter serve``: the subscriber pages."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.common import handles_errors, key_on_first_need, out, state


def serve_command(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: web.host, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: web.port, 8080).")] = None,
) -> None:
    """Serve the subscriber pages: one-click unsubscribe, preferences, sign-up, archive.

    Put it behind a reverse proxy that terminates TLS at sender.base_url.
    Example: newsletter serve --port 8080
    """
    import uvicorn

    from newsletter.delivery.factory import make_signer, make_transport
    from newsletter.web.app import RateLimit, create_app

    st = state(ctx)
    settings = st.settings
    key_on_first_need(settings)
    app = create_app(
        settings,
        st.database,
        make_signer(settings),
        make_transport(settings),
        subscribe_list=settings.web.subscribe_list,
        rate=RateLimit(settings.web.subscribe_rate, 600),
    )
    out.print(
        f"serving on http://{host or settings.web.host}:{port or settings.web.port}/ (Ctrl-C stops)",
        markup=False,
    )
    uvicorn.run(
        app,
        host=host or settings.web.host,
        port=port if port is not None else settings.web.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.web.forwarded_allow_ips,
        log_level="info",
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(handles_errors(serve_command))
