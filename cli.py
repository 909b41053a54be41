"""The ``lazyfuse`` command: ``dump`` prints a model's IR, ``viz`` draws it, ``bench`` benchmarks.

Kept thin: models load in :mod:`lazyfuse.frontends.loader`, graphs are built and rendered in
:mod:`lazyfuse.viz`, benchmarks run in :mod:`lazyfuse.bench.command`.  User mistakes print one
``lazyfuse: error: ...`` message on stderr and exit with 2 (usage) or 1 (model/compile errors);
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lazyfuse.errors import LazyFuseError

PROG = "lazyfuse"

_MODEL_HELP = ("the model: path/to/file.py:factory, package.module:factory, or model.onnx; the "
               "factory is a Module instance, a Module class (built with no arguments) or a function "
               "returning a Module (lazyfuse.nn or torch.nn)")

EXPORT_EPILOG = """\
examples:
  lazyfuse export examples/mlp.py:MLPWithBN --input N,784 -o mlp.onnx
  lazyfuse export examples/torch_models.py:TorchMLPWithBN --input N,784 -o mlp.onnx --opset 17
"""

DUMP_EPILOG = """\
examples:
  lazyfuse dump examples/mlp.py:MLPWithBN --input N,784
  lazyfuse dump examples/mlp.py:MLPWithBN --input N,784 --stage optimized --mark-dims
  lazyfuse dump examples/mlp.py:MLPWithBN --input N,784 --print-after all
  lazyfuse dump examples/mlp.py:MLPWithBN --input N,784 --format json
  lazyfuse dump examples/mlp.py:MLPWithBN --input N,784 --summary
  lazyfuse dump lazyfuse.examples.mlp:SimpleNet --input 32,20 --backend-source

--mark-dims: 784 is a declared size, N a symbol from --input, ? a lazy size not resolved yet, and
256* a size that was ? after tracing and was resolved by shape inference.
--print-after prints '// ----- IR after <pass> -----' and the IR on stderr after each pass.
"""

VIZ_EPILOG = """\
examples:
  lazyfuse viz examples/mlp.py:MLPWithBN --input N,784 -o mlp.svg
  lazyfuse viz examples/mlp.py:MLPWithBN --input N,784 --stage optimized -o mlp.html
  lazyfuse viz lazyfuse.examples.mlp:DynamicNetwork --input 64,20 -o net.png

