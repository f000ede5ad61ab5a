"""The shared optimisation step: update, non-finite check, gradient surgery on unscaled gradients, state."""

from __future__ import annotations

import pytest
import torch

from dinomed.engine import Optimization, Precision, ProcessContext, TrainingDiverged


def _setup() -> tuple[torch.nn.Linear, Optimization]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = Optimization(torch.optim.SGD(model.parameters(), lr=0.1), Precision.resolve("fp32", torch.device("cpu")),
                       ProcessContext())
    return model, opt


def test_a_step_moves_the_weights_along_the_gradient() -> None:
    model, opt = _setup()
    before = model.weight.detach().clone()
    x = torch.ones(2, 3)
    loss = model(x).sum()
    opt.step(loss, where="step 0")
    torch.testing.assert_close(model.weight, before - 0.1 * torch.full_like(before, 2.0))


def test_a_non_finite_loss_raises_before_touching_the_weights(tmp_path) -> None:
    model, opt = _setup()
    before = model.weight.detach().clone()
    loss = model(torch.ones(1, 3)).sum() * float("nan")
    with pytest.raises(TrainingDiverged, match="loss is nan at step 7; no checkpoint had been written yet"):
        opt.step(loss, where="step 7")
    assert torch.equal(model.weight, before)
    ckpt = tmp_path / "last.pt"
    ckpt.write_bytes(b"x")
    err = TrainingDiverged("loss is inf at step 3").at(ckpt, "Lower the lr.")
    assert f"last good checkpoint kept at {ckpt}. Lower the lr." in str(err)


def test_clip_and_surgery_run_before_the_update() -> None:
    model, opt = _setup()
    seen = []
    opt.step(model(torch.ones(1, 3)).sum() * 100, where="step 0",
             clip=lambda: seen.append(("clip", model.weight.grad.abs().max().item())),
             before_step=lambda: seen.append(("surgery", model.weight.grad is not None)))
    assert seen == [("clip", 100.0), ("surgery", True)]


def test_state_round_trip() -> None:
    model, opt = _setup()
    opt.step(model(torch.ones(1, 3)).sum(), where="step 0")
    state = opt.state_dict()
    assert set(state) == {"optimizer", "scaler"}
    _, again = _setup()
    again.load_state_dict(state)
    assert again.optimizer.state_dict()["param_groups"] == opt.optimizer.state_dict()["param_groups"]
