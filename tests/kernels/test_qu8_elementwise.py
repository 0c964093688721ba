"""qu8 element-wise kernels (kernels/qu8_elementwise.py) bit-exact against kernels/reference_q8.py:
sizes with leftovers and several parallel blocks, zero points 0 and 255, saturation, ties."""
import numpy as np
import pytest

from kernels import qu8_elementwise as qe
from kernels import reference_q8 as rq

RNG = np.random.default_rng(5)
SIZES = [1, 13, 64, 1000, 3 * qe.BLOCK + 17]
# (sa, za, sb, zb, sy, zy, qmin, qmax)
ADD_PARAMS = [(0.02, 128, 0.03, 100, 0.04, 120, 0, 255), (0.1, 0, 0.1, 255, 0.05, 0, 0, 255),
              (0.013, 255, 0.7, 3, 0.9, 200, 200, 255),            # ReLU folded: qmin = zy
              (0.5, 7, 0.25, 250, 0.01, 128, 0, 255),               # saturates both ways
              (1.0, 0, 1.0, 0, 2.0, 0, 0, 255)]                     # every odd sum is a tie


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", ADD_PARAMS)
def test_add_requant(p, n, parallel):
    sa, za, sb, zb, sy, zy, qmin, qmax = p
    a = RNG.integers(0, 256, n).astype(np.uint8)
    b = RNG.integers(0, 256, n).astype(np.uint8)
    a[:2], b[:2] = 255, 0
    expected = rq.qu8_add_reference(a, sa, za, b, sb, zb, sy, zy, qmin, qmax)
    got = qe.qu8_add(a, sa, za, b, sb, zb, sy, zy, qmin, qmax, parallel=parallel)
    np.testing.assert_array_equal(got, expected)


def test_add_ties_round_to_even_and_in_place():
    a = np.arange(256, dtype=np.uint8)
    b = np.zeros(256, np.uint8)
    got = qe.qu8_add(a, 1.0, 0, b, 1.0, 0, 2.0, 0)
    np.testing.assert_array_equal(got, np.round(np.arange(256) / 2))    # numpy: half to even
    assert got[1] == 0 and got[3] == 2 and got[5] == 2
    # out aliasing a: the binder may run the add in place
    a4 = RNG.integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)
    b4 = RNG.integers(0, 256, (2, 5, 7, 3)).astype(np.uint8)
    expected = rq.qu8_add_reference(a4, 0.02, 128, b4, 0.03, 100, 0.04, 120)
    ma, mb = rq.add_multipliers(0.02, 0.03, 0.04)
    flat = a4.reshape(-1)
    qe.kernel(qe.ADD_ID, False)(flat, b4.reshape(-1), flat, 128, 100, ma, mb, 120, 0, 255)
    np.testing.assert_array_equal(a4, expected)


def test_add_refuses_broadcast():
    with pytest.raises(ValueError, match="same-shape"):
        qe.qu8_add(np.zeros(3, np.uint8), 1, 0, np.zeros(1, np.uint8), 1, 0, 1, 0)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("s,z", [(0.02, 128), (0.1, 0), (1 / 255, 255), (0.5, 3), (3.0, 17)])
def test_quantize(s, z, n, parallel):
    x = (RNG.standard_normal(n) * 3).astype(np.float32)
    x[:4] = [np.inf, -np.inf, 1e30, -0.0][:min(4, n)]
    expected = rq.quantize_u8_reference(x, s, z)
    got = qe.quantize_u8(x, s, z, parallel=parallel)
    np.testing.assert_array_equal(got, expected)


def test_quantize_is_multiply_by_rounded_reciprocal_with_ties_to_even():
    got = qe.quantize_u8(np.array([0.5, 1.5, 2.5, -0.5, 300.0, -1.0], np.float32), 1.0, 0)
    np.testing.assert_array_equal(got, [0, 2, 2, 0, 255, 0])
    # 1/0.3 rounds in float32: x * f32(1/s), not x / s, is the contract
    x = np.linspace(0, 76, 100001, dtype=np.float32)
    got = qe.quantize_u8(x, 0.3, 0)
    np.testing.assert_array_equal(got, np.clip(np.rint(x * np.float32(1 / 0.3)), 0, 255))


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("s,z", [(0.02, 128), (0.1, 0), (1 / 255, 255)])
def test_dequantize(s, z, n, parallel):
    q = RNG.integers(0, 256, n).astype(np.uint8)
    q[0] = 255
    expected = rq.dequantize_u8_reference(q, s, z)
    got = qe.dequantize_u8(q, s, z, parallel=parallel)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got, (q.astype(np.float64) - z) * s, rtol=1e-6)


def test_kernel_table():
    from kernels import table
    for row in (r for r in table.ROWS if r.family == "qu8_elementwise" and r.entry):
        (kid,) = row.ids
        entry, reference = row.entry, row.reference()
        assert kid.startswith("qu8_")
        if kid == qe.ADD_ID:
            a, b = (RNG.integers(0, 256, (3, 4, 5)).astype(np.uint8) for _ in range(2))
            args = (a, 0.1, 3, b, 0.2, 250, 0.3, 9)
        elif kid == qe.QUANTIZE_ID:
            args = (RNG.standard_normal((3, 4, 5)).astype(np.float32), 0.05, 99)
        else:
            args = (RNG.integers(0, 256, (3, 4, 5)).astype(np.uint8), 0.05, 99)
        got = entry(*args)
        assert got.shape == (3, 4, 5)
        np.testing.assert_array_equal(got, reference(*args))
