"""TEST DOUBLE, standalone: serve the Weaviate fake until killed, for driving `freshrag` commands
without a Weaviate. From the checkout root:

    python -m tests.fakes.weaviate_server --port 8080 --grpc-port 50051 \\
        [--query-maximum-results N] [--api-key K] [--autoschema]

then `FRESHRAG_INDEX__URL=weaviate://127.0.0.1:8080 FRESHRAG_INDEX__GRPC_PORT=50051 freshrag ...`.
Prints one line once both ports answer. Data lives in memory only.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from tests.fakes.weaviate_fake import FakeWeaviate
from tests.fakes.weaviate_rules import Limits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.weaviate_server",
                                     description="A loopback Weaviate test double.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="REST port")
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--query-maximum-results", type=int, default=10_000,
                        help="QUERY_MAXIMUM_RESULTS (default 10000)")
    parser.add_argument("--hybrid-maximum-results", type=int, default=100,
                        help="QUERY_HYBRID_MAXIMUM_RESULTS (default 100)")
    parser.add_argument("--api-key", default="",
                        help="require this API key (anonymous access off); default: no auth")
    parser.add_argument("--autoschema", action="store_true",
                        help="AUTOSCHEMA_ENABLED=true (default off, as docker-compose.yml runs)")
    args = parser.parse_args(argv)
    limits = Limits(query_maximum_results=args.query_maximum_results,
                    hybrid_maximum_results=args.hybrid_maximum_results,
                    autoschema=args.autoschema, api_key=args.api_key)
    fake = FakeWeaviate(limits, port=args.port, grpc_port=args.grpc_port, host=args.host)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake.start()
    print(f"fake Weaviate {fake.url} grpc {fake.host}:{fake.grpc_port} "
          f"QUERY_MAXIMUM_RESULTS={limits.query_maximum_results} "
          f"auth={'api-key' if limits.api_key else 'anonymous'} ready", flush=True)
    try:
        stop.wait()
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
