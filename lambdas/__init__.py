"""Live-sync handlers and the write functions they share with Ferry's engine.

Only the standard library and boto3 may be imported here: this folder is zipped and shipped alone.
"""
