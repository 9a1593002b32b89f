"""Leader election with a ``coordination.k8s.io`` Lease, so two operator replicas never reconcile at once.

Why a Lease rather than kopf peering: a Lease needs no extra CRD, is what every Kubernetes controller uses, and
its state is visible with ``kubectl get lease``. The standby replica waits (no watches, no handlers) until the
lease expires; the leader renews it every ``renew_seconds``. A leader that cannot renew before the lease would
expire stops acting (the CLI stops kopf and exits non-zero, and its Deployment restarts it as a standby), so two
leaders can overlap only if clocks disagree by more than the lease duration minus the renew interval.

Updates use the Lease's ``resourceVersion`` (optimistic concurrency): of two replicas racing for an expired lease,
exactly one update succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sluice.k8s.jsonclient import JsonClient, KubeError, api_path

__all__ = ["LeaseElector"]

log = logging.getLogger(__name__)


def _micro(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class LeaseElector:
    def __init__(
        self,
        client: JsonClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _try_acquire(self) -> bool:
        path = api_path("leases", self.namespace, self.name)
        now = datetime.now(UTC)
        lease = self.client.get_or_none(path)
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": _micro(now),
        }
        if lease is None:
            spec["acquireTime"] = _micro(now)
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                self.client.create(api_path("leases", self.namespace), body)
                return True
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = _parse(current.get("renewTime")) or _parse(current.get("acquireTime"))
        duration = int(current.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**current, **spec}
        try:
            self.client.replace(path, lease)  # carries resourceVersion: a concurrent writer makes this 409
            return True
        except KubeError as exc:
            if exc.status == 409:
                return False
            raise

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until this replica leads (True) or ``stop`` is set (False)."""
        waiting_logged = False
        while stop is None or not stop.is_set():
            try:
                if self._try_acquire():
                    log.info("leader election: %s now leads (lease %s/%s)", self.identity, self.namespace, self.name)
                    self._thread = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
                    self._thread.start()
                    return True
            except Exception as exc:
                log.warning("leader election: %s", exc)
            if not waiting_logged:
                log.info("leader election: another replica leads; %s waits as standby", self.identity)
                waiting_logged = True
            (stop or self._stop).wait(self.renew_seconds)
        return False

    def _renew_loop(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.renew_seconds):
            try:
                if self._try_acquire():
                    last_ok = time.monotonic()
                    continue
                log.error("leader election: the lease was taken by another replica")
            except Exception as exc:
                log.warning("leader election: renewal failed: %s", exc)
                if time.monotonic() - last_ok < self.lease_seconds - self.renew_seconds:
                    continue
            self.lost.set()
            return

    def release(self) -> None:
        """Give the lease up at shutdown so the standby takes over at once instead of after expiry."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost.is_set():
            return
        try:
            path = api_path("leases", self.namespace, self.name)
            lease = self.client.get_or_none(path)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["renewTime"] = None
                self.client.replace(path, lease)
        except Exception as exc:
            log.debug("leader election: release failed: %s", exc)
