"""Kernel machine code from a verified bundle: Numba's cache, served from memory.

A kernel bundle (``NAME.kernels/`` beside a plan, ``mobile_engine/runtime/bundle.py``) holds the
files Numba's cache wrote when the plan's kernels were compiled for the target: per function an
index (``<module>.<function>-<line>.py311.nbi``) and one data file per compiled signature
(``...<n>.nbc``). Both are pickles, and unpickling runs code, so nothing here reads a file:
the runtime reads the bundle, checks every file's sha256 against the bundle's manifest (whose
own sha256 the plan records) and hands over the verified bytes (``add``). Only those bytes are
ever unpickled, so a file changed after the check is never seen.

``KernelCache`` is the cache of every kernel dispatcher (``config.jit``/``pjit``): it answers a
load from the bundles first, under the same key Numba's own cache uses (the signature, the
target triple, CPU name and features, and the function's bytecode), with the index's source
stamp (this file's kernels, ``config._stamped``) checked as Numba checks it; then from Numba's
ordinary cache; else the kernel compiles. Nothing loaded from a bundle is written back.

A kernel's cache file holds its machine code and its LLVM bitcode, kept so that code compiled
later can inline it; Numba parses that bitcode at every load (3-15 ms a kernel) to learn the
names the library defines. Here the names are saved beside it (``_KernelCacheImpl``) and the
bitcode is parsed only if something links the kernel (``_LazyLinkLibrary``).

Numba's runtime (NRT: reference counting and memory helpers every kernel calls) is compiled by
LLVM in each process before the first kernel loads. A bundle also carries its machine code
(``RUNTIME_FILE``, written by ``save_runtime`` where the kernels were compiled), keyed like a
kernel by Numba's version and the target, and the first load links that instead.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import threading

import llvmlite.binding as ll
import numba
from numba.core.caching import CompileResultCacheImpl, FunctionCache
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler_lock import global_compiler_lock
from numba.core.extending import _Intrinsic
from numba.core.runtime import _nrt_python as _nrt
from numba.core.runtime import nrtdynmod, rtsys
from numba.core.serialize import dumps

_BUNDLES: list[dict[str, bytes]] = []       # verified file name -> bytes, one dict per bundle
_INDEXES: dict[tuple[int, str], dict | None] = {}   # (bundle, index name) -> overloads
_LOCK = threading.Lock()
LOADED = {"count": 0, "runtime": 0}        # kernels (and NRT) loaded from a bundle here
# NRT's machine code in a bundle: a name no kernel cache file has (those end in -<line>.py3x)
RUNTIME_FILE = "numba_nrt.nbc"


def add(files: dict[str, bytes]) -> None:
    """Serve kernels from ``files`` (name -> bytes already checked against a trusted manifest)."""
    with _LOCK:
        if not any(f is files or f == files for f in _BUNDLES):
            _BUNDLES.append(dict(files))


def _overloads(i: int, index_name: str, stamp) -> dict | None:
    """The bundle's overloads of one function, or None when it has none (or a stale one: the
    kernels' sources differ from those the bundle was compiled from)."""
    key = (i, index_name)
    if key not in _INDEXES:
        raw = _BUNDLES[i].get(index_name)
        found = None
        if raw is not None:
            # the layout of numba.core.caching.IndexDataCacheFile: a pickled numba version,
            # then the pickle of (source stamp, {key: data file name})
            stream = io.BytesIO(raw)
            if pickle.load(stream) == numba.__version__:
                file_stamp, overloads = pickle.loads(stream.read())
                if file_stamp == stamp:
                    found = overloads
        _INDEXES[key] = found
    return _INDEXES[key]


def _stable(value):
    """``value`` as it goes into a kernel's cache key: a jit function or intrinsic in a closure
    pickles with a uuid drawn anew in every process, so it is named by its module, qualified
    name, bytecode and (the same way) its own closure; its source is in ``PACKAGE_STAMP``."""
    if isinstance(value, tuple):
        return tuple(_stable(v) for v in value)
    fn = value._defn if isinstance(value, _Intrinsic) else getattr(value, "py_func", None)
    if fn is None:
        return value
    return ("jit", fn.__module__, fn.__qualname__, fn.__code__.co_code,
            tuple(_stable(c.cell_contents) for c in fn.__closure__ or ()))


class _LazyLinkLibrary(JITCodeLibrary):
    """A kernel's code library loaded from a cache file: the machine code is linked at once, the
    bitcode other code may inline is parsed when first asked for (``_shared_module``)."""

    def __init__(self, codegen, name, bitcode: bytes):
        self.__bitcode, self.__shared = bitcode, None
        super().__init__(codegen, name)

    @property
    def _shared_module(self):
        if self.__shared is None and self.__bitcode is not None:
            self.__shared, self.__bitcode = ll.parse_bitcode(self.__bitcode), None
        return self.__shared

    @_shared_module.setter
    def _shared_module(self, module):
        self.__shared = module

    @classmethod
    def load(cls, codegen, libdata, symbols: list[str]):
        """Numba's ``JITCodeLibrary._unserialize`` of an "object" library, with the defined
        ``symbols`` given instead of read from the parsed bitcode."""
        name, kind, (object_code, bitcode) = libdata
        self = cls(codegen, name, bitcode)
        self.enable_object_caching()
        self._set_compiled_object(object_code)
        self._finalize_final_module()
        codegen._engine._defined_symbols.update(symbols)
        return self


