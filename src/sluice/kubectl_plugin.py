"""``kubectl sluice``: look at and steer Connectors from kubectl (installed with the package as ``kubectl-sluice``).

kubectl runs any ``kubectl-<name>`` on ``PATH`` as ``kubectl <name>``; this one talks to the API server with the
same kubeconfig (``KUBECONFIG``, ``--kubeconfig``) and acts on the same objects the REST API writes, so RBAC decides
the same way for both:

- ``status`` — a table of connectors: state, ready, lag, WAL retained (of its budget, flagged when the SlotAtRisk
  condition is True), last error.
- ``tables <connector>`` — per-table progress from ``status.tables``.
- ``logs <connector>`` — the worker pod's log, through the API server (``pods/log``).
- ``pause`` / ``resume`` — set ``spec.disabled`` (as the REST API's Stop/Start do; the slot is kept).
- ``restart`` / ``resync`` — the one-shot ``sluice.dev/command`` annotation ``Restart`` / ``ReIntialize``, with its
  id and time, as the REST API's commands write it; the operator acts on it and removes it.

Everything that turns status into text is a pure function, unit-tested without a cluster.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sluice.operator.conditions import human_bytes
from sluice.operator.naming import ANNOTATION_COMMAND, worker_pod_name

__all__ = ["main", "render_table", "status_rows", "table_rows"]

JsonObj = dict[str, Any]

COMMAND_ID_ANNOTATION = "sluice.dev/command-id"
COMMAND_TIME_ANNOTATION = "sluice.dev/command-requested-at"
ONE_SHOT = {"restart": "Restart", "resync": "ReIntialize"}
STATUS_HEADERS = ("NAME", "STATE", "READY", "LAG", "WAL RETAINED", "LAST ERROR")
STATUS_HEADERS_ALL = ("NAMESPACE", *STATUS_HEADERS)
TABLE_HEADERS = ("TABLE", "PHASE", "ROWS COPIED", "CHUNKS", "PROGRESS", "ERROR")
ERROR_WIDTH = 80


# -- pure rendering ---------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """kubectl-style columns: left-aligned, three spaces apart, ``-`` for an empty cell."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = [
        "   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [list(headers), *cells]
    ]
    return "\n".join(lines) + "\n"


def _condition(status: JsonObj, ctype: str) -> JsonObj:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), {})


def _lag(status: JsonObj) -> str | None:
    parts = []
    if isinstance(status.get("lag_bytes"), int):
        parts.append(human_bytes(status["lag_bytes"]))
    if isinstance(status.get("lag_seconds"), int | float):
        parts.append(f"{status['lag_seconds']:.1f}s")
    return ", ".join(parts) or None


def _wal_retained(status: JsonObj) -> str | None:
    """WAL the source keeps for the connector's slot: ``wal_retained_bytes`` (the operator measures it) "of" the
    budget in effect, then ``AT RISK`` while SlotAtRisk is True (with its reason when that is not the budget: a slot
    the source has lost or is about to). Without a measurement, while the connector is disabled, the slot's lag the
    operator measured (the WAL piling up behind the stopped worker)."""
    text = None
    for field in ("wal_retained_bytes", "slot_retained_bytes"):
        if isinstance(status.get(field), int):
            text = human_bytes(status[field])
            break
    else:
        if _condition(status, "WalRetained").get("status") == "True" and isinstance(status.get("lag_bytes"), int):
            text = human_bytes(status["lag_bytes"])
    if text is not None and isinstance(status.get("wal_budget_bytes"), int):
        text += f" of {human_bytes(status['wal_budget_bytes'])}"
    risk = _condition(status, "SlotAtRisk")
    if risk.get("status") == "True":
        reason = risk.get("reason")
        flag = "AT RISK" if reason in (None, "", "WalBudgetExceeded") else f"AT RISK: {reason}"
        text = f"{text or '-'} ({flag})"
    return text


