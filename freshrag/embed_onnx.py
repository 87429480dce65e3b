"""The torch-free embedder: onnxruntime + tokenizers over a model exported once into a cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from freshrag.embed import DEFAULT_MODEL_ID, EmbedError, _reason, default_model_path
from freshrag.filelock import file_lock

EXPORT_VERSION = 1  # bump when the export or quantization recipe changes
def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def int8_config(flags: set[str] | None = None) -> str | None:
    """The int8 kernel set this CPU runs well, or None (then fp32): VNNI runs u8*s8 dot
    products natively; plain AVX2 needs reduced-range weights to avoid saturating."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx2" in flags:
        return "avx2"
    return None


class OnnxEmbedder:
    """An exported sentence-transformers model run by onnxruntime: the Transformer module
    as ONNX, then the model's own pooling (modules.json, 1_Pooling/config.json) and, when the
    model has a Normalize module, L2 normalisation, as sentence-transformers computes them."""

    backend = "onnx"

    def __init__(self, name: str = "", batch_size: int = 64, device: str = "auto",
                 precision: str = "auto", cache_dir: Path | None = None):
        self._name = name
        self._path = name or default_model_path()
        self.batch_size = batch_size
        self.device = device
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "freshrag-models"
        self.precision = self._choose(precision)
        self.qconfig = int8_config() if self.precision == "int8" else None
        self._session: Any = None
        self._run_options: Any = None
        self._tokenizer: Any = None
        self._counter: Any = None
        self._info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def _choose(self, asked: str) -> str:
        """fp32 (auto: the model's own vectors), or int8 where the CPU has the kernels."""
        if asked == "int8":
            if int8_config() is None:
                raise EmbedError("model.precision = 'int8': this CPU has neither AVX2 nor VNNI; "
                                 "use 'fp32' or 'auto'")
            return "int8"
        if asked == "bf16":
            raise EmbedError("model.precision = 'bf16' needs model.backend = 'openvino'")
        return "fp32"

    # identity -------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (the first embed or warm-up loads it)."""
        return self._session is not None

    @property
    def model_id(self) -> str:
        """The vectors' identity (vector cache key, the index's record of what it holds).
        fp32 (and bf16, on openvino) is the torch model's own function (cosine >= 0.9999,
        tests/unit/test_embed_onnx.py), so it shares torch's identity; int8 vectors are another
        model's."""
        base = self._name or DEFAULT_MODEL_ID
        if self.precision != "int8":
            return base
        return f"{base}#onnx-int8-{self.qconfig}-v{EXPORT_VERSION}"

    def cache_key(self) -> str:
        """The export's folder name: model, precision, recipe and exporter versions (every
        backend runs the same ONNX export)."""
        src = Path(self._path)
        stamp = [str(p.stat().st_size) for p in sorted(src.glob("*.safetensors"))] \
            if src.is_dir() else []
        parts = [str(src.resolve()) if src.exists() else self._path, *stamp, "onnx",
                 self.export_precision, str(self.qconfig), f"v{EXPORT_VERSION}",
                 _version("torch"), _version("transformers"), _version("onnxruntime")]
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        return f"{Path(self._path).name}-{self.export_precision}-{digest}"

    @property
    def export_precision(self) -> str:
        """The exported file's weights: int8, else fp32 (bf16 is the runtime's choice)."""
        return "int8" if self.precision == "int8" else "fp32"

    # export ---------------------------------------------------------------------------------
    def ensure_export(self) -> Path:
        """The exported model's folder, exporting it first (in a child process, once; a second
        process waits for the first one's export instead of repeating it)."""
        folder = self.cache_dir / self.cache_key()
        if (folder / "manifest.json").is_file():
            return folder
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.cache_dir / f"{folder.name}.lock"):
            if (folder / "manifest.json").is_file():
                return folder
            self._export(folder)
        return folder

    def _export(self, folder: Path) -> None:
        src = Path(self._path)
        if not (src / "modules.json").is_file():
            raise EmbedError(f"cannot export {self._path!r} to ONNX: not a sentence-transformers "
                             "model folder (no modules.json)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=self.cache_dir))
        spec = {"model_path": str(src), "out": str(tmp), "precision": self.export_precision,
                "reduce_range": self.qconfig == "avx2", "max_tokens": _max_tokens(src),
                "manifest": {"model": self.model_id, "source": str(src), "key": folder.name,
                             "precision": self.export_precision, "int8": self.qconfig,
                             "export_version": EXPORT_VERSION, "torch": _version("torch"),
                             "onnxruntime": _version("onnxruntime")}}
        (tmp / "spec.json").write_text(json.dumps(spec))
        env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-m", "freshrag.embed_export",
                               str(tmp / "spec.json")], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise EmbedError(f"cannot export {self._path!r} to ONNX ({last})")
        (tmp / "spec.json").unlink()
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)

    # runtime --------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._session is not None:
            return
        folder = self.ensure_export()
        try:
            from tokenizers import Tokenizer

            self._info = _pooling(folder)
            file = folder / ("model_int8.onnx" if self.precision == "int8" else "model.onnx")
            self._session = self._open(file)
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tok.enable_truncation(max_length=self._info["max_tokens"])
            tok.enable_padding(pad_id=0, pad_token="[PAD]")
            self._tokenizer = tok
        except EmbedError:
            raise
        except Exception as exc:
            raise EmbedError(f"cannot load the ONNX export of {self._path!r} into "
                             f"{self.backend} ({_reason(exc)})") from exc

    def _open(self, file: Path) -> Any:
        """The runtime's session over the exported file."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # idle threads sleep instead of spinning: a served query's embedding cost ~12 ms of CPU
        # spinning vs ~7 without, for ~1 ms more wall time
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(file), options, providers=self._providers(ort))
        # The CPU arena grows to the largest batch seen (~1 GB for 64 chunks of 256 tokens) and
        # keeps it; shrinking it after each run returns that to the system for ~3 % more CPU
        # per batch (no arena at all costs ~15 %).
        self._run_options = ort.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return session

    def _infer(self, feeds: dict[str, Any]) -> Any:
        """The last hidden state for one padded batch."""
        return self._session.run(None, feeds, self._run_options)[0]

    def trim(self) -> None:
        """Give back memory held for the largest batch so far (nothing to give here)."""

    def release(self) -> None:
        """Unload the runtime's model (an idle watcher's memory); the next embed loads it again,
        from the cached export (~0.2 s)."""
        with self._lock:
            self._session = None
            self._run_options = None

    def _providers(self, ort: Any) -> list[str]:
        have = ort.get_available_providers()
        if self.device in ("auto", "cuda") and "CUDAExecutionProvider" in have:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if self.device == "cuda":
            raise EmbedError("model.device = 'cuda': onnxruntime here has no CUDA provider "
                             "(install onnxruntime-gpu) ")
        return ["CPUExecutionProvider"]

    @property
    def counter(self) -> Any:
        """The model's tokenizer without truncation, for chunking (loads in milliseconds)."""
        with self._lock:
            if self._counter is None:
                try:
                    from tokenizers import Tokenizer

                    counter = Tokenizer.from_file(str(Path(self._path) / "tokenizer.json"))
                    counter.no_padding()  # tokenizer.json may carry a padding/truncation setup
                    counter.no_truncation()
                    self._counter = counter
                except Exception as exc:
                    raise EmbedError(f"cannot load the tokenizer of {self._path!r} "
                                     f"({_reason(exc)})") from exc
            return self._counter

    @property
    def tokenizer(self) -> Any:
        return self.counter

    @property
    def max_tokens(self) -> int:
        return _max_tokens(Path(self._path))

    @property
    def dim(self) -> int:
        with self._lock:
            self._load()
        return int(self._info["dim"])

    def count_tokens(self, text: str) -> int:
        return len(self.counter.encode(text, add_special_tokens=False).ids)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import numpy as np

        if not texts:
            return []
        with self._lock:
            self._load()
            self.calls += len(texts)
            # longest first, so each batch pads to similar lengths
            order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
            out = np.zeros((len(texts), self._info["dim"]), dtype=np.float32)
            for start in range(0, len(order), self.batch_size):
                part = order[start:start + self.batch_size]
                out[part] = self._run([texts[i] for i in part])
        return out.tolist()  # type: ignore[no-any-return]

    def _run(self, texts: list[str]) -> Any:
        import numpy as np

        enc = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = self._infer({"input_ids": ids, "attention_mask": mask,
                              "token_type_ids": np.zeros_like(ids)})
        return pool(hidden, mask, self._info["mode"], self._info["normalize"])


