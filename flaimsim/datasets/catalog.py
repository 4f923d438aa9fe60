"""The large data sets' public sources, pinned digests and documented sizes.

Each raw file is pinned by the SHA-256 of its *data lines*: the decompressed text with any
header line dropped, every line ended by ``\\n`` and blank lines skipped. That digest does not
depend on the compression or on whether the source carries a header, so the UCI original
(``covtype.data.gz``: no header) and the project's checked copy (``covtype.csv.gz``: a header)
are held to the same pin when their records are the same text. The pins were computed from
the copies in the project's ``shared/data/raw`` folder (see ``docs/data.md`` for where those
came from); these are the copies the project checked. A source may also pin the SHA-256 of
the bytes it serves (``Source.sha256``) when a reputable project has published one.

From the project's machine only loopback is reachable, so the public URLs below were not
exercised here; the mechanism is tested against a loopback HTTP server.
"""

from __future__ import annotations

from dataclasses import dataclass

UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases"


@dataclass(frozen=True)
class Source:
    """One public place serving a raw file (gzip or plain text, with or without header).

    ``sha256``: digest of the bytes served, when published (None: only the data-line pin)."""

    url: str
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteFile:
    """A raw file fetched into the cache under ``name`` (the name the raw folder uses).

    ``rows``: documented number of data lines; ``lines_sha256``: the pinned data-line digest.
    """

    name: str
    rows: int
    lines_sha256: str
    sources: tuple[Source, ...]


REMOTE: dict[str, tuple[RemoteFile, ...]] = {
    # Covertype, UCI id 31 (Blackard 1998), CC BY 4.0. scikit-learn's fetch_covtype mirrors
    # the same covtype.data.gz on figshare and pins its bytes' SHA-256 (used below).
    "covtype": (
        RemoteFile("covtype.csv.gz", 581_012,
                   "0a9371cef7c964b5475d6053cc3e0894a5aa6f65ad1ed3ecb01c45aa96217945",
                   (Source(f"{UCI}/covtype/covtype.data.gz"),
                    Source("https://ndownloader.figshare.com/files/5976039",
                           "614360d0257557dd1792834a85a1cdebfadc3c4f30b011d56afee7ffb5b15771"))),
    ),
    # Census-Income (KDD), UCI id 117 (Lane and Kohavi 2000), CC BY 4.0: the training and
    # test files, concatenated in this order by the loader.
    "census": (
        RemoteFile("census-income-train.csv.gz", 199_523,
                   "3676a81db7d3528f3f8b9f3c699d0f0aa28db45e6e994fa0b8ed38327539ee86",
                   (Source(f"{UCI}/census-income-mld/census-income.data.gz"),)),
        RemoteFile("census-income-test.csv.gz", 99_762,
                   "98402b1ab879573d0a7f38a699a40258080e25e33d3401e7bf9c96d3fa0fab8c",
                   (Source(f"{UCI}/census-income-mld/census-income.test.gz"),)),
    ),
}

__all__ = ["REMOTE", "RemoteFile", "Source", "UCI"]
