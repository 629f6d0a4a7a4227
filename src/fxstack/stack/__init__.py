"""The stack harness: Compose files in compose/, driven by `fxstack up/down/status/logs/test`."""
