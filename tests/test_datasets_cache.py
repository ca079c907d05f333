"""Dataset files: local copies are found and checked; a failed download says where the file was looked for."""

from __future__ import annotations

from pathlib import Path

import pooch
import pytest
import requests

import multiomix as mx
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
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match=r"janggu_oct4_mafk/sample\.fa.*data_dir="):
        mx.datasets.oct4_mafk(data_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"data_dir='.*missing' is not a folder"):  # a mistyped folder
        mx.datasets.oct4_mafk(data_dir=tmp_path / "missing")


def test_cache_and_data_directories_are_resolved_as_documented(tmp_path, monkeypatch):
    from multiomix.datasets._cache import _data_roots, default_cache_dir, download

    for value in ("", "relative/dir"):  # ignored, as the XDG specification asks
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert default_cache_dir() == Path.home() / ".cache" / "multiomix"
    monkeypatch.setenv(DATA_DIR_ENV, "")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    assert _data_roots("~/data") == [tmp_path / "data"]  # '~' expanded, an empty variable ignored
    target = tmp_path / "cache" / "file.h5ad"
    target.parent.mkdir()
    target.write_bytes(b"partial")
    with pytest.raises(ValueError, match="cached copy .* fails its sha256 check"):
        download("https://example.org/file.h5ad", sha256="0" * 64, target=target, wanted="x/file.h5ad", data_dir=None)


def test_generators_refuse_impossible_settings():
    with pytest.raises(ValueError, match="two different modalities"):
        mx.datasets.synthetic_interaction_mudata(50, planted=("rna", "rna"))
    with pytest.raises(ValueError, match=r"noise .* must be in \[0, 1\]"):
        mx.datasets.synthetic_interaction_mudata(50, noise=1.5)
    with pytest.raises(ValueError, match="group_size must be at least 1"):
        mx.datasets.synthetic_interaction_mudata(50, group_size=0)
    with pytest.raises(ValueError, match="motif_a must be a non-empty sequence of A, C, G, T"):
        mx.datasets.planted_motif_pairs(50, motif_a="NNNN")
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        mx.datasets.synthetic_tile_bags(-3)
    assert list(mx.datasets.synthetic_interaction_mudata(20, n_features={"rna": 10, "mirna": 5}, planted=(
        "mirna", "rna")).mod) == ["rna", "mirna"]
