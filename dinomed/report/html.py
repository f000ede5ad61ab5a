"""``dinomed report RUN_DIR``: one self-contained HTML file describing a pretraining run.

Everything is inline (CSS, PNGs as base64 data URIs), so the file opens offline, attaches to an e-mail and
archives with the run. Sections: resolved config, training curves, collapse diagnostics with the monitor's
verdict, kNN / linear-probe results (``eval/*.json`` written by ``dinomed eval``), attention maps and patch PCA of a
few samples (computed from the exported backbone), and fine-tuning metrics when the run has them. A run with
pieces missing (killed early, never evaluated) still gets a report that shows what exists and lists the rest.

Example:
    >>> report = build_report("runs/oct-1")
    >>> report.path, report.missing
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from dinomed.engine import CONFIG_FILE, INIT_FILE, METRICS_FILE, SUMMARY_FILE, read_metrics
from dinomed.files import atomic_write
from dinomed.data.splits import SPLITS_FILE, Splits
from dinomed.report.plots import collapse_figure, quality_figure, to_png, training_figure, verdict_line

REPORT_FILE = "report.html"
SECTIONS = ("summary", "config", "split", "init", "training", "collapse", "quality", "evaluation", "attention", "pca",
            "finetune")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.85em} img{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f0f0f0} summary{cursor:pointer;color:#245} td:first-child,th:first-child{text-align:left} .missing{color:#a33} .verdict{font-weight:bold}
"""


@dataclass
class Report:
    """Where the HTML went, which sections have content and what is missing (with the reason)."""

    path: Path
    present: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


