"""Prefect tasks: one module per mission step, each a thin wrapper over Ferry's engine.

Tasks take configuration (names, settings), never boto3 clients, so Prefect can hash their inputs
and a retry builds fresh clients. Retries skip BadInput and CannotContinue:
neither gets better by waiting.
"""
