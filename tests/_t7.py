import numpy as np
from tests.test_tflite_importer import engine_run, litert_run
p = "/root/.cache/mobile-engine/models/pose_landmark_full.tflite"
data = open(p, "rb").read()
for seed, (lo, hi) in [(0, (-1, 1)), (1, (0, 1))]:
    x = np.random.default_rng(seed).uniform(lo, hi, (1, 256, 256, 3)).astype(np.float32)
    g, w = engine_run(p, {"input_1": x}), litert_run(data, {"input_1": x})
    for k in w:
        d = np.abs(g[k] - w[k]); span = float(w[k].max() - w[k].min())
        print(seed, k, w[k].shape, f"{d.max()/span:.2e}", np.unravel_index(d.argmax(), d.shape), float(w[k].max()), float(w[k].min()))
