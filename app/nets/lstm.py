"""A bidirectional LSTM that classifies an image read row by row."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RowLSTM"]


class RowLSTM(nn.Module):
    """Normalized rows [N, T, input_size] (T >= 1) -> logits [N, num_classes].

    Each image row is one time step; the head sees the final hidden state of the
    forward direction (after the last row) and of the backward one (after the first),
    so any sequence length works, including a single row.
    """

    def __init__(
        self,
        num_classes: int = 10,
        input_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        head_dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(2 * hidden_size, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        _, (h_n, _) = self.lstm(x)
        # h_n: [num_layers * 2, N, hidden]; the last two are the top layer's directions.
        return self.head(torch.cat((h_n[-2], h_n[-1]), dim=1))
