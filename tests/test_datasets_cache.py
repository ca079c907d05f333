"""Dataset files: local copies are found and checked; a failed download says where the file was looked for."""

from __future__ import annotations

import pooch
import pytest
import requests

from multiomix.datasets._cache import DATA_DIR_ENV, fetch


def test_local_copy_is_found_and_checked(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "file.txt").write_text("multiomix")
    sha = pooch.file_hash(str(tmp_path / "set" / "file.txt"))
    assert fetch("set/file.txt", url="https://example.org/file.txt", sha256=sha, data_dir=tmp_path) == (
        tmp_path / "set" / "file.txt"
    )
    with pytest.raises(ValueError, match="Checksum mismatch"):
        fetch("set/file.txt", url="https://example.org/file.txt", sha256="0" * 64, data_dir=tmp_path)


def test_offline_download_names_the_file_and_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "shared"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise requests.ConnectionError("Failed to resolve 'example.org'")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(OSError, match=r"Could not download 'set/file.txt' from https://example.org/file.txt") as info:
        fetch("set/file.txt", url="https://example.org/file.txt", sha256="0" * 64)
    message = str(info.value)
    assert str(tmp_path / "shared" / "set" / "file.txt") in message and "MULTIOMIX_DATA_DIR" in message
    assert "data_dir=" in message and "ConnectionError" in message


def test_offline_sequence_download_names_the_fasta(tmp_path, monkeypatch):
    import multiomix as mx

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: (_ for _ in ()).throw(requests.ConnectionError("offline")))
    with pytest.raises(OSError, match=r"janggu_oct4_mafk/sample\.fa.*data_dir="):
        mx.datasets.oct4_mafk(data_dir=tmp_path / "missing")
