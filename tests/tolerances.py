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


def assert_close(got, want, reduction_len: int = 1, what: str = "", magnitude: float = 1.0):
    """Each element within ``f32_atol(reduction_len, magnitude)``, scaled by |want| beyond 1."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite], err_msg=what)  # inf, nan in place
    err = np.abs(got[finite].astype(np.float64) - want[finite])
    allowed = f32_atol(reduction_len, max(magnitude, 1.0)) * np.maximum(1.0, np.abs(want[finite]))
    bad = err > allowed
    assert not bad.any(), (f"{what}: {bad.sum()} of {err.size} elements off, worst error "
                           f"{err.max():.3g} (allowed {allowed[np.argmax(err)]:.3g})")


# End-to-end, against onnxruntime: the bound for real models (outputs in 0..1).
MODEL_ATOL = 1e-3
