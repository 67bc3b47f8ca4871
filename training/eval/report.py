"""The evaluation's Markdown table and PNG chart, drawn from the result JSON only (so a table can
be redrawn from a saved run without re-running anything)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

KIND_LABELS = {"line": "line", "midword": "mid-word", "span": "span", "api": "API call"}
# Task kinds in table order.
TABLE_KINDS = ("line", "midword", "span", "api")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _interval(interval: dict[str, Any]) -> str:
    """A paired difference in points with its interval; * where the interval excludes zero."""
    mark = " *" if interval["excludes_zero"] else ""
    return (
        f"{100 * interval['difference']:+.1f} "
        f"[{100 * interval['low']:+.1f}, {100 * interval['high']:+.1f}]{mark}"
    )


def markdown(result: dict[str, Any]) -> str:
    """Per repository: one row per condition (EM / ES per task kind, identifier F1, latency),
    then the paired differences with their bootstrap intervals and the targets."""
    config = result["config"]
    lines = [
        "# RepoTune evaluation",
        "",
        f"Command: `{config['command']}`  ",
        *(
            [f"Commit: {config['commit']}{' (with local changes)' if config['dirty'] else ''}  "]
            if config.get("commit")
            else []
        ),
        f"Machine: {result['machine']['summary']}  ",
        f"Duration: {result['duration_s'] / 60:.1f} min; generator: {config['generator']}; "
        f"decoding: greedy, same prompt budget for every condition "
        f"(context/prefix/suffix tokens {config['budget']}).",
    ]
    if any(any(repo["task_counts"].values()) for repo in result["repos"].values()):
        lines += [
            "",
            "EM = exact match, ES = edit similarity (CrossCodeEval's fuzz.ratio), ID-F1 = "
            "identifier F1, hit = the completion contains the answer's key identifier (tasks "
            "whose answer names one), all in %; latency = completion time per request (ms, "
            "p50/p95); tok = generated tokens per completion. `+ctx` = with retrieved "
            "repository context.",
        ]
    for label, repo in result["repos"].items():
        counts = ", ".join(f"{n} {KIND_LABELS[k]}" for k, n in repo["task_counts"].items())
        # Mid-word tasks are shown when a run has them (older results have none).
        kinds = [k for k in TABLE_KINDS if k != "midword" or repo["task_counts"].get(k)]
        retrieval = repo["retrieval"]
        files = f"{repo['files']['test']} held-out test files of {sum(repo['files'].values())}"
        lines += ["", f"## {label} (`{repo['repo']['spec']}`)", ""]
        if not any(repo["task_counts"].values()):  # questions only: no completion table
            lines.append(f"{files}; no completion tasks.")
            if "questions" in repo:
                lines += question_lines(repo["questions"])
            continue
        lines += [
            f"{files}; tasks: {counts}. Retrieval recall@{retrieval['k']}: "
            f"{_pct(retrieval['recall_at_k'])} % of the {retrieval['tasks_with_definitions']} "
            f"tasks whose answer uses a definition from another file; retrieval latency p50 "
            f"{_ms(retrieval['latency_ms']['p50'])} ms.",
            *adapter_lines(repo.get("adapter")),
            "",
            "| condition | "
            + "".join(f"{KIND_LABELS[k]} EM | {KIND_LABELS[k]} ES | " for k in kinds)
            + "line shown EM | ID-F1 | hit | latency p50/p95 | tok |",
            "|---|" + "---:|" * (2 * len(kinds) + 5),
        ]
        for name, scores in repo["conditions"].items():
            cells = []
            for kind in kinds:
                kind_scores = scores.get(kind)
                if kind_scores is None:
                    cells += ["–", "–"]
                else:
                    cells += [
                        _pct(kind_scores["exact_match"]),
                        _pct(kind_scores["edit_similarity"]),
                    ]
            overall = scores["all"]
            # What the user is shown, all of it (older results lack it).
            cells.append(_pct((scores.get("line") or {}).get("shown_exact")))
            cells.append(_pct(overall["identifier_f1"]))
            cells.append(_pct(overall.get("hit")))
            cells.append(f"{_ms(overall['latency_ms']['p50'])}/{_ms(overall['latency_ms']['p95'])}")
            tokens = overall["tokens_per_completion"]
            cells.append("–" if tokens is None else f"{tokens:.1f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if repo["comparisons"]:
            lines += [
                "",
                "| difference (points, 95 % paired bootstrap CI) | line EM | line ES "
                + ("| mid-word EM " if "midword" in kinds else "")
                + "| all EM | line EM McNemar p |",
                "|---|---:|---:|---:|---:|" + ("---:|" if "midword" in kinds else ""),
            ]
            differences = [("line", "exact_match"), ("line", "edit_similarity")]
            if "midword" in kinds:
                differences.append(("midword", "exact_match"))
            differences.append(("all", "exact_match"))
            for comparison in repo["comparisons"]:
                cells = []
                for kind, metric in differences:
                    interval = comparison["intervals"].get(kind, {}).get(metric)
                    if interval is None:
                        cells.append("–")
                        continue
                    cells.append(_interval(interval))
                test = comparison.get("mcnemar_em", {}).get("line")
                cells.append("–" if test is None else f"{test['p_value']:.3g}")
                lines.append(
                    f"| {comparison['a']} − {comparison['b']} | " + " | ".join(cells) + " |"
                )
            lines.append("")
            lines.append("`*`: the interval does not cross zero.")
        for target in repo["targets"]:
            verdict = "met" if target["met"] else "NOT met"
            lines.append(f"- Target: {target['description']}: **{verdict}** ({target['detail']})")
        for note in repo.get("notes", []):
            lines.append(f"- Note: {note}")
        if "questions" in repo:
            lines += question_lines(repo["questions"])
    lines.append("")
    return "\n".join(lines)


def adapter_lines(adapter: dict[str, Any] | None) -> list[str]:
    """How the per-repository adapter was trained (when that is known), and whether it kept
    the adapter training started from."""
    from repotune.training.eval.adapters import training_warning

    run = (adapter or {}).get("finetune")
    if not run:
        return []
    losses = ""
    if run.get("best_val_loss") is not None:
        losses = (
            f"; validation loss {run['initial_val_loss']:.4f} at step 0, best "
            f"{run['best_val_loss']:.4f} at step {run['best_step']}"
        )
    line = (
        f"Per-repository adapter: {run['steps']} steps, {run['train_tokens']:,} training tokens "
        f"at {run['tokens_per_s']:.0f} tokens/s{losses}."
    )
    warning = training_warning(adapter or {})
    if warning is not None:
        line += f" **Warning: {warning}.**"
    return ["", line]


def question_lines(section: dict[str, Any]) -> list[str]:
    """Question tasks: citation, similarity, abstention and latency per condition, then the
    paired differences."""
    counts = section["task_counts"]
    lines = [
        "",
        f"### Questions ({counts['answerable']} answerable, {counts['unanswerable']} about names "
        "the repository does not define)",
        "",
        "cite = the answer cites a line of the subject's definition (file: the file at all); "
        "cos = embedder cosine and R-L = ROUGE-L F1 to the reference answer (answerable); "
        "abstain = says the indexed code does not define it (unanswerable); false abst. = the "
        "same on answerable questions; all in %.",
        "",
    ]
    retrieved = section.get("subject_retrieved")  # absent from runs before it was measured
    if retrieved and retrieved["all"] is not None:
        kinds = ", ".join(
            f"{kind} {_pct(v['share'])} of {v['n']}" for kind, v in retrieved["by_kind"].items()
        )
        lines += [
            f"Retrieval holds the subject's definition for {_pct(retrieved['all'])} % of the "
            f"answerable questions ({kinds}).",
            "",
        ]
    lines += [
        "| condition | cite | file | cos | R-L | abstain | false abst. | latency p50/p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, scores in section["conditions"].items():
        latency = scores["latency_ms"]
        cells = [
            _pct(scores[key])
            for key in (
                "citation",
                "citation_file",
                "cosine",
                "rouge_l",
                "abstention",
                "false_abstention",
            )
        ]
        cells.append(f"{_ms(latency['p50'])}/{_ms(latency['p95'])}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if section["comparisons"]:
        metrics = ("citation", "cosine", "rouge_l", "abstention")
        lines += [
            "",
            "| difference (points, 95 % paired bootstrap CI) | " + " | ".join(metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for comparison in section["comparisons"]:
            cells = []
            for metric in metrics:
                interval = comparison["intervals"][metric]
                if not interval["n"]:
                    cells.append("–")
                    continue
                cells.append(_interval(interval))
            lines.append(f"| {comparison['a']} − {comparison['b']} | " + " | ".join(cells) + " |")
    return lines + in_view_lines(section.get("in_view"))


def in_view_lines(in_view: dict[str, Any] | None) -> list[str]:
    """The "what" questions asked again from the cursor ("What does this function do?"),
    beside the same questions naming the code (training/eval/in_view.py)."""
    if not in_view or not in_view["n"]:
        return []
    metrics = ("citation", "rouge_l", "cosine")
    lines = [
        "",
        f'Asked from the cursor: the {in_view["n"]} answerable "what does X do?" questions '
        'asked again as "What does this function (method, class) do?" with the cursor on X\'s '
        "first line (in view / named, then the paired difference in points):",
        "",
        "| condition | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for condition, result in in_view["conditions"].items():
        cells = [
            f"{_pct(result[m]['in_view'])} / {_pct(result[m]['named'])}, "
            f"{_interval(result[m]['difference'])}"
            for m in metrics
        ]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    return lines


def chart(result: dict[str, Any], path: Path) -> Path:
    """Exact match (top) and edit similarity (bottom) per task kind and condition, one column
    per repository, on shared axes so repositories compare at a glance."""
    import numpy as np

    repos = result["repos"]
    if not any(any(repo["task_counts"].values()) for repo in repos.values()):
        return question_chart(result, path)  # questions only: no completion bars to draw
    plt = _pyplot()
    columns = max(1, len(repos))
    fig, axes = plt.subplots(2, columns, figsize=(6.5 * columns, 7.5), squeeze=False, sharey="row")
    metrics = (("exact_match", "exact match (%)"), ("edit_similarity", "edit similarity (%)"))
    for column, (label, repo) in enumerate(repos.items()):
        conditions = list(repo["conditions"])
        kinds = [k for k in TABLE_KINDS if repo["task_counts"].get(k)]
        x = np.arange(len(conditions))
        width = 0.8 / max(1, len(kinds))
        for row, (metric, axis_label) in enumerate(metrics):
            ax = axes[row][column]
            for i, kind in enumerate(kinds):
                values = [
                    100 * (repo["conditions"][c].get(kind, {}).get(metric) or 0.0)
                    for c in conditions
                ]
                n = repo["task_counts"][kind]
                offset = (i - (len(kinds) - 1) / 2) * width
                bars = ax.bar(x + offset, values, width, label=f"{KIND_LABELS[kind]} (n={n})")
                ax.bar_label(bars, fmt="%.0f", fontsize=7)
            ax.set_xticks(x, conditions, rotation=15)
            ax.set_ylabel(axis_label)
            ax.grid(axis="y", alpha=0.3)
            if row == 0:
                ax.set_title(f"{label} ({repo['repo']['spec']})")
                if kinds:  # a questions-only run has no completion bars to name
                    ax.legend(title="task", fontsize=8)
    return _saved(fig, "RepoTune: completion quality by condition (held-out test files)", path)


QUESTION_BARS = (("citation", "citation"), ("cosine", "cosine"), ("rouge_l", "ROUGE-L"))


def question_chart(result: dict[str, Any], path: Path) -> Path:
    """Citation, cosine and ROUGE-L on the answerable questions per condition, one panel per
    repository: the chart of a questions-only run."""
    import numpy as np

    plt = _pyplot()
    repos = result["repos"]
    columns = max(1, len(repos))
    fig, axes = plt.subplots(1, columns, figsize=(6.5 * columns, 4.5), squeeze=False, sharey=True)
    for column, (label, repo) in enumerate(repos.items()):
        ax = axes[0][column]
        section = repo.get("questions") or {"conditions": {}, "task_counts": {"answerable": 0}}
        conditions = list(section["conditions"])
        x = np.arange(len(conditions))
        width = 0.8 / len(QUESTION_BARS)
        for i, (metric, name) in enumerate(QUESTION_BARS):
            values = [100 * (section["conditions"][c].get(metric) or 0.0) for c in conditions]
            offset = (i - (len(QUESTION_BARS) - 1) / 2) * width
            bars = ax.bar(x + offset, values, width, label=name)
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(x, conditions, rotation=15)
        ax.set_ylabel("% (answerable questions)")
        ax.grid(axis="y", alpha=0.3)
        answerable = section["task_counts"]["answerable"]
        ax.set_title(f"{label} ({repo['repo']['spec']}, {answerable} answerable)")
        ax.set_ylim(0, 115)  # room for the legend above the bars
        if conditions:
            ax.legend(fontsize=8, loc="upper center", ncol=len(QUESTION_BARS))
    title = "RepoTune: answers to codebase questions by condition (held-out test files)"
    return _saved(fig, title, path)


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend (no display on a server or in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _saved(fig: Any, title: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
