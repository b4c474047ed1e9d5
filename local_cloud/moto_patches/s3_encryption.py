"""Encrypted objects in moto's S3 refuse reads as AWS's do: SSE-C without its key, SSE-KMS
with a key that is not usable.

- **SSE-C** (docs.aws.amazon.com/AmazonS3/latest/userguide/ServerSideEncryptionCustomerKeys.html):
  S3 keeps no copy of the key, only its MD5; GetObject and HeadObject of such an object must send
  the same key (``x-amz-server-side-encryption-customer-*``) and CopyObject from it the same key
  as ``x-amz-copy-source-server-side-encryption-customer-*``, else 400 ``InvalidRequest`` ("The
  object was stored using a form of Server Side Encryption. The correct parameters must be
  provided to retrieve the object."; HEAD answers 400 without a body). ``put_object`` is wrapped
  to remember the key's MD5 on the stored version (:data:`KEY_MD5_ATTRIBUTE` on moto's
  ``FakeKey``); only the MD5 is compared (moto stores the bytes unencrypted), so a wrong key is
  refused like a missing one.
- **SSE-KMS**: reading (GetObject, CopyObject from) an object needs its KMS key to decrypt the
  data key: a key that is disabled, pending deletion or gone fails the read with KMS's error
  (``KMS.DisabledException``, ``KMS.KMSInvalidStateException``, ``KMS.NotFoundException``);
  HeadObject does not decrypt and succeeds. The key's state is moto's KMS backend's.

moto 5.2.5 ignores all of it: the object is served to anyone. Permissions (a key policy or IAM
denying ``kms:Decrypt``) are not emulated: the local cloud does not evaluate IAM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from moto.kms.models import kms_backends
from moto.s3.exceptions import S3ClientError
from moto.s3.models import FakeKey
from moto.s3.responses import S3Response

from ._patching import Patch, Replace, Require

KEY_MD5_ATTRIBUTE = "refit_sse_customer_key_md5"
_KEY_MD5 = "x-amz-server-side-encryption-customer-key-md5"
_COPY_SOURCE_KEY_MD5 = "x-amz-copy-source-server-side-encryption-customer-key-md5"
_MESSAGE = (
    "The object was stored using a form of Server Side Encryption. The correct parameters must "
    "be provided to retrieve the object."
)


class SseCustomerKeyRequired(S3ClientError):
    def __init__(self) -> None:
        super().__init__("InvalidRequest", _MESSAGE)


_KMS_STATE_ERRORS = {
    "Disabled": ("KMS.DisabledException", "{arn} is disabled."),
    "PendingDeletion": ("KMS.KMSInvalidStateException", "{arn} is pending deletion."),
    "PendingImport": ("KMS.KMSInvalidStateException", "{arn} is pending import."),
    "Unavailable": ("KMS.KMSInvalidStateException", "{arn} is unavailable."),
}


def _kms_refusal(key: FakeKey | None, account_id: str, region: str) -> S3ClientError | None:
    """KMS's error when ``key`` (a stored version) is SSE-KMS and its key cannot decrypt."""
    key_id = getattr(key, "kms_key_id", None)
    if getattr(key, "encryption", None) != "aws:kms" or not key_id:
        return None
    if key_id.startswith("arn:"):
        region, account_id = key_id.split(":")[3:5]
    try:
        kms_key = kms_backends[account_id][region].describe_key(key_id)
    except (KeyError, ValueError, TypeError):
        return S3ClientError("KMS.NotFoundException", f"Invalid keyId {key_id}")
    state = _KMS_STATE_ERRORS.get(str(kms_key.key_state))
    if state is None:
        return None
    code, message = state
    return S3ClientError(code, message.format(arn=kms_key.arn))


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _refused(key: FakeKey | None, headers: Mapping[str, Any], header: str) -> bool:
    wanted = getattr(key, KEY_MD5_ATTRIBUTE, None)
    return wanted is not None and _header(headers, header) != wanted


def _require_decryptable(response: Any, key: FakeKey | None, key_md5_header: str) -> None:
    """Raise S3's error for a read of ``key`` (a stored version) that cannot decrypt it:
    its SSE-C key missing from ``key_md5_header``, or its KMS key unusable."""
    if _refused(key, response.headers, key_md5_header):
        raise SseCustomerKeyRequired()
    refusal = _kms_refusal(key, response.current_account, response.region)
    if refusal is not None:
        raise refusal


def _build_put_object(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def put_object(self: Any) -> Any:
        response = original(self)
        key_md5 = _header(self.headers, _KEY_MD5)
        if key_md5 is not None:
            stored = self.backend.get_object(self.bucket_name, self.parse_key_name())
            if stored is not None:
                setattr(stored, KEY_MD5_ATTRIBUTE, key_md5)
        return response

    return put_object


def _build_get_object(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get_object(self: Any) -> Any:
        version_id = self.querystring.get("versionId", [None])[0]
        key = self.backend.get_object(self.bucket_name, self.parse_key_name(), version_id)
        _require_decryptable(self, key, _KEY_MD5)
        return original(self)

    return get_object


def _build_head_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def head_object(
        self: Any,
        bucket_name: str,
        query: dict[str, Any],
        key_name: str,
        headers: dict[str, Any],
    ) -> Any:
        version_id = query.get("versionId", [None])[0]
        key = self.backend.get_object(bucket_name, key_name, version_id)
        if _refused(key, headers, _KEY_MD5):
            return 400, {}, ""  # HEAD errors carry no body
        return original(self, bucket_name, query, key_name, headers)

    return head_object


def _build_copy_object(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def copy_object(self: Any) -> Any:
        source = self.headers.get("x-amz-copy-source")
        if isinstance(source, bytes):
            source = source.decode()
        parsed = urlparse(source)
        bucket, key_name = unquote(parsed.path).lstrip("/").split("/", 1)
        version_id = parse_qs(parsed.query).get("versionId", [None])[0]
        key = self.backend.get_object(bucket, key_name, version_id=version_id)
        _require_decryptable(self, key, _COPY_SOURCE_KEY_MD5)
        return original(self)

    return copy_object


def patches() -> list[Patch]:
    return [
        Require(S3ClientError, "__init__", ("self", "args", "kwargs")),
        Require(S3Response, "parse_key_name", ("self",)),
        Require(FakeKey, "__init__"),  # .encryption, .kms_key_id
        Require(kms_backends, "__getitem__"),
        Replace(S3Response, "put_object", ("self",), _build_put_object),
        Replace(S3Response, "get_object", ("self",), _build_get_object),
        Replace(
            S3Response,
            "head_object",
            ("self", "bucket_name", "query", "key_name", "headers"),
            _build_head_object,
        ),
        Replace(S3Response, "copy_object", ("self",), _build_copy_object),
    ]