def _ready(status: JsonObj) -> str | None:
    cond = _condition(status, "Ready")
    if not cond:
        return None
    return "True" if cond.get("status") == "True" else f"{cond.get('status')} ({cond.get('reason', '')})"


def _last_error(status: JsonObj, width: int) -> str | None:
    err = status.get("last_error")
    if not isinstance(err, dict) or not err:
        return None
    text = f"{err.get('reason', 'Error')}: {err.get('message', '')}"
    return _short(text, width) if width else text


def status_rows(connectors: Sequence[JsonObj], *, all_namespaces: bool = False, wide: bool = False) -> list[list[Any]]:
    rows = []
    for cr in sorted(connectors, key=lambda c: (c["metadata"].get("namespace", ""), c["metadata"]["name"])):
        status = cr.get("status") or {}
        state = status.get("state") or ("disabled" if (cr.get("spec") or {}).get("disabled") else None)
        row = [
            cr["metadata"]["name"],
            state,
            _ready(status),
            _lag(status),
            _wal_retained(status),
            _last_error(status, 0 if wide else ERROR_WIDTH),
        ]
        rows.append([cr["metadata"].get("namespace"), *row] if all_namespaces else row)
    return rows


def table_rows(cr: JsonObj) -> list[list[Any]]:
    rows = []
    for t in (cr.get("status") or {}).get("tables") or []:
        done, total = t.get("chunks_done"), t.get("chunks_total")
        chunks = f"{done or 0}/{total}" if total else None
        progress = f"{100 * (done or 0) / total:.0f}%" if total else None
        if t.get("phase") in ("snapshotted", "copied", "streaming"):
            progress = "100%"
        error = t.get("error")
        if error and t.get("fix"):
            error = f"{error} Fix: {t['fix']}"
        rows.append([t.get("name"), t.get("phase"), t.get("rows_copied"), chunks, progress, error])
    return rows


def command_patch(action: str, now: datetime | None = None) -> JsonObj:
    """The merge patch an action writes (the REST API's command writes the same)."""
    if action in ("pause", "resume"):
        return {"spec": {"disabled": action == "pause"}}
    at = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {
            "annotations": {
                ANNOTATION_COMMAND: ONE_SHOT[action],
                COMMAND_ID_ANNOTATION: uuid.uuid4().hex,
                COMMAND_TIME_ANNOTATION: at,
            }
        }
    }


# -- talking to the cluster -------------------------------------------------------------------------------------


def _default_namespace(kubeconfig: str | None) -> str:
    from kubernetes import config as kconfig

    try:
        _, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (kconfig.ConfigException, OSError, TypeError):
        return "default"
    return str(((active or {}).get("context") or {}).get("namespace") or "default")


def _pod_log(client: Any, namespace: str, pod: str, *, tail: int | None, container: str) -> str:
    """``pods/<pod>/log`` answers text, not JSON: read it with the client's own connection and credentials."""
    import urllib.parse

    import urllib3

    from sluice.k8s.jsonclient import KubeError, api_path

    params: dict[str, Any] = {"container": container}
    if tail is not None:
        params["tailLines"] = tail
    url = client.host + api_path("pods", namespace, pod, "log") + "?" + urllib.parse.urlencode(params)
    # JsonClient has no verb for a text answer yet: its own pool and credential headers, read-only.
    resp = client._pool.request(
        "GET",
        url,
        headers=client._headers(),
        timeout=urllib3.Timeout(total=60),
        retries=False,
    )
    text: str = resp.data.decode(errors="replace")
    if resp.status >= 400:
        raise KubeError(resp.status, text)
    return text


