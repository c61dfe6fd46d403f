"""Where records come from: ``FileSource``, ``BytesSource``, ``UrlSource`` (bytes,
read by a parser) and ``IterableSource`` (records as dicts).

A byte source opens into an iterator of chunks (``open``), which the parser
turns into records; an :class:`IterableSource` yields records itself. Opening
happens before a job exists, so a missing file raises :class:`SourceError`
without leaving a job behind; a failure while reading raises it mid-stream.
"""

from __future__ import annotations

import base64
import bz2
import http.client
import itertools
import lzma
import os
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from ._exceptions import SourceError

__all__ = ["ByteSource", "BytesSource", "FileSource", "IterableSource", "Source"]

CHUNK_SIZE = 1 << 16


class ByteSource:
    """Base of sources that produce bytes for a parser. gzip, bz2 and xz content
    is recognised by its first bytes and decompressed on the fly."""

    def describe(self) -> str:
        """How error messages name this source."""
        raise NotImplementedError

    def open(self) -> Iterator[bytes]:
        """Opens the source and returns an iterator of byte chunks; raises
        :class:`SourceError` when it cannot be opened (or, while iterating,
        read)."""
        raise NotImplementedError


class FileSource(ByteSource):
    """The file at ``path`` (a ``str`` or ``os.PathLike``), read in 64 KiB chunks:
    memory stays bounded whatever its size. gzip, bz2 and xz files are
    decompressed on the fly. A missing or unreadable file raises
    ``SourceError`` when it is opened, before any job exists."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileSource({str(self.path)!r})"

    def describe(self) -> str:
        """The file's path, as error messages name it."""
        return str(self.path)

    def open(self) -> Iterator[bytes]:
        """Opens the file and returns an iterator of its chunks; raises
        ``SourceError`` when it cannot be opened or read."""
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open: {exc.strerror or exc}") from exc
        return self._chunks(handle)

    def _chunks(self, handle: Any) -> Iterator[bytes]:
        with handle:
            while True:
                try:
                    chunk = handle.read(CHUNK_SIZE)
                except OSError as exc:
                    raise SourceError(f"{self.path}: read failed: {exc}") from exc
                if not chunk:
                    return
                yield chunk


class BytesSource(ByteSource):
    """``data`` already in memory: ``bytes`` (or a bytes-like object), or a ``str``
    encoded as UTF-8. Handy for tests and small uploads."""

    def __init__(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"BytesSource takes bytes or str, got {type(data).__name__}")
        self.data = bytes(data)

    def __repr__(self) -> str:
        return f"BytesSource(<{len(self.data)} bytes>)"

    def describe(self) -> str:
        """``"<bytes>"``, as error messages name it."""
        return "<bytes>"

    def open(self) -> Iterator[bytes]:
        """Returns an iterator of the data's 64 KiB chunks."""
        data = self.data
        return (data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE))


class UrlSource(ByteSource):
    """The document at ``url`` (http or https), streamed. ``headers`` are sent
    with the request (e.g. an ``Authorization``). ``timeout`` (seconds,
    default 30) applies to connecting and to each read; HTTP errors, resets
    and timeouts raise ``SourceError`` with the status and the URL
    (credentials in it redacted). ``user:password@`` in
    the URL is sent as basic authentication."""

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 30.0
    ) -> None:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"UrlSource takes an http or https URL, got {redact(url)!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.url = url
        self.headers = dict(headers or {})
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"UrlSource({redact(self.url)!r})"

    def describe(self) -> str:
        """The URL with its credentials redacted, as error messages name it."""
        return redact(self.url)

    def open(self) -> Iterator[bytes]:
        """Sends the request and returns an iterator of the body's chunks as they
        arrive; raises ``SourceError`` on an HTTP error status, a failure to
        connect, or (while iterating) a reset, timeout or truncated body."""
        url, headers = self.url, dict(self.headers)
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None:  # user:password@host -> basic authentication
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers.setdefault(
                "Authorization", "Basic " + base64.b64encode(credentials.encode()).decode()
            )
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise SourceError(f"{self.describe()}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(f"{self.describe()}: cannot connect: {reason}") from None
        return self._chunks(response)

    def _chunks(self, response: Any) -> Iterator[bytes]:
        received = 0
        declared = response.headers.get("Content-Length")
        expected = int(declared) if declared and declared.isdigit() else None
        with response:
            while True:
                try:
                    chunk = response.read1(CHUNK_SIZE)  # what has arrived, up to a chunk
                except (OSError, http.client.HTTPException) as exc:
                    raise SourceError(
                        f"{self.describe()}: read failed after {received} bytes: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                if not chunk:
                    if expected is not None and received < expected:
                        raise SourceError(
                            f"{self.describe()}: read failed: the connection closed after "
                            f"{received} of {expected} bytes"
                        )
                    return
                received += len(chunk)
                yield chunk


def redact(url: str) -> str:
    """The URL without the password (and user) it may carry."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


class IterableSource:
    """Records given by the caller: ``iterable`` of dicts, one per record (a
    generator streams: it is read once, as ``prepare`` stores batches). Takes
    no parser. An exception the iterable raises mid-way fails the job with
    ``SourceError``."""

    def __init__(self, iterable: Iterable[dict[str, Any]]) -> None:
        self.iterable = iterable

    def __repr__(self) -> str:
        return f"IterableSource({type(self.iterable).__name__})"

    def describe(self) -> str:
        """``"<iterable>"``, as error messages name it."""
        return "<iterable>"

    def open(self) -> Iterator[Any]:
        """Returns ``iter(iterable)``; raises ``SourceError`` if it is not
        iterable."""
        try:
            return iter(self.iterable)
        except TypeError as exc:
            raise SourceError(f"IterableSource: not iterable: {exc}") from exc


Source = ByteSource | IterableSource


_MAGIC: Final = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
)

#: Recognised so that a zstd file or a ZIP archive (such as an .xlsx workbook)
#: gets a clear error rather than garbled records.
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_ZIP_MAGIC: Final = b"PK\x03\x04"


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor()


def decompressed(chunks: Iterator[bytes], origin: str) -> Iterator[bytes]:
    """The chunks, decompressed on the fly when they start with the magic bytes
    of gzip, bz2 or xz (concatenated members/streams included); else as they are."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 6:
            break
    kind = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if head.startswith(_ZSTD_MAGIC):
        raise SourceError(
            f"{origin}: the data is zstd-compressed, and this Python has no zstd "
            "decoder in its standard library: decompress it first (or use gzip, bz2, xz)"
        )
    if head.startswith(_ZIP_MAGIC):
        raise SourceError(
            f"{origin}: the data is a ZIP archive (an Excel .xlsx workbook is one), not "
            "CSV, JSON or XML: export the sheet as CSV, or unzip the file first"
        )
    if kind is None:
        if head:
            yield head
        yield from chunks
        return
    yield from _inflate(itertools.chain((head,), chunks), kind, origin)


def _inflate(chunks: Iterator[bytes], kind: str, origin: str) -> Iterator[bytes]:
    decoder = _decompressor(kind)
    offset = 0
    try:
        for chunk in chunks:
            offset += len(chunk)
            data = chunk
            while data:
                if decoder.eof:  # the previous member ended: another one starts here
                    decoder = _decompressor(kind)
                out = decoder.decompress(data)
                if out:
                    yield out
                data = decoder.unused_data if decoder.eof else b""
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise SourceError(f"{origin}: corrupt {kind} data near byte {offset}: {exc}") from None
    if not decoder.eof:
        raise SourceError(f"{origin}: truncated {kind} data (it ends at byte {offset})")
