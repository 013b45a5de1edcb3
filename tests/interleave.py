"""Interleavings driven deterministically: a client that lets another writer's step land at one
chosen moment of the code under test."""

from __future__ import annotations


class RunsFirst:
    """Wraps a boto3 client: the first call of any of `methods` is preceded by `meanwhile()` (the
    other writer's step), once; `ran` counts that it happened, so a test can check the writer wrote."""

    def __init__(self, client, methods: str | tuple[str, ...], meanwhile):
        self.client, self.meanwhile, self.ran = client, meanwhile, 0
        self.methods = (methods,) if isinstance(methods, str) else methods

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if name not in self.methods:
            return attribute

        def calling(**kwargs):
            if not self.ran:
                self.ran += 1
                self.meanwhile()
            return attribute(**kwargs)
        return calling
