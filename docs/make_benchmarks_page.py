"""Write ``docs/benchmarks.md`` from the benchmark reports in ``benchmarks/results/*.md``.

Run by ``docs/conf.py`` when the build starts (``builder-inited``), so the page always shows the reports as the
benchmark scripts last wrote them; the generated file is git-ignored. Each report is copied unchanged under a
heading, its own headings moved down two levels and its image links pointed at ``benchmarks/results``.
Reports are grouped by model; the development notes of a model (what else was tried, pilot runs), written by
hand in ``docs/benchmark_notes/<model>.md``, follow its reports. Screening runs (``screens/``,
``*.screen.*``) are not reports and are left out.

Usage: ``python docs/make_benchmarks_page.py`` (from anywhere).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (slug, title, report-name prefixes): a report belongs to the first model whose prefix its file name has.
MODELS = [
    ("crossattomics", "CrossAttOmics", ("tcga",)),
    ("multimodal_autoencoder", "Multimodal autoencoder", ("joint_embedding", "scale_sparse")),
    ("unitednet", "UnitedNet", ("patchseq",)),
    ("transfer", "Annotation transfer", ("transfer",)),
    ("genomic_interpreter", "Genomic Interpreter", ("genomic_interpreter",)),
    ("med_crossvit", "Med-CrossViT", ("med_crossvit",)),
    ("relevance", "Feature relevance", ("relevance",)),
]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})(\s+.*)$")
_IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)(\))")


def reports(results: Path) -> list[Path]:
    """The current reports: ``*.md`` directly in ``results``, without screening runs."""
    return sorted(p for p in results.glob("*.md") if ".screen." not in p.name and not p.name.startswith("screen"))


def _model_of(report: Path) -> str | None:
    for slug, _, prefixes in MODELS:
        if report.stem.startswith(prefixes):
            return slug
    return None


def _shift(text: str, levels: int, image_dir: str) -> tuple[str, str]:
    """Demote the headings of a report (outside code fences) and re-point its images; return (title, body)."""
    title, lines, fenced = None, [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            heading = _HEADING.match(line)
            if heading and title is None and len(heading[1]) == 1:
                title = heading[2].strip()
                continue
            if heading:
                line = "#" * min(len(heading[1]) + levels, 6) + heading[2]
            line = _IMAGE.sub(lambda m: m[1] + (m[2] if "://" in m[2] else f"{image_dir}/{m[2]}") + m[3], line)
        lines.append(line)
    return title or "", "\n".join(lines).strip("\n")


def render(results: Path, target: Path, notes: Path = HERE / "benchmark_notes") -> str:
    """The Markdown of the page."""
    image_dir = Path(os.path.relpath(results, target.parent)).as_posix()
    try:
        shown = results.resolve().relative_to(target.parent.resolve().parent).as_posix()
    except ValueError:
        shown = results.as_posix()
    grouped: dict[str | None, list[Path]] = {}
    for report in reports(results):
        grouped.setdefault(_model_of(report), []).append(report)
    out = [
        "# Benchmarks",
        "",
        f"The reports the benchmark scripts wrote to `{shown}/`, as they are: every number on this page comes from "
        "a report, with the command that produced it. The page is generated when the documentation is built "
        "(`docs/make_benchmarks_page.py`). Each model's reports are followed by its development notes: settings "
        "that were tried and not adopted, pilot runs and screens.",
        "",
    ]
    sections = [(slug, title) for slug, title, _ in MODELS] + [(None, "Other reports")]
    titles: set[str] = set()
    for slug, title in sections:
        note = notes / f"{slug}.md" if slug else None
        has_note = note is not None and note.exists()
        if not grouped.get(slug) and not has_note:
            continue
        out += [f"## {title}", ""]
        if slug:
            out += [f"Model page: {{doc}}`{slug}`.", ""]
        for report in grouped.get(slug, []):
            report_title, body = _shift(report.read_text(encoding="utf-8"), 2, image_dir)
            heading = report_title or report.stem
            if heading in titles:  # two runs of one script (e.g. 5 and 10 folds): tell them apart
                heading = f"{heading} ({report.stem})"
            titles.add(heading)
            out += [f"### {heading}", "", f"Report: `{shown}/{report.name}`", "", body, ""]
        if has_note:
            _, body = _shift(note.read_text(encoding="utf-8"), 0, image_dir)
            out += [f"### {title}: development notes", "", body, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def write_benchmarks_page(results: Path, target: Path) -> None:
    """Write the page, leaving the file untouched when nothing changed (no needless rebuild)."""
    text = render(results, target)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_benchmarks_page(HERE.parent / "benchmarks" / "results", HERE / "benchmarks.md")