def build_parser() -> argparse.ArgumentParser:
    # -n/--kubeconfig go before or after the command, as with kubectl (SUPPRESS: a later absence keeps the value).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--kubeconfig", default=argparse.SUPPRESS, help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)"
    )
    common.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: the kubeconfig context's)"
    )
    parser = argparse.ArgumentParser(
        prog="kubectl sluice", description=__doc__.splitlines()[0] if __doc__ else None, parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    st = sub.add_parser(
        "status", parents=[common], help="connectors with state, ready, lag, WAL retained of budget, last error"
    )
    st.add_argument("-A", "--all-namespaces", action="store_true", help="connectors of every namespace")
    st.add_argument("-o", "--output", choices=["wide"], help="wide: full error messages")
    st.add_argument("connector", nargs="?", help="only this connector")
    tb = sub.add_parser("tables", parents=[common], help="per-table progress of a connector")
    tb.add_argument("connector")
    lg = sub.add_parser("logs", parents=[common], help="the worker pod's log")
    lg.add_argument("connector")
    lg.add_argument("--tail", type=int, help="only the last N lines")
    for name, text in (
        ("pause", "stop the worker, keep the replication slot (spec.disabled: true)"),
        ("resume", "start the worker again (spec.disabled: false)"),
        ("restart", "restart the worker with a new run id; progress is kept"),
        ("resync", "drop the slot and progress, then snapshot again (ReIntialize)"),
    ):
        sub.add_parser(name, parents=[common], help=text).add_argument("connector")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Not set_defaults: the parsers share the option actions, and a default would overwrite a value given first.
    args.kubeconfig = getattr(args, "kubeconfig", None)
    args.namespace = getattr(args, "namespace", None)
    from sluice.errors import SluiceError
    from sluice.k8s.jsonclient import JsonClient, KubeError, api_path

    namespace = args.namespace or _default_namespace(args.kubeconfig)
    try:
        client = JsonClient(args.kubeconfig)
        if args.command == "status":
            all_ns = bool(args.all_namespaces)
            if args.connector:
                items = [client.get(api_path("connectors", namespace, args.connector))]
            else:
                path = "/apis/sluice.dev/v1alpha1/connectors" if all_ns else api_path("connectors", namespace)
                items = client.list(path)
            if not items:
                print(f"No connectors found in {'any namespace' if all_ns else namespace + ' namespace'}.")
                return 0
            headers = STATUS_HEADERS_ALL if all_ns else STATUS_HEADERS
            sys.stdout.write(render_table(headers, status_rows(items, all_namespaces=all_ns, wide=bool(args.output))))
        elif args.command == "tables":
            cr = client.get(api_path("connectors", namespace, args.connector))
            rows = table_rows(cr)
            if not rows:
                print(f"Connector {namespace}/{args.connector} reports no tables yet.")
                return 0
            sys.stdout.write(render_table(TABLE_HEADERS, rows))
        elif args.command == "logs":
            client.get(api_path("connectors", namespace, args.connector))  # a clear 404 for a wrong name
            pod = worker_pod_name(args.connector)
            try:
                sys.stdout.write(_pod_log(client, namespace, pod, tail=args.tail, container="worker"))
            except KubeError as exc:
                print(
                    f"error: no log of worker pod {namespace}/{pod}: {exc}. Fix: `kubectl sluice status "
                    f"{args.connector}` says whether a worker runs (none while disabled or scheduled).",
                    file=sys.stderr,
                )
                return 1
        else:
            client.merge_patch(api_path("connectors", namespace, args.connector), command_patch(args.command))
            done = {
                "pause": "paused (spec.disabled: true; the slot is kept and the source retains WAL)",
                "resume": "resumed (spec.disabled: false)",
                "restart": "restart requested (sluice.dev/command=Restart)",
                "resync": "re-snapshot requested (sluice.dev/command=ReIntialize)",
            }[args.command]
            print(f"connector {namespace}/{args.connector} {done}")
    except KubeError as exc:
        if exc.status == 404:
            what = f"connector {args.connector!r}" if getattr(args, "connector", None) else "the Connector resource"
            print(
                f"error: {what} not found in namespace {namespace!r}. Fix: check the name with "
                "`kubectl sluice status`, pick the namespace with -n, or install the CRD (crds/connector.yaml).",
                file=sys.stderr,
            )
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except SluiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
