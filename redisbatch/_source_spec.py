"""A source named on the command line (a path or an http(s) URL) and the
parser for its format, given or told from its extension."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Final
from urllib.parse import urlsplit

from ._csv import CsvParser
from ._exceptions import ConfigurationError
from ._parsers import JsonParser, Parser, XmlParser
from ._sources import FileSource, UrlSource

__all__ = ["FORMATS", "format_of", "source_and_parser"]

FORMATS: Final = ("csv", "json", "ndjson", "xml")
_COMPRESSED: Final = (".gz", ".bz2", ".xz")
_BY_SUFFIX: Final = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".xml": "xml",
}


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def format_of(source: str) -> str:
    """The format a source's name implies (``.csv.gz`` is csv); raises
    ConfigurationError when the name does not tell."""
    path = PurePosixPath(urlsplit(source).path if _is_url(source) else source)
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    kind = _BY_SUFFIX.get(suffixes[-1]) if suffixes else None
    if kind is None:
        raise ConfigurationError(
            f"cannot tell the format of {source!r} from its name: pass --format "
            f"({'|'.join(FORMATS)})"
        )
    return kind


def _delimiter(text: str | None, source: str) -> str | None:
    if text is None:
        name = urlsplit(source).path if _is_url(source) else source
        return "\t" if ".tsv" in name.lower() else ","
    named = {"auto": None, "tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    if text.lower() in named:
        return named[text.lower()]
    if len(text) != 1:
        raise ConfigurationError(f"--delimiter must be one character (or auto, tab), got {text!r}")
    return text


def source_and_parser(
    source: str,
    format: str | None = None,
    *,
    delimiter: str | None = None,
    record_tag: str | None = None,
) -> tuple[Any, Parser]:
    """The Source and Parser for a command-line source."""
    kind = format or format_of(source)
    if kind not in FORMATS:
        raise ConfigurationError(f"--format must be one of {', '.join(FORMATS)}, got {kind!r}")
    opened: Any = UrlSource(source) if _is_url(source) else FileSource(source)
    parser: Parser
    if kind == "csv":
        parser = CsvParser(delimiter=_delimiter(delimiter, source))
    elif kind == "xml":
        parser = XmlParser(record_tag=record_tag or "record")
    else:
        parser = JsonParser()
    return opened, parser
