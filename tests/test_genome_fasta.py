"""Genome FASTA + BED regions -> one-hot DNA, checked against the FASTA-record path on real peak sequences.

The genome is built from the first 200 real Oct4 ChIP-seq peak sequences (janggu ``sample.fa``, 200 bp each,
soft-masked lower case included): 100 per chromosome, separated by ``N`` spacers of varied length and written
with 60-letter lines, so that interval reads cross line breaks. The BED gives each peak's new coordinates.
"""

from __future__ import annotations

import gzip
import os
import threading

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import multiomix as mx

N_RECORDS = 200
COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def _write_fasta(path, records: dict[str, str], width: int = 60) -> None:
    with open(path, "w") as handle:
        for name, seq in records.items():
            handle.write(f">{name}\n")
            for i in range(0, len(seq), width):
                handle.write(seq[i : i + width] + "\n")


@pytest.fixture(scope="module")
def peaks(data_dir) -> dict[str, str]:
    records = mx.io.read_fasta(data_dir / "janggu_oct4_mafk" / "sample.fa")
    return dict(list(records.items())[:N_RECORDS])


@pytest.fixture(scope="module")
def genome(tmp_path_factory, peaks):
    """Two chromosomes made of the peaks and N spacers; returns the FASTA path and the BED of the peaks."""
    folder = tmp_path_factory.mktemp("genome")
    rng = np.random.default_rng(0)
    chroms, rows = {}, []
    names = list(peaks)
    for c, chunk in enumerate((names[: N_RECORDS // 2], names[N_RECORDS // 2 :]), start=1):
        chrom, parts, pos = f"chr{c}", [], 0
        for name in chunk:
            spacer = "N" * int(rng.integers(1, 80))
            parts.append(spacer)
            pos += len(spacer)
            parts.append(peaks[name])
            rows.append((chrom, pos, pos + len(peaks[name]), name))
            pos += len(peaks[name])
        parts.append("N" * 37)
        chroms[chrom] = "".join(parts)
    fasta = folder / "genome.fa"
    _write_fasta(fasta, chroms)
    bed = pd.DataFrame(rows, columns=["chrom", "start", "end", "name"])
    bed["score"] = 0
    bed["strand"] = "+"
    return fasta, bed


def _write_bed(path, bed: pd.DataFrame) -> None:
    bed.to_csv(path, sep="\t", header=False, index=False)


def test_genome_plus_bed_equals_fasta_records(tmp_path, genome, peaks):
    fasta, bed = genome
    _write_bed(tmp_path / "peaks.bed", bed)
    adata = mx.pp.sequences_from_genome(fasta, tmp_path / "peaks.bed", length=200)
    # the FASTA-record path: read the peak records, one-hot them from an .obs column
    records = ad.AnnData(obs=pd.DataFrame({"sequence": list(peaks.values())}, index=list(peaks)))
    mx.pp.one_hot_sequences(records)
    assert adata.obs_names.tolist() == list(peaks)
    assert adata.obsm["dna_onehot"].shape == (N_RECORDS, 200, 4) and adata.obsm["dna_onehot"].dtype == np.uint8
    np.testing.assert_array_equal(adata.obsm["dna_onehot"], records.obsm["dna_onehot"])
    expected_obs = bed.set_index("name")[["chrom", "start", "end"]].rename_axis("region")
    assert adata.obs[["chrom", "start", "end"]].equals(expected_obs)
    assert (fasta.parent / "genome.fa.fai").exists()  # samtools-style index beside a writable genome
    # the same intervals as .obs columns of an existing AnnData, and the genome as an open pyfaidx file
    regions = ad.AnnData(obs=bed.set_index("name"))
    mx.pp.one_hot_sequences(regions, sequence_key=None, fasta=mx.io.open_fasta(fasta), dtype=np.float32)
    np.testing.assert_array_equal(regions.obsm["dna_onehot"], records.obsm["dna_onehot"].astype(np.float32))
    # a data frame works as the BED, and names fall back to chrom:start-end without a name column
    frame = mx.pp.sequences_from_genome(fasta, bed.drop(columns="name").assign(label=np.arange(len(bed)) % 2))
    assert frame.obs_names[0] == f"{bed.chrom[0]}:{bed.start[0]}-{bed.end[0]}"
    assert list(frame.obs["label"]) == list(np.arange(len(bed)) % 2)  # the user's own column is kept
    np.testing.assert_array_equal(frame.obsm["dna_onehot"], records.obsm["dna_onehot"])


def test_reverse_strand_is_the_reverse_complement(tmp_path, genome, peaks):
    fasta, bed = genome
    bed = bed.copy()
    bed.loc[::3, "strand"] = "-"
    bed.loc[1::3, "strand"] = "."
    _write_bed(tmp_path / "stranded.bed", bed)
    adata = mx.pp.sequences_from_genome(fasta, tmp_path / "stranded.bed")
    minus = (bed["strand"] == "-").to_numpy()
    assert adata.obs["strand"].tolist() == bed["strand"].tolist()
    expected = [seq.translate(COMPLEMENT)[::-1] if m else seq for seq, m in zip(peaks.values(), minus)]
    np.testing.assert_array_equal(adata.obsm["dna_onehot"], mx.pp.one_hot_encode(expected))
    forward = mx.pp.one_hot_encode(list(peaks.values()))
    np.testing.assert_array_equal(adata.obsm["dna_onehot"][minus], mx.pp.reverse_complement(forward[minus]))
    np.testing.assert_array_equal(adata.obsm["dna_onehot"][~minus], forward[~minus])


def test_sequence_anndata_feeds_the_genomic_interpreter(genome):
    fasta, bed = genome
    adata = mx.pp.sequences_from_genome(fasta, bed)
    targets = np.arange(adata.n_obs, dtype=np.float32)[:, None] % 2
    adata = ad.AnnData(X=targets, obs=adata.obs, obsm=adata.obsm)
    mx.models.GenomicInterpreter.setup_anndata(adata, sequence_key="dna_onehot")


def test_errors_name_the_region(tmp_path, genome):
    fasta, bed = genome
    bad = bed.copy()
    bad.loc[3, "chrom"] = "chr9"
    with pytest.raises(KeyError, match=rf"{bed.name[3]}.*'chr9'.*not in the genome"):
        mx.pp.sequences_from_genome(fasta, bad)
    bad = bed.copy()
    bad.loc[len(bed) - 1, ["start", "end"]] = [10**6, 10**6 + 200]
    with pytest.raises(ValueError, match=rf"{bed.name.iloc[-1]}.*outside the chromosome"):
        mx.pp.sequences_from_genome(fasta, bad)
    bad = bed.copy()
    bad.loc[5, "end"] -= 1
    with pytest.raises(ValueError, match=rf"{bed.name[5]}.*199 bp.*200 bp"):
        mx.pp.sequences_from_genome(fasta, bad)
    with pytest.raises(ValueError, match=rf"{bed.name[0]}.*200 bp.*required length is 150"):
        mx.pp.sequences_from_genome(fasta, bed, length=150)
    bad = bed.copy()
    bad["start"] = bad["start"].astype(float)
    bad.loc[4, "start"] = np.nan
    with pytest.raises(ValueError, match="Region row 4: start nan is not an integer"):
        mx.pp.sequences_from_genome(fasta, bad)
    bad = bed.copy()
    bad.loc[2, "strand"] = "x"
    with pytest.raises(ValueError, match=rf"{bed.name[2]}.*strand 'x'"):
        mx.pp.sequences_from_genome(fasta, bad)
    # an IUPAC letter inside a region
    text = fasta.read_text().splitlines()
    seq_lines = [i for i, line in enumerate(text) if not line.startswith(">")]
    line = seq_lines[10]
    text[line] = "R" + text[line][1:]
    iupac = tmp_path / "iupac.fa"
    iupac.write_text("\n".join(text) + "\n")
    with pytest.raises(ValueError, match=r"contains letters \['R'\]"):
        mx.pp.sequences_from_genome(iupac, bed)
    with pytest.raises(FileNotFoundError):
        mx.pp.sequences_from_genome(tmp_path / "missing.fa", bed)


def test_read_bed_and_fasta_formats(tmp_path, genome, peaks):
    fasta, bed = genome
    path = tmp_path / "x.bed"
    path.write_text("track name=peaks\n# comment\nchr1\t5\t10\nchr2\t0\t3\n")
    frame = mx.io.read_bed(path)
    assert frame.columns.tolist() == ["chrom", "start", "end"] and frame["start"].tolist() == [5, 0]
    for name in ("x.bed.gz", "x.bed.bgz", "x_gzipped_no_suffix.bed"):  # compressed is read whatever the suffix
        with gzip.open(tmp_path / name, "wt") as handle:
            handle.write(path.read_text())
        pd.testing.assert_frame_equal(mx.io.read_bed(tmp_path / name), frame)
    if hasattr(os, "mkfifo"):  # a pipe (e.g. <(zcat peaks.bed.gz)) is read once: sniffing must not consume it
        fifo = tmp_path / "pipe.bed"
        os.mkfifo(fifo)
        writer = threading.Thread(target=lambda: fifo.write_text(path.read_text()))
        writer.start()
        pd.testing.assert_frame_equal(mx.io.read_bed(fifo), frame)
        writer.join()
    for text, message in (
        ("chr1\t5\n", "chrom, start and end"),
        ("chr1\t5\t5\n", "empty or negative"),
        ("chr1\t-1\t5\n", "empty or negative"),
        ("chr1\t1.5\t5\n", "not an integer"),
        ("chr1\t1\t5\tp\t0\t*\n", "strand"),
        # a shorter line would have dropped every region's name and strand (a '-' region read forward)
        ("chr1\t0\t200\tp1\t0\t-\nchr1\t600\t800\n", "line 2: 3 fields, but line 1 has 6"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            mx.io.read_bed(path)
    # read_fasta: plain gzip and an existing index give the same records
    gz = tmp_path / "genome.fa.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(fasta.read_text())
    plain = mx.io.read_fasta(fasta)
    assert mx.io.read_fasta(gz) == plain
    assert plain["chr1"] == plain["chr1"].upper() and len(plain) == 2
    with pytest.raises(ValueError, match="bgzip"):
        mx.io.open_fasta(gz)
    path.write_text("chr1\t0\t10\nchr1\t20\t30\t\n")  # a trailing tab adds no column
    assert mx.io.read_bed(path)["end"].tolist() == [10, 30]
    # lines of any width, blank lines and Windows line ends are joined (an index needs one width per record)
    uneven = tmp_path / "uneven.fa"
    uneven.write_bytes(b">a x\r\nACGT\r\nAC\r\n\r\nacgt\r\n>b\nTT\n")
    assert mx.io.read_fasta(uneven) == {"a": "ACGTACACGT", "b": "TT"}
    with pytest.raises(ValueError, match="uneven.fa cannot be indexed"):
        mx.io.open_fasta(uneven)
    for text, message in ((b"ACGT\n>a\nAC\n", "line 1: sequence text before"),
                          (b">a\nAC\n> \nGT\n", "line 3: a header")):
        (tmp_path / "bad.fa").write_bytes(text)
        with pytest.raises(ValueError, match=message):
            mx.io.read_fasta(tmp_path / "bad.fa")


def test_one_hot_from_a_dict_genome_with_numeric_chromosomes_and_missing_coordinates():
    import anndata as ad

    obs = pd.DataFrame({"chrom": [1, 1], "start": [0, 4], "end": [4, 8]}, index=["r1", "r2"])
    adata = ad.AnnData(obs=obs)
    mx.pp.one_hot_sequences(adata, sequence_key=None, fasta={1: "ACGTTTTT"})
    assert adata.obsm["dna_onehot"][0].argmax(1).tolist() == [0, 1, 2, 3]
    bad = ad.AnnData(obs=obs.assign(start=[0.0, np.nan]))
    with pytest.raises(ValueError, match="Region 'r2': the start or end coordinate is missing"):
        mx.pp.one_hot_sequences(bad, sequence_key=None, fasta={"1": "ACGTTTTT"})
    assert "dna_onehot" not in bad.obsm
