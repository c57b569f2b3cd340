"""What a stored view holds (``summarise``) and the logits a strategy reads back from it
(``dense_logits``): all C logits, or the top k plus one "rest" logit."""

import math

import torch

ZERO_GAP = 1e4  # rest=zero: the other classes sit this far below the top k (exp(-1e4 / T) == 0)


def summarise(logits: torch.Tensor, topk: int | None) -> dict[str, torch.Tensor]:
    """(B, C) float32 teacher logits -> what a view stores: fp16 values, indices, rest logit."""
    if topk is None:
        return {"values": logits.half()}
    values, indices = logits.topk(topk, dim=1)
    others = logits.scatter(1, indices, float("-inf"))
    rest = torch.logsumexp(others, dim=1) - math.log(logits.shape[1] - topk)
    index_type = torch.int16 if logits.shape[1] <= torch.iinfo(torch.int16).max else torch.int32
    return {"values": values.half(), "indices": indices.to(index_type), "rest": rest.half()}


def dense_logits(
    values: torch.Tensor, indices: torch.Tensor, rest: torch.Tensor | None, num_classes: int, mode: str
) -> torch.Tensor:
    """Stored top-k outputs -> (B, C) logits: (B, k) values, (B, k) class indices, (B,) rest logit.

    The top-k classes keep their logits. ``uniform``: every other class gets the rest logit (the
    log-mean-exp of their logits), so at T = 1 their total probability is exact and spread evenly;
    at T > 1 it is an estimate. ``zero``: they sit ``ZERO_GAP`` below the smallest kept logit, so
    the top k share all the probability (renormalised) at any T.
    """
    values = values.float()
    if values.shape[1] == num_classes:
        return torch.empty_like(values).scatter_(1, indices.long(), values)
    floor = values.min(dim=1, keepdim=True).values - ZERO_GAP
    fill = rest.float()[:, None] if mode == "uniform" else floor
    dense = fill.expand(len(values), num_classes).clone()
    return dense.scatter_(1, indices.long(), values)