class _KernelCacheImpl(CompileResultCacheImpl):
    """A kernel's cache entry: Numba's, plus the names its library defines."""

    def reduce(self, cres):
        payload = cres._reduce()
        shared = cres.library._get_module_for_linking()
        symbols = sorted(gv.name for gvs in (shared.functions, shared.global_variables)
                         for gv in gvs if not gv.is_declaration)
        return payload, symbols

    def rebuild(self, target_context, data):
        """``CompileResult._rebuild`` with the library loaded by ``_LazyLinkLibrary``.

        NOTE: called under Numba's compiler lock (``Dispatcher.compile``), which also guards the
        codegen's ``unserialize_library`` swapped for the call."""
        payload, symbols = data
        codegen = target_context.codegen()
        if payload[0][1] != "object":
            return super().rebuild(target_context, payload)
        codegen.unserialize_library = lambda libdata: _LazyLinkLibrary.load(codegen, libdata,
                                                                            symbols)
        try:
            return super().rebuild(target_context, payload)
        finally:
            del codegen.unserialize_library


class KernelCache(FunctionCache):
    """Numba's function cache with the verified bundles in front of it."""

    _impl_class = _KernelCacheImpl

    def _index_key(self, sig, codegen):
        """Numba's key (signature, target, hashes of the bytecode and of the closure's values)
        with the closure's jit functions by name (``_stable``).

        NOTE: with Numba's own key a kernel whose closure holds a jit function (the igemm conv
        calls its row function ``igemm_row``) missed both the bundle and Numba's cache in every
        new process and compiled again: multistyle26's first frame took 6.2 s with its bundle
        (2 kernels compiled; bench-start, load 3)."""
        fn = self._py_func
        cvars = b"" if fn.__closure__ is None else \
            dumps(tuple(_stable(c.cell_contents) for c in fn.__closure__))
        return (sig, codegen.magic_tuple(), (hashlib.sha256(fn.__code__.co_code).hexdigest(),
                                             hashlib.sha256(cvars).hexdigest()))

    def load_overload(self, sig, target_context):
        """Numba's ``Cache.load_overload``, which refreshes the whole target context before every
        load, with the refresh put off until a load misses (a compile follows): a load only
        needs Numba's runtime (NRT), which the loaded code calls into.

        NOTE: the refresh imports and installs every typing and lowering registry of Numba
        (100-125 ms of CPU on this machine, a sixth of a warm start). On a miss it runs here,
        before the compile, as in Numba: left to the compiler (which refreshes too), the demo's
        loading screen stayed black while the first kernel compiled
        (tests/test_demo_window.py; why was not pinned down)."""
        _initialize_runtime(target_context)
        loaded = self._load_overload(sig, target_context)
        if loaded is None:
            target_context.refresh()
        return loaded

    def _load_overload(self, sig, target_context):
        if self._enabled and _BUNDLES:
            impl = self._impl
            key = self._index_key(sig, target_context.codegen())
            stamp = impl.locator.get_source_stamp()
            with _LOCK:
                for i, files in enumerate(_BUNDLES):
                    overloads = _overloads(i, f"{impl.filename_base}.nbi", stamp)
                    name = overloads.get(key) if overloads else None
                    data = files.get(name) if name else None
                    if data is not None:
                        LOADED["count"] += 1
                        return impl.rebuild(target_context, pickle.loads(data))
        return super()._load_overload(sig, target_context)


def _runtime_key(target_context) -> tuple:
    return numba.__version__, target_context.codegen().magic_tuple()


def save_runtime(path, target_context) -> None:
    """Write NRT's machine code for this process's target to ``path`` (``RUNTIME_FILE`` in a
    cache folder the bundle builder collects): NRT's LLVM module, compiled with object caching
    as Numba compiles it (``nrtdynmod.compile_nrt_functions``), serialized as a kernel is."""
    with global_compiler_lock:
        module, library = nrtdynmod.create_nrt_module(target_context)
        library.enable_object_caching()
        library.add_ir_module(module)
        library.finalize()
        state = library.serialize_using_object_code()
    with open(path, "wb") as f:
        pickle.dump((_runtime_key(target_context), state), f, protocol=pickle.HIGHEST_PROTOCOL)


def _initialize_runtime(target_context) -> None:
    """``rtsys.initialize``, linking NRT's machine code from a bundle when one carries it for
    this Numba and target (what ``rtsys.initialize`` does, with the compile replaced by a load).

    NOTE: compiling NRT took 34-43 ms in a fresh process, loading it 4-13 ms (load 3)."""
    if rtsys._init:
        return
    with _LOCK:
        found = [b[RUNTIME_FILE] for b in _BUNDLES if RUNTIME_FILE in b]
    for raw in found:
        key, state = pickle.loads(raw)
        if key != _runtime_key(target_context):
            continue
        with global_compiler_lock:
            if rtsys._init:
                return
            if numba.config.NRT_STATS:
                _nrt.memsys_enable_stats()
            for py_name, address in _nrt.c_helpers.items():
                ll.add_symbol(py_name if py_name.startswith("_") else f"NRT_{py_name}", address)
            rtsys._library = target_context.codegen().unserialize_library(state)
            rtsys._init = True
            LOADED["runtime"] += 1
        return
    rtsys.initialize(target_context)


def serve(dispatcher):
    """Give a dispatcher made with ``cache=False`` the bundle-aware cache (``config.jit``); a
    plain function (``NUMBA_DISABLE_JIT``) is returned as it is."""
    if hasattr(dispatcher, "py_func"):
        dispatcher._cache = KernelCache(dispatcher.py_func)
    return dispatcher
