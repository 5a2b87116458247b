"""The instructor's picture of a class-wide study: every learner's trials in one figure, read against seed noise.

    from lmtune_widgets.landscape import class_landscape
    fig = class_landscape("postgresql+psycopg://postgres:PASSWORD@HOST:54320/postgres", "workshop")
    fig.savefig("class.png")

Four panels: learning rate against validation loss (a dot per trial, a colour per learner, the best as a star);
the class's best as trials finished, each improvement marked by whether it is larger than seed noise; which
settings matter (Optuna's importances as ranges over resamples of the finished trials, or one line saying the
trials are too few); and a leaderboard of each learner's best run, its gap to the class's best with the kit's
verdict (differ / can't tell). Every verdict and range comes from `study_noise`; lesson 08 draws the same
importance panel alone (`importance_figure`).
"""
from __future__ import annotations

import math

SHORT_NAMES = {"learning_rate": "learning rate", "per_device_train_batch_size": "batch size",
               "weight_decay": "weight decay", "warmup_ratio": "warmup ratio"}


def class_landscape(storage: str, study_name: str, top: int = 8, references: dict[str, float] | None = None,
                    book=None):
    """One picture of a whole class's study: every trial, learning rate against validation loss, how the
    class's best improved, which settings mattered (parameter importances), and a leaderboard per learner.

    Pruned trials are drawn at the last validation loss they reported. `references` draws named validation
    losses as dashed lines to measure the class against, e.g. {"defaults": run.best["eval_loss"]} for a run
    of the defaults on the same base settings. `book` holds the recorded runs whose seeds give the noise
    (`atlas.load()` when not given). Returns a matplotlib Figure.
    """
    import optuna

    from .search import open_storage

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    return study_landscape(study, top, references, book)


def study_landscape(study, top: int = 8, references: dict[str, float] | None = None, book=None):
    """`class_landscape`'s picture of a study already open (an in-memory one, say)."""
    import matplotlib.style
    import optuna
    from matplotlib.figure import Figure

    from . import atlas
    from .plotting import COLOURS
    from .search import DIVERGED_VALUE
    from .study_noise import importance_intervals

    book = book if book is not None else atlas.load()
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
        fig = Figure(figsize=(12, 8.6))
        fig.subplots_adjust(left=0.11, right=0.98, top=0.9, bottom=0.08, hspace=0.45, wspace=0.3)
        lr_ax, best_ax, importance_ax, table_ax = fig.subplots(2, 2).ravel()
        fig.suptitle(f"Study {study.study_name!r}: {len(trials)} trials by {len(learners)} learner(s) "
                     f"({counts['COMPLETE']} finished, {counts['PRUNED']} pruned, {counts['FAIL']} failed, "
                     f"{counts['RUNNING']} running)", fontsize=12)
        _learning_rates(lr_ax, scored, colour)
        _class_best(best_ax, scored, colour, book)
        for ax in (lr_ax, best_ax):
            for i, (label, value) in enumerate((references or {}).items()):
                ax.axhline(value, color="grey", linestyle=("--", ":", "-.")[i % 3], linewidth=1,
                           label=f"{label}: {value:.3f}")
            ax.legend(fontsize=8, loc="best", framealpha=0.8)
        draw_importances(importance_ax, importance_intervals(study))
        _leaderboard(table_ax, scored, top, book)
    return fig


def importance_figure(study, importances=None):
    """The importance panel alone (lesson 08): each setting's importance as a range over resamples of the
    study's finished trials, or one line saying they are too few. Returns a matplotlib Figure."""
    import matplotlib.style
    from matplotlib.figure import Figure

    from .study_noise import importance_intervals

    importances = importances or importance_intervals(study)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(7, 0.9 + 0.45 * max(2, len(importances.ranges))), layout="constrained")
        draw_importances(fig.subplots(), importances)
    return fig


