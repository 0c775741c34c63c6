"""Builds the tutorial notebooks from their Python sources.

Each tutorial is written as a plain Python script in `tutorials/src/`, split
into cells by `# %%` lines (`# %% [markdown]` starts a markdown cell whose
lines are comments). One code cell per tutorial is marked
`# %% tags=["parameters"]`, as jupytext writes a tagged cell: it holds the run
sizes, which the tests override papermill-style. This script turns each source
into `tutorials/<name>.ipynb` and, unless --no-execute is given, runs it top to
bottom in a fresh "python3" kernel inside a scratch directory (so nothing the
notebook writes lands in the repository) and saves the outputs.

        python tutorials/_build.py                    # all tutorials
        python tutorials/_build.py 01 03              # names starting with 01, 03
        python tutorials/_build.py --no-execute       # sources -> notebooks only

`tests/test_tutorials.py` executes the committed notebooks and checks that
they match their sources, so rebuild after editing a source.
"""

import argparse
import json
import os
import pathlib
import re
import sys
import tempfile
import time

import nbformat

HERE = pathlib.Path(__file__).resolve().parent
SOURCES = HERE / "src"
KERNEL_NAME = "python3"
_MARKER = "# %%"


def sources():
    """The tutorial sources, sorted by name."""
    return sorted(SOURCES.glob("[0-9][0-9]_*.py"))


def notebook_path(source):
    """`src/01_x.py` -> `01_x.ipynb` beside this script."""
    return HERE / (pathlib.Path(source).stem + ".ipynb")


def parse_cells(text):
    """Splits a percent-format script into [(kind, source, tags)] cells.

    Args:
        text: the script; `# %%` starts a code cell, `# %% [markdown]` a
            markdown cell whose lines are comments ("# " is stripped), and
            `# %% tags=["a", "b"]` a code cell with those tags.

    Returns:
        A list of ("code" | "markdown", source, [tags]) triples, blank cells
        dropped.

    Raises:
        ValueError: if a markdown cell holds a line that is not a comment, or
            a marker line is not one of the forms above.
    """
    cells, kind, tags, lines = [], None, [], []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind is not None and body.strip():
            cells.append((kind, body, tags))

    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(_MARKER):
            flush()
            kind, tags = _parse_marker(line, number)
            lines = []
        elif kind == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(
                    f"Expected comment lines in a markdown cell. Received: line "
                    f"{number}: {line!r}")
            lines.append(line[2:] if line.startswith("# ") else line[1:])
        elif kind == "code":
            lines.append(line)
    flush()
    return cells


def _parse_marker(line, number):
    """`# %%` line -> (kind, tags)."""
    rest = line[len(_MARKER):].strip()
    if rest == "[markdown]":
        return "markdown", []
    if not rest:
        return "code", []
    match = re.fullmatch(r"tags=(\[.*\])", rest)
    try:
        tags = json.loads(match.group(1)) if match else None
    except json.JSONDecodeError:
        tags = None
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError(f"Expected `# %%`, `# %% [markdown]` or `# %% tags=[\"...\"]`. "
                         f"Received: line {number}: {line!r}")
    return "code", tags


def to_notebook(source):
    """Reads a source script and returns an unexecuted `NotebookNode`."""
    cells = parse_cells(pathlib.Path(source).read_text())
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(body) if kind == "markdown"
                else nbformat.v4.new_code_cell(body, metadata={"tags": tags} if tags else {})
                for kind, body, tags in cells]
    # Stable ids keep rebuilt notebooks diffable.
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index:02d}"
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb, workdir, timeout=600):
    """Runs every cell of `nb` in a fresh kernel whose cwd is `workdir`."""
    from nbclient import NotebookClient
    # TensorFlow's C++ start-up lines ("Could not find cuda drivers", ...)
    # describe the build machine, not the tutorial; leave them on the
    # kernel's stderr instead of saving them into the notebook.
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME,
                            record_timing=False,
                            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return nb


def build(source, run=True, timeout=600):
    """Writes the notebook for one source, executed unless `run` is False.

    Returns:
        Seconds spent executing (0 when not run).
    """
    nb = to_notebook(source)
    elapsed = 0.0
    if run:
        with tempfile.TemporaryDirectory(prefix="n2n-tutorial-") as workdir:
            began = time.perf_counter()
            execute(nb, workdir, timeout)
            elapsed = time.perf_counter() - began
        # The language version is the executing kernel's; keep only the name
        # so that rebuilding on another Python does not churn the file.
        nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    nbformat.write(nb, notebook_path(source))
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="prefixes of sources to build")
    parser.add_argument("--no-execute", action="store_true",
                        help="write notebooks without running them")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds allowed per cell")
    args = parser.parse_args(argv)
    chosen = [s for s in sources()
              if not args.names or any(s.stem.startswith(n) for n in args.names)]
    if not chosen:
        parser.error(f"Expected names matching sources in {SOURCES}. "
                     f"Received: {args.names}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for source in chosen:
        elapsed = build(source, run=not args.no_execute, timeout=args.timeout)
        print(f"{notebook_path(source).name}: "
              + (f"executed in {elapsed:.0f}s" if elapsed else "written"),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
