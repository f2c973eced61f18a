"""The command-line tools, apart from the services: the ``oms`` command (``commands``), its tables
(``console``), ``oms up``/``down``/``status`` (``launcher``), the process supervisor they and the
tests share (``supervisor``), and ``oms bench`` with its load generator (``bench``, ``loadgen``)."""

from oms.cli.commands import main

__all__ = ["main"]
