"""The one exception type for problems a user can fix.

The CLI catches it once, prints its message as a single line and exits 2. Everything else is a
runtime failure: it propagates, Prefect retries it, and the CLI exits 3 if it still fails.
"""


class FerryError(Exception):
    """Bad input or an unusable environment: the message says what is wrong and how to fix it."""
