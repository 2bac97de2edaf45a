"""``uploadsvc storage init`` on S3 and S3-compatible stores: the bucket's setup.

The bucket is often shared (another team's lifecycle rules, a CDN's CORS
rule), so our rules are told apart by an ID prefix and merged with what the
bucket already holds: a run replaces our rules and keeps every other one.
Block Public Access and default encryption are applied where the store has
them; a store that does not (MinIO refuses PutPublicAccessBlock) gets a
warning, not a failed setup. With ``check`` nothing is written: what differs
is reported as drift.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from uploadsvc.errors import StorageError
from uploadsvc.storage.base import StorageSetup

# Rules whose ID starts with this are ours: replaced on every run.
RULE_ID_PREFIX = "uploadsvc-"
LIFECYCLE_RULE_ID = RULE_ID_PREFIX + "abort-incomplete-multipart-uploads"
CORS_RULE_ID = RULE_ID_PREFIX + "browser-uploads"
# The lifecycle rule's ID before rules had the prefix: still ours.
_LEGACY_LIFECYCLE_RULE_IDS = frozenset({"abort-incomplete-multipart-uploads"})
# S3 refuses a LocationConstraint naming its default region.
_DEFAULT_REGION = "us-east-1"

_BUCKET_MISSING = frozenset({"404", "NoSuchBucket", "NotFound"})
_BUCKET_EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
# What a store answers for a bucket API it does not implement.
_UNSUPPORTED = frozenset(
    {"NotImplemented", "XNotImplemented", "MethodNotAllowed", "NotSupported", "501", "405"}
)
# What each Get answers when the bucket has no such configuration yet.
_NO_PUBLIC_ACCESS_BLOCK = "NoSuchPublicAccessBlockConfiguration"
_NO_ENCRYPTION = "ServerSideEncryptionConfigurationNotFoundError"
_NO_LIFECYCLE = "NoSuchLifecycleConfiguration"
_NO_CORS = "NoSuchCORSConfiguration"

_BLOCK_ALL = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# SSE-S3 is what we ask for; a bucket encrypted with KMS already is left so.
_ENCRYPTED = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
_SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}

# What our rules look like (without their origins): a CORS rule without an ID
# of this shape was written by a version that did not name its rules.
_CORS_SHAPE: dict[str, Any] = {
    "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
    "AllowedHeaders": ["content-type", "if-none-match", "x-amz-checksum-sha256", "x-amz-*"],
    # Multipart clients read each part's ETag; POST uploads, Location.
    "ExposeHeaders": ["ETag", "Location"],
    "MaxAgeSeconds": 3600,
}
LIFECYCLE_RULE: dict[str, Any] = {
    "ID": LIFECYCLE_RULE_ID,
    "Status": "Enabled",
    "Filter": {"Prefix": ""},
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
}


def cors_rule(origins: list[str]) -> dict[str, Any]:
    """Our CORS rule: browsers at ``origins`` may PUT, POST and GET objects."""
    return {"ID": CORS_RULE_ID, "AllowedOrigins": list(origins), **_CORS_SHAPE}


class _Unsupported(Exception):
    """The store does not implement this bucket API."""


class _BucketSetup:
    def __init__(self, client: Any, *, bucket: str, region: str | None, check: bool) -> None:
        self._client = client
        self._bucket = bucket
        self._region = region
        self._check = check
        self.report = StorageSetup()

    @contextlib.contextmanager
    def _call(self, action: str, *, absent: Collection[str] = ()) -> Iterator[list[bool]]:
        """One request to S3; the yielded list holds ``True`` once S3 answered a code in ``absent``.

        Unsupported APIs raise ``_Unsupported``; every other error becomes one
        ``StorageError`` line with the store's own code and message (an
        operator reads it, not a client).
        """
        answered_absent: list[bool] = []
        try:
            yield answered_absent
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in absent:
                answered_absent.append(True)
                return
            if code in _UNSUPPORTED:
                raise _Unsupported(code) from None
            message = str(error.get("Message", "")) or "no message"
            raise StorageError(
                f"cannot {action} (bucket {self._bucket}): {code}: {message}"
            ) from None
        except BotoCoreError as exc:
            raise StorageError(f"cannot {action} (bucket {self._bucket}): {exc}") from None

    def _differs(self, what: str) -> bool:
        """Record drift when checking; true when the caller should write."""
        if self._check:
            self.report.drift.append(what)
            return False
        return True

    async def bucket(self) -> bool:
        """Create the bucket unless it exists; false when checking finds none."""
        with self._call("look up the bucket", absent=_BUCKET_MISSING) as missing:
            await self._client.head_bucket(Bucket=self._bucket)
        if not missing:
            self.report.done.append(f"bucket {self._bucket} exists")
            return True
        if self._check:
            self.report.drift.append(f"bucket {self._bucket} does not exist")
            return False
        arguments: dict[str, Any] = {"Bucket": self._bucket}
        if self._region and self._region != _DEFAULT_REGION:
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        # Another `storage init` may have created it meanwhile: that is no error.
        with self._call("create the bucket", absent=_BUCKET_EXISTS) as exists:
            await self._client.create_bucket(**arguments)
        where = f" in {self._region}" if self._region else ""
        self.report.done.append(
            f"bucket {self._bucket} exists" if exists else f"created bucket {self._bucket}{where}"
        )
        return True

    async def optional(self, name: str, step: Any) -> None:
        """Run a step the store may not implement: a warning then, not a failure."""
        try:
            await step()
        except _Unsupported as exc:
            self.report.warnings.append(f"{name}: not supported by this store ({exc}), skipped")

    async def public_access_block(self) -> None:
        with self._call("read Block Public Access", absent={_NO_PUBLIC_ACCESS_BLOCK}) as absent:
            answer = await self._client.get_public_access_block(Bucket=self._bucket)
        current = {} if absent else dict(answer.get("PublicAccessBlockConfiguration", {}))
        if all(current.get(name) is True for name in _BLOCK_ALL):
            self.report.done.append("public access is blocked")
            return
        if self._differs("public access is not fully blocked"):
            with self._call("block public access"):
                await self._client.put_public_access_block(
                    Bucket=self._bucket, PublicAccessBlockConfiguration=_BLOCK_ALL
                )
            self.report.done.append("blocked public access")

    async def encryption(self) -> None:
        with self._call("read default encryption", absent={_NO_ENCRYPTION}) as absent:
            answer = await self._client.get_bucket_encryption(Bucket=self._bucket)
        configuration = {} if absent else answer.get("ServerSideEncryptionConfiguration", {})
        rules = configuration.get("Rules", [])
        algorithms = {
            rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for rule in rules
        }
        if algorithms & _ENCRYPTED:
            self.report.done.append("default encryption is on")
            return
        if self._differs("default encryption is off"):
            with self._call("turn on default encryption"):
                await self._client.put_bucket_encryption(
                    Bucket=self._bucket, ServerSideEncryptionConfiguration=_SSE_S3
                )
            self.report.done.append("default encryption: SSE-S3")

    async def lifecycle(self) -> None:
        with self._call("read the lifecycle rules", absent={_NO_LIFECYCLE}) as absent:
            answer = await self._client.get_bucket_lifecycle_configuration(Bucket=self._bucket)
        rules: list[dict[str, Any]] = [] if absent else list(answer.get("Rules", []))
        ours = [rule for rule in rules if _is_our_lifecycle_rule(rule)]
        theirs = [rule for rule in rules if not _is_our_lifecycle_rule(rule)]
        wanted = "lifecycle: abort incomplete multipart uploads after 1 day"
        if len(ours) == 1 and _matches(ours[0], LIFECYCLE_RULE):
            self.report.done.append(wanted)
            return
        if self._differs(f"lifecycle rule {LIFECYCLE_RULE_ID} is missing or changed"):
            arguments: dict[str, Any] = {
                "Bucket": self._bucket,
                "LifecycleConfiguration": {"Rules": [*theirs, LIFECYCLE_RULE]},
            }
            # A Put without it would reset the bucket's setting to the default.
            if not absent and "TransitionDefaultMinimumObjectSize" in answer:
                arguments["TransitionDefaultMinimumObjectSize"] = answer[
                    "TransitionDefaultMinimumObjectSize"
                ]
            with self._call("write the lifecycle rules"):
                await self._client.put_bucket_lifecycle_configuration(**arguments)
            kept = f" (kept {len(theirs)} other rule(s))" if theirs else ""
            self.report.done.append(wanted + kept)

    async def cors(self, origins: list[str]) -> None:
        with self._call("read the CORS rules", absent={_NO_CORS}) as absent:
            answer = await self._client.get_bucket_cors(Bucket=self._bucket)
        rules: list[dict[str, Any]] = [] if absent else list(answer.get("CORSRules", []))
        ours = [rule for rule in rules if _is_our_cors_rule(rule)]
        theirs = [rule for rule in rules if not _is_our_cors_rule(rule)]
        wanted = [cors_rule(origins)] if origins else []
        if len(ours) == len(wanted) and all(map(_matches, ours, wanted)):
            if origins:
                self.report.done.append(f"CORS for {', '.join(origins)}")
            return
        if not self._differs(
            f"CORS rule {CORS_RULE_ID} is missing or changed"
            if origins
            else f"CORS rule {CORS_RULE_ID} is there but CORS_ORIGINS is empty"
        ):
            return
        merged = [*theirs, *wanted]
        if merged:
            with self._call("write the CORS rules"):
                await self._client.put_bucket_cors(
                    Bucket=self._bucket, CORSConfiguration={"CORSRules": merged}
                )
        else:
            with self._call("remove the CORS rules"):
                await self._client.delete_bucket_cors(Bucket=self._bucket)
        kept = f" (kept {len(theirs)} other rule(s))" if theirs else ""
        if origins:
            self.report.done.append(f"CORS for {', '.join(origins)}{kept}")
        else:
            self.report.done.append(f"removed CORS rule {CORS_RULE_ID}{kept}")


def _matches(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    # Stores add fields of their own to what they return: compare ours only.
    return all(current.get(name) == value for name, value in wanted.items())


def _is_our_lifecycle_rule(rule: Mapping[str, Any]) -> bool:
    rule_id = str(rule.get("ID", ""))
    return rule_id.startswith(RULE_ID_PREFIX) or rule_id in _LEGACY_LIFECYCLE_RULE_IDS


def _is_our_cors_rule(rule: Mapping[str, Any]) -> bool:
    rule_id = rule.get("ID")
    if rule_id is not None:
        return str(rule_id).startswith(RULE_ID_PREFIX)
    return _matches(rule, _CORS_SHAPE)


async def set_up_bucket(
    client: Any, *, bucket: str, region: str | None, cors_origins: list[str], check: bool
) -> StorageSetup:
    """Create ``bucket`` (in ``region``) and merge our setup into it, or only compare."""
    setup = _BucketSetup(client, bucket=bucket, region=region, check=check)
    if not await setup.bucket():
        return setup.report
    await setup.optional("Block Public Access", setup.public_access_block)
    await setup.optional("default encryption", setup.encryption)
    await setup.optional("lifecycle rules", setup.lifecycle)

    async def cors() -> None:
        await setup.cors(cors_origins)

    await setup.optional("CORS", cors)
    return setup.report
