"""The HTTP edge every service shares, in one place, below the routes of each ``api.py``:

- ``protocol``: the HTTP server's own limits (header size and time, connections per address and in all);
- ``gate``: the one request pipeline (request id, caller, Content-Type, rate limits, the 500 answer);
- ``session``: the dashboard's cookie session (OrderService only), and ``pages``, its HTML pages;
- ``body``: the one body reader (the size limit), for the hot routes and FastAPI's alike;
- ``answers``: JSON and problem+json answers, the one mapping of errors to them, the handlers;
- ``access``: who may call each route (every route declares it; none is open by default);
- ``app``: the service app factory and the hot routes ahead of FastAPI (``Front``);
- ``problems``: RFC 9457 problems, and the mapping each service registers of its errors to them;
- ``openapi``: the schema each service publishes; ``listing`` and ``paging``: what every list shares;
- ``readiness``: ``GET /ready`` and whether the database is reachable; ``audit_trail``: one line per
  call that changes state; ``gc_tuning``: how a serving process's heap is collected.

Import order, without a cycle: answers, body, access, pages < session < gate < app.
"""
