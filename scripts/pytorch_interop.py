"""Interchange check between resnext-ddp and the PyTorch reference model (shared/reference/resnext.py).

  python scripts/pytorch_interop.py export OUT_DIR
      writes OUT_DIR/pytorch_11_2x2d.safetensors  (safetensors.torch.save_file(model.state_dict()))
      and OUT_DIR/pytorch_11_2x2d_eval.safetensors (a fixed input and the eval-mode logits);
      the Swift tests load both (Tests/ResNeXtTests/Data).
  python scripts/pytorch_interop.py load FILE DEPTH CARDINALITY BASE
      loads a file written by resnext-ddp into the reference with load_state_dict(strict=True)
      and prints the eval logits of the fixed input.

Needs torch, safetensors and numpy (see shared/reference/README.md); not part of the test run.
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'shared', 'reference'))
from resnext import Network  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


def fixed_input():
    g = torch.Generator().manual_seed(11)
    return torch.randn(4, 3, 32, 32, generator=g)


def export(out):
    torch.manual_seed(5)
    model = Network(11, 2, 2)
    # non-trivial BN state, so that eval mode exercises running statistics
    g = torch.Generator().manual_seed(6)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    save_file(model.state_dict(), os.path.join(out, 'pytorch_11_2x2d.safetensors'))
    model.eval()
    x = fixed_input()
    with torch.no_grad():
        logits = model(x)
    save_file({'input': x, 'logits': logits}, os.path.join(out, 'pytorch_11_2x2d_eval.safetensors'))
    print('wrote', out)


def load(path, depth, cardinality, base):
    model = Network(depth, cardinality, base)
    result = model.load_state_dict(load_file(path), strict=True)
    print('load_state_dict(strict=True):', result)
    model.eval()
    with torch.no_grad():
        print(model(fixed_input())[:2])


if __name__ == '__main__':
    if sys.argv[1] == 'export':
        export(sys.argv[2])
    else:
        load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
