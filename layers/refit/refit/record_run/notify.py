"""Run notifications on the stack's SNS topic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from refit.config import ConfigError, Settings

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

# SNS limits: a Subject is at most 100 printable ASCII characters; a message at most 256 KiB.
SUBJECT_MAX = 100
MESSAGE_MAX_BYTES = 256 * 1024
_TRUNCATED = "\n... (truncated; the full record is in the runs table)"


def topic_arn(settings: Settings) -> str:
    """The topic RecordRun publishes to; a function without one fails at cold start."""
    if not settings.notification_topic_arn.startswith("arn:"):
        raise ConfigError("NOTIFICATION_TOPIC_ARN must be an SNS topic ARN")
    return settings.notification_topic_arn


def ascii_subject(subject: str) -> str:
    printable = "".join(c if " " <= c <= "~" else "?" for c in subject).strip()
    if len(printable) <= SUBJECT_MAX:
        return printable
    return printable[: SUBJECT_MAX - 3].rstrip() + "..."


def bounded_message(message: str) -> str:
    data = message.encode()
    if len(data) <= MESSAGE_MAX_BYTES:
        return message
    room = MESSAGE_MAX_BYTES - len(_TRUNCATED.encode())
    # "ignore" drops a multi-byte character the cut may have split.
    return data[:room].decode(errors="ignore") + _TRUNCATED


@dataclass(frozen=True)
class Notification:
    subject: str
    message: str
    attributes: Mapping[str, str] = field(default_factory=dict)


def publish(sns: SNSClient, topic: str, notification: Notification) -> str:
    """Publish within SNS's limits; returns the message id."""
    response = sns.publish(
        TopicArn=topic,
        Subject=ascii_subject(notification.subject),
        Message=bounded_message(notification.message),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value}
            for name, value in notification.attributes.items()
        },
    )
    return response["MessageId"]
