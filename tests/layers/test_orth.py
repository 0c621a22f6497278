"""The OCNN regulariser (Wang et al. CVPR 2020) as CoC's ``orth`` option."""

import torch
from torch import nn

from layers import GMConv2d, orth_loss
from layers.orth import conv_orth_distance, gram_orth_distance


def _delta_kernel(c):
    w = torch.zeros(c, c, 3, 3)
    w[torch.arange(c), torch.arange(c), 1, 1] = 1
    return w


def test_orthogonal_kernels_have_zero_distance():
    assert float(conv_orth_distance(_delta_kernel(4), 1)) == 0
    assert float(conv_orth_distance(_delta_kernel(4), 2)) == 0
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    assert float(gram_orth_distance(q[:4].reshape(4, 8, 1, 1))) < 1e-5
    depthwise = torch.zeros(6, 1, 3, 3)
    depthwise[:, 0, 1, 1] = 1
    assert float(conv_orth_distance(depthwise, 1, groups=6)) == 0


def test_distance_matches_direct_formula():
    w = torch.randn(4, 3, 3, 3)
    out = torch.nn.functional.conv2d(w, w, padding=1)
    target = torch.zeros_like(out)
    target[:, :, 1, 1] = torch.eye(4)
    torch.testing.assert_close(conv_orth_distance(w, 1), torch.linalg.vector_norm(out - target))
    g = torch.randn(3, 8, 1, 1)  # 3 < 8: Gram on the 3 x 3 side
    m = g.flatten(1)
    torch.testing.assert_close(gram_orth_distance(g), torch.linalg.vector_norm(m @ m.T - torch.eye(3)))


def test_grouped_distance_is_sum_over_groups():
    w = torch.randn(6, 2, 3, 3)
    grouped = conv_orth_distance(w, 1, groups=3)
    parts = torch.stack([conv_orth_distance(w[2 * j:2 * j + 2], 1) for j in range(3)])
    torch.testing.assert_close(grouped, parts.square().sum().sqrt())


def test_orth_loss_excludes_stem_and_uses_weight():
    model = nn.Sequential(nn.Conv2d(3, 4, 7), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 8, 1))
    expected = conv_orth_distance(model[1].weight, 1) + gram_orth_distance(model[2].weight)
    torch.testing.assert_close(orth_loss(model), 0.1 * expected)
    torch.testing.assert_close(orth_loss(model, weight=1.0), expected)
    loss = orth_loss(model)
    loss.backward()
    assert model[0].weight.grad is None and model[1].weight.grad is not None
    assert loss.dim() == 0


def test_orth_loss_uses_the_effective_kernel_of_variants():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), GMConv2d(4, 4, 3, sigma_init=0.5))
    masked = model[1].get_equivalent_kernel_bias()[0]
    torch.testing.assert_close(orth_loss(model, 1.0), conv_orth_distance(masked, 1))
