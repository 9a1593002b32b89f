"""The REST API (``sluice api``): a thin FastAPI shim that turns REST calls into Connector resources.

Layout: ``routes/`` parse and authorize (thin handlers), ``services/connectors.py`` holds the logic in terms of
Kubernetes objects, ``sluice.k8s`` does every Kubernetes call. Pure helpers: ``body`` (415/413/400 rules),
``validation`` (pydantic → 422 details), ``merge_patch`` (RFC 7396 + immutable fields), ``secrets`` (where
credentials go and how connectors are shown without them), ``ids``, ``auth`` (TokenReview/SubjectAccessReview).

Command semantics (``POST /api/v1/connector/command/{id}``), chosen to match what Strimzi and PeerDB users
expect:

- ``Stop``: ``spec.disabled = true`` (declarative pause, visible to GitOps; the worker stops, the replication
  slot stays, so the source retains WAL); ``Start``: ``spec.disabled = false``.
- ``Restart``, ``ReIntialize`` (sic, the reference's spelling): recorded only, for the operator to act on.
- every command sets the annotations ``sluice.dev/command``, ``sluice.dev/command-id`` (unique per request, so
  a repeated Restart is a new request) and ``sluice.dev/command-requested-at``.
- ``Delete``: deletes the Connector; ``ForceDelete``: annotates ``sluice.dev/force-delete: "true"`` first, then
  deletes, telling the operator's finalizer not to wait for an unreachable source.
"""
