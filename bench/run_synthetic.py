"""Run inkless end to end on a synthetic corpus (CRM, every rep's Maildir and calendar) and score it.

    python bench/run_synthetic.py ../shared/corpora/synthetic-dev/small [--db URL] [--json] [--keep DIR]

Uses the real command line (`inkless init`, `crm import`, `source add`, `sync`, `export`) with the
clock pinned to the corpus's meta.json "now", then bench/score_synthetic.py on the exports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from score_synthetic import format_report, score  # noqa: E402


def inkless(*args: str, db: str, now: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INKLESS_DATABASE_URL": db, "INKLESS_NOW": now}
    proc = subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"inkless {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def load(corpus: Path, db: str) -> tuple[str, float]:
    meta = json.loads((corpus / "meta.json").read_text())
    now = meta["now"]
    inkless("init", *[a for d in meta["internal_domains"] for a in ("--internal-domain", d)], db=db, now=now)
    crm = corpus / "crm"
    inkless(
        "crm",
        "import",
        "--companies",
        str(crm / "companies.csv"),
        "--contacts",
        str(crm / "contacts.csv"),
        "--deals",
        str(crm / "deals.csv"),
        db=db,
        now=now,
    )
    for box in meta["mailboxes"]:
        inkless("source", "add", "maildir", str(corpus / box["maildir"]), "--owner", box["owner"], db=db, now=now)
        inkless("source", "add", "ics", str(corpus / box["calendar"]), "--owner", box["owner"], db=db, now=now)
    t = time.perf_counter()
    inkless("sync", "--quiet", db=db, now=now)
    return now, time.perf_counter() - t


def run(corpus: Path, db: str, out_dir: Path) -> dict[str, Any]:
    now, secs = load(corpus, db)
    acts, ents = out_dir / "activities.jsonl", out_dir / "entities.jsonl"
    inkless("export", "activities", "--format", "jsonl", "--out", str(acts), db=db, now=now)
    inkless("export", "entities", "--format", "jsonl", "--out", str(ents), db=db, now=now)
    result = score(corpus, acts, ents)
    result["sync_seconds"] = round(secs, 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", type=Path, help="write the exports here instead of a temporary folder")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        db = args.db or f"sqlite:///{Path(tmp) / 'inkless.db'}"
        result = run(args.corpus, db, out_dir)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_report(result))
        print(f"sync took {result['sync_seconds']} s")


if __name__ == "__main__":
    main()
