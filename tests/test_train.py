"""Training runs end to end: resume, distillation from a teacher, pruning, and the lineage checkpoints record.

Runs in the workstation venv (marker ``convert``) on a tiny synthetic shard.
"""

import pytest

pytestmark = pytest.mark.convert

torch = pytest.importorskip("torch", reason="the convert stack (torch, onnx2tf) runs in .venv-convert")


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    from convert.data import render_shard, save_shard
    from convert.train import spec_for

    folder = tmp_path_factory.mktemp("synth")
    pixels, texts, kinds = render_shard(3, 160, *spec_for(128), kinds=("seg7",))
    save_shard(folder / "shard-00003.npz", pixels, texts, kinds)
    return folder


def _cfg(out, shard_dir, **kw):
    from convert.train import TrainConfig

    base = dict(out=str(out), preset="tiny-conv", width=128, synth=(str(shard_dir / "shard-00003.npz"),),
                steps=20, batch_size=16, threads=1, eval_every=1000, checkpoint_every=10)
    return TrainConfig(**{**base, **kw})


def test_train_resumes_and_distills_with_lineage(tmp_path, shard_dir):
    from convert.crnn import count_parameters
    from convert.prune import prune_channels
    from convert.train import distill_loss, lineage_of, load_checkpoint, save_checkpoint, train

    teacher_path = train(_cfg(tmp_path / "teacher", shard_dir, preset="tiny"))
    teacher, state = load_checkpoint(teacher_path)
    assert state["step"] == 20 and state["lineage"] == {}

    # a longer run in the same folder resumes at step 20 instead of starting again
    more = _cfg(tmp_path / "teacher", shard_dir, preset="tiny", steps=30)
    _, resumed = load_checkpoint(train(more))
    assert resumed["step"] == 30 and [h["step"] for h in resumed["history"]] == [20, 30]

    student_path = train(_cfg(tmp_path / "student", shard_dir, teacher=str(teacher_path), kd_weight=0.5))
    student, state = load_checkpoint(student_path)
    assert state["lineage"]["teacher"]["recipe"]["preset"] == "tiny"
    assert state["lineage"]["teacher"]["synth"] == [str(shard_dir)]
    assert state["recipe"]["teacher"] == str(teacher_path)

    x = torch.randn(4, 1, 32, 128)
    with torch.no_grad():
        s, t = student(x), teacher(x)
    assert s.shape == t.shape  # same frame count: the KL is per frame
    assert distill_loss(t, t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distill_loss(s, t, 2.0).item() > 0

    pruned = prune_channels(student, 0.25)
    assert count_parameters(pruned) < count_parameters(student)
    save_checkpoint(tmp_path / "pruned.pt", pruned, 0, _cfg(tmp_path, shard_dir),
                    lineage={"pruned": {"fraction": 0.25, "from": lineage_of(state)}})
    tuned_path = train(_cfg(tmp_path / "tuned", shard_dir, init=str(tmp_path / "pruned.pt"), steps=10,
                            teacher=str(teacher_path)))
    tuned, tuned_state = load_checkpoint(tuned_path)
    assert tuned.cfg.channels == pruned.cfg.channels
    chain = tuned_state["lineage"]["init"]["pruned"]["from"]
    assert chain["teacher"]["recipe"]["preset"] == "tiny" and chain["step"] == 20


def test_quantisation_aware_training_simulates_int8_and_saves_plain_weights(tmp_path, shard_dir):
    from convert.crnn import build
    from convert.qat import prepare_qat
    from convert.train import load_checkpoint, train

    model = build("tiny-conv", 84, 128).eval()
    x = torch.randn(4, 1, 32, 128)
    with torch.no_grad():
        want = model(x)
    net = prepare_qat(model).train()
    got = net(x)
    assert got.shape == want.shape
    assert 0 < (got - want).abs().max().item() < 0.2 * want.abs().max().item()  # rounded, not broken
    got.sum().backward()
    conv = model.backbone.features[0][0]
    assert conv.parametrizations.weight.original.grad.abs().sum() > 0  # straight-through gradients
    weight = conv.weight.detach()
    steps = weight / (weight.abs().flatten(1).amax(1).view(-1, 1, 1, 1) / 127)
    assert torch.allclose(steps, steps.round(), atol=1e-3)  # the forward sees int8 per-channel weights
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))  # frozen BN

    start = train(_cfg(tmp_path / "float", shard_dir))
    tuned, state = load_checkpoint(train(_cfg(tmp_path / "qat", shard_dir, init=str(start), qat=True, steps=10)))
    assert state["recipe"]["qat"] and all("parametrizations" not in k for k in state["state_dict"])
    assert not any("parametrizations" in name for name, _ in tuned.named_parameters())
    with pytest.raises(ValueError, match="conv-sequence"):
        prepare_qat(build("tiny", 84, 128))
