# Renders sanity-check results.json files (written by `camscope evaluate sanity`) as one Markdown
# table: the rows of later files (runs of further methods) add to the first file's, and replace
# its row of a method they ran again.
import json
from pathlib import Path


def sanity_markdown(name, *later):
    runs = [json.loads(Path(f"docs/results/{each}.json").read_text()) for each in (name, *later)]
    rows, source = {}, {}
    for index, data in enumerate(runs):
        for row in data["rows"]:
            rows[row["method"]] = row
            source[row["method"]] = index
    columns = [
        ("MPRT, top layer", "mprt_first", "{:.2f}"),
        ("MPRT, all layers", "mprt_last", "{:.2f}"),
        ("\\|ρ\\| all", "mprt_last_abs", "{:.2f}"),
        ("random logit", "random_logit", "{:.2f}"),
        ("ROAD gap", "road_gap", "{:.3f}"),
        ("data randomisation", "data_randomization", "{:.2f}"),
        ("sparseness", "sparseness", "{:.2f}"),
        ("avg. sensitivity", "avg_sensitivity", "{:.2f}"),
    ]
    marks = ["", "¹", "²", "³"]
    print("| method | layer | " + " | ".join(title for title, _, _ in columns) + " | sanity |")
    print("|---|---|" + "---:|" * len(columns) + "---|")
    for method, row in rows.items():
        cells = []
        for _, key, form in columns:
            value = row.get(key)
            text = "—" if value is None or value != value else form.format(value).replace("-", "−")
            cells.append(f"**{text}**" if key == "mprt_last_abs" and not row["passes"] else text)
        verdict = "passes" if row["passes"] else "**fails**"
        label = f"{method}{marks[source[method]]}"
        print(f"| {label} | {row.get('layer') or 'input'} | " + " | ".join(cells) + f" | {verdict} |")
    for index, (each, data) in enumerate(zip((name, *later), runs, strict=True)):
        measured = data["settings"]["measured"]
        which = "" if index == 0 else f"{marks[index]} rows from "
        print(
            f"\n<small>{which}{data['title']}; `{data.get('command', 'camscope evaluate sanity')}`; "
            f"measured {measured['date']} on {measured['cpu']} ({measured['threads']} threads), "
            f"torch {measured['torch']}, camscope {measured['camscope']} "
            f"(`docs/results/{each}.json`).</small>"
        )


def pass_table(columns):
    """Which methods pass on every benchmark: ``columns`` is a list of (title, [results files]),
    the later files of a column adding or replacing rows as in :func:`sanity_markdown`. A cell
    gives the verdict and the mean Spearman ρ after the top layer → after every layer."""
    cells, order, notes = {}, [], []
    for index, (title, names) in enumerate(columns):
        for name in names:
            data = json.loads(Path(f"docs/results/{name}.json").read_text())
            measured = data["settings"]["measured"]
            notes.append(f"{title}: `docs/results/{name}.json`, {measured['date']}, {measured['cpu']}")
            for row in data["rows"]:
                method = row["method"]
                if method not in order:
                    order.append(method)
                verdict = "passes" if row["passes"] else "**fails**"
                values = f"{row['mprt_first']:.2f} → {row['mprt_last']:.2f}".replace("-", "−")
                cells[method, index] = f"{verdict} ({values})"
            for method in data.get("does_not_apply", {}):
                if method not in order:
                    order.append(method)
                cells[method, index] = "does not apply (ReLU rule)"
    print("| method | " + " | ".join(title for title, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for method in order:
        row = [cells.get((method, index), "—") for index in range(len(columns))]
        print(f"| {method} | " + " | ".join(row) + " |")
    print(f"\n<small>Measured: {'; '.join(notes)}.</small>")
