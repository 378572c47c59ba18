"""``model.torch_compile``: which networks are compiled, how, and that a compiled step trains.

Compiling takes a minute or two even at tiny widths on this CPU, so one model runs a compiled
step (VAE2 without VGG); the others check that every name they list resolves.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from revive.models.compiled import resolve_network
from revive.models.vae import VAEModule
from revive.nets.layers import InstanceNorm2d
from tests.conftest import TINY_D, TINY_VAE
from tests.speed.test_mixed_precision import MODELS, build, fit_one_step, samples

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONAL = {"latent_d"}  # VAE2 has no latent discriminator


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    from tests.conftest import make_tiny_stages

    return make_tiny_stages(tmp_path_factory.mktemp("stages"))


@pytest.mark.parametrize("name", MODELS)
def test_every_listed_network_exists(name, stages) -> None:
    model = build(name, stages, channels_last=False)
    found = {net: resolve_network(model, net) for net in model.compiled_networks}
    assert all(isinstance(m, nn.Module) or net in OPTIONAL for net, m in found.items()), found
    assert bool(found) == (name != "scratch")  # the detector trains eager (see its comment)
    if name == "ttsr":  # the WGAN-GP critic differentiates its gradient: never compiled
        assert model.discriminator is not None and "discriminator" not in found


def test_resolve_network_rejects_a_wrong_name(stages) -> None:
    model = build("vae2", stages, channels_last=False)
    assert resolve_network(model, "latent_d") is None
    with pytest.raises(AttributeError):
        resolve_network(model, "vae.encodr")
    with pytest.raises(TypeError, match="not a network"):
        resolve_network(model, "w")


def test_instance_norm_compiles_to_torchs_values_and_gradients() -> None:
    torch.manual_seed(0)
    norm = InstanceNorm2d(4, affine=True)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = (torch.randn(2, 4, 8, 8) * 3 + 5).requires_grad_()
    eager = nn.functional.instance_norm(x, weight=norm.weight, bias=norm.bias)
    eager.pow(2).sum().backward()
    expected = x.grad.clone(), norm.weight.grad.clone()
    x.grad, norm.weight.grad = None, None
    compiled = torch.compile(norm, dynamic=False)
    out = compiled(x)
    out.pow(2).sum().backward()
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad, expected[0], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(norm.weight.grad, expected[1], rtol=1e-3, atol=1e-3)


def test_a_compiled_bf16_step_trains_and_keeps_the_checkpoint_keys() -> None:
    def vae2(compile_: bool) -> VAEModule:
        torch.manual_seed(0)
        return VAEModule(
            net=TINY_VAE, image_d=TINY_D, vgg_on_missing="disable", channels_last=True,
            torch_compile=compile_,
        )  # fmt: skip

    model, eager = vae2(True), vae2(False)
    seen: list[torch.dtype] = []
    model.vae.decoder.register_forward_hook(lambda m, args, out: seen.append(args[0].dtype))
    before = model.vae.decoder[-2].weight.detach().clone()
    trainer = fit_one_step(model, samples("vae2"), "bf16-mixed")
    for name in ("vae.encoder", "vae.decoder", "image_d"):  # compiled in place
        assert resolve_network(model, name)._compiled_call_impl is not None, name
    losses = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    assert not torch.equal(before, model.vae.decoder[-2].weight.detach())
    assert seen and set(seen) == {torch.float32}  # the bf16 latent reaches the graph in fp32
    assert list(model.state_dict()) == list(eager.state_dict())


def test_a_model_that_lists_no_network_trains_eager_and_says_so(stages, caplog) -> None:
    model = build("scratch", stages, channels_last=True)
    model.hparams["torch_compile"] = True
    with caplog.at_level("WARNING", logger="revive.models.compiled"):
        model.configure_model()
    assert model.net._compiled_call_impl is None
    assert "compiles none of its networks" in caplog.text
