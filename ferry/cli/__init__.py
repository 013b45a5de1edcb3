"""The `ferry` command line, one module per command group.

    app.py      the command index (`ferry table`, `verify`, `sync`, `status`, `bucket`) and main():
                the one place errors become exit codes
    options.py  options every command shares, building a job from them, starting Prefect quietly
    table.py    ferry table / verify table / sync table
    bucket.py   ferry bucket / verify bucket / sync bucket
    status.py   ferry status table|bucket
    render.py   result tables and the JSON of --json;  progress.py: live displays on stderr

The CLI lives inside the `ferry` package for packaging's sake, but it sits on top of the flows: it
imports `flows` (and, for its live displays, `tasks.handles`), and nothing in the engine
(`ferry.dynamo`, `ferry.s3`, `ferry.state`, `ferry.aws`, `ferry.config`) imports `ferry.cli`, so the
arrows still point one way: cli -> flows -> tasks -> engine -> lambdas.
"""

from ferry.cli.app import app, main

__all__ = ["app", "main"]
