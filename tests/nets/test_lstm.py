"""RowLSTM: any number of rows from 1 to 28 gives one logit vector per image."""

from __future__ import annotations

import pytest
import torch

from app.nets import RowLSTM


@pytest.mark.parametrize("steps", [1, 28])
def test_maps_row_sequences_to_ten_logits(steps: int) -> None:
    model = RowLSTM().eval()
    with torch.inference_mode():
        logits = model(torch.randn(3, steps, 28))
    assert logits.shape == (3, 10)
    assert torch.isfinite(logits).all()


def test_is_a_batch_first_bidirectional_lstm_over_28_features() -> None:
    lstm = RowLSTM().lstm
    assert (lstm.input_size, lstm.batch_first, lstm.bidirectional) == (28, True, True)
    assert RowLSTM(num_layers=1).lstm.dropout == 0.0


def test_reads_both_ends_of_the_sequence() -> None:
    """The head sees both directions, so changing the first or the last row changes logits."""
    model = RowLSTM().eval()
    x = torch.randn(1, 28, 28)
    first, last = x.clone(), x.clone()
    first[:, 0] += 3.0
    last[:, -1] += 3.0
    with torch.inference_mode():
        base = model(x)
        assert not torch.allclose(model(first), base)
        assert not torch.allclose(model(last), base)


@pytest.mark.parametrize("steps", [1, 28])
def test_the_mean_readout_adds_the_averaged_outputs_to_the_last_states(steps: int) -> None:
    model = RowLSTM(hidden_size=16, readout="last_mean").eval()
    assert model.head[-1].in_features == 4 * 16  # both directions' last states and mean outputs
    with torch.inference_mode():
        logits = model(torch.randn(2, steps, 28))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_an_unknown_readout_is_refused() -> None:
    with pytest.raises(ValueError, match="readout must be one of"):
        RowLSTM(readout="max")
