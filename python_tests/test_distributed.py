"""Every family under ``torchrun --nproc-per-node 2`` on the CPU (gloo): both processes train on their own data, end
with identical weights (DistributedDataParallel averaged their gradients; for the GAN both networks), only rank 0
prints and writes files, and the checkpoint holds those weights.

Each process writes its final parameters and a digest of the batches it trained on when DEEPOPS_DUMP_WEIGHTS names
a folder (deepops.train.loop); the test compares the two.  Without the DDP wrapping (or with a process that skips
a step, or a learning rate that differs between processes) the weights differ and the test fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

RUNS = {
    "classifier": ["--epochs", "1", "--image-size", "8", "--batch-size", "128", "--model", "alexnet"],
    # --time-limit: the learning rate follows the training time too, which must be the same on both processes
    "detector": ["--epochs", "2", "--steps", "2", "--batch-size", "4", "--width", "4", "--size", "64",
                 "--val-images", "1", "--time-limit", "1h"],
    "gan": ["--epochs", "2", "--z-dim", "8", "--g-width", "8", "--d-width", "8", "--batch-size", "32",
            "--limit-images", "128", "--score-n", "100"],
}


@pytest.mark.parametrize("family", sorted(RUNS))
def test_two_processes_end_with_identical_weights(family, tmp_path):
    out, dump = tmp_path / "run", tmp_path / "weights"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               DEEPOPS_DUMP_WEIGHTS=str(dump))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "deepops", "train", family, *RUNS[family], "--device", "cpu", "--seed", "3", "--out", str(out),
           "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("2 process(es) on cpu") == 1  # only rank 0 prints
    ranks = [torch.load(dump / f"rank{i}.pt", weights_only=False) for i in range(2)]
    p0, p1 = ranks[0]["params"], ranks[1]["params"]
    assert list(p0) == list(p1) and len(p0) > 0
    if family == "gan":
        assert any(k.startswith("generator.") for k in p0) and any(k.startswith("discriminator.") for k in p0)
    for k in p0:
        assert torch.equal(p0[k], p1[k]), f"{k} differs between the processes"
    # each process trained on its own share of the data
    assert ranks[0]["data_digest"] != ranks[1]["data_digest"]
    # rank 0 wrote the results, with the reduced metrics and the weights both processes hold
    state = torch.load(out / "last.pt", weights_only=False)
    for k in p0:
        assert torch.equal(state["model"][k], p0[k]), k
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["world_size"] == 2 and m["world_size"] == 2
    assert (out / "curves.png").is_file()
    assert not any(k.startswith("module.") for k in state["model"])
