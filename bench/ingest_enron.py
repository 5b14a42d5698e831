"""Benchmark: ingest the Enron folders end to end (parse, classify, match, store) with `inkless sync`.

Prints messages per second and the peak resident memory of the sync process (and of its parser
workers), for a subset and for the whole corpus, so growth with mailbox size is visible. When `mu`
(Debian maildir-utils) is installed, `mu index` runs on a flat Maildir copy of the same messages.

    python bench/ingest_enron.py [--corpus ../shared/corpora/enron] [--db URL] [--workers N]

The CRM is derived from the corpus itself (the most frequent external domains become companies and
their most frequent addresses contacts), so a realistic share of the mail is logged and matched.
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "enron"
OWNERS = {"lay-k": "kenneth.lay@enron.com", "skilling-j": "jeff.skilling@enron.com"}


def files_of(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def make_crm(corpus: Path, out: Path, companies: int = 300) -> None:
    parser = BytesHeaderParser(policy=compat32)
    domains: collections.Counter[str] = collections.Counter()
    people: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for f in files_of(corpus):
        with open(f, "rb") as fh:
            msg = parser.parse(fh)
        for _, addr in getaddresses([str(v) for h in ("from", "to", "cc") for v in (msg.get_all(h) or [])]):
            addr = addr.lower()
            if "@" not in addr or addr.endswith("enron.com"):
                continue
            dom = addr.rsplit("@", 1)[1]
            domains[dom] += 1
            people[dom][addr] += 1
    out.mkdir(parents=True, exist_ok=True)
    top = [d for d, _ in domains.most_common(companies) if "." in d]
    with open(out / "companies.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "domains"])
        for i, d in enumerate(top):
            w.writerow([f"co{i}", d.split(".")[0].title(), d])
    with open(out / "contacts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "first_name", "last_name", "email", "other_emails", "company_id", "title", "phone"])
        n = 0
        for i, d in enumerate(top):
            for addr, _ in people[d].most_common(5):
                local = addr.split("@")[0].replace("..", ".")
                first, _, last = local.partition(".")
                w.writerow([f"c{n}", first.title(), last.title() or "-", addr, "", f"co{i}", "", ""])
                n += 1
    with open(out / "deals.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "id",
                "name",
                "company_id",
                "stage",
                "status",
                "amount",
                "created_at",
                "close_date",
                "owner_email",
                "contact_ids",
            ]
        )
        for i, d in enumerate(top[:100]):
            w.writerow(
                [
                    f"d{i}",
                    f"{d.split('.')[0].title()} – Energy Supply Agreement",
                    f"co{i}",
                    "Proposal",
                    "open",
                    "10000",
                    "1990-01-01T00:00:00Z",
                    "2030-01-01",
                    "kenneth.lay@enron.com",
                    "",
                ]
            )


def inkless(*args: str, db: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {**os.environ, "INKLESS_DATABASE_URL": db, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=e, cwd=ROOT, check=True
    )


def run(corpus: Path, users: list[str], db: str, crm: Path, workers: int | None) -> tuple[int, float, float]:
    inkless("init", "--internal-domain", "enron.com", db=db)
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
    )
    n = 0
    for u in users:
        inkless("source", "add", "eml", str(corpus / u), "--owner", OWNERS.get(u, f"{u}@enron.com"), db=db)
        n += len(files_of(corpus / u))
    args = ["sync"] + (["--workers", str(workers)] if workers is not None else [])
    # a fresh wrapper process, so ru_maxrss covers this sync (and its parser workers) only
    wrapper = (
        "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(p.returncode)"
    )
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "INKLESS_DATABASE_URL": db, "INKLESS_NOW": "2002-01-01T00:00:00Z"},
    )
    elapsed = time.perf_counter() - t
    *errors, peak_kib = proc.stderr.strip().splitlines()
    for line in errors:
        print(line, file=sys.stderr)
    for line in proc.stdout.splitlines():
        print("   ", line.strip())
    # ru_maxrss of children is the largest single descendant (the sync process or one worker), in KiB
    return n, elapsed, int(peak_kib) / 1024


def mu_index(corpus: Path, users: list[str]) -> tuple[int, float] | None:
    mu = shutil.which("mu")
    if not mu:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        md = Path(tmp) / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (md / sub).mkdir(parents=True)
        n = 0
        for u in users:
            for f in files_of(corpus / u):
                shutil.copy(f, md / "cur" / f"{n}.bench:2,S")
                n += 1
        home = Path(tmp) / "mu"
        subprocess.run([mu, "init", f"--maildir={md}", f"--muhome={home}"], check=True, capture_output=True)
        t = time.perf_counter()
        subprocess.run([mu, "index", f"--muhome={home}"], check=True, capture_output=True)
        return n, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file per run)")
    ap.add_argument("--workers", type=int)
    args = ap.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus not found: {args.corpus}")
    with tempfile.TemporaryDirectory() as tmp:
        crm = Path(tmp) / "crm"
        make_crm(args.corpus, crm)
        print(f"{'run':<28}{'messages':>10}{'seconds':>10}{'msgs/s':>10}{'peak RSS MiB':>14}")
        for label, users in (("skilling-j only", ["skilling-j"]), ("lay-k + skilling-j", ["lay-k", "skilling-j"])):
            db = args.db or f"sqlite:///{Path(tmp) / (label.split()[0] + '.db')}"
            if args.db and args.db.startswith("postgresql"):
                _reset_pg(args.db)
            n, secs, rss = run(args.corpus, users, db, crm, args.workers)
            print(f"{'inkless sync, ' + label:<28}{n:>10}{secs:>10.1f}{n / secs:>10.0f}{rss:>14.0f}")
        res = mu_index(args.corpus, ["lay-k", "skilling-j"])
        if res:
            n, secs = res
            print(f"{'mu index (same messages)':<28}{n:>10}{secs:>10.1f}{n / secs:>10.0f}{'':>14}")
        else:
            print("mu not installed (apt-get install maildir-utils) — reference: mu index ≈ 830 msgs/s here")


def _reset_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


if __name__ == "__main__":
    main()
