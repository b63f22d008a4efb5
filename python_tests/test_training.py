"""The shared training loop (deepops.train.loop): the three families take the same command shape, write the same
files, resume exactly (an interrupted run resumed equals the straight run, bit for bit), stop at a time limit, and
shard global batches among processes as documented.  The torchrun runs are in test_distributed.py."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from deepops.cli import main
from deepops.train.loop import add_loop_arguments, loop_arguments, shard

# the smallest runs of each family (a few seconds each on 2 cores)
TINY = {
    "classifier": ["--image-size", "8", "--batch-size", "128", "--val-fraction", "0.1", "--test-fraction", "0.1"],
    "detector": ["--steps", "2", "--batch-size", "2", "--width", "4", "--size", "64", "--val-images", "1"],
    "gan": ["--z-dim", "8", "--g-width", "8", "--d-width", "8", "--batch-size", "32", "--limit-images", "96",
            "--no-score"],
}


def _train(family, out, *extra):
    args = ["train", family, *TINY[family], "--out", str(out), "--seed", "1", "--device", "cpu", "--no-progress", *extra]
    assert main(args) == 0


@pytest.mark.parametrize("family", sorted(TINY))
def test_same_command_shape_and_exact_resume(family, tmp_path, capsys):
    a, b = tmp_path / "straight", tmp_path / "resumed"
    _train(family, a, "--epochs", "2")
    _train(family, b, "--epochs", "2", "--stop-after", "1")  # an interrupted run (a time slot of one epoch)
    first = torch.load(b / "last.pt", weights_only=False)
    assert first["epoch"] == 1
    _train(family, b, "--epochs", "2", "--resume", str(b / "last.pt"))
    text = capsys.readouterr().out
    assert "epoch   2/2" in text and "1 process(es) on cpu" in text
    sa, sb = (torch.load(d / "last.pt", weights_only=False) for d in (a, b))
    assert sa["epoch"] == sb["epoch"] == 2
    assert list(sa["model"]) == list(sb["model"])
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    # the same files for every family; the history continues across the resume
    for d in (a, b):
        for f in ("last.pt", "metrics.json", "curves.png"):
            assert (d / f).stat().st_size > 100, (d, f)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    hist = lambda m: m["history"]["epochs"] if family == "gan" else m["history"]  # noqa: E731
    assert [h["epoch"] for h in hist(mb)] == [1, 2] and ma["epochs_done"] == mb["epochs_done"] == 2
    for key in ("steps", "seconds", "lr"):
        assert all(key in h for h in hist(mb)), key
    assert mb["config"]["world_size"] == 1 and mb["command"].startswith("deepops train " + family)
    assert mb["train_s"] == pytest.approx(sum(h["seconds"] for h in hist(mb)))
    # the step averages, validation numbers, ... of the interrupted-then-resumed run are the straight run's
    skip = {"seconds", "cpu_seconds", "elapsed_s"}
    for ha, hb in zip(hist(ma), hist(mb)):
        assert {k: v for k, v in ha.items() if k not in skip} == {k: v for k, v in hb.items() if k not in skip}


@pytest.mark.parametrize("family", sorted(TINY))
def test_time_limit_stops_before_an_epoch_that_would_not_fit(family, tmp_path, capsys):
    out = tmp_path / "run"
    _train(family, out, "--epochs", "3", "--time-limit", "1e-6s")
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 1  # the first epoch always runs
    assert "time limit" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="'--epochs'"):
        _train(family, out, "--epochs", "0")


def test_duration_units_and_options():
    # one unit for every family: a bare number is seconds
    for given, seconds in [("90", 90), ("90s", 90), ("14m", 840), ("10min", 600), ("1.5h", 5400), ("0", 0)]:
        p = argparse.ArgumentParser()
        add_loop_arguments(p, epochs=3, out="x")
        opts = loop_arguments(p.parse_args(["--time-limit", given]))
        assert opts["time_limit"] == (seconds or None), given
    p = argparse.ArgumentParser()
    add_loop_arguments(p, epochs=3, out="x")
    opts = loop_arguments(p.parse_args(["--no-progress", "--resume", "a.pt", "--stop-after", "2"]))
    assert opts == {"epochs": 3, "seed": 0, "device": None, "out": "x", "resume": "a.pt", "time_limit": None,
                    "stop_after": 2, "threads": None, "progress": False}
    with pytest.raises(SystemExit):
        p.parse_args(["--time-limit", "ten minutes"])


def test_shard_splits_every_global_batch_among_processes():
    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    one = shard(order, 8, 0, 1, drop_last=False)
    assert [len(b) for b in one] == [8, 8, 7] and torch.equal(torch.cat(one), order)
    assert [len(b) for b in shard(order, 8, 0, 1, drop_last=True)] == [8, 8]
    parts = [shard(order, 8, r, 2, drop_last=False) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 3  # the same number of steps on every process
    for b in range(3):  # each process its own half of every batch (the order is padded to 24 with its start)
        assert len(parts[0][b]) == len(parts[1][b]) >= 1
        assert not set(parts[0][b].tolist()) & set(parts[1][b].tolist())
    covered = set(torch.cat([torch.cat(p) for p in parts]).tolist())
    assert covered == set(order.tolist())
    # three processes and a global batch of 8: 2 each (the global batch rounded down to 6)
    assert {len(b) for r in range(3) for b in shard(order, 8, r, 3, drop_last=True)} == {2}
