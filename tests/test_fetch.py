"""``flaimsim data fetch`` against a real HTTP server on loopback (http.server in a thread,
bound to port 0).

Most cases serve a small Covtype-shaped fixture (generated here, 1,000 records) under its own
pinned digest, so they run on any clone in a second or two; the real Covtype copy from the
``../shared`` mirror (10.7 MB, 581,012 records, the project's pinned digest) is fetched through
the command once, and refused once truncated, when the mirror is present.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from flaimsim.bench.cli import main
from flaimsim.datasets.catalog import REMOTE, RemoteFile, Source
from flaimsim.datasets.fetch import FetchError, FetchOptions, fetch
from flaimsim.mechanisms.data import load_dataset
from flaimsim.mechanisms.raw_data import RAW_SPECS, RawDataError, prepared_dir, raw_dir_for

FAST = FetchOptions(timeout=5.0, retries=0, backoff=0.0, progress=False)
SPEC = RAW_SPECS["covtype"]


def _fixture_rows(n: int = 1000, seed: int = 7) -> list[str]:
    """Covtype-shaped records: 10 numbers (3 hill shades in 0..255), one-hot wilderness and
    soil columns, a cover type 1..7."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        numbers = list(rng.integers(0, 4000, 6)) + list(rng.integers(0, 256, 3)) \
            + [rng.integers(0, 7000)]
        wilderness = np.eye(4, dtype=int)[rng.integers(4)].tolist()
        soil = np.eye(40, dtype=int)[rng.integers(40)].tolist()
        rows.append(",".join(map(str, numbers + wilderness + soil + [rng.integers(1, 8)])))
    return rows


ROWS = _fixture_rows()
FIXTURE = gzip.compress((",".join(SPEC.columns) + "\n" + "\n".join(ROWS) + "\n").encode(),
                        mtime=0)
# The fixture's own pin: SHA-256 of its data lines, each ended by a newline.
FIXTURE_PIN = hashlib.sha256("".join(r + "\n" for r in ROWS).encode()).hexdigest()


