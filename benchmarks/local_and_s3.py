"""A local folder and an S3 bucket on a SeaweedFS server started for one benchmark run.

The store benchmarks measure the same code on both kinds of store; this gives them both roots, with
this process's environment pointed at the server (as every S3 client of the platform reads it), and
stops the server and removes the folder afterwards.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stack.seaweedfs import SeaweedS3

BUCKET = "fleetml-bench"
STORES = ("local", "s3")


@contextmanager
def local_and_s3_roots(prefix: str) -> Iterator[dict[str, str]]:
    """`{"local": <folder>, "s3": "s3://<bucket>"}` for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir, SeaweedS3(Path(workdir, "seaweedfs")) as server:
        server.create_bucket(BUCKET)
        os.environ.update(server.environment())
        yield {"local": str(Path(workdir, "local")), "s3": f"s3://{BUCKET}"}
