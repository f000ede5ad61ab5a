"""``dinomed datasets list|show|prepare|check``: the public-dataset catalogue (thin shell over dinomed.catalogue)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.panel import Panel
from rich.table import Table

from dinomed.cli.app import app, console

datasets_app = typer.Typer(help="Public dataset cards: verify a download, write a grouped manifest, audit leaks.",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def list_cards() -> None:
    """Every dataset card: modality, tasks, how groups are formed, licence."""
    from dinomed.catalogue import load_cards

    table = Table(title="dinomed dataset catalogue")
    for column in ("name", "modality", "tasks", "groups", "layouts", "licence"):
        table.add_column(column, overflow="fold")
    for card in load_cards():
        table.add_row(card.name, card.modality, ", ".join(card.tasks), card.groups.kind,
                      ", ".join(l.name for l in card.layouts), card.licence)
    console.print(table)


@datasets_app.command("show")
def show(name: str = typer.Argument(..., help="Card name (see `dinomed datasets list`).")) -> None:
    """Everything a card says: source, licence, citation, layouts with counts and checksums, grouping, recipe."""
    from dinomed.catalogue import load_card

    card = load_card(name)
    lines = [f"[bold]{card.title}[/] (card v{card.version})", card.description, "",
             f"modality: {card.modality}    tasks: {', '.join(card.tasks)}",
             f"labels: {', '.join(card.labels) or '(from the source files)'}",
             f"licence: {card.licence}", f"terms: {card.terms or '-'}", f"citation: {card.citation}", "",
             f"get it from: {card.source.page}", f"archive: {card.source.archive}",
             f"access: {card.source.access or '-'}", "",
             f"groups ({card.groups.kind}): {card.groups.derivation}", "",
             f"recipe: {card.recipe.recipe or '-'} - {card.recipe.notes}"]
    console.print(Panel("\n".join(lines), title=card.name, expand=False))
    table = Table(title="accepted layouts")
    for column in ("layout", "converter", "expects", "images", "checksums"):
        table.add_column(column, overflow="fold")
    for layout in card.layouts:
        count = "unknown" if layout.count is None else f"{layout.count}{'' if layout.count_exact else ' (approx.)'}"
        sums = f"{len(layout.checksums)} file(s), {layout.checksums_note}" if layout.checksums else layout.checksums_note
        table.add_row(layout.name, layout.converter, layout.description, f"{count}; {layout.count_note}", sums)
    console.print(table)


@datasets_app.command("prepare")
def prepare_cmd(
    name: str = typer.Argument(..., help="Card name."),
    source: Path = typer.Option(..., "--source", "-s", help="Folder where you unpacked the archive (read only)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder; default $DINOMED_DATA/NAME or "
                                       "~/.dinomed/datasets/NAME."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Force one of the card's layouts."),
    split: str = typer.Option("auto", "--split", help="Published split: auto (keep unless groups cross splits), "
                              "keep, drop."),
) -> None:
    """Verify SOURCE against the card and write manifest.csv + dataset.json (atomically, source untouched)."""
    from dinomed.catalogue import prepare

    result = prepare(name, source, out, layout=layout, split_policy=split)
    s = result.summary
    console.print(f"[green]prepared[/] {s['card']} ({s['layout']} layout): {s['images']} images, "
                  f"{s['groups']} {s['group_kind']} groups -> {result.manifest}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"use it with: --set data.source=manifest --set data.manifest={result.manifest}")


@datasets_app.command("check")
def check_cmd(
    manifest: str = typer.Argument(..., help="manifest.csv / .json, a prepared folder, or a prepared card name."),
    threshold: int = typer.Option(4, "--threshold", min=0, max=64, help="dHash Hamming distance (of 64 bits) "
                                  "counted as near-duplicate."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
) -> None:
    """Duplicates, near-duplicates across splits, groups crossing splits, missing files, class balance.

    Exit status 1 when anything leaks between splits or a file is missing or unreadable.
    """
    from dinomed.catalogue import check_manifest, resolve_prepared

    report = check_manifest(resolve_prepared(manifest), threshold=threshold, progress=not as_json)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report) -> None:  # noqa: ANN001 - CheckReport, imported lazily
    g = report.groups
    per = g.get("images_per_group") or {}
    console.print(Panel(f"{report.images} images, {g['groups']} groups ({g['ungrouped_images']} ungrouped images), "
                        f"images per group min/median/max {per.get('min', '-')}/{per.get('median', '-')}/"
                        f"{per.get('max', '-')}, groups with more than one class: {g['multi_label_groups']}\n"
                        f"largest groups: {g['largest']}", title=report.manifest, expand=False))
    splits = list(report.class_balance)
    labels = sorted({label for counts in report.class_balance.values() for label in counts})
    balance = Table(title="class balance")
    balance.add_column("class")
    for split in splits:
        balance.add_column(split, justify="right")
    for label in labels:
        balance.add_row(label, *[str(report.class_balance[s].get(label, 0)) for s in splits])
    console.print(balance)
    findings = Table(title=f"findings ({'OK' if report.ok else 'PROBLEMS'})")
    for column in ("finding", "count", "examples"):
        findings.add_column(column, overflow="fold")
    rows = [("missing files", report.missing, lambda d: f"{d['column']}: {d['path']}"),
            ("split values training refuses", report.bad_splits,
             lambda d: f"row {d['row']} ({d['image']}): '{d['split']}' (expected train, val or test)"),
            ("unreadable files", report.unreadable, lambda d: f"{d['column']}: {d['path']} ({d['error']})"),
            ("groups crossing splits", list(report.groups_crossing.items()), lambda d: f"{d[0]}: {', '.join(d[1])}"),
            ("exact duplicates", report.exact_duplicates,
             lambda d: " = ".join(d["images"]) + (" [crosses split]" if d["crosses_split"] else "")),
            (f"near-duplicates across {'splits' if report.has_split else 'groups'} (<= {report.threshold} bits)",
             report.near_duplicates, lambda d: f"{d['images'][0]} ~ {d['images'][1]} ({d['distance']} bits)")]
    for title, items, fmt in rows:
        findings.add_row(title, str(len(items)), "\n".join(fmt(d) for d in items[:3]))
    console.print(findings)
