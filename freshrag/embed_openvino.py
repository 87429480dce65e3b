"""The OpenVINO embedder: the same ONNX export and tokenizer as the onnx backend, run by
OpenVINO's CPU plugin, in bf16 where the CPU computes it natively (no torch at run time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from freshrag.embed import EmbedError
from freshrag.embed_onnx import OnnxEmbedder, cpu_flags
from freshrag.filelock import file_lock

# CPU flags of native bf16 arithmetic (AVX512-BF16 on Zen 4 / Cooper Lake, AMX on Sapphire
# Rapids); elsewhere OpenVINO would emulate bf16, slower than fp32.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def bf16_native(flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


class OpenVinoEmbedder(OnnxEmbedder):
    """bf16 keeps the model's rankings (cosine to torch >= 0.9999, checked by
    tests/unit/test_embed_openvino.py), so its vectors share the fp32 identity and a switch
    re-embeds nothing."""

    backend = "openvino"

    def _choose(self, asked: str) -> str:
        if asked == "int8":
            raise EmbedError("model.precision = 'int8' needs model.backend = 'onnx' "
                             "(openvino runs 'bf16', 'fp32' or 'auto')")
        if asked == "bf16" and not bf16_native():
            raise EmbedError("model.precision = 'bf16': this CPU has no native bf16 "
                             f"({' or '.join(BF16_FLAGS)}); use 'fp32' or 'auto'")
        if asked == "fp32":
            return "fp32"
        return "bf16" if bf16_native() else "fp32"

    def _open(self, file: Path) -> Any:
        if self.device == "cuda":
            raise EmbedError("model.device = 'cuda': onnxruntime here has no CUDA provider "
                             "(install onnxruntime-gpu, or use model.backend = 'torch'); "
                             "openvino runs on the CPU")
        ov = _openvino()
        source = half_weights(file) if self.precision == "bf16" else file
        # LATENCY: one stream using every core for each batch (THROUGHPUT splits the cores
        # into streams that one caller's sequential batches cannot fill)
        return ov.Core().compile_model(str(source), "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY"})

    def _infer(self, feeds: dict[str, Any]) -> Any:
        return self._session(feeds)[0]

    def trim(self) -> None:
        """Give back the buffers sized for the largest batch so far (an idle watcher's RSS)."""
        with self._lock:
            if self._session is not None:
                self._session.release_memory()


def _openvino() -> Any:
    """`import openvino` without its usage telemetry: its import sends an analytics event from
    a forked child unless the user opted out. Hiding openvino_telemetry makes openvino take its
    own no-op stub."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def half_weights(onnx: Path) -> Path:
    """The export as OpenVINO IR with fp16 weights, made once beside it (in a child process, so
    the fp32 model read for it never stays in a long-running process). Compiled for bf16 it
    computes what the ONNX file does (the weights are rounded to bf16 either way) and holds
    ~100 MB less: the plugin keeps the model's own weights, fp32 when read from ONNX."""
    target = onnx.with_name("openvino_fp16.xml")
    if target.is_file():
        return target
    with file_lock(onnx.with_name("openvino_fp16.lock")):
        if not target.is_file():
            done = subprocess.run([sys.executable, "-m", "freshrag.embed_openvino", str(onnx),
                                   str(target)], capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise EmbedError(f"cannot convert {onnx} for openvino ({last})")
    return target


def _convert(onnx: str, target: str) -> None:
    ov = _openvino()
    tmp = Path(target).with_name(f".tmp-{os.getpid()}.xml")
    ov.save_model(ov.Core().read_model(onnx), str(tmp), compress_to_fp16=True)
    tmp.with_suffix(".bin").rename(Path(target).with_suffix(".bin"))
    tmp.rename(target)  # last: the .xml's presence says the pair is whole


if __name__ == "__main__":
    _convert(sys.argv[1], sys.argv[2])
