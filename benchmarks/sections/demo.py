"""docs/results.md's section for ``pointkd demo`` (``make demo``): each stage's result and time."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import RESULTS, load, num, pct, source, table


def section(root: Path) -> list[str]:
    rel = RESULTS / "demo" / "demo.json"
    d = load(root, rel)
    if not d:
        return []
    st = d.get("stages", {})
    comp, serve = st.get("compile", {}), st.get("serve", {})
    rows = []
    for name in ("teacher", "student"):
        if name in st:
            rows.append([name, f"OA {pct(st[name].get('oa'))} %", num(st[name].get("seconds"), 0)])
    for fmt in ("onnx", "onnx-int8"):
        if fmt in comp:
            c = comp[fmt]
            rows.append([f"compile {fmt}", f"OA {pct(c.get('oa'))} %, {num(c.get('size_kib'), 0)} KiB", "–"])
    if comp:
        rows.append(["compile (both)", "", num(comp.get("seconds"), 0)])
    if "bench" in st:
        rows.append(["bench", "", num(st["bench"].get("seconds"), 0)])
    if serve:
        rows.append(
            [
                "serve",
                f"{serve.get('requests', 0) - serve.get('errors', 0)}/{serve.get('requests')} answered, accuracy "
                f"{pct(serve.get('accuracy'))} %, client p50 {num(serve.get('client_p50_ms'))} ms",
                num(serve.get("seconds"), 0),
            ]
        )
    rows.append(["**total**", "", f"**{num(d.get('total_seconds'), 0)}** ({num(d['total_seconds'] / 60, 1)} min)"])
    return [
        "## `pointkd demo`",
        "",
        "`make demo` on the shared ModelNet40: a small, short-trained teacher and LSP student (it shows the "
        "pipeline, not the method's gain).",
        "",
        *table(["stage", "result", "seconds"], rows, "llr"),
        "",
        source(rel),
        "",
    ]
