"""Compile targets (``compile --target``): the plan records the CPU it is for and the tile each
step runs as there, packs conv weights for tiles that fit its registers, and still runs on any
CPU (refit, one note), matching onnxruntime on this machine."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.onnx_nets import _Net, random_feeds
from tests.tolerances import assert_close

ort = pytest.importorskip("onnxruntime")


def conv_net():
    """One conv of each tiled fp32 family: igemm (32 and 64 channels; the 64-channel one 1x1,
    where a 3x3 stride-1 conv would run Winograd), kdot (4 channels, stride 2) and the
    pixel-lane kernel (3 channels)."""
    n = _Net("targets", 7)
    x = n.input("image", (1, 3, 21, 35))
    y = n.op("Relu", n.conv(x, 3, 32, 3))
    y = n.op("Relu", n.conv(y, 32, 64, 1))
    y = n.conv(y, 64, 4, 3, stride=2)
    return n.model(n.conv(y, 4, 3, 3))


@pytest.fixture(scope="module")
def plans():
    import mobile_engine as me
    model = conv_net()
    return model, {t: me.compile(model, target=t)
                   for t in ("x86-64-v3", "x86-64-v4", "cortex-a76", "host")}


def tiles_by_kernel(plan) -> dict[str, str]:
    return {s["kernel"]: tile for s, tile in zip(plan.steps, plan.manifest["target"]["tiles"])
            if tile is not None}


def test_the_plan_records_the_target_and_its_tiles(plans):
    _, by = plans
    v3, v4, a76 = (by[t] for t in ("x86-64-v3", "x86-64-v4", "cortex-a76"))
    assert [p.manifest["target"]["vector"] for p in (v3, v4, a76)] == [[8, 16], [16, 32],
                                                                       [4, 32]]
    assert [p.manifest["target"]["int8_dot"] for p in (v3, v4, a76)] == ["portable", "portable",
                                                                         "sdot"]
    assert v3.manifest["provenance"]["target"] == "x86-64-v3"
    # AVX-512 holds 8 pixels of 32 channels or 4 of 64 in its 32 zmm; AVX2's 16 ymm and NEON's
    # 32 q registers hold 2 of 32 or 1 of 64, but 6 of 16: their plans pack 16-channel tiles
    t3, t4, t76 = tiles_by_kernel(v3), tiles_by_kernel(v4), tiles_by_kernel(a76)
    assert t4 == {**t4, "f32_conv2d_igemm_8x32_minmax": "8x32",
                  "f32_conv2d_igemm_4x64_minmax": "4x64"}
    assert "f32_conv2d_igemm_16x16_minmax" not in t4
    for narrow in (t3, t76):
        assert narrow["f32_conv2d_igemm_16x16_minmax"] == "6x16"
        assert not any(k.startswith("f32_conv2d_igemm") and not k.startswith(
            "f32_conv2d_igemm_16x16") for k in narrow), narrow
    # the few-channel kernels keep their ids (and weights): only their tiles differ
    assert [k for k in t3 if "igemm" not in k] == [k for k in t4 if "igemm" not in k]
    pix = next(k for k in t4 if k.startswith("f32_conv2d_pix"))
    assert (t4[pix], t3[pix], t76[pix]) == ("64x3", "16x3", "16x3")
    kdot = next(k for k in t4 if k.startswith("f32_conv2d_kdot4"))
    assert t4[kdot] != t76[kdot]


def test_plans_for_other_cpus_run_here_with_one_note(plans):
    """On this machine each plan gives onnxruntime's outputs; one for a CPU with other vector
    registers says, in one line, that its tiles were refit."""
    import mobile_engine as me
    from kernels import config
    model, by = plans
    feeds = random_feeds(model)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    here = config.vector_registers()
    for name, plan in by.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sess = me.Session(plan, threads=2)
        notes = [str(w.message) for w in caught if w.category is me.PlanTargetWarning]
        if tuple(plan.manifest["target"]["vector"]) == here:
            assert notes == [] and sess.target_note is None, (name, notes)
        else:
            assert len(notes) == 1 and "\n" not in notes[0], (name, notes)
            assert f"compiled for {name}" in notes[0] and "refit at load" in notes[0]
        got = sess.run(None, feeds)
        assert_close(got[0], want[0], 8 * 9, f"plan for {name}", float(np.abs(want[0]).max()))


def test_runs_as_mirrors_the_kernel_factories_here():
    """``runtime.tiles.runs_as`` for this CPU is what the kernel factories compile, for every
    tiled id of the kernel table."""
    from kernels import config, table
    from kernels import f32_conv2d as igemm
    from kernels import f32_conv2d_pix as pix
    from kernels.qu8_conv_common import VL as QVL
    from kernels.qu8_conv_common import host_isa
    from mobile_engine.runtime import tiles
    registers, dot = tiles.here()
    seen = set()
    for kernel, (row, f) in table.TABLE.items():
        got = tiles.runs_as(kernel, registers, dot)
        g = row.grammar
        if g.startswith(("f32_conv2d_igemm_", "f32_conv_transpose2d_igemm_")):
            want = f"{igemm.machine_rows(f['mr'], f['nr'])}x{f['nr']}"
        elif g.startswith("f32_conv2d_kdot4_"):
            want = f"{config.fit_rows(f['mr'], f['cg'] * igemm.VL)}x{f['lanes']}"
        elif g.startswith("f32_conv2d_pix"):
            want = f"{pix.VL * pix.machine_tile(f['co'], f['phases'])}x{f['co']}"
        elif g.startswith("qu8_conv2d_igemm_"):
            want = f"{config.fit_rows(f['mr'], f['nr'])}x{f['nr']}c4 {host_isa()}"
        elif g.startswith("qu8_conv2d_kdot16_"):
            want = f"{config.fit_rows(f['mr'], f['cg'] * QVL)}x{f['lanes']} {host_isa()}"
        else:
            want = None
        assert got == want, kernel
        seen.add(g.split("{")[0] if want else None)
    assert seen - {None} == {"f32_conv2d_igemm_", "f32_conv_transpose2d_igemm_",
                             "f32_conv2d_kdot4_", "f32_conv2d_pix", "qu8_conv2d_igemm_",
                             "qu8_conv2d_kdot16_"}, seen


def test_unknown_target_is_one_line_listing_the_known(tmp_path, capsys):
    import mobile_engine as me
    from mobile_engine.cli import main
    from mobile_engine.targets import names
    with pytest.raises(me.EngineError,
                       match="unknown target 'pentium': choose host, cortex-a53.*x86-64-v3"):
        me.compile(conv_net(), target="pentium")
    assert main(["compile", str(tmp_path / "never-read.onnx"), "-o", str(tmp_path / "t.mplan"),
                 "--target", "pentium"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--target pentium" in err[0] and all(n in err[0] for n in names())
    # a compile target is not always one the kernel bundle can be built for
    assert main(["compile", str(tmp_path / "never-read.onnx"), "-o", str(tmp_path / "t.mplan"),
                 "--target", "x86-64-v3", "--kernels"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--kernels --target x86-64-v3" in err[0], err


def test_inspect_shows_the_target_and_each_steps_tile(plans, tmp_path, capsys):
    from mobile_engine.cli import main
    _, by = plans
    path = by["cortex-a76"].save(tmp_path / "a76.mplan")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "target: cortex-a76 (aarch64, LLVM cortex-a76: 4 float lanes x 32 vector registers, " \
           "int8 dot product sdot)" in out
    assert "f32_conv2d_igemm_16x16_minmax" in out and "[6x16]" in out
    assert "on this machine: " in out


def test_a_damaged_target_record_is_refused_in_one_line(plans, tmp_path):
    import mobile_engine as me
    _, by = plans
    plan = by["host"]
    record = dict(plan.manifest["target"], tiles=["8x32"])
    bad = me.Plan(dict(plan.manifest, target=record), plan.blobs).save(tmp_path / "bad.mplan")
    with pytest.raises(me.PlanFormatError, match=r"target\.tiles: expected one tile"):
        me.Plan.load(bad)


def test_avx512_targets_pack_the_tiles_they_always_had():
    """With AVX-512's registers the target-aware choice is ``f32_conv2d.choose_tile``."""
    from kernels import f32_conv2d as igemm
    from mobile_engine.planning.cpu import compiling_for, igemm_tile
    with compiling_for((16, 32)):
        assert [igemm_tile(c) for c in range(1, 600)] == \
            [igemm.choose_tile(c) for c in range(1, 600)]
    with compiling_for((8, 16)):
        assert {igemm_tile(c) for c in (16, 24, 32, 64, 128, 256)} == {(16, 16)}
