"""``model.torch_compile``: compile the networks a training step runs, in place.

``nn.Module.compile`` wraps a module's call in ``torch.compile`` without renaming anything, so
state_dict keys, checkpoints and the inference CLIs (which build eager networks) are unchanged.
Inductor fuses the elementwise work between convolutions (InstanceNorm, activations, pads, the
casts of autocast), which in eager mode costs as much as the convolutions themselves on a CPU.
The price is the compilation during the first steps, 1.5-4 min per model at paper width on
two CPU cores from a cold cache (seconds with inductor's on-disk cache warm), and again for
every new input shape
(validation crops). Where compiling broke training it is left out: see each module's
``compiled_networks`` and experiments/benchmarks/README.md.

Inputs reach a compiled network in fp32 (a pre-hook outside the graph casts them; autocast
casts them back for the first conv): with torch 2.14.1, inductor's vectorised CPU kernels
returned non-finite gradients for the VAE decoder fed a bf16 latent at 256 px and finite ones
fed the same latent in fp32 (paper width; test widths do not show it). It also keeps one graph
per network where the discriminators see bf16 fakes and fp32 reals.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


@torch.compiler.disable
def _floating_inputs_to_fp32(module: nn.Module, args: tuple) -> tuple:
    # Outside the compiled graph (a graph break), so the graph always starts from fp32 tensors.
    return tuple(
        a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args
    )


def resolve_network(root: nn.Module, name: str) -> nn.Module | None:
    """``root``'s submodule at the dotted ``name``; None if a step of the path is None (an
    optional network that this configuration does not build). A wrong name raises."""
    module: object = root
    for part in name.split("."):
        module = getattr(module, part)
        if module is None:
            return None
    if not isinstance(module, nn.Module):
        raise TypeError(f"{type(root).__name__}.{name} is not a network ({type(module).__name__})")
    return module


class CompiledNetworks:
    """LightningModule mixin: with ``hparams.torch_compile``, each network named in
    ``compiled_networks`` is compiled in place when the Trainer sets the model up.

    Networks are listed where the training step calls them (``vae.encoder`` rather than ``vae``
    when the step calls ``vae.encode``): only a module's ``__call__`` is compiled. Networks whose
    gradient is differentiated again (a WGAN-GP critic) must not be listed: compiled graphs do
    not support double backward.
    """

    compiled_networks: tuple[str, ...] = ()

    def configure_model(self) -> None:
        super().configure_model()
        if not self.hparams.get("torch_compile", False):
            return
        if not self.compiled_networks:
            log.warning(
                "model.torch_compile=true: %s compiles none of its networks (see its "
                "compiled_networks); training runs eager.",
                type(self).__name__,
            )
            return
        names = []
        for name in self.compiled_networks:
            module = resolve_network(self, name)
            if module is not None and getattr(module, "_compiled_call_impl", None) is None:
                module.register_forward_pre_hook(_floating_inputs_to_fp32)
                module.compile(dynamic=False)
                names.append(name)
        if names:
            log.info("torch.compile: %s (compiled during the first steps)", ", ".join(names))
