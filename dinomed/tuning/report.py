"""What a finished search shows: a rich table of the top trials, Optuna's history / importance plots (PNG)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from rich.console import Console
from rich.table import Table


HISTORY_PNG, IMPORTANCE_PNG = "optimization_history.png", "param_importances.png"


def top_trials(study: optuna.Study, n: int = 10) -> list[optuna.trial.FrozenTrial]:
    """Completed trials, best first."""
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return sorted(done, key=lambda t: t.value, reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)[:n]


def trials_table(study: optuna.Study, metric: str, n: int = 10) -> Table:
    trials = top_trials(study, n)
    names = sorted({k for t in trials for k in t.params})
    table = Table(title=f"Top {len(trials)} trials of '{study.study_name}' (mean CV {metric})")
    for column in ("#", metric, *names):
        table.add_column(column, justify="right")
    for t in trials:
        table.add_row(str(t.number), f"{t.value:.4f}", *[_fmt(t.params.get(k)) for k in names])
    return table


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "-" if value is None else str(value)


def save_plots(study: optuna.Study, run_dir: Path, console: Console) -> dict[str, str | None]:
    """History and parameter-importance PNGs; importance needs two completed trials and is skipped otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    written: dict[str, str | None] = {"history": None, "importance": None}
    completed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    plots = {"history": (HISTORY_PNG, oplt.plot_optimization_history, 1),
             "importance": (IMPORTANCE_PNG, oplt.plot_param_importances, 2)}
    for key, (name, plot, needs) in plots.items():
        if completed < needs:
            console.print(f"No {key} plot: it needs {needs} completed trial(s), the study has {completed}.")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.savefig(run_dir / name, dpi=120, bbox_inches="tight")
            plt.close(figure)
            written[key] = name
        except (RuntimeError, ValueError) as err:  # e.g. importance with parameters that never vary
            console.print(f"No {key} plot: {err}")
    return written
