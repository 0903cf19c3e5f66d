"""The work counter of benchmarks/gpu_notebook_minutes.py, checked against torch's own FLOP counter.

README's table of the gpu profile's minutes per notebook rests on this counter: a forward hook on
every Conv/Linear call adds its multiply-accumulates, three times over where a backward follows, and
scales a batch of a loader by the real split's size over the generated one's. It runs in a fresh
interpreter here (the hooks are global), on a ResNet-8, and must agree with FlopCounterMode.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_notebook_minutes as bench  # noqa: E402

SCRIPT = textwrap.dedent('''
    import json, os, sys, torch
    exec(open(sys.argv[1]).read())                       # the startup file the benchmark gives every kernel
    from pruning_utils import DeviceLoader, cifar_resnet, count_flops
    torch.manual_seed(0)
    model = cifar_resnet(8)
    images = torch.randint(0, 256, (90, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (90,))
    train = DeviceLoader(images, labels, batch_size=256, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, pad=4, flip=True)
    test = DeviceLoader(images[:50], labels[:50], batch_size=256, mean=(0.5,) * 3, std=(0.25,) * 3)
    try:                                                 # a forward that raises (as notebook 14 shows one):
        model(torch.zeros(1, 5, 32, 32))                 # the loader batches after it must still be scaled
    except ValueError:
        pass
    for x, y in train:                                   # one training epoch: forward + backward
        torch.nn.functional.cross_entropy(model(x), y).backward()
    with torch.no_grad():
        for x, _ in test:                                # one evaluation pass
            model.eval()(x)
        model(torch.zeros(4, 3, 32, 32))                 # a tensor from no loader: counted once
    _save()
    flops, _ = count_flops(cifar_resnet(8), (1, 3, 32, 32))
    print(json.dumps({"counted": json.load(open(os.environ["PRUNING_COUNT_FILE"])), "forward_macs": flops / 2}))
''')


def test_counter_matches_torchs_flop_counter_and_scales_by_split(tmp_path):
    startup = tmp_path / "startup.py"
    startup.write_text(bench.STARTUP)
    scale = {"train": 500.0, "val": 100.0, "test": 200.0, "test_size": 50, "val_size": 10}
    env = dict(os.environ, PRUNING_COUNT_SCALE=json.dumps(scale), PRUNING_COUNT_FILE=str(tmp_path / "count.json"))
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(startup)], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=110)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    forward = result["forward_macs"]
    # 90 training images, forward + backward (3x), each standing for 500; 50 test images for 200 each; 4 once
    assert result["counted"]["train_macs"] == pytest.approx(90 * 3 * forward * 500, rel=1e-9)
    assert result["counted"]["eval_macs"] == pytest.approx((50 * 200 + 4) * forward, rel=1e-9)


def test_one_counted_epoch_is_the_unit_of_the_table():
    epoch, forward = bench.resnet20_epoch_macs()
    assert forward == pytest.approx(40.55e6, rel=0.01)  # ResNet-20: 40.6 M MACs per 32x32 image (He et al.: 41 M)
    assert epoch == pytest.approx(bench.REAL["train"] * 3 * forward)
