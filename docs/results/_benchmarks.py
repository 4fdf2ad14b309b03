# Renders benchmark results (benchmarks/results/*.json, written by the benchmark scripts) as
# Markdown tables, each followed by the date, machine and versions it was measured with.
import json
import statistics
from pathlib import Path

_PEERS = {
    "quantus": "Quantus",
    "captum": "Captum",
    "torchcam": "torch-cam",
    "grad-cam": "pytorch-grad-cam",
    "zennit": "zennit",
    "monai": "MONAI",
    "ray": "Ray",
}


def _load(name):
    """The cases of a results file, each with its ``measured`` stamp (a file written with one
    header for all its cases gives that header to each)."""
    data = json.loads(Path(f"benchmarks/results/{name}.json").read_text())
    header = {"date": data["date"], **data["machine"]} if "date" in data else None
    return {key: {"measured": header, **case} for key, case in data["cases"].items()}


def _when(measured):
    if not measured:
        return "date not recorded"
    peers = [f"{title} {measured[key]}" for key, title in _PEERS.items() if measured.get(key)]
    return (
        f"{measured['date']}, {measured['cpu']} ({measured['threads']} threads), torch "
        f"{measured['torch']}, camscope {measured['camscope']}"
        + "".join(f", {peer}" for peer in peers)
    )


def _footnote(name, cases, extra=""):
    dates = sorted({_when(case.get("measured")) for case in cases})
    print(f"\n<small>Measured {'; '.join(dates)}{extra} (`benchmarks/results/{name}.json`).</small>")


def _number(value, digits=3):
    return f"{value:.{digits}f}" if value < 100 else f"{value:.1f}"


def _count_or_ratio(value):
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.2g}"


