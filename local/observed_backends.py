"""moto's S3 and SNS backends, subclassed to tell the stack what was written and published.

- ``ObservedS3Backend`` reports every object created (PutObject, POST, CopyObject, CompleteMultipartUpload)
  so that the stack emits the EventBridge ``Object Created`` event AWS would. moto's own EventBridge
  notification (``moto.s3.notifications``) cannot be used: its event has another shape than AWS's (a fixed
  ``sequencer``, ``time`` as epoch seconds, ``reason`` "ObjectCreated" instead of "PutObject", ``eTag`` for
  ``etag``, the key not URL-encoded), it is sent to every rule's targets through moto's Lambda (which runs code
  only in Docker), and moto's S3 → SQS/SNS records carry no ``versionId``, which the trigger needs.
  A multipart upload is reported once, as ``CompleteMultipartUpload`` (moto's ``complete_multipart_upload``
  writes the object through ``put_object``, whose own ``Put`` report is held back meanwhile).
- ``ObservedSNSBackend`` reports every message published to a topic (``.local/logs/sns.log``: SNS e-mail is
  not delivered here).

Installed per stack in moto's registries like the SageMaker backend (:func:`local.aws.install_backend`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from moto.s3.models import S3Backend
from moto.sns.models import SNSBackend

from .aws import MotoUrls

log = logging.getLogger("local.observed_backends")

ObjectListener = Callable[[str, Any, Any], None]  # (S3 event name e.g. "s3:ObjectCreated:Put", bucket, key)
MessageListener = Callable[[str, str, "str | None"], None]  # (topic arn, message, subject)


class ObservedS3Backend(MotoUrls, S3Backend):
    def __init__(self, region_name: str, account_id: str, on_object_created: ObjectListener | None = None):
        super().__init__(region_name, account_id)
        self.on_object_created = on_object_created
        self._completing = threading.local()

    def _report(self, event_name: str, bucket_name: str, key: Any) -> None:
        if self.on_object_created is None or key is None:
            return
        try:
            self.on_object_created(event_name, self.get_bucket(bucket_name), key)
        except Exception:  # like AWS: event delivery never fails the write
            log.exception("object-created listener failed for s3://%s/%s", bucket_name, getattr(key, "name", key))

    def put_object(self, bucket_name: str, key_name: str, value: bytes, *args: Any, **kwargs: Any) -> Any:
        key = super().put_object(bucket_name, key_name, value, *args, **kwargs)
        if not kwargs.get("disable_notification") and not getattr(self._completing, "active", False):
            method = "Post" if kwargs.get("request_method") == "POST" else "Put"
            self._report(f"s3:ObjectCreated:{method}", bucket_name, key)
        return key

    def copy_object(self, src_key: Any, dest_bucket_name: str, dest_key_name: str, *args: Any, **kwargs: Any) -> None:
        super().copy_object(src_key, dest_bucket_name, dest_key_name, *args, **kwargs)
        self._report("s3:ObjectCreated:Copy", dest_bucket_name, self.get_bucket(dest_bucket_name).keys.get(dest_key_name))

    def complete_multipart_upload(self, bucket_name: str, *args: Any, **kwargs: Any) -> Any:
        self._completing.active = True
        try:
            key = super().complete_multipart_upload(bucket_name, *args, **kwargs)
        finally:
            self._completing.active = False
        self._report("s3:ObjectCreated:CompleteMultipartUpload", bucket_name, key)
        return key


class ObservedSNSBackend(MotoUrls, SNSBackend):
    def __init__(self, region_name: str, account_id: str, on_published: MessageListener | None = None):
        super().__init__(region_name, account_id)
        self.on_published = on_published

    def publish(self, message: str, arn: str | None, *args: Any, **kwargs: Any) -> str:
        message_id = super().publish(message, arn, *args, **kwargs)
        if self.on_published is not None and arn in self.topics and not kwargs.get("phone_number"):
            subject = kwargs.get("subject", args[1] if len(args) > 1 else None)
            try:
                self.on_published(arn, message, subject)
            except Exception:
                log.exception("SNS listener failed")
        return message_id
