"""TrainingManager: accumulation, clipping, non-finite losses, frozen BatchNorm and precision on CPU (and CUDA)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mlcore.errors import ModelError, TrainingError
from mlcore.training import TrainingManager, resolve_precision
from tests.unit.training.conftest import dynamics, mlp, regression_data


def _manager(model, config=None, *, batches_per_epoch=4, epochs=1, **kwargs) -> TrainingManager:
    return TrainingManager(
        model, model.parameters(), config or dynamics(), device="cpu", batches_per_epoch=batches_per_epoch,
        epochs=epochs, **kwargs,
    )


def _grads_at_each_step(manager: TrainingManager) -> list[list[torch.Tensor]]:
    """The gradients the optimizer actually sees (after unscale and clipping), captured at every step."""
    captured: list[list[torch.Tensor]] = []
    manager.optimizer.register_step_pre_hook(
        lambda *_: captured.append([p.grad.detach().clone() for p in manager.params])
    )
    return captured


def test_accumulating_two_batches_of_two_equals_one_batch_of_four() -> None:
    x, y = regression_data(4)
    torch.manual_seed(0)
    big_model = mlp()
    small_model = copy.deepcopy(big_model)
    config = dict(weight_decay=0.1)

    big = _manager(big_model, dynamics(grad_accum_steps=1, **config))
    big_grads = _grads_at_each_step(big)
    assert big.training_step(lambda: F.mse_loss(big_model(x), y)).stepped

    small = _manager(small_model, dynamics(grad_accum_steps=2, **config))
    small_grads = _grads_at_each_step(small)
    results = [small.training_step(lambda i=i: F.mse_loss(small_model(x[i : i + 2]), y[i : i + 2])) for i in (0, 2)]

    assert [r.stepped for r in results] == [False, True]
    assert small.global_step == big.global_step == 1
    for accumulated, whole in zip(small_grads[0], big_grads[0], strict=True):
        torch.testing.assert_close(accumulated, whole, atol=1e-6, rtol=0)
    for accumulated, whole in zip(small_model.parameters(), big_model.parameters(), strict=True):
        torch.testing.assert_close(accumulated, whole, atol=1e-6, rtol=0)


def test_flush_steps_on_a_partial_window_with_the_mean_gradient_of_its_batches() -> None:
    x, y = regression_data(6)
    model = mlp()
    manager = _manager(model, dynamics(grad_accum_steps=2), batches_per_epoch=3)
    grads = _grads_at_each_step(manager)
    for i in (0, 2):
        manager.training_step(lambda i=i: F.mse_loss(model(x[i : i + 2]), y[i : i + 2]))
    expected = torch.autograd.grad(F.mse_loss(model(x[4:]), y[4:]), manager.params)

    assert not manager.training_step(lambda: F.mse_loss(model(x[4:]), y[4:])).stepped
    assert not manager.at_step_boundary
    assert manager.flush()
    assert manager.at_step_boundary and manager.global_step == 2 and not manager.flush()
    for got, want in zip(grads[1], expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_gradients_are_clipped_to_max_norm_before_the_optimizer_step() -> None:
    x, y = regression_data(8)
    model = mlp()
    manager = _manager(model, dynamics(clip_grad_norm=0.1))
    grads = _grads_at_each_step(manager)

    result = manager.training_step(lambda: 1000 * F.mse_loss(model(x), y))

    clipped = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads[0]]))
    assert result.grad_norm is not None and result.grad_norm > 1.0  # far above the limit before clipping
    assert clipped <= 0.1 + 1e-6
    assert clipped == pytest.approx(0.1, rel=1e-4)


def test_non_finite_losses_are_skipped_and_too_many_in_a_row_stop_training(mlcore_logs) -> None:
    x, y = regression_data(4)
    model = mlp()
    manager = _manager(model, max_nonfinite_in_a_row=3)
    before = copy.deepcopy(model.state_dict())

    def nan_loss() -> torch.Tensor:
        return F.mse_loss(model(x), y) * float("nan")

    result = manager.training_step(nan_loss)
    assert result.skipped and not result.stepped
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert manager.nonfinite_total == 1 and manager.global_step == 0
    assert any("loss is nan" in r.getMessage() and r.levelname == "WARNING" for r in mlcore_logs)

    manager.training_step(nan_loss)
    assert manager.training_step(lambda: F.mse_loss(model(x), y)).stepped  # a good step resets the count
    manager.training_step(nan_loss)
    manager.training_step(nan_loss)
    with pytest.raises(TrainingError, match="3 non-finite"):
        manager.training_step(nan_loss)
    assert manager.nonfinite_total == 5


def test_frozen_batchnorm_stays_frozen_across_train_calls() -> None:
    x, y = regression_data(8)
    model = mlp(batchnorm=True)
    batchnorm = model[1]
    manager = _manager(model, dynamics(freeze_batchnorm=True))
    frozen = copy.deepcopy(batchnorm.state_dict())
    linear_before = model[0].weight.detach().clone()

    assert manager.frozen_batchnorm_layers == 1
    assert not batchnorm.weight.requires_grad and not batchnorm.bias.requires_grad
    assert all(p is not batchnorm.weight and p is not batchnorm.bias for p in manager.params)
    manager.train()
    assert model.training and model[0].training and not batchnorm.training
    model.train()  # third-party code flipping the whole model back to train mode
    for _ in range(3):
        assert manager.training_step(lambda: F.mse_loss(model(3 * x + 5), y)).stepped

    assert all(torch.equal(v, frozen[k]) for k, v in batchnorm.state_dict().items())  # statistics and affine
    assert not torch.equal(model[0].weight, linear_before)  # the rest did train
    # Control: the same steps move the statistics of a BatchNorm that is not frozen.
    free = mlp(batchnorm=True)
    free_manager = _manager(free)
    free_manager.train()
    free_manager.training_step(lambda: F.mse_loss(free(3 * x + 5), y))
    assert not torch.equal(free[1].running_mean, frozen["running_mean"])


def test_only_trainable_parameters_reach_the_optimizer() -> None:
    model = mlp()
    model[0].requires_grad_(False)
    manager = _manager(model)
    assert {id(p) for p in manager.params} == {id(p) for p in model[3].parameters()}
    model.requires_grad_(False)
    with pytest.raises(ModelError, match="no trainable parameters"):
        _manager(model)


@pytest.mark.parametrize("setting", ["auto", "bf16", "fp16", "off"])
def test_cpu_trains_in_plain_fp32_without_autocast(setting: str) -> None:
    x, y = regression_data(4)
    model = mlp()
    manager = _manager(model, dynamics(mixed_precision=setting))
    seen = {}

    def loss() -> torch.Tensor:
        seen["autocast"] = torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
        out = model(x)
        seen["dtype"] = out.dtype
        return F.mse_loss(out, y)

    assert manager.training_step(loss).stepped
    assert seen == {"autocast": False, "dtype": torch.float32}
    assert manager.precision.dtype is None and manager.precision.name == "fp32" and manager.scaler is None


def test_explicit_half_precision_on_cpu_is_downgraded_with_one_log_line(mlcore_logs) -> None:
    assert resolve_precision("auto", "cpu").name == "fp32"
    assert not [r for r in mlcore_logs if "fp32" in r.getMessage()]
    assert resolve_precision("bf16", "cpu").name == "fp32"
    lines = [r.getMessage() for r in mlcore_logs if "needs CUDA" in r.getMessage()]
    assert lines == ["mixed_precision bf16 needs CUDA; training in fp32 on cpu"]


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_picks_bf16_where_native_else_fp16_with_a_scaler(monkeypatch, native_bf16, expected) -> None:
    # Only the decision, so it runs without a GPU; the real kernels are covered by the CUDA test below.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16)
    precision = resolve_precision("auto", "cuda")
    assert precision.name == expected
    assert precision.needs_scaler == (expected == "fp16")
    assert resolve_precision("off", "cuda").dtype is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: bf16/fp16 autocast and GradScaler run on a GPU")
@pytest.mark.parametrize(("setting", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_cuda_steps_under_autocast_with_a_scaler_for_fp16(setting: str, dtype: torch.dtype) -> None:
    if setting == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    x, y = (t.cuda() for t in regression_data(16))
    model = mlp().cuda()
    before = copy.deepcopy(model.state_dict())
    manager = TrainingManager(
        model, model.parameters(), dynamics(mixed_precision=setting, clip_grad_norm=0.1), device="cuda",
        batches_per_epoch=20, epochs=1,
    )
    seen = []

    def loss() -> torch.Tensor:
        out = model(x)
        seen.append((torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"), out.dtype))
        return F.mse_loss(out.float(), y)

    results = [manager.training_step(loss) for _ in range(20)]
    assert seen[0] == (True, dtype, dtype)
    assert (manager.scaler is not None) == (setting == "fp16")
    assert any(r.stepped for r in results) and manager.global_step == 20
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    state = manager.state_dict()
    assert (state["scaler"] is not None) == (setting == "fp16") and state["precision"] == setting
