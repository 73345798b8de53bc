"""Hostile inputs: peak memory while ingesting each, HTML parse time, and the parser process's cost.

1. Each hostile file (zip bombs, a lying zip header, 100k-deep JSON, 1.1 MB of
   nested divs, an 80k-paragraph page, a name that is not UTF-8) is ingested
   alone by ``python -m ingest ingest`` in a fresh process and data home; the
   peak RSS of that process and of its parser process are printed (target:
   each at most 1 GB), with the file's report line.
2. ``html_to_markdown_text`` on the nested page and on the flat page, and on a
   flat page of half as many paragraphs: the full/half ratio is about 2 when the
   time is linear (it was about 9 with the tree-editing loader).
3. Parsing the sample corpus through the parser process against parsing it in
   this process (``file_timeout_s = 0``): the ratio of the two times.

Run:  python bench/hostile.py            # the bundled all-MiniLM-L6-v2 embedder
      python bench/hostile.py --embedding-model DIR
      python bench/hostile.py --only "80k paragraphs"   # one file's ingest only
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

# Runs one ingest and prints the peak RSS (MB) of itself and of its children (the parser process).
_MEASURED_INGEST = """
import resource, sys
from ingest.cli import main
code = main(sys.argv[1:])
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"RSS {own:.0f} {kids:.0f}")
sys.exit(code)
"""


def hostile_files(folder: Path) -> dict[str, Path]:
    """Make the hostile files; returns them by a short label."""
    from tests.ingest.hostile_files import (
        BAD_UTF8_NAME,
        declared_bomb,
        deep_json,
        flat_html,
        lying_docx,
        nested_html,
        real_bomb,
    )

    folder.mkdir(parents=True, exist_ok=True)
    bad_name = folder / BAD_UTF8_NAME
    bad_name.write_text("A note whose file name is not UTF-8. " * 20)
    return {
        "zip bomb, 1 GiB declared (37 KB)": declared_bomb(folder / "declared-bomb.docx"),
        "zip bomb, 1 GiB real (1 MB)": real_bomb(folder / "real-bomb.docx", 1024),
        "zip bomb, 4 GiB real (4 MB)": real_bomb(folder / "real-bomb-4g.docx", 4096),
        "zip header lying: 20 MB as 4 KB": lying_docx(folder / "lying.docx", 20),
        "JSON 100k deep": deep_json(folder / "deep.json"),
        "HTML 100k nested divs (1.1 MB)": nested_html(folder / "nested.html"),
        "HTML 80k paragraphs (3.7 MB)": flat_html(folder / "flat.html"),
        "name not UTF-8": bad_name,
    }


def measure_ingest(path: Path, home: Path, model: str) -> dict[str, object]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED_INGEST, "ingest", str(path), "--home", str(home), "--embedding-model", model],
        capture_output=True,
        text=True,
        errors="replace",
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    rss = next((line.split() for line in done.stdout.splitlines() if line.startswith("RSS ")), ["RSS", "0", "0"])
    report = next((line for line in done.stdout.splitlines() if line.startswith(("skipped", "failed"))), "")
    summary = next((line for line in done.stdout.splitlines() if line.startswith("documents:")), "")
    return {
        "seconds": round(seconds, 1),
        "rss_mb": int(rss[1]),
        "parser_rss_mb": int(rss[2]),
        "exit": done.returncode,
        "report": (report or summary)[:160],
    }


def time_html(folder: Path) -> dict[str, float]:
    from ingest.loaders import html_to_markdown_text
    from tests.ingest.hostile_files import flat_html, nested_html

    out = {}
    for label, page in (
        ("nested_1_1mb_s", nested_html(folder / "n.html")),
        ("flat_80k_s", flat_html(folder / "f.html", 80_000)),
        ("flat_40k_s", flat_html(folder / "h.html", 40_000)),
    ):
        started = time.perf_counter()
        html_to_markdown_text(page.read_bytes())
        out[label] = round(time.perf_counter() - started, 2)
    out["flat_full_over_half"] = round(out["flat_80k_s"] / out["flat_40k_s"], 2)
    return out


def time_parser_process(repeat: int = 3) -> dict[str, float]:
    """Parse the sample corpus in this process and in a parser process, both warm; and the child's start."""
    from ingest.loaders import check_file
    from ingest.pipeline import SAMPLE_CORPUS
    from ingest.worker import ParserProcess

    files = [p for p in sorted(SAMPLE_CORPUS.iterdir()) if _supported(check_file, p)]

    def one_pass(parser: ParserProcess) -> float:
        started = time.perf_counter()
        for path in files:
            parser.load(path, 2**26)
        return time.perf_counter() - started

    with ParserProcess(0.0) as inline:
        one_pass(inline)  # imports every loader's library once
        in_process = min(one_pass(inline) for _ in range(repeat))
    with ParserProcess(300.0) as child:
        first = one_pass(child)  # starts the child, which imports the libraries
        warm = min(one_pass(child) for _ in range(repeat))
    return {
        "files": len(files),
        "in_process_s": round(in_process, 3),
        "parser_process_s": round(warm, 3),
        "ratio": round(warm / in_process, 2),
        "child_start_s": round(first - warm, 2),
    }


def _supported(check: object, path: Path) -> bool:
    from ingest.errors import FileRejected

    try:
        check(path, 2**26)  # type: ignore[operator]
    except FileRejected:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2", help="name or path")
    parser.add_argument("--parser-only", action="store_true", help="only the parser process's cost (part 3)")
    parser.add_argument("--only", default="", help="ingest only the files whose label holds this text (part 1 only)")
    args = parser.parse_args()
    if args.parser_only:
        print(json.dumps(time_parser_process()))
        return

    results: dict[str, object] = {"python": platform.python_version(), "machine": platform.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        files = hostile_files(Path(tmp) / "files")
        rows = {}
        for n, (label, path) in enumerate(files.items()):
            if args.only.lower() not in label.lower():
                continue
            rows[label] = row = measure_ingest(path, Path(tmp) / f"home{n}", args.embedding_model)
            print(
                f"{label:<36} {row['rss_mb']:>5} MB main {row['parser_rss_mb']:>5} MB parser "
                f"{row['seconds']:>6} s  {row['report']}",
                flush=True,
            )
        results["ingest"] = rows
        if args.only:
            print(json.dumps(results))
            return
        results["html"] = html = time_html(Path(tmp))
        print(
            f"html: nested 1.1 MB {html['nested_1_1mb_s']} s; flat 80k paragraphs {html['flat_80k_s']} s, "
            f"40k {html['flat_40k_s']} s (ratio {html['flat_full_over_half']}, linear: ~2)"
        )
    results["parser_process"] = cost = time_parser_process()
    print(
        f"parsing {cost['files']} sample files, warm: {cost['parser_process_s']} s in the parser process, "
        f"{cost['in_process_s']} s in process (ratio {cost['ratio']}); starting the child: "
        f"{cost['child_start_s']} s once per run"
    )
    peak = max(max(int(r["rss_mb"]), int(r["parser_rss_mb"])) for r in rows.values())  # type: ignore[call-overload]
    print(f"largest peak RSS of one process: {peak} MB (target <= 1024)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
