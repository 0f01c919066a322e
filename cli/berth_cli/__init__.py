"""berth_cli: the berth command-line client (stdlib only, fast start-up)."""
