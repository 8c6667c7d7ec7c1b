"""The playground: xpnet's trainer live in a browser, on xpnet's own backends (``xpnet playground``).

``controls`` checks every value the page sends, ``session`` trains one
browser tab's network in a worker thread and turns its progress into frames,
and ``server`` serves the page and one WebSocket per tab (Starlette and
uvicorn, from the ``playground`` extra).
"""
