"""SSE-C in moto's S3: an object stored with a customer-provided key answers only to that key.

AWS (docs.aws.amazon.com/AmazonS3/latest/userguide/ServerSideEncryptionCustomerKeys.html):
S3 keeps no copy of the key, only its MD5; GetObject and HeadObject of such an object must send
the same key (``x-amz-server-side-encryption-customer-*``) and CopyObject from it the same key
as ``x-amz-copy-source-server-side-encryption-customer-*``, else the request fails with 400
``InvalidRequest`` ("The object was stored using a form of Server Side Encryption. The correct
parameters must be provided to retrieve the object."; HEAD answers 400 without a body). moto
5.2.5 ignores the headers: the object is stored and served to anyone.

``S3Response.put_object`` is wrapped to remember the key's MD5 on the stored version
(:data:`KEY_MD5_ATTRIBUTE` on moto's ``FakeKey``); ``get_object``, ``head_object`` and
``copy_object`` refuse a request for such a version without that MD5. Only the MD5 is compared
(moto stores the bytes unencrypted): a wrong key is refused like a missing one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

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


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _refused(key: FakeKey | None, headers: Mapping[str, Any], header: str) -> bool:
    wanted = getattr(key, KEY_MD5_ATTRIBUTE, None)
    return wanted is not None and _header(headers, header) != wanted


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
        if _refused(key, self.headers, _KEY_MD5):
            raise SseCustomerKeyRequired()
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
        if _refused(key, self.headers, _COPY_SOURCE_KEY_MD5):
            raise SseCustomerKeyRequired()
        return original(self)

    return copy_object


def patches() -> list[Patch]:
    return [
        Require(S3ClientError, "__init__", ("self", "args", "kwargs")),
        Require(S3Response, "parse_key_name", ("self",)),
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
