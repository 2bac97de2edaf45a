"""``uploadsvc storage init`` against strict LocalStack: merged rules, drift, preflights.

The bucket may be shared: a rule another team put there survives every run,
and ``--check`` changes nothing. The command runs as an operator runs it (a
process, its exit code and output); the bucket is read back with botocore.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import botocore.session
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support.localstack import LocalStackServer
from tests.support.servers import free_loopback_port, run_cli_status, uploadsvc_env
from uploadsvc.cli import DRIFT_EXIT_CODE
from uploadsvc.storage.s3_setup import CORS_RULE_ID, LIFECYCLE_RULE_ID, set_up_bucket

pytestmark = pytest.mark.s3

APP_ORIGIN = "http://app.example.test"
OTHER_ORIGIN = "http://evil.example.test"
FOREIGN_LIFECYCLE_RULE = {
    "ID": "analytics-expire-logs",
    "Status": "Enabled",
    "Filter": {"Prefix": "logs/"},
    "Expiration": {"Days": 30},
}
FOREIGN_CORS_RULE = {
    "ID": "cdn-reads",
    "AllowedOrigins": ["https://cdn.example.test"],
    "AllowedMethods": ["GET"],
    "AllowedHeaders": ["*"],
    "MaxAgeSeconds": 600,
}


def s3_client(localstack: LocalStackServer, region: str = "us-east-1") -> Any:
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=localstack.endpoint_url,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture
def s3(localstack: LocalStackServer) -> Iterator[Any]:
    client = s3_client(localstack)
    yield client
    client.close()


def cli_env(localstack: LocalStackServer, bucket: str, **values: str) -> dict[str, str]:
    return uploadsvc_env(
        {
            "env": "development",
            "storage_backend": "s3",
            "s3_endpoint_url": localstack.endpoint_url,
            "s3_bucket": bucket,
            "s3_access_key_id": "test",
            "s3_secret_access_key": "test",
            "s3_addressing_style": "path",
            "cors_origins": APP_ORIGIN,
            **values,
        }
    )


def storage_init(env: dict[str, str], cwd: Path, *extra: str, expect: int = 0) -> tuple[str, str]:
    result = run_cli_status(["storage", "init", *extra], env=env, cwd=cwd)
    assert result.returncode == expect, result.stdout + result.stderr
    return result.stdout, result.stderr


def bucket_setup(s3: Any, bucket: str) -> dict[str, Any]:
    """Everything ``storage init`` sets, as the bucket holds it."""
    return {
        "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"],
        "cors": s3.get_bucket_cors(Bucket=bucket)["CORSRules"],
        "public_access": s3.get_public_access_block(Bucket=bucket)[
            "PublicAccessBlockConfiguration"
        ],
        "encryption": s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"],
    }


def test_init_twice_leaves_the_same_setup_and_keeps_foreign_rules(
    localstack: LocalStackServer, s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    s3.create_bucket(Bucket=s3_bucket)
    s3.put_bucket_lifecycle_configuration(
        Bucket=s3_bucket, LifecycleConfiguration={"Rules": [FOREIGN_LIFECYCLE_RULE]}
    )
    s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration={"CORSRules": [FOREIGN_CORS_RULE]})
    env = cli_env(localstack, s3_bucket)

    first, _ = storage_init(env, tmp_path)
    after_first = bucket_setup(s3, s3_bucket)
    second, _ = storage_init(env, tmp_path)
    after_second = bucket_setup(s3, s3_bucket)

    assert after_second == after_first
    assert f"bucket {s3_bucket} exists" in first
    assert "kept 1 other rule(s)" in first
    assert "kept" not in second  # nothing was written the second time
    lifecycle = {rule["ID"]: rule for rule in after_first["lifecycle"]}
    assert set(lifecycle) == {FOREIGN_LIFECYCLE_RULE["ID"], LIFECYCLE_RULE_ID}
    assert lifecycle[FOREIGN_LIFECYCLE_RULE["ID"]]["Expiration"] == {"Days": 30}
    assert lifecycle[LIFECYCLE_RULE_ID]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    cors = {rule.get("ID"): rule for rule in after_first["cors"]}
    assert set(cors) == {FOREIGN_CORS_RULE["ID"], CORS_RULE_ID}
    assert cors[FOREIGN_CORS_RULE["ID"]]["AllowedOrigins"] == FOREIGN_CORS_RULE["AllowedOrigins"]
    assert cors[CORS_RULE_ID]["AllowedOrigins"] == [APP_ORIGIN]
    assert all(after_first["public_access"].values())
    assert after_first["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }


def test_check_reports_a_drift_made_by_hand_and_changes_nothing(
    localstack: LocalStackServer, s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    env = cli_env(localstack, s3_bucket)
    fresh, _ = storage_init(env, tmp_path, "--check", expect=DRIFT_EXIT_CODE)
    assert f"drift: bucket {s3_bucket} does not exist" in fresh
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=s3_bucket)

    storage_init(env, tmp_path)
    clean, _ = storage_init(env, tmp_path, "--check")
    assert "no drift" in clean

    # By hand: our CORS rule gone (another team's put in its place), our
    # lifecycle rule lengthened.
    s3.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration={"CORSRules": [FOREIGN_CORS_RULE]})
    changed_lifecycle = {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket=s3_bucket, LifecycleConfiguration={"Rules": [changed_lifecycle]}
    )
    by_hand = bucket_setup(s3, s3_bucket)

    drifted, _ = storage_init(env, tmp_path, "--check", expect=DRIFT_EXIT_CODE)
    assert f"drift: CORS rule {CORS_RULE_ID} is missing or changed" in drifted
    assert f"drift: lifecycle rule {LIFECYCLE_RULE_ID} is missing or changed" in drifted
    assert "public access" not in drifted.split("drift:", 1)[1]
    assert bucket_setup(s3, s3_bucket) == by_hand

    storage_init(env, tmp_path)
    repaired, _ = storage_init(env, tmp_path, "--check")
    assert "no drift" in repaired


def test_a_preflight_from_an_allowed_origin_passes_and_another_fails(
    localstack: LocalStackServer, s3_bucket: str, tmp_path: Path
) -> None:
    storage_init(cli_env(localstack, s3_bucket), tmp_path)
    url = f"{localstack.endpoint_url}/{s3_bucket}/uploads/alice/notes.txt"

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type,if-none-match",
            },
            timeout=30,
        )

    allowed = preflight(APP_ORIGIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "PUT" in allowed.headers["access-control-allow-methods"]

    refused = preflight(OTHER_ORIGIN)
    assert refused.status_code == 403, refused.text
    assert "access-control-allow-origin" not in refused.headers


def test_outside_us_east_1_the_bucket_is_created_in_the_configured_region(
    localstack: LocalStackServer, s3_bucket: str, tmp_path: Path
) -> None:
    output, _ = storage_init(cli_env(localstack, s3_bucket, s3_region="eu-west-1"), tmp_path)
    assert f"created bucket {s3_bucket} in eu-west-1" in output
    client = s3_client(localstack, "eu-west-1")
    try:
        location = client.get_bucket_location(Bucket=s3_bucket)
    finally:
        client.close()
    assert location["LocationConstraint"] == "eu-west-1"


def test_unreachable_storage_is_one_line_and_exit_code_1(s3_bucket: str, tmp_path: Path) -> None:
    env = uploadsvc_env(
        {
            "env": "development",
            "storage_backend": "s3",
            "s3_endpoint_url": f"http://127.0.0.1:{free_loopback_port()}",
            "s3_bucket": s3_bucket,
            "s3_access_key_id": "test",
            "s3_secret_access_key": "test",
        }
    )
    result = run_cli_status(["storage", "init"], env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("uploadsvc ")]
    assert len(errors) == 1, result.stderr
    assert "cannot look up the bucket" in errors[0]
    assert s3_bucket in errors[0]


class WithoutBucketSecurity:
    """A LocalStack client that answers as MinIO does to Block Public Access and encryption."""

    UNSUPPORTED = frozenset(
        {
            "get_public_access_block",
            "put_public_access_block",
            "get_bucket_encryption",
            "put_bucket_encryption",
        }
    )

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name in self.UNSUPPORTED:

            async def refuse(**_: Any) -> None:
                raise ClientError(
                    {"Error": {"Code": "NotImplemented", "Message": "A header you provided"}},
                    name,
                )

            return refuse
        return getattr(self._client, name)


@pytest.fixture
async def async_s3(localstack: LocalStackServer) -> AsyncIterator[Any]:
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=localstack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ) as client:
        yield client


async def test_a_store_without_block_public_access_gets_a_warning_not_a_stop(
    async_s3: Any,
) -> None:
    bucket = f"uploadsvc-test-{uuid.uuid4().hex[:12]}"
    setup = await set_up_bucket(
        WithoutBucketSecurity(async_s3),
        bucket=bucket,
        region="us-east-1",
        cors_origins=[APP_ORIGIN],
        check=False,
    )
    assert [warning.split(":")[0] for warning in setup.warnings] == [
        "Block Public Access",
        "default encryption",
    ]
    assert "not supported by this store (NotImplemented)" in setup.warnings[0]
    # The rest of the setup went on.
    cors = await async_s3.get_bucket_cors(Bucket=bucket)
    assert [rule["ID"] for rule in cors["CORSRules"]] == [CORS_RULE_ID]
    lifecycle = await async_s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert [rule["ID"] for rule in lifecycle["Rules"]] == [LIFECYCLE_RULE_ID]
