"""berth_cli: the berth command-line client (stdlib only, fast start-up).

A thin client of berthd's Docker Engine API over a unix socket:
``client`` (one method per endpoint), ``args`` (cobra-like parsing),
``commands`` (one module per command group), ``formatting`` and ``template``
(Docker-compatible output), ``main`` (dispatch and exit codes).
"""

__version__ = "0.1.0"
API_VERSION = "1.41"
