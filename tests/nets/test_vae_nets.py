"""BOPBTL VAE: 1/4-resolution latent, decoder inverts the shapes, latent noise options."""

from __future__ import annotations

import pytest
import torch

from revive.nets.vae import VAE, VAEDecoder, VAEEncoder


def test_encoder_gives_capped_latent_at_quarter_resolution() -> None:
    encoder = VAEEncoder(in_channels=3, ngf=4, mc=8)
    assert encoder.latent_channels == 8  # 4 * ngf capped at mc
    assert encoder(torch.randn(2, 3, 32, 24)).shape == (2, 8, 8, 6)


def test_decoder_inverts_the_encoder_shapes() -> None:
    decoder = VAEDecoder(out_channels=1, ngf=4, mc=16)
    image = decoder(torch.randn(1, 16, 5, 7))
    assert image.shape == (1, 1, 20, 28)
    assert image.abs().max() <= 1  # tanh output


def test_official_vae_has_only_the_official_parameters_and_decodes_the_mean_in_eval() -> None:
    vae = VAE(ngf=4, mc=8).eval()
    assert all(k.startswith(("encoder.", "decoder.")) for k in vae.state_dict())
    image = torch.randn(2, 3, 16, 16)
    out = vae(image)
    assert out.logvar is None
    assert out.image.shape == image.shape
    assert out.mean.shape == (2, 8, 4, 4)
    assert torch.equal(out.latent, out.mean)
    torch.testing.assert_close(out.image, vae.decode(out.mean))


def test_official_training_noise_has_unit_variance() -> None:
    vae = VAE(ngf=4, mc=8).train()
    out = vae(torch.randn(4, 3, 32, 32))
    noise = out.latent - out.mean
    assert abs(noise.std().item() - 1) < 0.1


def test_learned_variance_head_controls_the_sample() -> None:
    vae = VAE(ngf=4, mc=8, learned_variance=True).train()
    image = torch.randn(2, 3, 16, 16)
    out = vae(image)
    assert out.logvar is not None and out.logvar.shape == out.mean.shape
    assert torch.equal(out.logvar, torch.zeros_like(out.logvar))  # starts at the official std 1
    assert (out.latent - out.mean).abs().max() > 0.5

    with torch.no_grad():
        vae.logvar_head.bias.fill_(-20.0)  # std = exp(-10)
    out = vae(image)
    assert (out.latent - out.mean).abs().max() < 1e-3
    assert not torch.equal(out.latent, out.mean)

    assert torch.equal(vae(image, sample=False).latent, out.mean)


def test_official_encoder_discards_global_colour_offsets_and_contrast() -> None:
    # Its first layer is conv -> InstanceNorm (no affine, reflection padding): a constant added to a
    # colour channel, or the whole image scaled, changes nothing after it. The decoder has to guess
    # each photo's global colour and contrast: the cause of the small VAEs' low reconstruction PSNR.
    torch.manual_seed(0)
    encoder = VAEEncoder(ngf=8, mc=16).eval()
    image = torch.rand(2, 3, 32, 32) * 1.2 - 0.6
    offsets = torch.tensor([0.2, -0.1, 0.05]).view(1, 3, 1, 1)
    with torch.no_grad():
        latent = encoder(image)
        torch.testing.assert_close(encoder(image + offsets), latent, atol=1e-4, rtol=0)
        torch.testing.assert_close(encoder(0.5 * image), latent, atol=1e-2, rtol=0)  # IN's eps
        assert (encoder(image.flip(-1)) - latent).abs().max() > 0.1  # content does change it


def test_norm_none_keeps_colour_in_the_latent_with_the_official_keys() -> None:
    torch.manual_seed(0)
    official, plain = VAE(ngf=4, mc=8), VAE(ngf=4, mc=8, norm="none")
    assert {k: v.shape for k, v in official.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    plain.load_state_dict(official.state_dict())  # the same files load into either
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in plain.modules())
    image = torch.rand(1, 3, 32, 32) - 0.5
    offsets = torch.tensor([0.2, -0.1, 0.05]).view(1, 3, 1, 1)
    with torch.no_grad():
        latent = plain.encoder(image)
        assert (plain.encoder(image + offsets) - latent).abs().max() > 1e-3


def test_unknown_norm_names_the_option() -> None:
    with pytest.raises(ValueError, match="model.net.norm"):
        VAE(ngf=4, mc=8, norm="batch")


def test_sampling_noise_is_the_same_in_every_precision_and_layout():
    mean = torch.randn(2, 4, 5, 3)
    torch.manual_seed(3)
    reference = VAE.reparameterize(mean, None) - mean
    fast = mean.bfloat16().contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    sampled = VAE.reparameterize(fast, None)
    assert sampled.dtype == torch.bfloat16
    assert sampled.is_contiguous(memory_format=torch.channels_last) and not sampled.is_contiguous()
    torch.testing.assert_close((sampled - fast).float(), reference, rtol=0.02, atol=0.02)
