"""Development tools, not the product and not packaged: the local-store bootstrap behind
``make run`` and ``make test`` (``up``, ``with-stores``) and the benchmark harness
(``make bench``). Run as ``python -m tools COMMAND``."""
