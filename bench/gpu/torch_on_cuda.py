"""Run one PyTorch peer script of ../shared/bench on the GPU, unedited: ``python torch_on_cuda.py SCRIPT [ARGS]``.

- ``torch.set_default_device("cuda")``: the script's modules and the tensors its factories make (randn, arange,
  randint, randperm ...) live on the GPU;
- ``torch.Generator()`` makes a CUDA generator (the peers seed one for their random data; a CPU generator cannot
  feed a CUDA factory);
- ``time.perf_counter()`` synchronises the GPU first, so the peers' own timers include the kernels they queued.
The JSON line is the script's own. Peer code that cannot run this way fails, and ``bench/compare.py`` reports it and
goes on (W1's peer needs ``xautodl``; install it with ``--no-deps`` as ../shared/bench/README.md says).
"""

import runpy
import sys
import time

import torch

if len(sys.argv) < 2:
    sys.exit("torch_on_cuda: error: usage: python torch_on_cuda.py SCRIPT [ARGS]")
if not torch.cuda.is_available():
    sys.exit("torch_on_cuda: error: torch sees no CUDA device (torch.cuda.is_available() is False)")
torch.set_default_device("cuda")
_Generator = torch.Generator
torch.Generator = lambda device="cuda": _Generator(device=device)  # the scripts call torch.Generator()
_perf_counter = time.perf_counter


def _synced_perf_counter() -> float:
    torch.cuda.synchronize()
    return _perf_counter()


time.perf_counter = _synced_perf_counter
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
