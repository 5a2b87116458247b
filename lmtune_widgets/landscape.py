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


def class_landscape(storage: str, study_name: str, top: int = 8):
    """One picture of a whole class's study: every trial, learning rate against validation loss, how the
    class's best improved, which settings mattered (parameter importances), and a leaderboard per learner.

    Pruned trials are drawn at the last validation loss they reported. Returns a matplotlib Figure.
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
    finished = [(t, v) for t, v, done in scored if done]
    learners = sorted({t.user_attrs.get("learner", "?") for t, _, _ in scored})
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(learners)}
    counts = {s.name: sum(t.state == s for t in trials) for s in states}

    with matplotlib.style.context("default"):
        fig = Figure(figsize=(12, 8.2))
        fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.07, hspace=0.38, wspace=0.45)
        lr_ax, best_ax, importance_ax, table_ax = fig.subplots(2, 2).ravel()
        fig.suptitle(f"Study {study_name!r}: {len(trials)} trials by {len(learners)} learner(s) "
                     f"({counts['COMPLETE']} finished, {counts['PRUNED']} pruned, {counts['FAIL']} failed, "
                     f"{counts['RUNNING']} running)", fontsize=12)

        # 1. learning rate against validation loss
        for t, value, done in scored:
            if "learning_rate" in t.params:
                lr_ax.scatter(t.params["learning_rate"], value, s=40 if done else 25, marker="o" if done else "x",
                              color=colour[t.user_attrs.get("learner", "?")], alpha=0.85 if done else 0.6)
        if finished:
            best_trial, best_value = min(finished, key=lambda tv: tv[1])
            if "learning_rate" in best_trial.params:
                lr_ax.scatter(best_trial.params["learning_rate"], best_value, s=260, marker="*", color="gold",
                              edgecolor="black", zorder=5, label=f"best: {best_value:.3f}")
        for name in learners:
            lr_ax.scatter([], [], color=colour[name], label=name)
        lr_ax.scatter([], [], marker="x", color="grey", label="pruned (last report)")
        lr_ax.set(xscale="log", title="Learning rate against validation loss", xlabel="learning rate",
                  ylabel="lowest validation loss")
        lr_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        lr_ax.grid(alpha=0.3)

        # 2. how the class's best improved, trial by trial
        done_in_order = sorted(finished, key=lambda tv: tv[0].datetime_complete or tv[0].datetime_start)
        if done_in_order:
            values = [v for _, v in done_in_order]
            running_best = [min(values[: i + 1]) for i in range(len(values))]
            best_ax.scatter(range(1, len(values) + 1), values, s=18, color=[colour[t.user_attrs.get("learner", "?")]
                                                                            for t, _ in done_in_order], alpha=0.7)
            best_ax.step(range(1, len(values) + 1), running_best, where="post", color="black",
                         label=f"class best so far ({running_best[-1]:.3f})")
            best_ax.legend(fontsize=8, loc="upper right", frameon=False)
        best_ax.set(title="The class's best, as trials finished", xlabel="finished trials, in order",
                    ylabel="lowest validation loss")
        best_ax.grid(alpha=0.3)

        # 3. parameter importances (from the finished trials only)
        try:
            with warnings.catch_warnings():  # "few trials per regime": the title says how many there are
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(study)
            names = list(importances)[::-1]
            importance_ax.barh(names, [importances[n] for n in names], color="#1f77b4")
            importance_ax.set(title=f"Parameter importances ({len(finished)} finished trials)", xlabel="importance")
        except (ValueError, RuntimeError) as error:
            importance_ax.text(0.5, 0.5, f"not enough finished trials yet\n({error})", ha="center", va="center",
                               wrap=True, fontsize=9, transform=importance_ax.transAxes)
            importance_ax.set(title="Parameter importances", xticks=[], yticks=[])

        # 4. leaderboard: each learner's best run, and how far it is from the class's best
        table_ax.axis("off")
        table_ax.set_title("Leaderboard (each learner's best finished trial)")
        rows = []
        for name in learners:
            own = [(t, v) for t, v in finished if t.user_attrs.get("learner", "?") == name]
            if own:
                t, v = min(own, key=lambda tv: tv[1])
                rows.append((v, name, t, sum(1 for x, _, _ in scored if x.user_attrs.get("learner", "?") == name)))
        rows.sort(key=lambda row: row[0])
        if rows:
            best_value = rows[0][0]
            cells = []
            for i, (v, name, t, n) in enumerate(rows[:top]):
                gap = "best" if i == 0 else f"+{100 * (v - best_value) / best_value:.1f}%"
                cells.append([str(i + 1), name, f"{v:.3f}", gap, f"{t.params.get('learning_rate', math.nan):.1e}",
                              str(t.params.get("per_device_train_batch_size", "")), str(n)])
            table = table_ax.table(cellText=cells, colLabels=["#", "learner", "val. loss", "vs best", "learning rate",
                                                              "batch", "trials"], loc="upper center", cellLoc="center")
            table.auto_set_font_size(False)
            table.set_fontsize(9)
            table.scale(1.0, 1.4)
        else:
            table_ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center")
    return fig
