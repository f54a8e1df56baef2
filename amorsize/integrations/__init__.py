"""Integrations built on the hook events: Prometheus, OpenTelemetry, progress, logging.

Each module imports its third-party dependency lazily and raises ImportError naming
the extra to install when it is missing.
"""
