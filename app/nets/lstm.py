"""A bidirectional LSTM that classifies an image read row by row."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RowLSTM"]


class RowLSTM(nn.Module):
    """Normalized rows [N, T, input_size] (T >= 1) -> logits [N, num_classes].

    Each image row is one time step; the head sees the final hidden state of the
    forward direction (after the last row) and of the backward one (after the first),
    so any sequence length works, including a single row. With ``readout="last_mean"``
    it also sees the top layer's outputs averaged over the rows: every row then reaches
    the head in one step instead of only through the recurrence.
    """

    READOUTS = ("last", "last_mean")

    def __init__(
        self,
        num_classes: int = 10,
        input_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        head_dropout: float = 0.2,
        readout: str = "last",
    ) -> None:
        super().__init__()
        if readout not in self.READOUTS:
            raise ValueError(f"readout must be one of {self.READOUTS}, not {readout!r}")
        self.readout = readout
        self.lstm = nn.LSTM(
            input_size=input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        features = (4 if readout == "last_mean" else 2) * hidden_size
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(features, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        outputs, (h_n, _) = self.lstm(x)
        # h_n: [num_layers * 2, N, hidden]; the last two are the top layer's directions.
        last = torch.cat((h_n[-2], h_n[-1]), dim=1)
        if self.readout == "last":
            return self.head(last)
        return self.head(torch.cat((last, outputs.mean(dim=1)), dim=1))
