"""The LitServe peer: torchgate's cnn as one ``LitAPI``, raw image body, optional batching.

Run as a script with the peers' environment (``fashion.py`` sits next to it)::

    /tmp/peers/venv/bin/python bench/torchgate_bench/peers/litserve_app.py --port 8280 \
        --model-file app/nets/cnn.py --manifest models/cnn.json \
        [--workers 1] [--threads 2] [--max-batch-size 8] [--batch-timeout 0.005]

``POST /predict`` (body: the image bytes) -> ``{"index", "label", "probabilities"}``;
``GET /health``. Decoding runs in the inference worker, as TorchServe's ``preprocess`` does.
"""

# No ``from __future__ import annotations``: LitServe reads decode_request's annotation with
# inspect.signature, and a string would not tell FastAPI to hand over the raw body.
import argparse
import sys
from pathlib import Path
from typing import Annotated, Any

import litserve as ls
import torch
from fastapi import Body

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # run as a script, in the peers' environment
from fashion import FashionModel, set_threads  # noqa: E402

RawImage = Annotated[bytes, Body(media_type="application/octet-stream")]


class FashionAPI(ls.LitAPI):
    def __init__(self, model_file: Path, manifest: Path, threads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_file, self.manifest, self.threads = model_file, manifest, threads

    def setup(self, device: str) -> None:
        set_threads(self.threads or None)
        self.fashion = FashionModel(self.model_file, self.manifest)

    def decode_request(self, request: RawImage) -> torch.Tensor:
        return self.fashion.preprocess(request)

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, x: torch.Tensor) -> Any:
        """A batch [N,1,28,28] gives a list of answers, one sample [1,28,28] one answer."""
        batched = x.dim() == 4
        answers = self.fashion.postprocess(self.fashion.forward(x if batched else x[None]))
        return answers if batched else answers[0]

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8280)
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--batch-timeout", type=float, default=0.0)
    args = parser.parse_args()
    api = FashionAPI(
        args.model_file.resolve(),
        args.manifest.resolve(),
        args.threads,
        api_path="/predict",
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, timeout=60)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
