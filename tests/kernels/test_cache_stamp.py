"""The kernel cache's validity covers all of kernels/ (kernels/config.py): a cached kernel holds
the code of the jit functions it calls in other files, so editing activation.py must invalidate
every cached conv kernel, not only activation.py's own functions."""
from numba.core.caching import CompileResultCacheImpl

from kernels import config, f32_dwconv2d


def test_a_kernels_stamp_covers_the_package():
    impl = CompileResultCacheImpl(f32_dwconv2d._dw_source(False))
    stamp = impl.locator.get_source_stamp()
    assert isinstance(stamp, tuple) and stamp[1] == config.PACKAGE_STAMP


def test_the_package_stamp_changes_with_any_kernels_file(tmp_path, monkeypatch):
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = 1\n")
    monkeypatch.setattr(config, "KERNELS_DIR", str(tmp_path))
    before = config._package_stamp()
    (tmp_path / "b.py").write_text("x = 2\n")
    assert config._package_stamp() != before


def _outside():
    return 1


def test_functions_outside_kernels_keep_numbas_stamp():
    stamp = CompileResultCacheImpl(_outside).locator.get_source_stamp()
    assert not isinstance(stamp, tuple)
