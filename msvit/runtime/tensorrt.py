"""TensorRT engines: probing TensorRT + CUDA, the engine file header (written and read
here), compatibility checks and the runner. Everything that touches ``tensorrt``, CUDA or
torch is imported lazily, so the header and compatibility logic runs (and is tested) on a
machine without a GPU.

Engine file layout (same as Ultralytics' ``onnx2engine``/``AutoBackend``):
``int32 little-endian len(json) | json metadata (utf-8) | serialized engine``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, ExportError, TargetUnavailableError
from ..fileio import atomic_write
from .base import InputSpec, Session, batch_from_shape

HEADER_FORMAT = "tensorrt_backend/1"  # bump if the metadata schema changes incompatibly
_MAX_HEADER_BYTES = 16 << 20  # anything larger is not our JSON header (raw plans start with b"ftrt")


class TensorRTUnavailable(TargetUnavailableError):
    """``tensorrt`` cannot be imported or no CUDA GPU is visible (message is a one-line reason)."""


class EngineMismatch(ExportError):
    """The engine was built for another TensorRT version or GPU and must be rebuilt here."""

# --------------------------------------------------------------------------------------------------
# Environment probing (lazy, never raises)
# --------------------------------------------------------------------------------------------------


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt  # noqa: PLC0415 - lazy on purpose: optional, GPU-only dependency
    except Exception as e:  # ImportError, or OSError when the wheel is present but libnvinfer is not
        raise TensorRTUnavailable(f"tensorrt is not importable: {type(e).__name__}: {e}") from None
    return trt


def _cuda_driver() -> Any | None:
    """cuda-python's driver module (new ``cuda.bindings`` layout first, then the legacy one)."""
    try:
        from cuda.bindings import driver  # noqa: PLC0415

        return driver
    except Exception:
        pass
    try:
        from cuda import cuda as driver  # noqa: PLC0415

        return driver
    except Exception:
        return None


def _gpu_count() -> tuple[int, str]:
    """(number of visible CUDA GPUs, which binding answered). torch first, then cuda-python, then pycuda."""
    try:
        import torch  # noqa: PLC0415

        return (torch.cuda.device_count() if torch.cuda.is_available() else 0), "torch"
    except ImportError:
        pass
    drv = _cuda_driver()
    if drv is not None:
        try:
            (err,) = drv.cuInit(0)
            if err != drv.CUresult.CUDA_SUCCESS:
                return 0, "cuda-python"
            err, n = drv.cuDeviceGetCount()
            return (int(n) if err == drv.CUresult.CUDA_SUCCESS else 0), "cuda-python"
        except Exception:
            return 0, "cuda-python"
    try:
        import pycuda.driver as pdrv  # noqa: PLC0415

        pdrv.init()
        return pdrv.Device.count(), "pycuda"
    except ImportError:
        return 0, "none"
    except Exception:
        return 0, "pycuda"


def current_gpu() -> dict[str, Any]:
    """Name (and compute capability when torch is there) of the current CUDA device; {} if unknown."""
    try:
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            idx = torch.cuda.current_device()
            major, minor = torch.cuda.get_device_capability(idx)
            return {"gpu_name": torch.cuda.get_device_name(idx), "compute_capability": f"{major}.{minor}"}
        return {}
    except ImportError:
        pass
    except Exception:
        return {}
    drv = _cuda_driver()
    if drv is not None:
        try:
            drv.cuInit(0)
            _, dev = drv.cuDeviceGet(0)
            err, raw = drv.cuDeviceGetName(256, dev)
            if err == drv.CUresult.CUDA_SUCCESS:
                return {"gpu_name": bytes(raw).split(b"\0", 1)[0].decode()}
        except Exception:
            pass
        return {}
    try:
        import pycuda.driver as pdrv  # noqa: PLC0415

        pdrv.init()
        dev = pdrv.Device(0)
        major, minor = dev.compute_capability()
        return {"gpu_name": dev.name(), "compute_capability": f"{major}.{minor}"}
    except Exception:
        return {}


def probe() -> tuple[bool, str]:
    """(available, reason). Never raises: callers use it to skip TensorRT paths gracefully."""
    try:
        trt = _import_tensorrt()
    except TensorRTUnavailable as e:
        return False, str(e)
    try:
        n, via = _gpu_count()
    except Exception as e:  # defensive: a broken CUDA install must not crash the caller
        return False, f"CUDA GPU check failed: {type(e).__name__}: {e}"
    if n < 1:
        if via == "none":
            return False, "no CUDA binding (torch, cuda-python or pycuda) to detect a GPU"
        return False, f"no CUDA GPU visible (checked via {via})"
    gpu = current_gpu().get("gpu_name", "unknown GPU")
    return True, f"TensorRT {getattr(trt, '__version__', '?')} on {gpu}"


def _require_runtime() -> Any:
    trt = _import_tensorrt()
    ok, reason = probe()
    if not ok:
        raise TensorRTUnavailable(reason)
    return trt


_LOGGER: Any = None