def _catalog(pin: str = FIXTURE_PIN, rows: int = len(ROWS), sources=()) -> dict:
    return {"covtype": (RemoteFile("covtype.csv.gz", rows, pin, tuple(sources)),)}


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` by path; ``/stall/...`` sends headers and a few bytes, then
    waits; ``/drop/...`` sends half the body and closes on the first request, then honours
    ``Range`` (206)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        mode, _, rest = path.lstrip("/").partition("/")
        name = rest if mode in ("stall", "drop", "plain") else path.lstrip("/")
        body = self.server.files.get(name)
        self.server.requests.append((self.path, self.headers.get("Range")))
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if self.headers.get("Range") and mode == "drop":
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if mode == "stall":
            self.wfile.write(body[:100])
            self.wfile.flush()
            self.server.release.wait(30)
            return
        if mode == "drop" and start == 0:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files = {"covtype.csv.gz": FIXTURE}
    httpd.requests = []
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def _only_hidden_left(dest: Path) -> bool:
    """Nothing that looks like a usable raw file: at most an empty hidden .partial folder."""
    visible = [p for p in dest.rglob("*") if not p.name.startswith(".")]
    return not visible and not any((dest / ".partial").glob("*"))


def test_whole_path_download_verify_prepare_run(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FLAIMSIM_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("FLAIMSIM_RAW_DIR", raising=False)
    monkeypatch.delenv("FLAIMSIM_COVTYPE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (path,) = fetch("covtype", server.url + "/", FAST, catalog=_catalog())
    assert path == tmp_path / "data" / "raw" / "covtype.csv.gz"
    assert path.read_bytes() == FIXTURE  # already in the raw layout: moved, not rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == [".partial", "covtype.csv.gz"]
    # prepare as today, from the cache (it comes before the optional ../shared mirror)
    table = load_dataset("covtype")
    assert table.n == 200 and table.columns == tuple(SPEC.columns)  # the paper's 20 %
    assert prepared_dir("covtype").parent == tmp_path / "data"
    # a tiny central AIM on it, through the command line
    args = ["run", "--protocol", "central", "--dataset", "covtype", "--clients", "4",
            "--partition", "iid", "--rounds", "2", "--max-bins", "4",
            "--workload-marginals", "3", "--iters-round", "20", "--iters-final", "30",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())["results"][0]
    assert result["dataset"] == "covtype" and result["rounds"] == 2
    assert 0 < result["rho_spent"] <= result["rho_budget"] * (1 + 1e-9)


def test_a_plain_headerless_source_is_rewritten_in_the_raw_layout(server, tmp_path) -> None:
    """As UCI's covtype.data: no header, here uncompressed; same records, same pin."""
    server.files["covtype.data"] = ("\r\n".join(ROWS) + "\r\n").encode()
    catalog = _catalog(sources=[Source(server.url + "/covtype.data")])
    (path,) = fetch("covtype", None, FAST, dest=tmp_path, catalog=catalog)
    with gzip.open(path, "rt") as handle:
        assert handle.read().splitlines() == [",".join(SPEC.columns)] + ROWS


def test_truncated_file_is_refused_by_url_and_leaves_nothing(server, tmp_path) -> None:
    server.files["covtype.csv.gz"] = FIXTURE[: len(FIXTURE) * 2 // 3]
    with pytest.raises(FetchError, match=rf"{server.url}/covtype\.csv\.gz: the file is "
                                         r"truncated or corrupt"):
        fetch("covtype", server.url, FAST, dest=tmp_path, catalog=_catalog())
    assert _only_hidden_left(tmp_path)


def test_truncated_text_is_refused_by_its_row_count(server, tmp_path) -> None:
    server.files["covtype.csv"] = ("\n".join(ROWS[:-10]) + "\n").encode()
    catalog = _catalog(sources=[Source(server.url + "/covtype.csv")])
    with pytest.raises(FetchError, match=r"covtype\.csv: 990 data line\(s\), covtype\.csv\.gz "
                                         r"documents 1,000"):
        fetch("covtype", None, FAST, dest=tmp_path, catalog=catalog)
    assert _only_hidden_left(tmp_path)


def test_wrong_checksum_is_refused(server, tmp_path) -> None:
    wrong = "ab" * 32
    with pytest.raises(FetchError, match=rf"{server.url}/covtype\.csv\.gz: SHA-256 of the "
                                         rf"data lines is {FIXTURE_PIN}, expected {wrong}"):
        fetch("covtype", server.url, FAST, dest=tmp_path, catalog=_catalog(pin=wrong))
    assert _only_hidden_left(tmp_path)
    # the published-bytes digest of a source is checked too
    catalog = _catalog(sources=[Source(server.url + "/covtype.csv.gz", "cd" * 32)])
    with pytest.raises(FetchError, match=r"SHA-256 of the download is .*, expected (cd)+"):
        fetch("covtype", None, FAST, dest=tmp_path, catalog=catalog)
    assert _only_hidden_left(tmp_path)


def test_a_file_with_other_columns_is_refused(server, tmp_path) -> None:
    server.files["covtype.csv.gz"] = gzip.compress(b"1,2,3\n4,5,6\n")
    with pytest.raises(FetchError, match=r"line 1 has 3 field\(s\); covtype has 55"):
        fetch("covtype", server.url, FAST, dest=tmp_path, catalog=_catalog())


def test_http_404_names_the_url_and_is_not_retried(server, tmp_path) -> None:
    options = FetchOptions(timeout=5.0, retries=3, backoff=0.0, progress=False)
    with pytest.raises(FetchError, match=rf"{server.url}/nothing/covtype\.csv\.gz: HTTP 404"):
        fetch("covtype", server.url + "/nothing", options, dest=tmp_path, catalog=_catalog())
    assert len(server.requests) == 1
    assert _only_hidden_left(tmp_path)


def test_next_source_is_tried_after_a_failure(server, tmp_path) -> None:
    catalog = _catalog(sources=[Source(server.url + "/gone/covtype.csv.gz"),
                                Source(server.url + "/covtype.csv.gz")])
    (path,) = fetch("covtype", None, FAST, dest=tmp_path, catalog=catalog)
    assert path.read_bytes() == FIXTURE


def test_stalled_server_times_out_naming_the_url(server, tmp_path) -> None:
    options = FetchOptions(timeout=0.5, retries=1, backoff=0.0, progress=False)
    with pytest.raises(FetchError, match=rf"{server.url}/stall/covtype\.csv\.gz: timed out .*"
                                         r"after 2 attempt\(s\)"):
        fetch("covtype", server.url + "/stall", options, dest=tmp_path, catalog=_catalog())
    assert len(server.requests) == 2
    assert not (tmp_path / "covtype.csv.gz").exists()  # only a hidden .part, to resume
    (part,) = (tmp_path / ".partial").iterdir()
    assert part.name.endswith(".part") and part.stat().st_size == 100
    server.files = {}  # the next run resumes it (Range), and the server is gone: 404
    with pytest.raises(FetchError, match=r"HTTP 404"):
        fetch("covtype", server.url + "/stall", options, dest=tmp_path, catalog=_catalog())
    assert server.requests[-1][1] == "bytes=100-"


def test_dropped_connection_is_resumed_with_range(server, tmp_path) -> None:
    options = FetchOptions(timeout=5.0, retries=2, backoff=0.0, progress=False)
    (path,) = fetch("covtype", server.url + "/drop", options, dest=tmp_path,
                    catalog=_catalog())
    assert path.read_bytes() == FIXTURE
    assert [r for _, r in server.requests] == [None, f"bytes={len(FIXTURE) // 2}-"]
    assert not any((tmp_path / ".partial").iterdir())


def test_cached_file_is_checked_again_and_refetched_if_damaged(server, tmp_path) -> None:
    (path,) = fetch("covtype", server.url, FAST, dest=tmp_path, catalog=_catalog())
    fetch("covtype", server.url, FAST, dest=tmp_path, catalog=_catalog())
    assert len(server.requests) == 1  # checked in place, not downloaded again
    path.write_bytes(FIXTURE[:-40])
    fetch("covtype", server.url, FAST, dest=tmp_path, catalog=_catalog())
    assert len(server.requests) == 2 and path.read_bytes() == FIXTURE


def test_local_folder_mirror(tmp_path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "covtype.csv.gz").write_bytes(FIXTURE)
    (path,) = fetch("covtype", str(mirror), FAST, dest=tmp_path / "dest", catalog=_catalog())
    assert path.read_bytes() == FIXTURE and (mirror / "covtype.csv.gz").is_file()
    with pytest.raises(FetchError, match=r"nowhere/covtype\.csv\.gz: no such file"):
        fetch("covtype", str(tmp_path / "nowhere"), FAST, dest=tmp_path / "d2",
              catalog=_catalog())


def test_missing_large_set_names_the_fetch_command(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FLAIMSIM_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("FLAIMSIM_RAW_DIR", raising=False)
    monkeypatch.setattr("flaimsim.datasets.store.mirror_dirs", lambda *parts: [])
    assert main(["run", "--protocol", "central", "--dataset", "census", "--rounds", "2"]) == 2
    assert "`flaimsim data fetch census`" in capsys.readouterr().err
    assert main(["reproduce", "--datasets", "adult,covtype", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "['covtype'] are not here yet" in err and "`flaimsim data fetch covtype`" in err
    assert "adult" in err.split("here: ")[1]  # shipped: always here
    assert main(["data", "list"]) == 0
    listed = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert [listed[n][0] for n in ("adult", "magic", "marketing", "census", "covtype")] == [
        "package", "package", "package", "missing", "missing"]
    assert "`flaimsim data fetch covtype`" in " ".join(listed["covtype"])


# ---- the real Covtype copy, served from a local mirror (../shared, $FLAIMSIM_RAW_DIR) ------

def _real_covtype() -> Path:
    try:
        return raw_dir_for("covtype") / "covtype.csv.gz"
    except RawDataError as exc:
        pytest.skip(f"large set: the real covtype.csv.gz (10.7 MB) is not here ({exc}); the "
                    "fixture tests above cover the mechanism")


def test_real_covtype_through_the_command_and_refused_truncated(server, tmp_path,
                                                                monkeypatch, capsys) -> None:
    real = _real_covtype().read_bytes()
    server.files = {"covtype.csv.gz": real}
    monkeypatch.setenv("FLAIMSIM_DATA", str(tmp_path / "data"))
    args = ["data", "fetch", "covtype", "--from", server.url + "/", "--no-prepare",
            "--retries", "0"]
    assert main(args) == 0
    assert "covtype.csv.gz: 581,012 data lines" in capsys.readouterr().out
    cached = tmp_path / "data" / "raw" / "covtype.csv.gz"
    assert cached.read_bytes() == real  # the project's pin holds for its own copy
    server.files["covtype.csv.gz"] = real[: len(real) - 1000]
    assert main(args + ["--force"]) == 2
    err = capsys.readouterr().err
    assert f"{server.url}/covtype.csv.gz: the file is truncated or corrupt" in err
    assert cached.read_bytes() == real  # the verified copy stays; the truncated one never lands
    assert not any((tmp_path / "data" / "raw" / ".partial").iterdir())
    assert REMOTE["covtype"][0].rows == 581_012
