"""Image files as model inputs and outputs: the image input found by shape and dtype, loaded
in its layout and scale, and `mobile-engine run --input --output` end to end against PIL."""
import numpy as np
import pytest
from onnx import TensorProto, helper
from PIL import Image

import mobile_engine as me
from mobile_engine import cli
from mobile_engine.errors import InputError
from mobile_engine.images import ImageInput, image_input, load_image, require_image_input


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)).save(path)
    return path


def _resized(path, h, w) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR))


@pytest.mark.parametrize("inputs, want", [
    ([("style", (1, 26), "float32"), ("image", (1, 3, 8, 10), "float32")],
     ImageInput("image", (1, 3, 8, 10), "float32", "nchw")),
    ([("content", (1, 8, 10, 3), "float32")], ImageInput("content", (1, 8, 10, 3), "float32",
                                                        "nhwc")),
    ([("x", (1, 8, 10, 3), "uint8")], ImageInput("x", (1, 8, 10, 3), "uint8", "nhwc")),
    ([("x", (1, 8, 10, 3), "int32"), ("y", (1, 4, 8, 10), "float32")], None),
])
def test_image_input_by_shape_and_dtype(inputs, want):
    assert image_input(inputs) == want


def test_no_image_input_is_a_clear_error():
    with pytest.raises(InputError, match=r"--input needs an image input .* x float32 \[1, 4]"):
        require_image_input([("x", (1, 4), "float32")], "--input")


@pytest.mark.parametrize("layout, dtype", [("nchw", "float32"), ("nhwc", "float32"),
                                           ("nhwc", "uint8"), ("nchw", "uint8")])
def test_load_image_layout_and_scale(photo, layout, dtype):
    shape = (2, 3, 8, 10) if layout == "nchw" else (2, 8, 10, 3)
    x = load_image(str(photo), ImageInput("x", shape, dtype, layout))
    assert x.shape == shape and x.dtype == np.dtype(dtype)
    hwc = _resized(photo, 8, 10)
    want = hwc if dtype == "uint8" else hwc.astype(np.float32) / 255
    for image in x:                                   # every image of the batch
        got = image.transpose(1, 2, 0) if layout == "nchw" else image
        np.testing.assert_array_equal(got, want)


def test_run_cli_with_a_uint8_nhwc_image_model(photo, tmp_path, capsys):
    """x uint8 [1, H, W, 3] -> float / 255: `run --input photo --output out.png` writes the
    resized photo back, byte for byte."""
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["xf", "k"], ["y"])]
    graph = helper.make_graph(
        nodes, "rescale", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 8, 10, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 10, 3])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [1 / 255])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    plan = tmp_path / "rescale.mplan"
    me.compile(model.SerializeToString()).save(plan)
    out = tmp_path / "out.png"
    assert cli.main(["run", str(plan), "--input", str(photo), "--output", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), _resized(photo, 8, 10))


def test_run_cli_refuses_an_input_that_is_no_image(tmp_path, photo, capsys):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["v"], ["y"])], "vector",
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
    plan = tmp_path / "vector.mplan"
    me.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
               .SerializeToString()).save(plan)
    assert cli.main(["run", str(plan), "--input", str(photo)]) == 2
    assert "--input needs an image input" in capsys.readouterr().err