The format follows the file name: .svg, .png, .html (one self-contained page; hover a node to see
its IR line) or .dot (Graphviz source, no Graphviz needed).  Pictures are laid out by Graphviz's
dot: $LAZYFUSE_DOT if set, else graphviz-pure (pip install 'lazyfuse[viz]'), else a system dot.
"""


class UsageError(Exception):
    """A command-line mistake (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line ``lazyfuse: error: ...`` messages (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_input_args(p: argparse.ArgumentParser) -> None:
    """MODEL, ``--input``, ``--dtype`` and ``--debug``: what every model command takes."""
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--input", "-i", dest="inputs", action="append", metavar="DIMS", default=[],
                   help="an input's shape, dims separated by commas: ints or symbol names (N,784); "
                        "repeat for several inputs (an ONNX file's declared shapes are the default)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="element type of the inputs (default: float32)")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    _add_input_args(p)
    p.add_argument("--stage", choices=("traced", "inferred", "optimized"), default=None,
                   help="traced (lazy dims are ?), inferred (after shape inference; the default) or "
                        "optimized (after the cpu pipeline, fusion included)")
    p.add_argument("--print-after", metavar="PASS|all", default=None,
                   help="print the IR (on stderr) after this pass; a comma list or 'all'")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lazyfuse`` command."""
    parser = _Parser(prog=PROG, description="Trace, inspect and draw lazyfuse models.",
                     epilog="run 'lazyfuse COMMAND --help' for a command's options and examples")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    dump = sub.add_parser("dump", help="print a model's IR (text, JSON or DOT)", formatter_class=fmt,
                          description="Trace MODEL on the --input specs and print its IR.",
                          epilog=DUMP_EPILOG)
    _add_model_args(dump)
    dump.add_argument("--format", "-f", choices=("text", "json", "dot"), default="text",
                      help="text IR (default), JSON, or Graphviz DOT (the picture viz draws)")
    dump.add_argument("--mark-dims", action="store_true",
                      help="mark sizes resolved by shape inference (256*) and print a legend line")
    what = dump.add_mutually_exclusive_group()
    what.add_argument("--summary", action="store_true",
                      help="per-layer output shapes and parameter counts, before any allocation")
    what.add_argument("--backend-source", nargs="?", const="cpu", choices=("cpu", "cuda"), default=None,
                      metavar="BACKEND",
                      help="print the Numba code the cpu (default) or cuda backend generates for the "
                           "optimized graph (cuda: without compiling it, no GPU needed)")

    viz = sub.add_parser("viz", help="draw a model's graph (.svg .png .html .dot)", formatter_class=fmt,
                         description="Trace MODEL on the --input specs and draw its graph.",
                         epilog=VIZ_EPILOG)
    _add_model_args(viz)
    viz.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="output file: .svg, .png, .html or .dot")
    viz.add_argument("--title", default=None, help="picture title (default: graph name and stage)")

    export = sub.add_parser("export", help="write a model as an ONNX file", formatter_class=fmt,
                            description="Resolve MODEL's lazy sizes from the --input specs and write it as "
                                        "ONNX (inference semantics: BatchNorm uses its running statistics).",
                            epilog=EXPORT_EPILOG)
    _add_input_args(export)  # symbol names in --input become ONNX dim_params
    export.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")

    from lazyfuse.bench import command as bench_command

    bench = sub.add_parser("bench", help="benchmark lazyfuse against NumPy, torch and more",
                           formatter_class=fmt, description=bench_command.DESCRIPTION,
                           epilog=bench_command.EPILOG)
    bench_command.add_arguments(bench)
    return parser


def _version() -> str:
    from lazyfuse import __version__

    return __version__


# ------------------------------------------------------------------------------------ commands
def _model_and_specs(args: argparse.Namespace) -> tuple[object, list]:
    """The loaded MODEL and its input specs: ``--input``, or the shapes an ONNX file declares."""
    from lazyfuse.frontends.loader import load_model

    if not args.inputs and args.model.lower().endswith(".onnx"):
        model = load_model(args.model)
        declared = list(getattr(model, "input_specs", ()) or ())
        if not declared:
            raise UsageError(f"{args.model} declares no input shapes; give them with --input, e.g. "
                             "--input N,784")
        return model, declared
    specs = _specs(args)
    return load_model(args.model), specs


def _specs(args: argparse.Namespace) -> list:
    from lazyfuse.frontends.loader import InputSpecError, parse_input

    if not args.inputs:
        raise UsageError("at least one --input is required, e.g. --input N,784 (an ONNX file that "
                         "declares its input shapes needs none)")
    try:
        return [parse_input(text, args.dtype) for text in args.inputs]
    except InputSpecError as exc:
        raise UsageError(f"--input: {exc}") from None


def _print_after(args: argparse.Namespace, stage: str) -> set[str] | str:
    from lazyfuse.viz.stages import stage_passes

    if args.print_after is None:
        return set()
    names = {p.strip() for p in args.print_after.split(",") if p.strip()}
    if not names:
        raise UsageError("--print-after needs a pass name or 'all'")
    if "all" in names:
        return "all"
    passes = stage_passes(stage)
    unknown = sorted(names - set(passes))
    if unknown:
        known = ", ".join(passes) if passes else "none (the traced stage runs no passes)"
        raise UsageError(f"--print-after: {', '.join(unknown)} is not run at stage {stage}; "
                         f"passes at this stage: {known}")
    return names


def _load(args: argparse.Namespace, stage: str, backend_source: bool | str = False):
    from lazyfuse.viz.stages import build_stage

    print_after = _print_after(args, stage)
    model, specs = _model_and_specs(args)
    return build_stage(model, specs, stage, print_after=print_after, backend_source=backend_source)


def cmd_dump(args: argparse.Namespace) -> int:
    """``lazyfuse dump``."""
    if args.summary:
        if args.stage or args.print_after or args.format != "text":
            raise UsageError("--summary prints a table; it takes no --stage, --print-after or --format")
        import lazyfuse as lf

        model, specs = _model_and_specs(args)
        print(lf.summary(model, *specs))
        return 0
    if args.backend_source:
        if args.stage not in (None, "optimized"):
            raise UsageError("--backend-source shows the optimized graph's code; drop --stage or use "
                             "--stage optimized")
        print(_load(args, "optimized", backend_source=args.backend_source).source, end="")
        return 0
    stage = args.stage or "inferred"
    if args.mark_dims and args.format != "text":
        raise UsageError("--mark-dims applies to --format text only")
    result = _load(args, stage)
    if args.format == "json":
        print(result.graph.to_json(indent=2))
    elif args.format == "dot":
        from lazyfuse.viz import graph_to_dot

        print(graph_to_dot(result.graph, traced=result.traced, title=_title(result)), end="")
    elif args.mark_dims:
        from lazyfuse.viz import format_graph_marked, lazy_marks

        print(format_graph_marked(result.graph, lazy_marks(result.traced, result.graph)))
    else:
        print(result.graph)
    return 0


def _title(result) -> str:
    after = f" (after {', '.join(result.passes)})" if result.passes else ""
    return f"@{result.graph.name}: {result.stage}{after}"


def cmd_viz(args: argparse.Namespace) -> int:
    """``lazyfuse viz``."""
    from lazyfuse.viz import OUTPUT_FORMATS, render

    out = Path(args.output)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"-o {args.output}: the file name must end in .svg, .png, .html or .dot")
    if out.parent != Path("") and not out.parent.is_dir():
        raise UsageError(f"-o {args.output}: folder {out.parent} does not exist")
    result = _load(args, args.stage or "inferred")
    data = render(result.graph, fmt, traced=result.traced, title=args.title or _title(result))
    out.write_bytes(data)
    print(f"wrote {out} ({len(data):,} bytes)", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``lazyfuse export``."""
    import lazyfuse as lf

    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"-o {args.output}: the file name must end in .onnx")
    if out.parent != Path("") and not out.parent.is_dir():
        raise UsageError(f"-o {args.output}: folder {out.parent} does not exist")
    model, specs = _model_and_specs(args)
    proto = lf.export_onnx(model, tuple(specs), out, opset=args.opset)
    print(f"wrote {out} ({out.stat().st_size:,} bytes; {len(proto.graph.node)} nodes, opset {args.opset})",
          file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``lazyfuse bench`` (see :mod:`lazyfuse.bench.command`)."""
    from lazyfuse.bench import command

    return command.run(args)


COMMANDS = {"dump": lambda args: cmd_dump(args), "viz": lambda args: cmd_viz(args), "bench": cmd_bench,
            "export": lambda args: cmd_export(args)}


# ------------------------------------------------------------------------------------ main
def _fail(message: str) -> None:
    first, *rest = str(message).strip().splitlines() or [""]
    print(f"{PROG}: error: {first}", file=sys.stderr)
    for line in rest:
        print(f"  {line}", file=sys.stderr)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit status of argparse's own exits (--help, --version)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0


def _exit_message(args: argparse.Namespace | None, exc: SystemExit) -> str:
    model = getattr(args, "model", None) or "the model"
    return (f"{model}: the model's code called sys.exit({exc.code!r}) while it was being loaded or "
            "traced; a model file must define the model, not exit")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LAZYFUSE_DEBUG", "") not in ("", "0")
    parser = build_parser()
    args = None
    try:
        args = _parse(parser, argv)
        if isinstance(args, int):  # --help or --version printed
            return args
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return COMMANDS[args.command](args)
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        _fail(str(exc))
        return 2
    except LazyFuseError as exc:
        if debug:
            traceback.print_exc()
        _fail(str(exc))
        return 1
    except SystemExit as exc:  # user code exited while the model was loaded or traced
        if debug:
            traceback.print_exc()
        _fail(_exit_message(args, exc))
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lazyfuse dump ... | head`
        sys.stderr.close()
        return 0
    except OSError as exc:
        if debug:
            traceback.print_exc()
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return 1
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if debug:
            traceback.print_exc()
        _fail(f"unexpected {type(exc).__name__}: {exc}" + ("" if debug else
              "\n(this may be a lazyfuse bug; run again with --debug for the traceback)"))
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
