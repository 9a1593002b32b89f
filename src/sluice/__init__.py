"""Sluice: Kubernetes-native change-data-capture.

A connector (source database, sink, and how to move data) is declared as a ``Connector`` custom resource or
through the REST API; the operator turns it into one replication worker pod.
"""

__version__ = "0.1.0"
