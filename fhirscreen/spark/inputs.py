"""Which files a Spark run reads: a local folder or file, or a Hadoop file system URI (file://, s3a://,
hdfs://, abfss://, gs://...), listed recursively on the driver."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fhirscreen.quality import DataQuality
from fhirscreen.sources.base import SourceError
from fhirscreen.sources.files import GZIP_MAGIC, FileSource, starts_as_document
from fhirscreen.spark import SparkUsageError

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
BUNDLE_SUFFIXES = (".json", ".json.gz")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FOLDED_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")


@dataclass(frozen=True)
class InputFile:
    uri: str  # what Hadoop reads
    shown: str  # what findings name: the path as file mode shows it, or the URI
    size: int  # bytes (compressed size for .gz)


@dataclass(frozen=True)
class Inputs:
    ndjson: list[InputFile]
    bundles: list[InputFile]  # found but not read by the Spark engine (reported)


def is_uri(data: str) -> bool:
    return _SCHEME.match(data) is not None


def data_argument(path: Path) -> str:
    """The --data value as the user wrote it. The CLI hands it over as a ``Path``, which folds
    ``s3a://bucket/key`` to ``s3a:/bucket/key``; the scheme's ``//`` is put back (``file:`` URIs get
    their empty authority back: ``file:///tmp/x``)."""
    text = str(path)
    m = _FOLDED_URI.match(text)
    if m is None:
        return text
    scheme, rest = m.group(1), text[len(m.group(1)) + 2 :]
    return f"file:///{rest}" if scheme.lower() == "file" else f"{scheme}://{rest}"


def check_uri(data: str) -> None:
    """Refuse credentials inside a URI (``s3a://KEY:SECRET@bucket``): they would reach logs and reports."""
    if is_uri(data) and "@" in (urlsplit(data).netloc or ""):
        raise SparkUsageError(
            "credentials in the --data URI are refused (they would end up in logs and reports); "
            "use a Hadoop credential provider, environment variables or an instance role instead"
        )


def list_inputs(
    data: str, spark_context: Any, quality: DataQuality | None = None, exclude: Path | None = None
) -> Inputs:
    """The NDJSON files under ``data`` in file mode's order (sorted), and any Bundle files found. A local
    folder is searched as file mode does, with the same findings in ``quality`` (``files.discover``)."""
    check_uri(data)
    if not is_uri(data):
        files = FileSource(data, exclude=exclude).files(quality)  # same errors and order as file mode
        found = [InputFile("file://" + str(p.resolve()), str(p), p.stat().st_size) for p in files]
    else:
        found = [InputFile(uri, uri, size) for uri, size in _hadoop_listing(data, spark_context)]
    ndjson = [f for f in found if f.uri.lower().endswith(NDJSON_SUFFIXES)]
    bundles = [f for f in found if f.uri.lower().endswith(BUNDLE_SUFFIXES)]
    if not ndjson:
        hint = (
            " (Bundle .json files were found: convert them first, see README 'Scaling out')"
            if bundles
            else ""
        )
        raise SourceError(f"{data}: no .ndjson or .ndjson.gz files found{hint}")
    return Inputs(ndjson, bundles)


def _hadoop_listing(data: str, spark_context: Any) -> list[tuple[str, int]]:
    """Every FHIR file under a Hadoop URI, recursively, sorted by URI, with its size."""
    jvm = spark_context._jvm
    path = jvm.org.apache.hadoop.fs.Path(data)
    try:
        fs = path.getFileSystem(spark_context._jsc.hadoopConfiguration())
        if not fs.exists(path):
            raise SourceError(f"{data}: no such file or directory")
        listing = fs.listFiles(path, True)
        uris = []
        while listing.hasNext():
            status = listing.next()
            if status.isFile():
                uris.append((str(status.getPath().toString()), int(status.getLen())))
    except SourceError:
        raise
    except Exception as exc:  # py4j errors: unknown scheme, refused credentials, unreachable store
        raise SourceError(f"{data}: cannot list files ({java_error_summary(exc)})") from None
    return sorted(u for u in uris if Path(urlsplit(u[0]).path).name.lower().endswith(_SUFFIXES_READ))


_SUFFIXES_READ = NDJSON_SUFFIXES + BUNDLE_SUFFIXES


def reads_whole(file: InputFile, spark_context: Any) -> bool:
    """Whether a file is read whole in Python (``partitions.file_lines``) rather than as the lines
    Hadoop's text reader splits: a gzipped file (named ``.gz``, or gzip bytes in a file named
    ``.ndjson``), or an ``.ndjson`` file that holds one pretty-printed JSON document, both read as file
    mode reads them. The driver reads the start of each ``.ndjson`` file to tell."""
    if file.uri.lower().endswith(".gz"):
        return True
    if file.size <= 0:
        return False
    start = _start(file.uri, file.size, spark_context)
    return start.startswith(GZIP_MAGIC) or starts_as_document(io.BytesIO(start))


_CHUNK = 8 * 1024


def _start(uri: str, size: int, spark_context: Any) -> bytes:
    """Enough of the start of a file to tell whether it is gzipped or its first line that is not blank is
    a lone ``{`` or ``[``: up to a byte that is not blank after that line's first (a few bytes, as a
    rule; the whole file at most)."""
    stream = _open(uri, spark_context)
    try:
        start = b""
        while len(start) < size:
            chunk = bytes(stream.readNBytes(_CHUNK))
            start += chunk
            if not chunk or start.startswith(GZIP_MAGIC) or start.lstrip().rstrip(b" \t") not in _UNDECIDED:
                break
        return start
    finally:
        stream.close()


# The start of a file's first line that is not blank, while it may still be a lone "{" or "[".
_UNDECIDED = (b"", b"{", b"[")


def last_byte(uri: str, size: int, spark_context: Any) -> bytes:
    """The last byte of a file (b"" for an empty one), read through Hadoop's file system."""
    if size <= 0:
        return b""
    stream = _open(uri, spark_context)
    try:
        stream.seek(size - 1)
        return bytes(stream.readNBytes(1))
    finally:
        stream.close()


def _open(uri: str, spark_context: Any) -> Any:
    """A Hadoop input stream of the file (an FSDataInputStream, through py4j)."""
    path = spark_context._jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark_context._jsc.hadoopConfiguration()).open(path)


def java_error_summary(exc: BaseException) -> str:
    """The first line of a Java exception's message: its class and text, no stack, no Python frames."""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            return str(java.toString()).splitlines()[0][:300]
        except Exception:  # the gateway itself may be gone
            pass
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
