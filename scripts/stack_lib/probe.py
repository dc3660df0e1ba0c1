"""Readiness probes for scripts/stack that need a real client.

Usage (run with .venv's python; connection settings come from MOZART_* env):
    probe.py s3-buckets BUCKET...   check credentials, create missing buckets
    probe.py trino-select1          run SELECT 1 on Trino
Exit status 0 on success, 1 on failure (reason on stderr).
"""

import os
import sys


def s3_buckets(names):
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=os.environ["MOZART_S3_ENDPOINT_URL"],
        aws_access_key_id=os.environ["MOZART_S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["MOZART_S3_SECRET_KEY"],
        region_name=os.environ.get("MOZART_S3_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 10, "mode": "standard"},
        ),
    )
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    for name in names:
        if name not in existing:
            client.create_bucket(Bucket=name)
            print(f"created bucket {name}", file=sys.stderr)


def trino_select1():
    import trino

    conn = trino.dbapi.connect(
        host="127.0.0.1",
        port=int(os.environ["MOZART_TRINO_PORT"]),
        user="mozart",
        request_timeout=10,
    )
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        if cur.fetchall() != [[1]]:
            raise RuntimeError("unexpected SELECT 1 result")
    finally:
        conn.close()


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "s3-buckets":
            s3_buckets(argv[1:])
        elif argv[0] == "trino-select1":
            trino_select1()
        else:
            print(f"unknown probe {argv[0]!r}", file=sys.stderr)
            return 2
    except Exception as exc:  # noqa: BLE001 - a probe reports any failure, never raises
        print(f"{argv[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
