"""Frozen BatchNorm: fixed running statistics and affine weights, for batches too small to estimate them."""

from __future__ import annotations

from torch import nn

_FROZEN = "_mlcore_frozen_batchnorm"


def _stay_in_eval(module: nn.Module, _inputs: object) -> None:
    # Third-party code (peft, transformers, ultralytics) calls model.train() on its own; re-asserting eval just before
    # each forward keeps the statistics frozen whoever flipped the flag.
    module.eval()


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm1d/2d/3d and SyncBatchNorm in `model`."""
    return [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def freeze_batchnorm(model: nn.Module) -> int:
    """Put every BatchNorm layer in eval mode for good and stop its weights training; returns how many. Idempotent."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.eval()
        for param in layer.parameters(recurse=False):
            param.requires_grad_(False)
        if not getattr(layer, _FROZEN, False):
            layer.register_forward_pre_hook(_stay_in_eval)
            setattr(layer, _FROZEN, True)
    return len(layers)


def refreeze_batchnorm(model: nn.Module) -> None:
    """After `model.train()`: put the frozen layers back in eval mode, so `.training` reads right immediately."""
    for layer in batchnorm_layers(model):
        if getattr(layer, _FROZEN, False):
            layer.eval()
