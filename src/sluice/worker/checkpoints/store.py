"""Checkpoint stores for sinks that keep the position neither in their own transaction nor in a transactional log.

A sink such as webhook saves its :class:`~sluice.worker.checkpoints.Checkpoint` here after the receiver
acknowledged a batch. The position must outlive the pod: a rescheduled worker may start on another node, where an
``emptyDir`` or a node-local file is gone. So:

- **in a pod** (the operator's pod template sets ``SLUICE_STATUS_REPORTER=kubernetes``, the same signal
  :mod:`sluice.worker.k8s_status` uses) the checkpoint lives in the Kubernetes API, in a ConfigMap
  ``<connector>-checkpoint`` next to the Connector (:class:`ConfigMapCheckpointStore`);
- **outside Kubernetes** (``sluice worker --config file``) it is a JSON file (:class:`FileCheckpointStore`) at
  ``$SLUICE_STATE_DIR/<connector>.json``. ``SLUICE_STATE_DIR`` defaults to ``./.sluice/state`` (relative to the
  directory the worker starts in); point it at a disk that survives whatever the worker runs on.

:func:`default_store` picks one.

The ConfigMap store writes with optimistic concurrency: every write carries the ``resourceVersion`` this store last
read or wrote. If the apiserver answers 409, the store re-reads once: when the stored checkpoint is still the one
it knew (only metadata changed) or is the one it was writing (an earlier answer was lost), it retries once; when
another writer changed it, :class:`~sluice.errors.ConflictError` is raised. Two workers for one connector can
therefore never both believe their write won — the second one learns it lost and must stop. A save returns only
after the apiserver answered 2xx, which means the object is committed to etcd.

RBAC (``sluice.operator.builders.role``): ``create`` on configmaps (a create cannot be limited by name), ``get`` and
``update`` on this one ConfigMap by name. ``clear`` empties the checkpoint key with an update instead of deleting
the object, so it needs no ``delete`` and stays protected by the same concurrency check. The ownerReference to the
Connector is set only when the ConfigMap is created, without ``blockOwnerDeletion``, so the worker needs no right
on ``connectors/finalizers`` and no ``delete`` even where the OwnerReferencesPermissionEnforcement admission
plugin is on; the garbage collector deletes the ConfigMap with its Connector.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sluice.errors import ConfigError, ConflictError
from sluice.models.resource import API_VERSION, KIND
from sluice.operator import naming
from sluice.worker.checkpoints.base import Checkpoint, CheckpointStore

if TYPE_CHECKING:
    from sluice.k8s.jsonclient import JsonClient, KubeError
    from sluice.models import Connector

__all__ = [
    "CHECKPOINT_KEY",
    "STATE_DIR_ENV",
    "ConfigMapCheckpointStore",
    "FileCheckpointStore",
    "checkpoint_configmap_name",
    "default_state_path",
    "default_store",
]

log = logging.getLogger(__name__)

#: Environment variable naming the directory of file checkpoints outside Kubernetes.
STATE_DIR_ENV = "SLUICE_STATE_DIR"
DEFAULT_STATE_DIR = Path(".sluice") / "state"
#: The ConfigMap key that holds the checkpoint JSON.
CHECKPOINT_KEY = "checkpoint.json"
#: Annotation naming the pod that wrote the checkpoint last (for a conflict message).
ANNOTATION_WRITER = "sluice.dev/checkpoint-writer"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _parse(text: str, where: str, fix: str) -> Checkpoint:
    try:
        checkpoint = Checkpoint.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where} does not hold a valid checkpoint ({type(exc).__name__}: {exc})", fix=fix) from exc
    return checkpoint


# -- file --------------------------------------------------------------------------------------------------------


class FileCheckpointStore(CheckpointStore):
    """The checkpoint as a JSON file, replaced atomically (temp file in the same directory, fsync, rename, fsync
    of the directory), so a crash at any instant leaves either the old or the new checkpoint, never a torn one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def _fix(self) -> str:
        return (
            f"Delete {self.path} to start this connector over with a new snapshot (the sink may then receive rows "
            f"again), or restore the file from a backup; {STATE_DIR_ENV} sets the directory of checkpoint files."
        )

    def load(self) -> Checkpoint | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the checkpoint file {self.path}: {exc}", fix=self._fix()) from exc
        return _parse(text, f"checkpoint file {self.path}", self._fix())

    def save(self, checkpoint: Checkpoint) -> None:
        data = (checkpoint.to_json() + "\n").encode()
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as exc:
            raise ConfigError(
                f"cannot write a checkpoint file in {directory}: {exc}",
                fix=f"Make {directory} writable, or set {STATE_DIR_ENV} to a writable directory.",
            ) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise
        _fsync_dir(directory)

    def clear(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (the directory entry itself is data)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def default_state_path(connector: str) -> Path:
    """``$SLUICE_STATE_DIR/<connector>.json`` (default ``./.sluice/state/<connector>.json``)."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR) / f"{connector}.json"


# -- ConfigMap ---------------------------------------------------------------------------------------------------


def checkpoint_configmap_name(connector: str) -> str:
    """``<connector>-checkpoint``; a connector id is a DNS label (≤ 63), so the name is a valid object name."""
    name = f"{connector}-checkpoint"
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ConfigError(
            f"connector id {connector!r} gives the ConfigMap name {name!r}, which is not a valid Kubernetes name",
            fix="Use a connector id of lowercase letters, digits and '-', at most 63 characters, starting and "
            "ending with a letter or digit.",
        )
    return name


class ConfigMapCheckpointStore(CheckpointStore):
    """The checkpoint in ConfigMap ``<connector>-checkpoint`` under :data:`CHECKPOINT_KEY` (see module docstring).

    ``owner_uid``: the Connector's uid for the ownerReference; None reads it from ``SLUICE_CONNECTOR_UID`` or
    with a GET of the Connector (the worker's Role allows that), and a Connector that cannot be read leaves the
    ConfigMap without an owner (logged). ``writer`` names this worker in an annotation (default
    ``$SLUICE_POD_NAME``) so a conflict can say who else wrote.
    """

    def __init__(
        self,
        client: JsonClient,
        namespace: str,
        connector_id: str,
        *,
        owner_uid: str | None = None,
        writer: str | None = None,
    ) -> None:
        from sluice.k8s.jsonclient import api_path

        self.client = client
        self.namespace = namespace
        self.connector_id = connector_id
        self.name = checkpoint_configmap_name(connector_id)
        self._path = api_path("configmaps", namespace, self.name)
        self._collection = api_path("configmaps", namespace)
        self._owner_uid = owner_uid or os.environ.get("SLUICE_CONNECTOR_UID") or None
        self._writer = writer if writer is not None else os.environ.get("SLUICE_POD_NAME", "")
        # What this store last saw: the object (None = known absent) and its checkpoint text (None = none stored).
        self._known = False
        self._object: dict[str, Any] | None = None
        self._text: str | None = None
        #: checkpoint texts sent since then whose answer never came (they may be stored)
        self._attempted: set[str | None] = set()

    # -- reading ---------------------------------------------------------------------------------------------

    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        obj = self.client.get_or_none(self._path)
        text = None if obj is None else (obj.get("data") or {}).get(CHECKPOINT_KEY)
        return obj, text

    def _remember(self, obj: dict[str, Any] | None, text: str | None) -> None:
        self._known, self._object, self._text = True, obj, text
        self._attempted.clear()

    def _fix(self) -> str:
        return (
            f"Delete ConfigMap {self.namespace}/{self.name} (kubectl delete configmap {self.name} -n "
            f"{self.namespace}) to start this connector over with a new snapshot (the sink may then receive rows "
            "again), or restore its checkpoint.json from a backup."
        )

    def load(self) -> Checkpoint | None:
        obj, text = self._read()
        self._remember(obj, text)
        if text is None:
            return None
        return _parse(text, f"key {CHECKPOINT_KEY} of ConfigMap {self.namespace}/{self.name}", self._fix())

    # -- writing ---------------------------------------------------------------------------------------------

    def save(self, checkpoint: Checkpoint) -> None:
        self._write(checkpoint.to_json())

    def clear(self) -> None:
        """Remove the checkpoint key (an update, under the same concurrency check); the ConfigMap stays."""
        if not self._known:
            self._remember(*self._read())
        if self._object is None:
            # Nothing stored as far as this store knows: make sure no other writer stored something meanwhile.
            obj, current = self._read()
            if current is not None and current not in self._attempted:
                raise self._conflict(obj, "it was created after this worker found none")
            if obj is None or current is None:
                return
            self._remember(obj, current)  # our own earlier save landed without an answer: clear it
        self._write(None)

    def _write(self, text: str | None) -> None:
        from sluice.k8s.jsonclient import KubeError

        if not self._known:
            # The base of the concurrency check is what this store read; a save before any load reads first.
            self._remember(*self._read())
        try:
            self._put_tracked(text)
            return
        except KubeError as exc:
            if not self._lost_race(exc):
                raise
            first = exc
        # 409 (resourceVersion moved on, or created meanwhile) / 404 (deleted meanwhile): look at what is stored.
        obj, current = self._read()
        if current == text and (obj is not None or text is None):
            # Already stored: an earlier attempt of ours landed although its answer was lost (or a twin wrote it).
            self._remember(obj, current)
            return
        if current != self._text and current not in self._attempted:
            # Another writer changed the checkpoint. The base is left as it was, so every later write of this store
            # fails the same way until it loads again: a worker that lost must not win by retrying.
            raise self._conflict(obj, first)
        # Only metadata changed (labels, annotations, the garbage collector), or it is our own lost write: once more.
        self._remember(obj, current)
        try:
            self._put_tracked(text)
        except KubeError as exc:
            if not self._lost_race(exc):
                raise
            raise self._conflict(None, exc) from exc

    def _lost_race(self, exc: KubeError) -> bool:
        """409 (changed or created meanwhile), or 404 on a replace (deleted meanwhile); a 404 on a create means a
        missing namespace, which is no race."""
        return exc.status == 409 or (exc.status == 404 and self._object is not None)

    def _put_tracked(self, text: str | None) -> None:
        """:meth:`_put`, remembering a write whose outcome is unknown (no answer) as possibly stored."""
        from sluice.k8s.jsonclient import KubeError

        try:
            self._put(text)
        except KubeError as exc:
            if exc.status >= 500:
                self._attempted.add(text)
            raise
        except Exception:
            self._attempted.add(text)
            raise

    def _put(self, text: str | None) -> None:
        """Create or replace with the remembered resourceVersion; remembers the answer."""
        obj = self._object
        if obj is None:
            if text is None:
                return
            body = self._new_object(text)
            created = self.client.create(self._collection, body)
            self._remember(created, text)
            return
        data = dict(obj.get("data") or {})
        if text is None:
            data.pop(CHECKPOINT_KEY, None)
        else:
            data[CHECKPOINT_KEY] = text
        metadata = dict(obj.get("metadata") or {})
        annotations = dict(metadata.get("annotations") or {})
        if self._writer:
            annotations[ANNOTATION_WRITER] = self._writer
        metadata["annotations"] = annotations
        # metadata.resourceVersion came with the object: the apiserver refuses the PUT (409) if it moved on.
        body = {**obj, "metadata": metadata, "data": data}
        replaced = self.client.replace(self._path, body)
        self._remember(replaced, text)

    def _new_object(self, text: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": naming.child_labels(self.connector_id),
        }
        if self._writer:
            metadata["annotations"] = {ANNOTATION_WRITER: self._writer}
        uid = self._connector_uid()
        if uid:
            metadata["ownerReferences"] = [
                {"apiVersion": API_VERSION, "kind": KIND, "name": self.connector_id, "uid": uid}
            ]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {CHECKPOINT_KEY: text}}

    def _connector_uid(self) -> str | None:
        if self._owner_uid:
            return self._owner_uid
        from sluice.k8s.jsonclient import KubeError, api_path

        try:
            connector = self.client.get(api_path("connectors", self.namespace, self.connector_id))
        except KubeError as exc:
            log.warning(
                "checkpoint ConfigMap %s/%s is created without an owner (cannot read Connector %s: %s); "
                "it will not be deleted with the Connector",
                self.namespace,
                self.name,
                self.connector_id,
                exc,
            )
            return None
        uid = (connector.get("metadata") or {}).get("uid")
        self._owner_uid = str(uid) if uid else None
        return self._owner_uid

    def _conflict(self, obj: dict[str, Any] | None, cause: Exception | str) -> ConflictError:
        writer = ((obj or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION_WRITER)
        by = f" by {writer}" if writer and writer != self._writer else ""
        return ConflictError(
            f"the checkpoint in ConfigMap {self.namespace}/{self.name} was changed{by} since this worker read it: "
            f"another worker runs connector {self.connector_id} ({cause})",
            fix=f"Make sure only one worker runs connector {self.connector_id} (one StatefulSet pod, no "
            "`sluice worker` started by hand against the same cluster); this worker stops and the remaining one "
            "continues from the stored checkpoint.",
        )


def default_store(connector: Connector | str) -> CheckpointStore:
    """A ConfigMap store when running in a pod the operator made, else a file under ``$SLUICE_STATE_DIR``."""
    connector_id = connector if isinstance(connector, str) else connector.id
    if os.environ.get("SLUICE_STATUS_REPORTER") == "kubernetes":
        from sluice.k8s.jsonclient import JsonClient

        namespace = os.environ["SLUICE_CONNECTOR_NAMESPACE"]
        name = os.environ.get("SLUICE_CONNECTOR_NAME") or connector_id
        return ConfigMapCheckpointStore(JsonClient(timeout=10), namespace, name)
    return FileCheckpointStore(default_state_path(connector_id))
