"""The dashboard OrderService serves at ``/``: orders live, one order drawn as its sequence diagram,
the circuit breakers and their switches, and the audit (``api.py``); the page shells and the files
they load (``pages.py``, ``static/``); the chart's figures (``stats.py``, pure)."""
