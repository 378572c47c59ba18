import torch
import torch.nn.functional as F

from revive.nets.layers import ReflectionPad2d


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
