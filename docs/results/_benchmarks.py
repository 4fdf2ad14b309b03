# Renders benchmark results (benchmarks/results/*.json, written by the benchmark scripts) as
# Markdown tables, with the machine and date each case was measured on.
import json
from pathlib import Path


def _load(name):
    return json.loads(Path(f"benchmarks/results/{name}.json").read_text())["cases"]


def _when(measured):
    if not measured:
        return "date not recorded"
    return (
        f"{measured['date']}, {measured['cpu']} ({measured['threads']} threads), torch "
        f"{measured['torch']}, camscope {measured['camscope']}"
        + (f", Quantus {measured['quantus']}" if measured.get("quantus") else "")
    )


def against_peer_and_floor(name, rows, peer="quantus", peer_title="Quantus"):
    """``rows``: (case key, label). Times of the peer, camscope and the floor, and the ratios."""
    cases = _load(name)
    print(f"| case | {peer_title} (s) | camscope (s) | floor (s) | × {peer_title} | × floor |")
    print("|---|---:|---:|---:|---:|---:|")
    dates = set()
    for key, label in rows:
        seconds = cases[key]["seconds"]
        ours, theirs, floor = seconds["camscope"], seconds[peer], seconds["floor"]
        print(
            f"| {label} | {theirs:.2f} | {ours:.2f} | {floor:.2f} | {theirs / ours:.2f} | "
            f"{ours / floor:.2f} |"
        )
        dates.add(_when(cases[key].get("measured")))
    print(f"\n<small>Measured {'; '.join(sorted(dates))} (`benchmarks/results/{name}.json`).</small>")
