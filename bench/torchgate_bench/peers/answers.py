"""Hold a peer to torchgate's answer for the same image: same top-1, same probabilities.

A throughput ratio means something only if both servers run the same model on the same
preprocessed input; one request to each before any load proves it.
"""

from __future__ import annotations

from typing import Any

import httpx

TOLERANCE = 1e-5


def compare_answers(
    torchgate: dict[str, Any], peer: dict[str, Any], tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """torchgate's v1 answer (with every class: ``top_k`` = classes) against a peer's
    ``{"index", "label", "probabilities"}``."""
    ranked = torchgate["predictions"][0]
    by_index = {int(entry["index"]): float(entry["probability"]) for entry in ranked}
    probabilities = [float(p) for p in peer["probabilities"]]
    if sorted(by_index) != list(range(len(probabilities))):
        raise ValueError(
            f"torchgate answered {len(by_index)} classes and the peer {len(probabilities)}; "
            "ask torchgate for every class (top_k)."
        )
    max_diff = max(abs(by_index[i] - p) for i, p in enumerate(probabilities))
    top1 = {"torchgate": ranked[0]["label"], "peer": peer["label"]}
    same_top1 = int(ranked[0]["index"]) == int(peer["index"])
    return {
        "match": same_top1 and max_diff <= tolerance,
        "top1": top1,
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
    }


def check_answers(
    torchgate_url: str, peer_url: str, image: bytes, content_type: str, classes: int
) -> dict[str, Any]:
    """POST the image to both (raw body) and compare; RuntimeError when they disagree."""
    headers = {"content-type": content_type}
    with httpx.Client(timeout=60) as client:
        ours = client.post(torchgate_url, params={"top_k": classes}, content=image, headers=headers)
        theirs = client.post(peer_url, content=image, headers=headers)
    for name, response in (("torchgate", ours), ("the peer", theirs)):
        if response.status_code != 200:
            raise RuntimeError(f"{name} answered {response.status_code}: {response.text[:300]}")
    verdict = compare_answers(ours.json(), theirs.json())
    if not verdict["match"]:
        raise RuntimeError(f"the peer does not serve the same model as torchgate: {verdict}")
    return verdict
