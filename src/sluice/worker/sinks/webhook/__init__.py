"""The webhook sink: change events POSTed over HTTP (see :mod:`.sink`)."""

from sluice.worker.sinks.webhook.sink import WebhookSink

__all__ = ["WebhookSink"]
