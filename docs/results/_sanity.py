# Renders a sanity-check results.json (written by `camscope evaluate sanity`) as a Markdown table.
import json
from pathlib import Path


def sanity_markdown(name):
    data = json.loads(Path(f"docs/results/{name}.json").read_text())
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
    print("| method | layer | " + " | ".join(title for title, _, _ in columns) + " | sanity |")
    print("|---|---|" + "---:|" * len(columns) + "---|")
    for row in data["rows"]:
        cells = []
        for _, key, form in columns:
            value = row.get(key)
            text = "—" if value is None or value != value else form.format(value).replace("-", "−")
            cells.append(f"**{text}**" if key == "mprt_last_abs" and not row["passes"] else text)
        verdict = "passes" if row["passes"] else "**fails**"
        print(f"| {row['method']} | {row.get('layer') or 'input'} | " + " | ".join(cells) + f" | {verdict} |")
    measured = data["settings"]["measured"]
    print(
        f"\n<small>{data['title']}; `{data.get('command', 'camscope evaluate sanity')}`; measured "
        f"{measured['date']} on {measured['cpu']} ({measured['threads']} threads), torch "
        f"{measured['torch']}, camscope {measured['camscope']} (`docs/results/{name}.json`).</small>"
    )