def _trt_logger(trt: Any) -> Any:
    # One logger per process, as TensorRT recommends.
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


# --------------------------------------------------------------------------------------------------
# Engine file header (pure Python)
# --------------------------------------------------------------------------------------------------


def write_engine_file(path: str | os.PathLike[str], engine_bytes: Any, metadata: dict[str, Any]) -> None:
    """Write ``len | json | engine`` atomically (readers never see a half-written engine)."""
    path = Path(path)
    meta = json.dumps(metadata, sort_keys=True).encode("utf-8")
    # Length of the *encoded* bytes (Ultralytics uses len(str), wrong for non-ASCII); int32 LE as they do.
    header = len(meta).to_bytes(4, byteorder="little", signed=True)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        f.write(header)
        f.write(meta)
        f.write(engine_bytes)  # bytes / memoryview / trt.IHostMemory (buffer protocol)

    atomic_write(path, write, fsync=True)


def read_engine_metadata(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """(metadata, byte offset of the serialized engine). A headerless (e.g. trtexec) plan gives ({}, 0)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise ValueError(f"{path}: too short to be a TensorRT engine ({size} bytes)")
        n = int.from_bytes(head, byteorder="little", signed=True)
        if n <= 0 or n > _MAX_HEADER_BYTES or n > size - 4:
            return {}, 0
        try:
            meta = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}, 0
    if not isinstance(meta, dict):
        return {}, 0
    return meta, 4 + n


def rewrite_metadata(src: str | os.PathLike[str], dst_dir: str | os.PathLike[str], metadata: dict[str, Any]) -> list[Path]:
    """A copy of the engine ``src`` in ``dst_dir`` (same name) with a new JSON header; the serialized
    engine bytes are copied unchanged. Returns the files written."""
    _, offset = read_engine_metadata(src)
    if offset == 0:
        raise ArtifactError(f"{src}: a plan without msvit's header: its threshold cannot be stored in it")
    dst = Path(dst_dir) / Path(src).name
    write_engine_file(dst, memoryview(Path(src).read_bytes())[offset:], metadata)
    return [dst]


def _norm_gpu(name: str) -> str:
    return " ".join(str(name).split()).lower()


def check_compatibility(meta: dict[str, Any], trt_version: str, gpu_name: str | None) -> None:
    """Raise EngineMismatch if ``meta`` records another TensorRT version or GPU than the running one.

    Engines are tied to the exact TensorRT version (we never set VERSION_COMPATIBLE) and to the GPU
    model they were tuned on. Fields that are absent (headerless plan) or unknown at runtime
    (``gpu_name=None``) are not checked; TensorRT's own deserialization check still applies.
    """
    problems: list[str] = []
    built_trt = meta.get("tensorrt_version")
    if built_trt and str(built_trt) != str(trt_version):
        problems.append(f"built with TensorRT {built_trt}, running TensorRT {trt_version}")
    built_gpu = meta.get("gpu_name")
    if built_gpu and gpu_name and _norm_gpu(built_gpu) != _norm_gpu(gpu_name):
        problems.append(f"built on GPU '{built_gpu}', running on '{gpu_name}'")
    if problems:
        raise EngineMismatch("; ".join(problems) + " -- rebuild the engine on this machine")


def _load(path: str | os.PathLike[str]) -> tuple[Any, Any, dict[str, Any]]:
    """(runtime, engine, metadata). Checks the header *before* handing bytes to TensorRT."""
    trt = _import_tensorrt()
    meta, offset = read_engine_metadata(path)
    check_compatibility(meta, trt.__version__, current_gpu().get("gpu_name"))
    trt = _require_runtime()
    data = Path(path).read_bytes()[offset:]
    runtime = trt.Runtime(_trt_logger(trt))
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        # TensorRT has no preflight API; a None engine is how version/GPU mismatches surface.
        what = "headerless engine" if not meta else "engine"
        raise EngineMismatch(
            f"{path}: TensorRT {trt.__version__} could not deserialize this {what} (other TensorRT version "
            "or GPU, or a corrupt file; see the TensorRT log) -- rebuild it on this machine"
        )
    return runtime, engine, meta


def load_engine(path: str | os.PathLike[str]) -> Any:
    """Deserialize an engine file after checking its recorded TensorRT version / GPU (EngineMismatch)."""
    try:
        return _load(path)[1]
    except EngineMismatch as e:
        msg = str(e)
        raise EngineMismatch(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


# --------------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------------


def _torch_dtype(trt: Any, dt: Any) -> Any:
    import torch  # noqa: PLC0415

    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
        "UINT8": torch.uint8,
    }
    for name, tdt in table.items():
        if getattr(trt.DataType, name, object()) == dt:
            return tdt
    raise TypeError(f"unsupported TensorRT I/O dtype {dt}")


class TRTRunner:
    """Minimal single-input runner; torch CUDA tensors are the I/O buffers (no pycuda needed)."""

    def __init__(self, engine_path: str | os.PathLike[str], device: int = 0) -> None:
        import torch  # noqa: PLC0415

        self._trt = trt = _require_runtime()
        self.device = torch.device("cuda", device)
        torch.cuda.set_device(self.device)  # engine must be deserialized on the device it will run on
        self._runtime, self.engine, self.metadata = _load(engine_path)  # runtime kept alive with engine
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{engine_path}: could not create an execution context (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or not self.outputs:
            raise RuntimeError(f"expected 1 input and >= 1 output, got inputs={self.inputs} outputs={self.outputs}")
        self.input_name = self.inputs[0]
        self.output_name = "logit" if "logit" in self.outputs else self.outputs[0]
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        self.input_shape = tuple(self.engine.get_tensor_shape(self.input_name))  # -1 marks dynamic dims
        self.stream = torch.cuda.Stream(device=self.device)
        self._bufs: dict[str, Any] = {}
        self._bound_shape: tuple[int, ...] | None = None

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        ok = len(shape) == len(self.input_shape) and all(e < 0 or e == s for e, s in zip(self.input_shape, shape))
        if not ok:
            raise ValueError(f"input shape {shape} does not match engine shape {self.input_shape}")
        if any(e < 0 for e in self.input_shape):
            lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                raise ValueError(f"input shape {shape} outside the engine profile [{tuple(lo)}, {tuple(hi)}]")

    def _bind(self, shape: tuple[int, ...]) -> None:
        """(Re)allocate buffers and bind addresses only when the input shape changes."""
        import torch  # noqa: PLC0415

        if shape == self._bound_shape:
            return
        self._check_shape(shape)
        if not self.context.set_input_shape(self.input_name, shape):
            raise ValueError(f"TensorRT rejected input shape {shape}")
        with torch.cuda.stream(self.stream):
            bufs = {self.input_name: torch.empty(shape, dtype=self._dtypes[self.input_name], device=self.device)}
            for name in self.outputs:
                out_shape = tuple(self.context.get_tensor_shape(name))
                bufs[name] = torch.empty(out_shape, dtype=self._dtypes[name], device=self.device)
        for name, t in bufs.items():
            self.context.set_tensor_address(name, t.data_ptr())
        self._bufs, self._bound_shape = bufs, shape

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("execute_async_v3 failed (see the TensorRT log)")

    def __call__(self, x: Any) -> Any:
        import numpy as np  # noqa: PLC0415
        import torch  # noqa: PLC0415

        x = np.asarray(x)
        if x.ndim == len(self.input_shape) - 1:
            x = x[None]  # accept a single CHW image
        shape = tuple(int(d) for d in x.shape)
        self._bind(shape)
        src = torch.from_numpy(np.ascontiguousarray(x))
        with torch.cuda.stream(self.stream):  # copy, run and read back on one stream: ordered, no races
            self._bufs[self.input_name].copy_(src.to(self.device, non_blocking=False))
            self._execute()
            out = self._bufs[self.output_name].float().cpu()
        self.stream.synchronize()
        return out.numpy()

    def time_gpu(self, iters: int = 100, *, warmup: int = 10, batch: int | None = None) -> dict[str, float]:
        """GPU latency of execute_async_v3 alone (no H2D/D2H), measured with CUDA events."""
        import torch  # noqa: PLC0415

        if iters < 1:
            raise ValueError("iters must be >= 1")
        if self._bound_shape is None or (batch is not None and self._bound_shape[0] != batch):
            shape = tuple(d if d > 0 else 1 for d in self.input_shape)
            if batch is not None:
                shape = (batch, *shape[1:])
            self._bind(shape)
            with torch.cuda.stream(self.stream):
                self._bufs[self.input_name].normal_()  # values do not matter for timing
        with torch.cuda.stream(self.stream):
            for _ in range(warmup):
                self._execute()
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
            for start, end in events:
                start.record(self.stream)
                self._execute()
                end.record(self.stream)
        self.stream.synchronize()
        ms = sorted(s.elapsed_time(e) for s, e in events)
        return {
            "batch": float(self._bound_shape[0]),
            "iters": float(iters),
            "mean_ms": sum(ms) / len(ms),
            "median_ms": ms[len(ms) // 2],
            "min_ms": ms[0],
            "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
        }



def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The engine header as flat str -> str metadata ({} for a headerless trtexec plan)."""
    try:
        meta, _ = read_engine_metadata(path)
    except (ValueError, OSError) as e:
        raise ArtifactError(str(e)) from None
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}


class TRTSession(Session):
    format = "trt"
    title = "TensorRT"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, device: str = "cuda") -> None:
        meta = read_metadata(path)  # a truncated file fails here, before TensorRT sees it
        self.runner = TRTRunner(path)
        shape = tuple(batch_from_shape(d) for d in self.runner.input_shape)
        super().__init__(path, meta, InputSpec(self.runner.input_name, shape), "cuda", threads)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.runner(x)

    def time_gpu(self, iters: int = 100, *, warmup: int = 10, batch: int | None = None) -> dict[str, float]:
        return self.runner.time_gpu(iters, warmup=warmup, batch=batch)

    def close(self) -> None:
        self.runner = None
