"""The instructor's picture of a class-wide study: every learner's trials in one figure.

    from lmtune_widgets.landscape import class_landscape
    fig = class_landscape("postgresql+psycopg://postgres:PASSWORD@HOST:54320/postgres", "workshop")
    fig.savefig("class.png")

Four panels: learning rate against validation loss (a dot per trial, a colour per learner, the best as a star),
the class's best as trials finished, parameter importances (Optuna's, from the finished trials), and a
leaderboard of each learner's best run with its distance from the class's best.
"""
from __future__ import annotations

import math
import warnings

SHORT_NAMES = {"learning_rate": "learning rate", "per_device_train_batch_size": "batch size",
               "weight_decay": "weight decay", "warmup_ratio": "warmup ratio"}


def class_landscape(storage: str, study_name: str, top: int = 8, references: dict[str, float] | None = None):
    """One picture of a whole class's study: every trial, learning rate against validation loss, how the
    class's best improved, which settings mattered (parameter importances), and a leaderboard per learner.

    Pruned trials are drawn at the last validation loss they reported. `references` draws named validation
    losses as dashed lines to measure the class against, e.g. {"defaults": run.best["eval_loss"]} for a run
    of the defaults on the same base settings. Returns a matplotlib Figure.
    """
    import matplotlib.style
    import optuna
    from matplotlib.figure import Figure

    from .plotting import COLOURS
    from .search import DIVERGED_VALUE, open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    states = optuna.trial.TrialState
    scored = []  # (trial, value, finished?)
    for t in trials:
        if t.state == states.COMPLETE and t.value is not None and t.value < DIVERGED_VALUE:
            scored.append((t, t.value, True))
        elif t.state == states.PRUNED and t.intermediate_values:
            scored.append((t, t.intermediate_values[max(t.intermediate_values)], False))
    learners = sorted({_learner(t) for t, _, _ in scored})
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(learners)}
    counts = {s.name: sum(t.state == s for t in trials) for s in states}

    with matplotlib.style.context("default"):
        fig = Figure(figsize=(12, 8.2))
        fig.subplots_adjust(left=0.11, right=0.98, top=0.9, bottom=0.07, hspace=0.4, wspace=0.3)
        lr_ax, best_ax, importance_ax, table_ax = fig.subplots(2, 2).ravel()
        fig.suptitle(f"Study {study_name!r}: {len(trials)} trials by {len(learners)} learner(s) "
                     f"({counts['COMPLETE']} finished, {counts['PRUNED']} pruned, {counts['FAIL']} failed, "
                     f"{counts['RUNNING']} running)", fontsize=12)
        _learning_rates(lr_ax, scored, colour)
        _class_best(best_ax, scored, colour)
        for ax in (lr_ax, best_ax):
            for i, (label, value) in enumerate((references or {}).items()):
                ax.axhline(value, color="grey", linestyle=("--", ":", "-.")[i % 3], linewidth=1,
                           label=f"{label}: {value:.3f}")
            ax.legend(fontsize=8, loc="best", framealpha=0.8)
        _importances(importance_ax, study, sum(done for _, _, done in scored))
        _leaderboard(table_ax, scored, top)
    return fig


def _learner(trial) -> str:
    return str(trial.user_attrs.get("learner", "?"))


def _learning_rates(ax, scored, colour) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for t, value, done in scored:
        if "learning_rate" in t.params:
            ax.scatter(t.params["learning_rate"], value, s=40 if done else 30, marker="o" if done else "x",
                       color=colour[_learner(t)], alpha=0.85 if done else 0.7)
    finished = [(t, v) for t, v, done in scored if done and "learning_rate" in t.params]
    if finished:
        best, value = min(finished, key=lambda tv: tv[1])
        ax.scatter(best.params["learning_rate"], value, s=260, marker="*", color="gold", edgecolor="black",
                   zorder=5, label=f"best: {value:.3f} ({_learner(best)})")
    for name in colour:
        ax.scatter([], [], color=colour[name], label=name)
    ax.scatter([], [], marker="x", color="grey", label="pruned (its last report)")
    ax.set(xscale="log", title="Learning rate against validation loss", xlabel="learning rate",
           ylabel="validation loss of the kept model")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1e-4, 2e-4, 5e-4, 1e-3 ...
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0e}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3)


def _class_best(ax, scored, colour) -> None:
    from matplotlib.ticker import MaxNLocator

    in_order = sorted(((t, v) for t, v, done in scored if done),
                      key=lambda tv: tv[0].datetime_complete or tv[0].datetime_start)
    if in_order:
        values = [v for _, v in in_order]
        running_best = [min(values[: i + 1]) for i in range(len(values))]
        numbers = range(1, len(values) + 1)
        ax.scatter(numbers, values, s=18, color=[colour[_learner(t)] for t, _ in in_order], alpha=0.7)
        ax.step(numbers, running_best, where="post", color="black", label=f"class best so far ({running_best[-1]:.3f})")
    ax.set(title="The class's best, as trials finished", xlabel="finished trials, in order",
           ylabel="validation loss of the kept model")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _importances(ax, study, finished: int) -> None:
    import optuna

    try:
        with warnings.catch_warnings():  # "few trials per regime": the title says how many there are
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as error:
        ax.text(0.5, 0.5, f"not enough finished trials yet\n({error})", ha="center", va="center", wrap=True,
                fontsize=9, transform=ax.transAxes)
        ax.set(title="Parameter importances", xticks=[], yticks=[])
        return
    names = list(importances)[::-1]
    ax.barh([SHORT_NAMES.get(n, n) for n in names], [importances[n] for n in names], color="#1f77b4")
    ax.set(title=f"Parameter importances (from {finished} finished trials)", xlabel="importance")
    ax.grid(alpha=0.3, axis="x")


def _leaderboard(ax, scored, top: int) -> None:
    ax.axis("off")
    ax.set_title("Leaderboard: each learner's best finished trial")
    rows = []
    for name in sorted({_learner(t) for t, _, _ in scored}):
        own = [(t, v) for t, v, done in scored if done and _learner(t) == name]
        if own:
            t, v = min(own, key=lambda tv: tv[1])
            rows.append((v, name, t, sum(1 for x, _, _ in scored if _learner(x) == name)))
    if not rows:
        ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center")
        return
    rows.sort(key=lambda row: row[0])
    best = rows[0][0]
    cells = []
    for rank, (value, name, t, count) in enumerate(rows[:top], start=1):
        gap = "best" if rank == 1 else f"+{100 * (value - best) / best:.1f}%"
        cells.append([str(rank), name, f"{value:.3f}", gap, f"{t.params.get('learning_rate', math.nan):.1e}",
                      str(t.params.get("per_device_train_batch_size", "")), str(count)])
    table = ax.table(cellText=cells, colLabels=["#", "learner", "val. loss", "vs best", "lr", "batch", "trials"],
                     colWidths=[0.07, 0.25, 0.14, 0.14, 0.14, 0.12, 0.12], loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.5)
    if len(rows) > top:
        ax.text(0.5, 0.02, f"and {len(rows) - top} more learners", ha="center", transform=ax.transAxes, fontsize=9)
