"""``ragtune chat`` (the browser app) and ``ragtune serve`` (the OpenAI-compatible API)."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from assistant import compute
from assistant.api import serve
from assistant.app import launch
from assistant.cli.options import workspace
from assistant.errors import AssistantError
from ingest.pipeline import SAMPLE_CORPUS


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="Hugging Face id or folder of the chat model")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--collection", help="collection name (default: documents)")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add chat and serve to a ``ragtune`` parser."""
    c = sub.add_parser(
        "chat",
        parents=[parent],
        help="open the browser app: chat, documents, fine-tuning, compare, adapters",
        description="Serve the browser app on 127.0.0.1 (the [app] table sets host, port, login and upload limit). "
        "With no documents yet, the sample corpus is ingested first.",
    )
    c.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 serves the network)")
    c.add_argument("--port", type=int, help="port (default 7860)")
    _model_options(c)
    c.add_argument("--no-sample", action="store_true", help="start empty instead of ingesting the sample corpus")
    c.set_defaults(func=cmd_chat, listen_section="app")

    v = sub.add_parser(
        "serve",
        parents=[parent],
        help="serve an OpenAI-compatible API: /v1/models and /v1/chat/completions",
        description="Serve the assistant as an OpenAI-compatible API on 127.0.0.1:8000 (the [serve] table sets host, "
        "port, api_key and runtime_lora). Model names: ADAPTER (the model itself), ADAPTER:rag (grounded answers "
        "with sources), ADAPTER:agent (tools); ADAPTER is base, active or a registered adapter.",
    )
    v.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 serves the network: set an API key)")
    v.add_argument("--port", type=int, help="port (default 8000)")
    _model_options(v)
    v.set_defaults(func=cmd_serve, listen_section="serve")


def cmd_chat(args: argparse.Namespace) -> int:
    ws = workspace(args)
    if not ws.documents() and not args.no_sample:
        print(f"no documents yet: ingesting the sample corpus ({SAMPLE_CORPUS})", flush=True)
        print(ws.reingest([SAMPLE_CORPUS]).summary(), flush=True)
    print(f"loading {ws.config.model}…", flush=True)
    ws.base_model()
    if ws.documents():
        ws.retriever()
    app = launch(ws, block=False, quiet=True)
    login = " (login required)" if ws.app.login() else ""
    print(f"ragtune is serving on http://{ws.app.host}:{ws.app.port}{login}; Ctrl-C stops it", flush=True)
    try:
        compute.serve(lambda: app.is_running)  # replies are produced here, on the thread that loaded the model
    except KeyboardInterrupt:
        app.close()
    finally:
        ws.job.cancel()
    return 0


def _check_free(host: str, port: int) -> None:
    """Raise a one-line error when ``host:port`` cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(infos[0][4])
    except OSError as e:
        raise AssistantError(
            f"cannot serve on {host}:{port} ({e.strerror or e}): pick another --port, or stop what uses it"
        ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    ws = workspace(args)
    options = ws.settings.serve
    _check_free(options.host, options.port)  # before the model loads
    if not ws.documents():
        print("no documents yet: the :rag models will refuse until `ragtune ingest PATH`", flush=True)
    print(f"loading {ws.config.model} ({ws.config.backend} backend)…", flush=True)
    ws.base_model()
    key = options.key()
    if not key and options.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving {options.host} without an API key: anyone who reaches it can use it", flush=True)
    print(
        f"ragtune serves an OpenAI-compatible API on http://{options.host}:{options.port}/v1"
        f"{' (API key required)' if key else ''}; GET /v1/models lists the models; Ctrl-C stops it",
        flush=True,
    )
    serve(ws, options.host, options.port, key, options.runtime_lora)
    return 0
