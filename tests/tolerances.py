"""Tolerances for float kernels, derived from the reduction length, written once."""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


def f32_atol(reduction_len: int, magnitude: float = 1.0) -> float:
    """Absolute tolerance for a float32 sum of ``reduction_len`` terms of size ``magnitude``.

    Rounding grows at most linearly in the number of terms (reassociated sums typically like its
    square root); 4 ulps of slack cover the epilogue (bias, activation, residual).
    """
    return EPS32 * (reduction_len + 4) * max(magnitude, 1e-30)


def assert_f32_close(actual, expected, reduction_len: int = 1, what: str = "") -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    magnitude = float(np.abs(expected).max()) if expected.size else 1.0
    atol = f32_atol(reduction_len, max(magnitude, 1.0))
    err = float(np.abs(actual.astype(np.float64) - expected).max()) if expected.size else 0.0
    assert err <= atol, f"{what}: max abs error {err:.3g} > tolerance {atol:.3g}"


# End-to-end, against onnxruntime: the bound for real models (outputs in 0..1).
MODEL_ATOL = 1e-3
