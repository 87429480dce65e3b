"""The openvino backend against sentence-transformers: bf16 (where the CPU has it) and fp32 keep
the model's vectors (cosine >= 0.9999), share the onnx export and torch's identity, no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from freshrag.config import ModelConfig
from freshrag.embed import EmbedError, SentenceTransformerEmbedder, default_cache_dir
from freshrag.embed_onnx import OnnxEmbedder
from freshrag.embed_openvino import OpenVinoEmbedder, bf16_native
from tests.unit.test_embed_onnx import TEXTS, cosines

PRECISIONS = ["fp32", "bf16"] if bf16_native() else ["fp32"]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_vectors_equal_sentence_transformers(
        precision: str, embedder: SentenceTransformerEmbedder) -> None:
    ov = OpenVinoEmbedder(precision=precision, cache_dir=default_cache_dir())
    assert ov.precision == precision
    cos = cosines(ov.embed(TEXTS), embedder.embed(TEXTS))
    assert cos.min() >= 0.9999, cos
    alone = ov.embed([TEXTS[1]])[0]  # batching beside longer texts changes nothing
    assert float(np.dot(alone, ov.embed(TEXTS)[1])) >= 0.99999
    assert ov.model_id == embedder.model_id  # same vectors: no re-embed on a switch
    assert ov.dim == 384 and ov.max_tokens == 256
    if precision == "bf16":  # compiled from the export's fp16-weight IR, made once beside it
        assert (ov.ensure_export() / "openvino_fp16.xml").is_file()


def test_it_runs_the_onnx_backends_export() -> None:
    ov, onnx = OpenVinoEmbedder(cache_dir=default_cache_dir()), OnnxEmbedder(precision="fp32")
    assert ov.cache_key() == onnx.cache_key()


def test_a_gpu_runs_the_export_on_onnxruntimes_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from freshrag import embed

    assert type(embed.make_embedder(ModelConfig())) is OpenVinoEmbedder  # no onnxruntime-gpu
    monkeypatch.setattr(embed, "cuda_onnxruntime", lambda: True)
    on_gpu = embed.make_embedder(ModelConfig())
    assert type(on_gpu) is OnnxEmbedder and on_gpu.precision == "fp32"
    assert on_gpu.model_id == OpenVinoEmbedder().model_id  # the same vectors either way
    assert type(embed.make_embedder(ModelConfig(device="cpu"))) is OpenVinoEmbedder
    with pytest.raises(EmbedError, match="no CUDA provider"):
        OpenVinoEmbedder(device="cuda").embed(["x"])


def test_auto_is_bf16_only_where_the_cpu_computes_it() -> None:
    assert bf16_native({"avx512f", "avx512_bf16"}) and bf16_native({"amx_bf16"})
    assert not bf16_native({"avx2", "avx512f", "avx512_vnni"})
    assert OpenVinoEmbedder().precision == ("bf16" if bf16_native() else "fp32")
    assert OnnxEmbedder().precision == "fp32"  # auto never means int8


def test_impossible_precisions_are_one_line() -> None:
    for backend, precision in (("torch", "int8"), ("torch", "bf16"), ("onnx", "bf16"),
                               ("openvino", "int8")):
        with pytest.raises(ValidationError, match=f"precision '{precision}' is not run by "
                                                  f"backend '{backend}'"):
            ModelConfig(backend=backend, precision=precision)
    if not bf16_native():
        with pytest.raises(EmbedError, match="no native bf16"):
            OpenVinoEmbedder(precision="bf16")
    with pytest.raises(EmbedError, match="needs model.backend = 'onnx'"):
        OpenVinoEmbedder(precision="int8")


def test_embedding_with_openvino_imports_no_torch_and_sends_no_telemetry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = ("import sys; from freshrag.embed import default_cache_dir;"
            "from freshrag.embed_openvino import OpenVinoEmbedder;"
            "e = OpenVinoEmbedder(cache_dir=default_cache_dir()); e.embed(['hello']); e.trim();"
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers',"
            " 'openvino_telemetry') if sys.modules.get(m)))")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(
        default_cache_dir().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert not (tmp_path / "intel").exists()  # openvino_telemetry's client id and stats
