"""Benchmark: how long the tool layer takes: building the registry, the Calculator on hostile input, a user tool
call through its worker process, and how close a timed-out call returns to its limit.

Run by hand: `OMP_NUM_THREADS=1 .venv/bin/python bench/tools.py [--fuzz 10500] [--calls 100]`. Prints one table.
These are the speed claims the tests used to assert with wall-clock limits (the tests now check only the
behaviour): `builtin_tools()` builds no index and loads no model (was < 1 s), the 10,500-input Calculator fuzz of
tests/test_tools_calculator.py (was < 40 s in all, < 1 s each), a user tool call in its worker process (was
< 20 ms; ~0.05 ms measured), and a call that holds the GIL or hangs is cut at its limit (was 0.9-2.5 s for 1 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from toolformer.calls import Call
from toolformer.paths import HOME_ENV
from toolformer.tools import builtin_tools, load_tools
from toolformer.tools.calculator import calculator_tool

TESTS = Path(__file__).resolve().parents[1] / "tests"

USER_TOOLS = '''
import os

def pid() -> int:
    """The process the tool runs in."""
    return os.getpid()

def hold(n: int) -> str:
    """One C call that keeps the GIL: sum(range(n))."""
    return str(sum(range(n)))

def spin(seconds: float) -> str:
    """Busy-loop in Python for `seconds`."""
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"
'''


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def registry_build(repeat: int) -> float:
    """Median seconds of `builtin_tools()` in an empty TOOLFORMER_HOME."""
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as home:
            os.environ[HOME_ENV] = home
            times.append(timed(builtin_tools)[0])
    return statistics.median(times)


def calculator_fuzz(n: int) -> tuple[float, float, float, int]:
    """(total s, p99 s, worst s, inputs) of the Calculator over the tests' hostile fuzz set."""
    sys.path.insert(0, str(TESTS))
    from test_tools_calculator import _hostile_inputs  # the very inputs the safety test runs

    calc = calculator_tool()
    inputs = _hostile_inputs(os.path.join(tempfile.gettempdir(), "pwned"), n)
    times = [timed(lambda: calc.run(Call("Calculator", text), timeout=1.0))[0] for text in inputs]
    return sum(times), statistics.quantiles(times, n=100)[98], max(times), len(inputs)


def user_tools(folder: Path) -> object:
    name = f"bench_tools_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(USER_TOOLS, encoding="utf-8")
    sys.path.insert(0, str(folder))
    return load_tools([f"{name}:{fn}" for fn in ("pid", "hold", "spin")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=10_500, help="Calculator fuzz inputs")
    parser.add_argument("--calls", type=int, default=100, help="user tool calls timed")
    parser.add_argument("--repeat", type=int, default=5, help="registry builds timed")
    args = parser.parse_args()

    rows = [("builtin_tools() build", f"{registry_build(args.repeat) * 1e3:.1f} ms (median)")]
    total, p99, worst, n = calculator_fuzz(args.fuzz)
    rows += [
        (f"Calculator fuzz, {n} inputs", f"{total:.1f} s in all, {n / total:.0f} inputs/s"),
        ("Calculator fuzz, per input", f"p99 {p99 * 1e3:.2f} ms, worst {worst * 1e3:.1f} ms"),
    ]
    with tempfile.TemporaryDirectory() as folder:
        reg = user_tools(Path(folder))
        try:
            reg.run(Call("pid"))  # the worker's start is not a call's cost
            per = [timed(lambda: reg.run(Call("pid")))[0] for _ in range(args.calls)]
            rows.append(
                ("user tool call (worker process)", f"{statistics.median(per) * 1e3:.3f} ms (median)")
            )
            held, out = timed(lambda: reg.run(Call("hold", str(10**12)), timeout=1.0))
            rows.append(("GIL-holding call, 1 s limit", f"returned after {held:.2f} s: {out.text}"))
            spun, out = timed(lambda: reg.run(Call("spin", "60"), timeout=0.3))
            rows.append(("spinning call, 0.3 s limit", f"returned after {spun:.2f} s: {out.text}"))
        finally:
            for tool in reg.values():
                getattr(tool.fn, "close", lambda: None)()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
