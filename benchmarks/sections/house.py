"""docs/results.md's section for ``benchmarks/house.py``: the code's own measurements per revision."""

from __future__ import annotations

from pathlib import Path

from pointkd.results import RESULTS, load, source, table


def section(root: Path) -> list[str]:
    rel = RESULTS / "house.json"
    d = load(root, rel)
    if not d or not d.get("measurements"):
        return []
    ms = d["measurements"]

    def dup(m: dict) -> str:
        x = m.get("duplicates")
        if not x:
            return "–"
        return f"{x.get('pairs')}" + (f" ({x['files_read']} files read, incomplete)" if x.get("incomplete") else "")

    def imports(m: dict) -> str:
        si = m.get("server_imports") or {}
        if not si.get("ok"):
            return "import failed"
        return f"{len(si.get('heavy_modules', []))} ({', '.join(si.get('heavy_modules', [])) or 'none'})"

    rows = [
        [
            "revision",
            *(
                f"{m.get('rev')} (`{str(m.get('commit'))[:7]}`{' + changes' if m.get('dirty') else ''})"
                for m in ms.values()
            ),
        ],
        ["functions in pointkd/, serving/, calibration/", *(m.get("functions") for m in ms.values())],
        ["functions over 80 lines", *(m.get("functions_over_80_lines") for m in ms.values())],
        [
            "longest function",
            *(
                f"{f[0]['lines']} lines (`{f[0]['name']}`)" if (f := m.get("longest_functions")) else "–"
                for m in ms.values()
            ),
        ],
        ["README.md lines", *(m.get("readme_lines") for m in ms.values())],
        ["training / compile modules `import serving.app` loads", *(imports(m) for m in ms.values())],
        ["duplicate pairs (`duplicates --most 200 --seconds 60`)", *(dup(m) for m in ms.values())],
    ]
    return [
        "## House",
        "",
        "The code's own measurements (`benchmarks/house.py`), per revision; nothing timed.",
        "",
        *table(["", *ms], rows, "l" + "r" * len(ms)),
        "",
        source(rel),
        "",
    ]
