"""``kubernetes.exec``: an allow-listed argv (never a shell) run over the exec websocket.

The websocket handshake takes no timeout from the kubernetes client, so the whole exchange runs under
:func:`~runbook.actions.kubernetes.client.run_bounded`; output is capped and redacted, and the exit
code comes from the status channel.
"""

from __future__ import annotations

import json
import time
from typing import Any

from runbook.actions.context import ActionContext, ActionError
from runbook.actions.kubernetes import client as kube_client
from runbook.actions.kubernetes.client import (
    BACKEND,
    KubeUnavailable,
    clients,
    pod_is_ready,
    redact_log,
    run_bounded,
    stream_exec,
)
from runbook.actions.kubernetes.models import ExecParams, ExecResultModel, allowed_by
from runbook.actions.kubernetes.pods import read_pod


def _exec_target(ctx: ActionContext, params: ExecParams) -> tuple[Any, str]:
    pod = read_pod(ctx, params.namespace, params.pod)
    names = [c.name for c in pod.spec.containers]
    container = params.container or names[0]
    if container not in names:
        raise ActionError(
            f"pod {params.namespace}/{params.pod} has no container {container!r} (has {names})",
            backend=BACKEND,
        )
    if (pod.status.phase if pod.status else None) != "Running":
        raise ActionError(
            f"pod {params.namespace}/{params.pod} is {pod.status.phase if pod.status else 'Unknown'}, "
            "not Running: cannot exec",
            backend=BACKEND,
        )
    return pod, container


def describe_exec(ctx: ActionContext, params: ExecParams) -> str:
    pod, container = _exec_target(ctx, params)
    return (
        f"run {params.command!r} (no shell; allowed by '{allowed_by(params.command, params.allow)}') "
        f"in pod {params.namespace}/{params.pod} container {container} "
        f"(pod {'ready' if pod_is_ready(pod) else 'NOT ready'}, node {pod.spec.node_name or '-'}); "
        f"timeout {params.timeout_seconds:g}s, output capped at {params.max_output_bytes} bytes"
    )


def _exit_code(status: str) -> int | None:
    """Exit code from the exec status channel: Success -> 0, NonZeroExitCode -> its cause."""
    if not status:
        return None
    try:
        data = json.loads(status)
    except ValueError:
        return None
    if data.get("status") == "Success":
        return 0
    for cause in (data.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return None
    return None


def run(ctx: ActionContext, params: ExecParams) -> ExecResultModel:
    """Run the allowed argv over the exec websocket, bounded and redacted (see ``kubernetes.exec``)."""
    if allowed_by(list(params.command), list(params.allow)) is None:  # params built without validation
        raise ActionError(
            f"command {list(params.command)!r} is not in this step's allow list: not sent", backend=BACKEND
        )
    _, container = _exec_target(ctx, params)
    timeout = min(params.timeout_seconds, ctx.remaining(default=params.timeout_seconds))
    where = f"exec in pod {params.namespace}/{params.pod}"
    kc = clients(ctx)
    cap = params.max_output_bytes

    def run() -> tuple[str, str, int | None, bool]:
        ws = stream_exec(
            kc,
            params.pod,
            params.namespace,
            command=list(params.command),
            container=container,
            timeout=timeout,
        )
        out, err, truncated = "", "", False
        end = time.monotonic() + timeout
        try:
            while ws.is_open() and time.monotonic() < end:
                ws.update(timeout=min(0.5, max(0.0, end - time.monotonic())))
                out += ws.read_stdout(timeout=0) if ws.peek_stdout(timeout=0) else ""
                err += ws.read_stderr(timeout=0) if ws.peek_stderr(timeout=0) else ""
                if len(out) > cap or len(err) > cap:
                    truncated = True
                    break
            still_open = ws.is_open()
            out += ws.read_stdout(timeout=0) if ws.peek_stdout(timeout=0) else ""
            err += ws.read_stderr(timeout=0) if ws.peek_stderr(timeout=0) else ""
            code = None
            if not still_open:
                status = ws.read_channel(3)
                code = _exit_code(status)
        finally:
            ws.close(timeout=0.5)  # default waits 3 s for the server's close frame
        if still_open and not truncated:
            raise KubeUnavailable(f"{where}: command still running after {timeout:.1f}s (timeout)")
        return out, err, code, truncated

    try:
        out, err, code, truncated = run_bounded(run, timeout + 2.0, where)
    except kube_client.ApiException as exc:  # handshake refused (404 pod, 403 RBAC...) or transport error
        raise ActionError(
            redact_log(f"{where}: {exc.reason or exc}".splitlines()[0]), backend=BACKEND
        ) from None
    out, err = redact_log(out[:cap]), redact_log(err[:cap])
    exit_code = -1 if code is None else code
    cmd = " ".join(params.command)
    if exit_code != 0 and params.fail_on_nonzero and not truncated:
        tail = (err or out).strip().splitlines()[-1:] or [""]
        raise ActionError(f"{where}: {cmd!r} exited {exit_code}: {tail[0][:300]}", backend=BACKEND)
    return ExecResultModel(
        summary=f"ran {cmd!r} in {params.namespace}/{params.pod}: exit {exit_code}"
        + (f" (output truncated at {cap} bytes)" if truncated else ""),
        namespace=params.namespace,
        pod=params.pod,
        container=container,
        exit_code=exit_code,
        stdout=out,
        stderr=err,
        truncated=truncated,
    )
