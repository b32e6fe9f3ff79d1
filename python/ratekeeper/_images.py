"""What images and PDF documents cost in tokens, from a request's inline data.

OpenAI (GPT-4o family, the tile rule): ``detail="low"`` is 85 tokens; high or
auto detail scales the image to fit 2048x2048, then its short side to 768,
and costs 85 + 170 per 512-pixel tile. Anthropic: ``width * height / 750``
after scaling the long side to 1568 pixels (at most about 1,600 tokens).
Sizes come from the image's own header when the data is inline (base64 PNG,
JPEG, GIF, WebP); an image given by URL or file id costs a fixed default: a
1024x1024 image at high detail for OpenAI (765), the maximum for Anthropic
(1,600). A PDF costs 3,000 tokens per page (its text plus the page's image),
its pages counted when inline, one page assumed otherwise.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from typing import Optional

__all__ = ["anthropic_image", "openai_image", "pdf_tokens"]

OPENAI_LOW = 85
OPENAI_DEFAULT = 765  # a 1024x1024 image at high detail: 4 tiles
ANTHROPIC_MAX = 1600
PDF_PAGE = 3000

_HEAD = 4096  # base64 characters decoded to find an image's size (3 KiB)
_JPEG_HEAD = 87_384  # JPEG: EXIF may come first; 64 KiB decoded at most
_PDF_MAX = 48 * 1024 * 1024  # base64 characters of a PDF scanned for pages, at most
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def _payload(data: str) -> str:
    """The base64 of a data URL (``data:image/png;base64,...``) or of bare base64."""
    if data.startswith("data:"):
        comma = data.find(",", 0, 256)
        return data[comma + 1 :] if comma >= 0 else ""
    return data


def _decode(text: str, limit: int) -> bytes:
    head = text[: limit - limit % 4]
    try:
        return base64.b64decode(head, validate=False)
    except (binascii.Error, ValueError):
        return b""


def image_size(data: str) -> Optional[tuple[int, int]]:
    """(width, height) read from an inline image's header, or None.

    >>> png = bytes.fromhex("89504e470d0a1a0a0000000d49484452") + struct.pack(">II", 640, 480)
    >>> image_size("data:image/png;base64," + base64.b64encode(png).decode())
    (640, 480)
    """
    if not isinstance(data, str) or data.startswith(("http://", "https://")):
        return None
    text = _payload(data)
    head = _decode(text, _HEAD)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        size = _webp(head)
        if size is None:
            return None
        width, height = size
    elif head.startswith(b"\xff\xd8"):
        size = _jpeg(_decode(text, _JPEG_HEAD))
        if size is None:
            return None
        width, height = size
    else:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _webp(head: bytes) -> Optional[tuple[int, int]]:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        return width, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _jpeg(data: bytes) -> Optional[tuple[int, int]]:
    # Walk the marker segments to the first start-of-frame (SOF0..SOF15 but
    # DHT, JPG and DAC); each step jumps a whole segment, so this is linear.
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if length < 2:
            return None
        at += 2 + length
    return None


def openai_image(data: Optional[str], detail: Optional[str]) -> int:
    """Tokens of one image for OpenAI's GPT-4o family (the tile rule).

    >>> openai_image(None, "low"), openai_image(None, "auto")
    (85, 765)
    """
    if detail == "low":
        return OPENAI_LOW
    size = image_size(data) if data else None
    if size is None:
        return OPENAI_DEFAULT
    scale = min(1.0, 2048 / max(size))
    width, height = size[0] * scale, size[1] * scale
    scale = min(1.0, 768 / min(width, height))
    tiles = math.ceil(width * scale / 512) * math.ceil(height * scale / 512)
    return OPENAI_LOW + 170 * tiles


def anthropic_image(data: Optional[str]) -> int:
    """Tokens of one image for Anthropic: width * height / 750, at most about 1,600.

    >>> anthropic_image(None)
    1600
    """
    size = image_size(data) if data else None
    if size is None:
        return ANTHROPIC_MAX
    width, height = size
    scale = min(1.0, 1568 / max(width, height))
    return min(ANTHROPIC_MAX, max(1, math.ceil(width * scale * height * scale / 750)))


def pdf_tokens(data: Optional[str]) -> int:
    """Tokens of an inline PDF: 3,000 per page (one page when they cannot be counted).

    >>> pdf_tokens(None)
    3000
    """
    if not data or data.startswith(("http://", "https://")):
        return PDF_PAGE
    text = _payload(data)
    if len(text) > _PDF_MAX:
        return PDF_PAGE * max(1, len(text) // 100_000)  # about 75 KB of PDF per page
    pages = len(_PAGE.findall(_decode(text, len(text) + 3)))
    return PDF_PAGE * max(1, pages)