def png_img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return html.escape("—" if value is None else str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _eval_html(result: dict[str, Any]) -> str:
    """Scores per split and per-class recall of one ``eval/<method>.json``."""
    splits = list(result.get("metrics", {}))
    rows = [["top-1"] + [result["metrics"][s]["top1"] for s in splits],
            ["balanced accuracy"] + [result["metrics"][s]["balanced_accuracy"] for s in splits]]
    for name in result.get("class_names", []):
        rows.append([f"recall {name}"] + [result["metrics"][s]["per_class_recall"].get(name) for s in splits])
    params = ", ".join(f"{k}={v}" for k, v in result.get("params", {}).items() if not isinstance(v, dict))
    sizes = ", ".join(f"{k} {v}" for k, v in result.get("split_sizes", {}).items())
    title = f"{result.get('method', '?')} — backbone {result.get('backbone_source', '?')}"
    return (f"<h3>{html.escape(title)}</h3><p>{html.escape(params)}; split sizes: {html.escape(sizes)}</p>"
            + _table(["metric"] + splits, rows))


class _Builder:
    """Collects sections; a section function returns HTML or raises :class:`_Missing` with the reason."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.parts: list[str] = []
        self.present: list[str] = []
        self.missing: dict[str, str] = {}

    def add(self, key: str, title: str, render: Callable[[], str]) -> None:
        try:
            body = render()
            self.present.append(key)
        except _NotApplicable:
            return
        except _Missing as why:
            self.missing[key] = str(why)
            body = f'<p class="missing">Missing: {html.escape(str(why))}</p>'
        self.parts.append(f'<section id="{key}"><h2>{html.escape(title)}</h2>{body}</section>')


class _Missing(Exception):
    """A report section whose inputs are not in the run directory."""


class _NotApplicable(Exception):
    """A report section this kind of run does not have (no init weights, no split of its own): left out."""


def _records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.is_file():
        raise _Missing(f"no {METRICS_FILE} in {run_dir}")
    records = read_metrics(path)
    if not records:
        raise _Missing(f"{path} holds no records yet (the run stopped before its first log step)")
    return records


def _overview(run_dir: Path) -> str:
    """One line naming recipe, modality, architecture and data, read from the run's config (empty without one)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return ""
    from dinomed.config import ConfigError, load_yaml

    try:
        config = load_yaml(path)
    except ConfigError:
        return ""  # the config section says what is wrong with the file
    data = config.get("data", {})
    where = data.get("manifest") or data.get("annotations") or data.get("root") or "built-in phantom"
    parts = [f"recipe {config.get('name', '?')}", f"modality {config.get('modality', '?')}",
             f"backbone {config.get('model', {}).get('arch', '?')}", f"data {data.get('source', '?')}: {where}"]
    return f"<p>{html.escape(' · '.join(parts))}</p>"


def _summary(run_dir: Path) -> str:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        raise _Missing(f"no {SUMMARY_FILE} in {run_dir} (the run has not finished)")
    summary = json.loads(path.read_text(encoding="utf-8"))
    return _table(["key", "value"], [[k, v] for k, v in summary.items()])


def _config(run_dir: Path) -> str:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise _Missing(f"no {CONFIG_FILE} in {run_dir}")
    text = path.read_text(encoding="utf-8")
    # folded: the full recipe is long (every default filled in) and would push the plots off the first screen
    return (f"<details><summary>{len(text.splitlines())} lines of YAML ({html.escape(str(path))}); click to show"
            f"</summary><pre>{html.escape(text)}</pre></details>")


def _split(run_dir: Path) -> str:
    path = run_dir / SPLITS_FILE
    if not path.is_file():  # pretraining on data without a split of its own reads every image
        raise _NotApplicable
    splits = Splits.read(path)
    groups = {name: len({splits.groups[i] for i in splits[name]}) for name in splits}
    rows = [[name, len(splits[name]), groups[name]] for name in splits]
    return f"<p>{html.escape(splits.describe())}</p>" + _table(["part", "images", "groups"], rows)


def _init(run_dir: Path) -> str:
    path = run_dir / INIT_FILE
    if not path.is_file():  # the run started from random weights
        raise _NotApplicable
    report = json.loads(path.read_text(encoding="utf-8"))
    rows = [["source", report["source"]], ["kind", report["kind"]], ["architecture", report["arch"]],
            ["loaded tensors", len(report["loaded"])], ["newly initialised", ", ".join(report["initialised"]) or "none"],
            ["ignored", ", ".join(report["ignored"]) or "none"], *[["note", n] for n in report["notes"]]]
    return _table(["", ""], rows)


def _quality(run_dir: Path) -> str:
    records = _records(run_dir)
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    line = (f"verdict: {summary['verdict']} — probes {summary.get('quality_detail', '')}" if "verdict" in summary
            else "no verdict yet (the run has not finished)")
    try:
        figure = quality_figure(records)
    except ValueError as err:
        raise _Missing(str(err)) from None
    return f'<p class="verdict">{html.escape(line)}</p>' + png_img(to_png(figure), "probes")


def _training(run_dir: Path) -> str:
    return png_img(to_png(training_figure(_records(run_dir))), "training curves")


def _collapse(run_dir: Path) -> str:
    records = _records(run_dir)
    line = html.escape(verdict_line(records))
    return f'<p class="verdict">{line}</p>' + png_img(to_png(collapse_figure(records, title=False)),
                                                       "collapse diagnostics")


def _evaluation(run_dir: Path) -> str:
    files = sorted((run_dir / "eval").glob("*.json"))
    results = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    results = [r for r in results if "metrics" in r]
    if not results:
        raise _Missing(f"no kNN / linear results in {run_dir / 'eval'}; run `dinomed eval knn --backbone {run_dir}` "
                       "(needs class labels in the data)")
    return "".join(_eval_html(r) for r in results)


def _finetune_tables(metrics: dict[str, Any]) -> str:
    """Run facts (task, mode, labelled images, parameters) and the scores per split (``val`` / ``test`` dicts)."""
    facts = [[k, v] for k, v in metrics.items() if not isinstance(v, (dict, list)) and v is not None]
    facts += [[f"{k} {sub}", v] for k, d in metrics.items() if isinstance(d, dict) and k not in ("val", "test")
              for sub, v in d.items() if not isinstance(v, (dict, list))]
    splits = [name for name in ("val", "test") if isinstance(metrics.get(name), dict)]
    scores = list(dict.fromkeys(k for name in splits for k, v in metrics[name].items() if isinstance(v, (int, float))))
    table = _table(["metric", *splits], [[k, *[metrics[name].get(k) for name in splits]] for k in scores])
    return _table(["run", "value"], facts) + (table if scores else "")


def _finetune(run_dir: Path) -> str:
    files = [run_dir / "metrics.json"] if (run_dir / "metrics.json").is_file() else []
    files += sorted(run_dir.glob("finetune/*/metrics.json"))
    if not files:
        raise _Missing(f"no fine-tuning metrics.json in {run_dir} or {run_dir / 'finetune'}/*/")
    parts = []
    for path in files:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        parts.append(f"<h3>{html.escape(str(path.relative_to(run_dir)))}</h3>" + _finetune_tables(metrics))
        curves = path.with_name(METRICS_FILE)
        if curves.is_file() and read_metrics(curves):
            try:
                parts.append(png_img(to_png(training_figure(read_metrics(curves))), "fine-tuning curves"))
            except ValueError:
                pass  # fine-tune logs without loss/lr columns: the table above is the whole story
    return "".join(parts)


class _Pictures:
    """Attention and PCA grids share one loaded backbone, dataset and transform (built once, on first use)."""

    def __init__(self, run_dir: Path, samples: int) -> None:
        self.run_dir, self.samples = run_dir, samples
        self._loaded: tuple[Any, ...] | None = None

    def _load(self) -> tuple[Any, ...]:
        if self._loaded is None:
            if not (self.run_dir / "export" / "backbone.safetensors").is_file():
                raise _Missing(f"no exported backbone in {self.run_dir / 'export'} (the run has not finished)")
            from dinomed.recipe import load_recipe
            from dinomed.report.visuals import prepare_inputs

            recipe = load_recipe(self.run_dir / CONFIG_FILE)
            try:
                self._loaded = (recipe, *prepare_inputs(recipe, self.run_dir, None))
            except FileNotFoundError as err:  # the recipe's data lives on another machine
                raise _Missing(f"cannot read the run's images: {err}") from None
        return self._loaded

    def attention(self) -> str:
        from dinomed.report.visuals import attention_pngs

        recipe, model, label, dataset, transform = self._load()
        pngs, summary = attention_pngs(model, dataset, transform, recipe.modality, keep=recipe.eval.attention_keep,
                                       count=self.samples, label=label)
        text = ""
        if summary is not None:
            text = (f"<p>Jaccard vs ground-truth masks ({summary['num_images']} images): best head "
                    f"{summary['best_head']} = {summary['best_head_jaccard']:.3f}, union = "
                    f"{summary['union_jaccard']:.3f}</p>")
        return text + "".join(png_img(p, f"attention {i}") for i, p in enumerate(pngs))

    def pca(self) -> str:
        from dinomed.report.visuals import pca_png

        recipe, model, label, dataset, transform = self._load()
        return png_img(pca_png(model, dataset, transform, recipe.modality, count=self.samples, label=label), "PCA")


def write_report(run_dir: str | Path, out: str | Path | None = None, *, samples: int = 4,
                 console: Console | None = None) -> Report:
    """Write the report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``) and say what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir}: not a run directory")
    builder = _Builder(run_dir)
    pictures = _Pictures(run_dir, samples)
    builder.add("summary", "Run summary", lambda: _summary(run_dir))
    builder.add("config", "Resolved config", lambda: _config(run_dir))
    builder.add("split", "Data split used", lambda: _split(run_dir))
    builder.add("init", "Initial weights (continued pretraining)", lambda: _init(run_dir))
    builder.add("training", "Training curves", lambda: _training(run_dir))
    builder.add("collapse", "Collapse diagnostics", lambda: _collapse(run_dir))
    builder.add("quality", "Is it learning? Probes against random init", lambda: _quality(run_dir))
    builder.add("evaluation", "kNN and linear probe", lambda: _evaluation(run_dir))
    builder.add("attention", "Attention maps (last block, CLS token)", pictures.attention)
    builder.add("pca", "Patch-feature PCA", pictures.pca)
    builder.add("finetune", "Fine-tuning", lambda: _finetune(run_dir))
    missing = "".join(f"<li><a href='#{k}'>{html.escape(k)}</a>: {html.escape(v)}</li>" for k, v in builder.missing.items())
    missing_html = f'<section id="missing"><h2>Missing pieces</h2><ul>{missing}</ul></section>' if missing else ""
    title = f"dinomed report — {run_dir.name}"
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(str(run_dir.resolve()))}</p>{_overview(run_dir)}{missing_html}{''.join(builder.parts)}</body></html>")
    path = atomic_write(Path(out) if out is not None else run_dir / REPORT_FILE, page)
    console = console or Console()
    console.print(f"Wrote {path}")
    for key, why in builder.missing.items():
        console.print(f"  missing {key}: {why}")
    return Report(path, builder.present, builder.missing)
