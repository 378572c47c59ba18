import pytest
import torch
import torch.nn.functional as F

from revive.nets.layers import InstanceNorm2d, ReflectionPad2d


def test_reflection_pad_keeps_bf16_under_autocast_with_the_same_values():
    x = torch.randn(2, 3, 5, 6).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = ReflectionPad2d((1, 2, 3, 1))(x)
        torchs = torch.nn.ReflectionPad2d((1, 2, 3, 1))(x)
    assert torchs.dtype == torch.float32  # what autocast does to torch's pad
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours.float(), F.pad(x.float(), (1, 2, 3, 1), mode="reflect"))


def test_reflection_pad_is_torchs_outside_autocast():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    pad = ReflectionPad2d(2)
    assert isinstance(pad, torch.nn.ReflectionPad2d)
    assert torch.equal(pad(x), torch.nn.ReflectionPad2d(2)(x))
    pad(x).sum().backward()
    assert x.grad is not None and x.grad.sum() == pad(x).numel()


def _norm_pair(affine: bool) -> tuple[InstanceNorm2d, torch.nn.InstanceNorm2d]:
    ours = InstanceNorm2d(6, affine=affine)
    if affine:
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5)
            ours.bias.uniform_(-1.0, 1.0)
    torchs = torch.nn.InstanceNorm2d(6, affine=affine)
    torchs.load_state_dict(ours.state_dict())
    return ours, torchs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_on_channels_last_matches_torch_and_stays_channels_last(dtype, affine):
    torch.manual_seed(0)
    ours, torchs = _norm_pair(affine)
    x = (torch.randn(3, 6, 9, 7) * 2 + 1).to(dtype)  # an offset mean, as after a conv
    grad = torch.randn(3, 6, 9, 7).to(dtype)
    x_ref = x.clone().requires_grad_()
    torchs(x_ref).backward(grad)
    x_cl = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    y = ours(x_cl)
    y.backward(grad.contiguous(memory_format=torch.channels_last))

    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    assert x_cl.grad.is_contiguous(memory_format=torch.channels_last)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(y.float(), torchs(x).float(), atol=tol, rtol=tol)
    torch.testing.assert_close(x_cl.grad.float(), x_ref.grad.float(), atol=tol, rtol=tol)
    if affine:
        torch.testing.assert_close(ours.weight.grad, torchs.weight.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours.bias.grad, torchs.bias.grad, atol=1e-4, rtol=1e-4)


def test_instance_norm_on_channels_last_under_autocast_keeps_bf16_and_fp32_weights():
    ours, torchs = _norm_pair(affine=True)
    x = torch.randn(2, 6, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x.bfloat16())
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert ours.weight.grad.dtype == torch.float32 and torch.isfinite(ours.weight.grad).all()
    torch.testing.assert_close(y.float(), torchs(x.bfloat16()).float(), atol=2e-2, rtol=2e-2)


def test_instance_norm_on_nchw_is_torchs():
    ours, torchs = _norm_pair(affine=False)
    x = torch.randn(2, 6, 5, 5)
    assert torch.equal(ours(x), torchs(x))


def test_a_channels_last_vae_encoder_stays_channels_last_through_its_norms():
    from revive.nets.vae import VAEEncoder

    encoder = VAEEncoder(ngf=8, mc=8).to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    layouts = []
    for module in encoder.modules():
        if isinstance(module, InstanceNorm2d):
            module.register_forward_hook(
                lambda m, args, out: layouts.append(
                    out.is_contiguous(memory_format=torch.channels_last)
                )
            )
    encoder(x)
    assert layouts and all(layouts)  # torch's own norm would hand back NCHW here
