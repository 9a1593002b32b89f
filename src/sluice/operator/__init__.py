"""The Sluice operator: kopf handlers (``handlers``) that call pure builders (``builders``) and status logic
(``conditions``), and apply the result through ``sluice.k8s``. Started by ``sluice operator`` (``cli``)."""
