"""Use cases: one module per thing a user asks perphedge to do.

Each takes a request (validated input) and returns a result document (a JSON-ready mapping with a
``schema`` key) or a result object that renders to one. Edges (``perphedge.cli``, later the web
dashboard and the book) only parse, call and render; adapters (``perphedge.data``,
``perphedge.exchange``) only read and write.
"""
