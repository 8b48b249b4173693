"""The dashboard `huntaze serve` shows at ``/dashboard``: server-rendered HTML and SVG.

``views`` gathers each view's documents from the same services the API routes call,
``charts`` draws them as SVG, ``render`` fills the Jinja2 templates shipped in
``templates/``, ``session`` signs viewers in with the API token. Nothing is fetched from
the internet and no script runs in the page. The routes are in ``server.routes.dashboard``.
"""
