"""Render bench/results.json as bench/RESULTS.md."""
from __future__ import annotations

from pathlib import Path
from typing import Any

FINDINGS = Path(__file__).resolve().parent / "findings.md"

ORDER = ["serve", "batch", "hostile", "mlflow", "train", "control", "loop", "toolchain"]


def num(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v)
    a = abs(v)
    s = f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3f}"
    return f"{s} {unit}".strip()


def verdict(f: dict[str, Any]) -> str:
    if f.get("holds") is True:
        return "holds"
    if f.get("holds") is False:
        return "**does not hold**"
    return ""


def one_line(f: dict[str, Any]) -> str:
    parts = [f"{f['name']}: {num(f['value'], f['unit'])}"]
    if f.get("baseline") is not None:
        parts.append(f"baseline {num(f['baseline'], f['unit'])}")
    if f.get("ratio") is not None:
        parts.append(f"ratio {f['ratio']:.2f}×")
    if f.get("target"):
        parts.append(f"target {f['target']} → {verdict(f) or 'n/a'}")
    if f.get("note"):
        parts.append(f["note"])
    return " | ".join(parts)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench`); do not edit by hand. How each number is made: "
        "[README.md](README.md). Ratio = ours ÷ baseline, measured side by side in the same run "
        "(for throughput higher is better; for time, latency and memory lower is better).",
        "The machine is shared: other work was running during these runs (load average below, 1/5/15 min); "
        "treat differences under ~15% as noise.",
        "",
    ]
    benches = results.get("benchmarks", {})
    for name in ORDER + [n for n in benches if n not in ORDER]:
        if name not in benches:
            lines += [f"## {name}", "", "Not measured yet: no run recorded.", ""]
            continue
        b = benches[name]
        m = b["machine"]
        lines += [f"## {name}", "",
                  f"{m['date']} · {m['cores']} cores, {m.get('memory_gib', '?')} GiB · commit `{m['commit']}` · "
                  f"load {m['load']} → {m.get('load_after', '?')} · took {b['seconds']:.0f} s"
                  + (" · **smoke run**" if b.get("smoke") else ""), ""]
        if b.get("error"):
            lines += [f"**The benchmark failed:** `{b['error']}`", ""]
        if b["figures"]:
            lines += ["| measure | ours | baseline | ratio | target | verdict | notes |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for f in b["figures"]:
                ratio = "—" if f.get("ratio") is None else f"{f['ratio']:.2f}×"
                base = num(f.get("baseline"), f["unit"])
                if f.get("baseline_name") and f.get("baseline") is not None:
                    base += f" ({f['baseline_name']})"
                lines.append(f"| {f['name']} | {num(f['value'], f['unit'])} | {base} | {ratio} | {f.get('target') or ''} | "
                             f"{verdict(f)} | {(f.get('note') or '').replace('|', '/')} |")
            lines.append("")
    if FINDINGS.exists():  # hand-written analysis (profiles, causes, fixes): kept beside the generated tables
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines) + "\n"
