"""Native images (raw base64) as the data URLs OpenAI-compatible servers take, typed by their bytes."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import BadRequest

_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(data: bytes) -> str:
    """The MIME type of image bytes by their magic number; JPEG when unknown, as Ollama assumes."""
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def image_url(image: Any, where: str) -> str:
    """A native image (raw base64, or a data URL from a lenient client) as a data URL."""
    if not isinstance(image, str) or not image:
        raise BadRequest(f"{where} must be a base64 string")
    if image.startswith("data:"):
        return image
    image += "=" * (-len(image) % 4)  # tolerate stripped padding
    # Only the magic number is needed: decoding a 20 MB image whole would hold the event loop
    # (and a copy of the image) for nothing. 16 characters are 12 bytes, the longest magic;
    # a broken tail is the upstream's to refuse.
    try:
        head = base64.b64decode(image[:_SNIFF_CHARS], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} is not valid base64") from None
    return f"data:{sniff_image_type(head)};base64,{image}"


_SNIFF_CHARS = 16
