"""Tian et al. 2020, contrastive representation distillation (CRD): the NCE loss.

A memory bank holds one embedding per training sample; for each sample, its positive pair and K
negatives drawn from the bank are scored ``exp(<v, m> / nce_T) / Z``. The loss is noise-contrastive
estimation against a uniform noise distribution over the N samples.
"""

import torch


def contrast_nce_loss(scores: torch.Tensor, n_data: int, eps: float = 1e-7) -> torch.Tensor:
    """(B, K + 1) scores, positive first -> scalar NCE loss (summed over pairs, batch-averaged).

    ``-[log D(pos) + sum_k log(1 - D(neg_k))]`` with ``D(x) = x / (x + K / n_data)``, the
    posterior that a score came from the data rather than from the uniform noise.
    """
    k = scores.shape[1] - 1
    noise = k / n_data
    log_d1 = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    log_d0 = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]
