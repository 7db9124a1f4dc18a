"""The Python client of the taskstream API: ``Client`` (``sync``) and ``AsyncClient``
(``aio``) on httpx, the ``Task`` they return (``models``) and the errors they raise
(``errors``). The calls themselves are written once, without I/O, in ``flows``; ``sync`` and
``aio`` drive them. Nothing is imported here, so code that needs only the errors or the
models (the services, through ``taskstream``) does not load httpx."""