def draw_importances(ax, importances) -> None:
    """Each setting's importance over the resamples: a line from its low to its high end of the 90% range, a dot
    at its median, most important on top; or, with too few finished trials, that one line and no bars."""
    ax.set_title("Which settings matter (parameter importances)")
    if not importances.enough:
        ax.axis("off")
        ax.text(0.5, 0.55, importances.line, ha="center", va="center", fontsize=11, transform=ax.transAxes,
                wrap=True)
        why = (f"(ranges are drawn from {importances.needed} finished trials on: with fewer, studies of the\n"
               "same settings disagree on which one matters most)")
        ax.text(0.5, 0.3, why, ha="center", va="center", fontsize=8, color="dimgrey", transform=ax.transAxes)
        return
    names = list(importances.ranges)[::-1]
    for y, name in enumerate(names):
        low, median, high = importances.ranges[name]
        ax.plot([low, high], [y, y], color="#1f77b4", linewidth=3, solid_capstyle="butt",
                label="90% range over resamples" if y == 0 else None)
        ax.plot(median, y, "o", color="black", markersize=6, label="median" if y == 0 else None)
    ax.set_yticks(range(len(names)), [SHORT_NAMES.get(n, n) for n in names])
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.6, len(names) - 0.4),
           xlabel=f"importance (fANOVA: share of the loss's variance), {importances.finished} finished trials, "
                  f"{importances.evaluations} resamples")
    ax.legend(fontsize=8, loc="lower right", framealpha=0.8)
    ax.grid(alpha=0.3, axis="x")


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


def _class_best(ax, scored, colour, book) -> None:
    from matplotlib.ticker import MaxNLocator

    from .study_noise import compare_trials

    in_order = sorted(((t, v) for t, v, done in scored if done),
                      key=lambda tv: (tv[0].datetime_complete or tv[0].datetime_start, tv[0].number))
    if in_order:
        values = [v for _, v in in_order]
        running_best = [min(values[: i + 1]) for i in range(len(values))]
        numbers = range(1, len(values) + 1)
        ax.scatter(numbers, values, s=18, color=[colour[_learner(t)] for t, _ in in_order], alpha=0.7)
        ax.step(numbers, running_best, where="post", color="black", label=f"class best so far ({running_best[-1]:.3f})")
        beyond, within, best = [], [], in_order[0]
        for number, (t, v) in zip(numbers, in_order):
            if v < best[1]:  # an improvement: larger than the seeds' spread, or not?
                real = compare_trials(v, t.params, best[1], best[0].params, book).verdict == "lower"
                (beyond if real else within).append((number, v))
                best = (t, v)
        for points, face, label in ((beyond, "black", "improvement larger than seed noise (differ)"),
                                    (within, "none", "improvement within seed noise (can't tell)")):
            ax.scatter([n for n, _ in points], [v for _, v in points], s=70, marker="D", facecolor=face,
                       edgecolor="black", linewidth=1.3, zorder=4, label=label if points else None)
    ax.set(title="The class's best, as trials finished", xlabel="finished trials, in order",
           ylabel="validation loss of the kept model")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _leaderboard(ax, scored, top: int, book) -> None:
    from .study_noise import compare_trials

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
    best_value, best_trial = rows[0][0], rows[0][2]
    cells = []
    for rank, (value, name, t, count) in enumerate(rows[:top], start=1):
        if rank == 1:
            gap = "best"
        else:
            verdict = compare_trials(value, t.params, best_value, best_trial.params, book)
            gap = f"+{value - best_value:.3f} {verdict.word}"
        cells.append([str(rank), name, f"{value:.3f}", gap, f"{t.params.get('learning_rate', math.nan):.1e}",
                      str(t.params.get("per_device_train_batch_size", "")), str(count)])
    table = ax.table(cellText=cells, colLabels=["#", "learner", "val. loss", "vs best", "lr", "batch", "trials"],
                     colWidths=[0.06, 0.22, 0.12, 0.25, 0.12, 0.1, 0.1], loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.5)
    more = f"and {len(rows) - top} more learners. " if len(rows) > top else ""
    ax.text(0.5, -0.02, f"{more}vs best: the gap in validation loss and the kit's rule on it: they differ only when\n"
                        "the gap is larger than the seeds of the nearest recorded setting spread", ha="center",
            va="top", transform=ax.transAxes, fontsize=8, color="dimgrey")