def against_peer_and_floor(name, rows, peer="quantus", peer_title="Quantus"):
    """``rows``: (case key, label). Times of the peer, camscope and the floor, and the ratios."""
    cases = _load(name)
    print(f"| case | {peer_title} (s) | camscope (s) | floor (s) | × {peer_title} | × floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, label in rows:
        seconds = cases[key]["seconds"]
        ours, theirs, floor = seconds["camscope"], seconds[peer], seconds["floor"]
        print(
            f"| {label} | {theirs:.2f} | {ours:.2f} | {floor:.2f} | {theirs / ours:.2f} | "
            f"{ours / floor:.2f} |"
        )
    _footnote(name, [cases[key] for key, _ in rows])


def against_peer(name, rows):
    """``rows``: (case key, label, the peer's contender). Quantus's time, camscope's, and how
    many times faster camscope is ("—" where the peer cannot run the case)."""
    cases = _load(name)
    print("| case | peer | peer (s) | camscope (s) | × faster |")
    print("|---|---|---:|---:|---:|")
    for key, label, peer in rows:
        seconds = cases[key]["seconds"]
        ours, theirs = seconds["camscope"], seconds.get("quantus")
        if theirs is None:
            print(f"| {label} | {peer} | — | {ours:.2f} | |")
        else:
            print(f"| {label} | {peer} | {theirs:.2f} | {ours:.2f} | **{theirs / ours:.2f}** |")
    _footnote(name, [cases[key] for key, _, _ in rows])


def against_floor(name, case, floors, labels=None):
    """Min / median time of each contender of ``case`` and its ratio to its floor.

    ``floors``: contender name → the floor contender it is measured against (floors themselves
    are listed as rows with ratio 1); contenders not in ``floors`` are compared with the first
    floor. ``labels`` renames contenders.
    """
    result = _load(name)[case]
    times = result["times"]
    first_floor = next(iter(floors.values()))
    print("| contender | time (s), min / median | × its floor, min / median |")
    print("|---|---:|---:|")
    for contender, values in times.items():
        floor = times[floors.get(contender, first_floor)] if contender not in floors.values() else values
        ratio_min = min(values) / min(floor)
        ratio_median = statistics.median(values) / statistics.median(floor)
        label = (labels or {}).get(contender, contender)
        print(
            f"| {label} | {_number(min(values))} / {_number(statistics.median(values))} | "
            f"{ratio_min:.2f} / {ratio_median:.2f} |"
        )
    repeats = max(len(values) for values in times.values())
    _footnote(name, [result], f"; up to {repeats} interleaved repeats")


def core(case):
    """bench_core's table: time against the floor and one class, memory against inference."""
    result = _load("core")[case]
    times, memory = result["times"], result["peak_rss_gib"]
    floor = statistics.median(times["bare forward+backward (floor)"])
    single = statistics.median(times["camscope grad_cam, 1 class"])
    inference = memory.get("inference forward (no grad)")
    print(f"**{result['title']}**\n")
    print(
        "| contender | median time (s) | × floor | × camscope 1 class | peak RSS (GiB) "
        "| × inference | working set (GiB) | × inference |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        peak = memory.get(name)
        memory_cells = (
            "– | – | – | –"
            if peak is None or inference is None
            else f"{peak[0]:.2f} | {peak[0] / inference[0]:.2f} | {peak[1]:.3f} | "
            f"{peak[1] / max(inference[1], 1e-9):.2f}"
        )
        print(
            f"| {name} | {median:.3f} | {median / floor:.2f} | {median / single:.2f} | "
            f"{memory_cells} |"
        )
    agreement = result.get("captum_max_relative_difference")
    extra = f"; camscope's and Captum's maps agree to {agreement:.0e} relative" if agreement else ""
    _footnote("core", [result], f"; {len(times[name])} interleaved repeats, medians{extra}")


def speedups(name):
    """Cases timed against a peer's own method: median seconds and the speed-up over the peer."""
    cases = _load(name)
    print("| case | contender | time (s) | speed-up |")
    print("|---|---|---:|---:|")
    for result in cases.values():
        title = result["title"]
        for contender, seconds in result["median_seconds"].items():
            speedup = result["speedup_vs_reference"][contender]
            print(f"| {title} | {contender} | {seconds:.1f} | {speedup:.2f}× |")
            title = ""
    print()
    for result in cases.values():
        agreement = "; ".join(
            f"{key}: {_count_or_ratio(value)}" for key, value in result["agreement"].items()
        )
        print(f"- {result['title']}: {agreement}")
    _footnote(name, cases.values())


def runs():
    """Dataset runs: inputs per second, local and Ray."""
    cases = _load("runs")
    titles = {
        "2d": "2D `tiny2d`, {n} PNG images of 64², 3 classes",
        "3d": "3D CNN-2, {n} volumes of 40³ (`.npy`), 23 classes",
    }
    print("| model, inputs | local backend | local Ray, 2 actors | outputs identical |")
    print("|---|---:|---:|---|")
    for key, result in cases.items():
        rate = result["inputs_per_second"]
        print(
            f"| {titles[key].format(n=result['inputs'])} | {rate['local']:.1f} inputs/s | "
            f"{rate['ray']:.1f} inputs/s | {'yes' if result['identical_npz'] else '**no**'} |"
        )
    startup = next(iter(cases.values()))["ray_startup_seconds"]
    _footnote("runs", cases.values(), f"; Ray's start-up and shut-down alone: {startup:.1f} s")


def scan(rows):
    """explain_scan against MONAI's forward-only sliding window: ``rows`` (case, label, bar)."""
    cases = _load("scan")
    print("| case | MONAI forward (s) | camscope (s) | × the forward | bar | peak MB above start, MONAI / camscope |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, label, bar in rows:
        result = cases[key]
        forward, ours = result["seconds"].values()
        memory = list(result["peak_mb_above_start"].values())
        print(
            f"| {label} | {forward:.2f} | {ours:.2f} | **{result['ratio']:.2f}** | ≤ {bar} | "
            f"{memory[0]:.0f} / {memory[1]:.0f} |"
        )
    repeats = {result.get("repeats", 1) for result in cases.values()}
    _footnote("scan", cases.values(), f"; median of {max(repeats)}")


def upsample():
    """Upsampling cost against the explanation it upsamples."""
    cases = _load("upsample")
    print(
        "| case | explain (s) | Gaussian upsampling (s) | × explain | linear upsampling (s) "
        "| × explain |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for title, row in cases.items():
        explain = row["explain"]
        print(
            f"| {title} | {explain:.3f} | {row['gaussian']:.4f} | {row['gaussian'] / explain:.3f} "
            f"| {row['linear']:.4f} | {row['linear'] / explain:.3f} |"
        )
    _footnote("upsample", cases.values(), "; medians")


def training():
    """Training throughput in the four settings, and the accuracy of the two kept."""
    cases = _load("training")
    rates = cases["samples_per_second"]
    networks = {name: row for name, row in rates.items() if name != "measured"}
    settings = list(next(iter(networks.values())))
    print("| network (40³, batch 32) | " + " | ".join(settings) + " | after / before |")
    print("|---|" + "---:|" * (len(settings) + 1))
    for network, row in networks.items():
        cells = " | ".join(f"{row[setting]:.1f}" for setting in settings)
        print(f"| {network} | {cells} | {row[settings[-1]] / row[settings[0]]:.1f}× |")
    _footnote("training", [rates], "; samples per second")
    accuracy = cases.get("accuracy")
    if accuracy:
        print("\n| CNN-2, 100 subtomograms per class, 6 epochs | test accuracy |")
        print("|---|---:|")
        for setting, row in accuracy.items():
            if setting != "measured":
                print(f"| {setting} | {row['accuracy']:.3f} ± {row['standard_error']:.3f} |")
        _footnote("training", [accuracy])