def pool(hidden: Any, mask: Any, mode: str, normalize: bool) -> Any:
    """sentence-transformers' Pooling (cls / max / mean) and Normalize, in numpy."""
    import numpy as np

    m = mask[..., None].astype(np.float32)
    if mode == "cls":
        vec = hidden[:, 0]
    elif mode == "max":
        vec = np.where(m > 0, hidden, -1e9).max(axis=1)
    else:
        vec = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    if normalize:
        vec = vec / np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
    return vec.astype(np.float32)


def _pooling(folder: Path) -> dict[str, Any]:
    modules = json.loads((folder / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    pool_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), None)
    if pool_dir is None or any(k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
        raise EmbedError(f"the ONNX backend runs Transformer + Pooling (+ Normalize) models; "
                         f"this one has {', '.join(kinds)}: use model.backend = 'torch'")
    conf = json.loads((folder / pool_dir / "config.json").read_text())
    mode = "cls" if conf.get("pooling_mode_cls_token") else \
        "max" if conf.get("pooling_mode_max_tokens") else "mean"
    if conf.get("pooling_mode_mean_sqrt_len_tokens"):
        raise EmbedError("mean_sqrt_len pooling is not supported by the ONNX backend: use "
                         "model.backend = 'torch'")
    return {"mode": mode, "normalize": "Normalize" in kinds,
            "dim": int(conf["word_embedding_dimension"]), "max_tokens": _max_tokens(folder)}


def _max_tokens(folder: Path) -> int:
    conf = folder / "sentence_bert_config.json"
    if conf.is_file():
        return int(json.loads(conf.read_text()).get("max_seq_length", 256))
    return 256


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"
