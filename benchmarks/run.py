#!/usr/bin/env python3
"""ndmptools against GNU tar and Linux dump/restore 0.4b47, side by side in one run (`make bench`).

    python benchmarks/run.py [--files 20000] [--repeat 5] [--quick] [--json] [--cases ...]
                             [--workdir DIR] [--keep]

Builds the team's corpus (benchmarks/corpus.py: FILES small files over 200
folders, 2 x 256 MiB of random data, a sparse file, links) on tmpfs, then
times, alternating the commands within each case (a first round not
counted: caches warm up), each command a fresh process as a user runs it:

  dump-small   level 0 of small/        vs tar -cf, Linux dump -0 (an ext4 image of small/)
  dump-large   level 0 of the two large files     vs the same two
  level1       a no-change level 1 of the corpus   vs tar --listed-incremental's second run
  restore      full restore of small/   vs tar -xf, Debian restore -r (of ndmptools' dump)
  dar          one file, the last in the dump, by direct access vs --no-direct and restore -x
  startup      ndmptools --help

ndmptools runs as a user runs it: the CLI, `-f` to a file on tmpfs, its
defaults (file history on: HIST=Y; the dump history updated; no snapshot
on tmpfs, so the dump reads the live tree). It prints the medians, the
ratios ndmptools / peer, and the peak resident memory of each dump (GNU
time's report of that one child, /usr/bin/time -f %M; without it, wait4's,
which counts this process's size too). Linux dump needs a whole ext4 file
system: the tree is copied into an image with mke2fs -d and attached
read-only to a loop device (root only; without one its rows are skipped).

Machines are shared and noisy: read the ratios of one run, not the seconds.
--files 1000000 scales the small files (to 256 B-1 KiB, --max-size) for the
memory figure: `--files 1000000 --cases dump-small --repeat 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from corpus import make_corpus  # noqa: E402

CASES = ("dump-small", "dump-large", "level1", "restore", "dar", "startup")
LINUX_DUMP = shutil.which("dump") or "/usr/sbin/dump"
LINUX_RESTORE = shutil.which("restore") or "/usr/sbin/restore"
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
RSS_FILE = os.path.join(tempfile.gettempdir(), f"ndmptools-bench-rss.{os.getpid()}")
# As an installed ndmptools runs: from cached bytecode (compiled once before the runs), whatever
# PYTHONDONTWRITEBYTECODE says here; ndmptools from this checkout, wherever it is installed.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)


@dataclass
class Run:
    seconds: float
    cpu: float
    rss_kib: int


@dataclass
class Command:
    """One side of a case: its command line, what to do before each run, and its runs."""

    name: str
    argv: list[str]
    prepare: object = None  # a callable run before each (untimed)
    cwd: str | None = None
    stdin: str | None = None
    runs: list[Run] = field(default_factory=list)

    def once(self) -> Run:
        if self.prepare is not None:
            self.prepare()
        argv = self.argv
        if GNU_TIME:  # its child's peak is that command's own: a child of ours would start at our size
            argv = [GNU_TIME, "-f", "%M", "-o", RSS_FILE, *argv]
        # stderr to a file, not a pipe: a chatty child (restore -r's warnings over a million files)
        # must not block on a full pipe while we wait for it
        with tempfile.TemporaryFile() as stderr:
            start = time.perf_counter()
            child = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env=ENV,
                stdin=subprocess.PIPE if self.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            if self.stdin is not None:
                child.stdin.write(self.stdin.encode())
                child.stdin.close()
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - start
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace").strip()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"{' '.join(self.argv)} failed ({code}): {errors[-600:]}")
        rss = usage.ru_maxrss
        if GNU_TIME:
            with open(RSS_FILE) as f:
                rss = int(f.read().split()[-1])
        return Run(seconds, usage.ru_utime + usage.ru_stime, rss)

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_kib(self) -> int:
        return max(r.rss_kib for r in self.runs)


@dataclass
class Row:
    case: str
    what: str
    ndmptools_s: float
    peer: str
    peer_s: float | None
    ratio: float | None
    target: str = ""
    met: bool | None = None
    note: str = ""


def alternate(commands: list[Command], repeat: int) -> None:
    """One round not counted, then ``repeat`` rounds, the order turned each round (drift cancels)."""
    for command in commands:
        command.once()
    for round_ in range(repeat):
        order = commands if round_ % 2 == 0 else commands[::-1]
        for command in order:
            command.runs.append(command.once())


def remove(*paths: str):
    def prepare() -> None:
        for path in paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)

    return prepare


def fresh_dir(path: str):
    def prepare() -> None:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)

    return prepare


class Bench:
    def __init__(self, args: argparse.Namespace, work: str) -> None:
        self.args = args
        self.work = work
        self.tree = os.path.join(work, "tree")
        self.small = os.path.join(self.tree, "small")
        self.large = os.path.join(work, "large")  # the two large files alone (hard links)
        self.out = os.path.join(work, "out")
        os.makedirs(self.out, exist_ok=True)
        self.loops: list[str] = []
        self.rows: list[Row] = []
        self.notes: list[str] = []

    # -- set-up ------------------------------------------------------------------

    def build(self) -> None:
        a = self.args
        if not os.path.exists(self.tree):
            print(
                f"corpus: {a.files} small files (256 B-{a.max_size} B) in 200 folders, "
                f"{a.large} x {a.large_mb} MiB, a sparse file, links",
                file=sys.stderr,
                flush=True,
            )
            make_corpus(self.tree, a.files, 200, a.large, a.large_mb, max_size=a.max_size)
        if not os.path.exists(self.large):
            os.makedirs(self.large)
            for i in range(a.large):
                os.link(os.path.join(self.tree, "large", f"big{i}"), os.path.join(self.large, f"big{i}"))

    def ndmptools(self, state: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "ndmptools", "--state-dir", os.path.join(self.work, state), *args]

    def loop_device(self, source: str, name: str) -> str | None:
        """An ext4 image of ``source`` (mke2fs -d), attached read-only: what Linux dump reads."""
        if os.geteuid() != 0 or not shutil.which("mke2fs") or not shutil.which("losetup"):
            return None
        image = os.path.join(self.work, f"{name}.img")
        if not os.path.exists(image):
            used = int(
                subprocess.run(["du", "-sk", source], capture_output=True, text=True).stdout.split()[0]
            )
            files = sum(len(f) + len(d) for _, d, f in os.walk(source)) + 64
            size_kib = int(used * 1.3) + files * 4 + 64 * 1024
            subprocess.run(
                [
                    "mke2fs",
                    "-q",
                    "-F",
                    "-t",
                    "ext4",
                    "-N",
                    str(files + 1024),
                    "-d",
                    source,
                    image,
                    f"{size_kib}k",
                ],
                check=True,
                capture_output=True,
            )
        found = subprocess.run(["losetup", "-f", "--show", "-r", image], capture_output=True, text=True)
        if found.returncode != 0:
            self.notes.append(f"no loop device for Linux dump: {found.stderr.strip()}")
            return None
        self.loops.append(found.stdout.strip())
        return self.loops[-1]

    def close(self) -> None:
        for loop in self.loops:
            subprocess.run(["losetup", "-d", loop], check=False)

    # -- cases -------------------------------------------------------------------------

    def row(
        self,
        case: str,
        what: str,
        ours: Command,
        peer: Command | None,
        target: float | None = None,
        note: str = "",
    ) -> None:
        ratio = ours.median / peer.median if peer is not None else None
        met = None if target is None or ratio is None else ratio <= target
        self.rows.append(
            Row(
                case,
                what,
                ours.median,
                peer.name if peer is not None else "",
                peer.median if peer is not None else None,
                ratio,
                f"<= {target:g}x" if target is not None else "",
                met,
                note,
            )
        )

    def dump_case(
        self, case: str, source: str, label: str, tar_target: float, dump_target: float | None
    ) -> None:
        out = os.path.join(self.out, "x")
        ours = Command(
            "ndmptools dump",
            self.ndmptools(f"state-{case}", "dump", "-q", "-f", out + ".dump", source),
            prepare=remove(out + ".dump"),
        )
        tar = Command(
            "tar -cf", ["tar", "-C", source, "-cf", out + ".tar", "."], prepare=remove(out + ".tar")
        )
        commands = [ours, tar]
        loop = self.loop_device(source, case)
        linux = None
        if loop is not None:
            linux = Command(
                "Linux dump -0",
                [LINUX_DUMP, "-0", "-q", "-b", "64", "-f", out + ".ldump", loop],
                prepare=remove(out + ".ldump"),
            )
            commands.append(linux)
        alternate(commands, self.args.repeat)
        self.row(case, f"level-0 dump, {label}", ours, tar, tar_target)
        if linux is not None:
            self.row(case, f"level-0 dump, {label}", ours, linux, dump_target)
        for peer in commands[1:]:
            self.rows.append(
                Row(
                    f"{case}-rss",
                    "peak RSS of the dump (MiB)",
                    ours.peak_kib / 1024,
                    peer.name,
                    peer.peak_kib / 1024,
                    None,
                    "<= 150 MiB" if case == "dump-small" else "",
                    ours.peak_kib <= 150 * 1024 if case == "dump-small" else None,
                )
            )
        for p in (out + ".dump", out + ".tar", out + ".ldump"):
            remove(p)()

    def level1(self) -> None:
        out = os.path.join(self.out, "l1")
        state = "state-level1"
        shutil.rmtree(os.path.join(self.work, state), ignore_errors=True)
        Command("level 0", self.ndmptools(state, "dump", "-q", "-f", out + ".0.dump", self.tree)).once()
        snar0, snar = out + ".snar0", out + ".snar"
        Command(
            "tar level 0",
            ["tar", f"--listed-incremental={snar0}", "-C", self.tree, "-cf", out + ".0.tar", "."],
        ).once()
        remove(out + ".0.dump", out + ".0.tar")()

        def tar_prepare() -> None:
            shutil.copyfile(snar0, snar)
            remove(out + ".tar")()

        ours = Command(
            "ndmptools dump -level 1",
            self.ndmptools(state, "dump", "-q", "-level", "1", "-f", out + ".dump", self.tree),
            prepare=remove(out + ".dump"),
        )
        tar = Command(
            "tar --listed-incremental",
            ["tar", f"--listed-incremental={snar}", "-C", self.tree, "-cf", out + ".tar", "."],
            prepare=tar_prepare,
        )
        alternate([ours, tar], self.args.repeat)
        self.row("level1", "no-change level 1, whole corpus", ours, tar, 1.0)
        remove(out + ".dump", out + ".tar", snar, snar0)()

    def restore(self) -> None:
        dump, tarball = os.path.join(self.out, "r.dump"), os.path.join(self.out, "r.tar")
        Command("dump", self.ndmptools("state-restore", "dump", "-q", "-f", dump, self.small)).once()
        Command("tar", ["tar", "-C", self.small, "-cf", tarball, "."]).once()
        dest = os.path.join(self.work, "dest")
        ours = Command(
            "ndmptools restore",
            self.ndmptools("state-restore", "restore", "-q", "-f", dump, "-D", dest),
            prepare=fresh_dir(dest),
        )
        tar = Command("tar -xf", ["tar", "-C", dest, "-xf", tarball], prepare=fresh_dir(dest))
        debian = Command(
            "Debian restore -r", [LINUX_RESTORE, "-r", "-y", "-f", dump], prepare=fresh_dir(dest), cwd=dest
        )
        alternate([ours, tar, debian], self.args.repeat)
        self.row("restore", "full restore, small/", ours, tar, 1.5)
        self.row("restore", "full restore, small/", ours, debian)
        shutil.rmtree(dest, ignore_errors=True)
        remove(dump, tarball)()

    def dar(self) -> None:
        dump = os.path.join(self.out, "dar.dump")
        state = "state-dar"
        Command("dump", self.ndmptools(state, "dump", "-q", "-f", dump, self.tree)).once()
        listing = subprocess.run(
            self.ndmptools(state, "--json", "restore", "-t", "--catalog", "-f", dump, "small"),
            capture_output=True,
            text=True,
            check=True,
            env=ENV,
        )
        files = [e for e in json.loads(listing.stdout) if e["type"] == "file"]
        last = max(files, key=lambda e: (e["volume"], e["record"]))["path"]
        dest = os.path.join(self.work, "dest")
        ours = Command(
            "ndmptools restore (DAR)",
            self.ndmptools(state, "restore", "-q", "-f", dump, "-D", dest, last),
            prepare=fresh_dir(dest),
        )
        scan = Command(
            "ndmptools restore --no-direct",
            self.ndmptools(state, "restore", "-q", "--no-direct", "-f", dump, "-D", dest, last),
            prepare=fresh_dir(dest),
        )
        debian = Command(
            "Debian restore -x",
            [LINUX_RESTORE, "-x", "-a", "-y", "-f", dump, "./" + last],
            prepare=fresh_dir(dest),
            cwd=dest,
        )
        alternate([ours, scan, debian], self.args.repeat)
        self.row("dar", f"one file ({last}), direct access", ours, scan, note="a full scan")
        self.row("dar", f"one file ({last}), direct access", ours, debian)
        shutil.rmtree(dest, ignore_errors=True)
        remove(dump)()

    def startup(self) -> None:
        ours = Command("ndmptools --help", [sys.executable, "-m", "ndmptools", "--help"])
        bare = Command("python -c pass", [sys.executable, "-c", "pass"])
        alternate([ours, bare], max(self.args.repeat, 5))
        self.row("startup", "ndmptools --help", ours, bare, note="the interpreter alone")

    # -- output ------------------------------------------------------------------------------

    def markdown(self) -> str:
        """The rows as the README's table."""
        lines = [
            "| what | ndmptools | peer | peer | ndmptools / peer | target |",
            "| --- | ---: | --- | ---: | ---: | --- |",
        ]
        for r in self.rows:
            mib = r.case.endswith("-rss")
            ours = f"{r.ndmptools_s:.0f} MiB" if mib else f"{r.ndmptools_s:.2f} s"
            peer = "" if r.peer_s is None else (f"{r.peer_s:.0f} MiB" if mib else f"{r.peer_s:.2f} s")
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
            verdict = "" if r.met is None else (" (met)" if r.met else " (not met)")
            lines.append(f"| {r.what} | {ours} | {r.peer} | {peer} | {ratio} | {r.target}{verdict} |")
        return "\n".join(lines)

    def table(self) -> str:
        lines = [
            f"{'case':<12} {'what':<44} {'ndmptools':>10} {'peer':<26} {'peer':>9} {'ratio':>7}  target",
        ]
        for r in self.rows:
            unit = " MiB" if r.case.endswith("-rss") else " s"
            ours = f"{r.ndmptools_s:.3f}{unit}" if unit == " s" else f"{r.ndmptools_s:.0f}{unit}"
            peer = (
                ""
                if r.peer_s is None
                else (f"{r.peer_s:.3f}{unit}" if unit == " s" else f"{r.peer_s:.0f}{unit}")
            )
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
            verdict = "" if r.met is None else ("met" if r.met else "NOT met")
            lines.append(
                f"{r.case:<12} {r.what[:44]:<44} {ours:>10} {r.peer[:26]:<26} {peer:>9} {ratio:>7}  "
                f"{r.target} {verdict} {r.note}".rstrip()
            )
        return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000, help="small files in the corpus")
    parser.add_argument(
        "--max-size", type=int, help="largest small file in bytes (default 8192; 1024 from 200,000 files)"
    )
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5, help="counted runs of each command (median)")
    parser.add_argument("--quick", action="store_true", help="2,000 files, 2 x 32 MiB, 3 runs: a smoke test")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--markdown", action="store_true", help="also print the table in Markdown (README)")
    parser.add_argument("--workdir", help="default: a new folder in /dev/shm (tmpfs), removed at the end")
    parser.add_argument("--keep", action="store_true", help="leave the work directory behind")
    args = parser.parse_args()
    if args.quick:
        args.files, args.large_mb, args.repeat = min(args.files, 2000), 32, min(args.repeat, 3)
    if args.max_size is None:
        args.max_size = 8192 if args.files < 200_000 else 1024
    work = args.workdir or tempfile.mkdtemp(prefix="ndmptools-bench-", dir="/dev/shm")
    os.makedirs(work, exist_ok=True)
    bench = Bench(args, work)
    import click  # compiled with ndmptools: both load on every run

    sources = [os.path.join(REPO, "ndmptools"), os.path.dirname(click.__file__)]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *sources], check=True, stdout=subprocess.DEVNULL, env=ENV
    )
    try:
        bench.build()
        for case in args.cases:
            print(f"running {case} ...", file=sys.stderr, flush=True)
            if case == "dump-small":
                bench.dump_case(case, bench.small, f"{args.files} small files", 1.5, 1.0)
            elif case == "dump-large":
                bench.dump_case(case, bench.large, f"{args.large} x {args.large_mb} MiB", 1.0, None)
            elif case == "level1":
                bench.level1()
            elif case == "restore":
                bench.restore()
            elif case == "dar":
                bench.dar()
            elif case == "startup":
                bench.startup()
    finally:
        bench.close()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {"repeat": args.repeat, "files": args.files, "rows": [asdict(r) for r in bench.rows]},
                indent=2,
            )
        )
    else:
        print(f"medians of {args.repeat} alternating runs; ratio = ndmptools / peer (lower is better)")
        print(bench.table())
        for note in bench.notes:
            print(note)
        if args.markdown:
            print()
            print(bench.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
