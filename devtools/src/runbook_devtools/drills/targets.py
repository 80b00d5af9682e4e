"""Drills act on loopback only: every target the environment names must be this machine.

``runbook drill --approve`` injects faults and approves destructive steps. It reads its targets from the
same variables as real runs (``RABBITMQ_URL``, ``KUBECONFIG``, ``DATABASE_URL``, ...), so a shell that
still points at staging or production would drill *that*. :func:`require_loopback` is called before
any fault is injected or anything approved: every configured target must be a unix socket or a host
that is, or resolves only to, a loopback address (127.0.0.0/8, ::1, ``localhost``); otherwise the
drill is refused with the variable named. Nothing here connects to a target: names are resolved with
``getaddrinfo`` at most, and credentials in URLs are never shown.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[[str], list[str]]


class NotLoopback(Exception):
    """A drill target is not on this machine; the message names the variable and the host."""


def _resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to (no connection is made)."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def host_problem(host: str | None, resolve: Resolver = _resolve) -> str | None:
    """Why ``host`` is not loopback, or None when it is (empty host or a path: a unix socket)."""
    if host is None or host == "" or host.startswith("/") or host.startswith("@"):
        return None  # a unix socket (abstract or path) or the client's local default
    name = host.strip("[]").split("%", 1)[0]
    if name.lower().rstrip(".") == "localhost":
        return None
    try:
        return None if ipaddress.ip_address(name).is_loopback else f"{host} is not a loopback address"
    except ValueError:
        pass  # a name: what it resolves to decides
    try:
        addresses = resolve(name)
    except OSError as exc:
        return f"{host} does not resolve ({exc.strerror or exc})"
    if not addresses:
        return f"{host} does not resolve"
    outside = [a for a in addresses if not ipaddress.ip_address(a.split("%", 1)[0]).is_loopback]
    return f"{host} resolves to {', '.join(outside)}, not loopback" if outside else None


def _url_hosts(url: str) -> list[str | None]:
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+unix", "http+unix"):
        return [None]
    hosts: list[str | None] = []
    netloc = parts.netloc.rsplit("@", 1)[-1]
    for item in netloc.split(","):  # multi-host URLs (libpq, some AMQP clients)
        item = item.strip()
        if item.startswith("["):
            hosts.append(item[1 : item.index("]")] if "]" in item else item)
        else:
            hosts.append(item.rsplit(":", 1)[0] if item.count(":") == 1 else item)
    return hosts or [None]


def _postgres_hosts(dsn: str) -> list[str | None]:
    """Hosts of a libpq URI or key=value DSN (``host``/``hostaddr``, several allowed; PGHOST when absent)."""
    from psycopg.conninfo import conninfo_to_dict

    info: dict[str, Any] = conninfo_to_dict(dsn)
    hosts: list[str | None] = []
    for key in ("host", "hostaddr"):
        value = info.get(key)
        if value:
            hosts.extend(h.strip() or None for h in str(value).split(","))
    if not hosts:
        env = os.environ.get("PGHOSTADDR") or os.environ.get("PGHOST")
        hosts = [h.strip() or None for h in env.split(",")] if env else [None]
    return hosts


def _kafka_hosts(servers: str) -> list[str | None]:
    hosts: list[str | None] = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        if "://" in item:
            item = item.split("://", 1)[1]
        hosts.extend(_url_hosts(f"kafka://{item}"))
    return hosts


def _kube_hosts(kubeconfig: str) -> list[str | None]:
    """The API server of every cluster in every file ``KUBECONFIG`` lists (any may be the context)."""
    import yaml

    hosts: list[str | None] = []
    for path in [p for p in kubeconfig.split(os.pathsep) if p]:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise NotLoopback(
                f"KUBECONFIG: cannot read {path} to check its servers ({type(exc).__name__})"
            ) from None
        for cluster in data.get("clusters") or []:
            server = ((cluster or {}).get("cluster") or {}).get("server")
            if server:
                hosts.extend(_url_hosts(str(server)))
    return hosts


#: variable -> how to find its hosts; checked only when the variable is set (the defaults are loopback)
TARGETS: dict[str, Callable[[str], list[str | None]]] = {
    "RABBITMQ_URL": _url_hosts,
    "RABBITMQ_MANAGEMENT_URL": _url_hosts,
    "KUBECONFIG": _kube_hosts,
    "DATABASE_URL": _postgres_hosts,
    "KAFKA_BOOTSTRAP_SERVERS": _kafka_hosts,
    "REDIS_URL": _url_hosts,
    "AWS_ENDPOINT_URL": _url_hosts,
}


def loopback_problems(
    environ: Mapping[str, str] | None = None,
    settings: Any = None,
    *,
    resolve: Resolver = _resolve,
    extra: Iterable[tuple[str, str]] = (),
) -> list[str]:
    """One line per target that is not on loopback: ``VARIABLE: host ... not loopback``.

    Values come from ``environ`` and, where given, the ``settings`` the drill uses (they can differ
    when settings were built from another mapping); ``extra`` adds (name, value) pairs."""
    env = dict(os.environ if environ is None else environ)
    values: list[tuple[str, str]] = [(k, env[k]) for k in TARGETS if env.get(k)]
    if settings is not None:
        for name, attr in (
            ("RABBITMQ_URL", "rabbitmq_url"),
            ("RABBITMQ_MANAGEMENT_URL", "rabbitmq_management_url"),
            ("KUBECONFIG", "kubeconfig"),
            ("DATABASE_URL", "database_inspect_url"),
            ("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        ):
            value = getattr(settings, attr, None)
            if value and (name, value) not in values:
                values.append((name, str(value)))
    values.extend(extra)
    problems: list[str] = []
    for name, value in values:
        try:
            hosts = TARGETS[name](value) if name in TARGETS else _url_hosts(value)
        except NotLoopback as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - an unparsable target is not a loopback target
            problems.append(f"{name}: cannot tell where it points ({type(exc).__name__})")
            continue
        for host in hosts:
            why = host_problem(host, resolve)
            if why:
                problems.append(f"{name}: {why}")
    return problems


def require_loopback(
    environ: Mapping[str, str] | None = None, settings: Any = None, *, resolve: Resolver = _resolve
) -> None:
    """:class:`NotLoopback` naming every target that is not this machine; nothing is contacted."""
    problems = loopback_problems(environ, settings, resolve=resolve)
    if problems:
        raise NotLoopback(
            "drills run only against services on this machine (loopback or a unix socket); refusing"
            " before injecting any fault or approving anything: " + "; ".join(problems)
        )
