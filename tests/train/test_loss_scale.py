"""DynamicLossScaler against torch.amp.GradScaler, across 2 gloo ranks, and fp16/bf16 training."""

import copy
import io
import textwrap

import pytest
import torch
from torch import nn

from deepshrink.data import load_dataset
from deepshrink.models import build_model
from deepshrink.pipeline.train import new_model_info
from deepshrink.train import Trainer, TrainConfig, TrainHook, TrainingDiverged
from deepshrink.train.loss_scale import DynamicLossScaler

INF, NAN = float("inf"), float("nan")

SETTINGS = [
    dict(init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=3),
    dict(init_scale=2.0 ** 10, growth_factor=4.0, backoff_factor=0.25, growth_interval=1),
]


def _inputs() -> torch.Tensor:
    """(40, 5) rows x_t; the loss of step t is <w1, x_t> + <w2, flip(x_t)>, so the gradients
    are x_t * S. Rows 2-4, 20, 33 hold inf/NaN (always skipped); rows 10-12 hold 1e35, finite
    but overflowing float32 once multiplied by a large S; the other rows are long good runs."""
    rows = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    rows[2, 1], rows[3, 0], rows[4, 4], rows[20, 2], rows[33, 3] = INF, -INF, NAN, NAN, INF
    rows[10:13, 0] = 1e35
    return rows


class _Run:
    """Two parameters with an SGD-with-momentum optimiser."""

    def __init__(self):
        generator = torch.Generator().manual_seed(1)
        self.params = [nn.Parameter(torch.randn(5, generator=generator)) for _ in range(2)]
        self.optimizer = torch.optim.SGD(self.params, lr=0.1, momentum=0.9)

    def loss(self, x):
        self.optimizer.zero_grad(set_to_none=True)
        return (self.params[0] * x).sum() + (self.params[1] * x.flip(0)).sum()

    def grads(self):
        return [p.grad.clone() for p in self.params]


def _assert_same(tensors_a, tensors_b):
    for a, b in zip(tensors_a, tensors_b, strict=True):
        assert torch.equal(a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan())


@pytest.mark.parametrize("settings", SETTINGS, ids=["x2-every-3", "x4-every-1"])
def test_same_decisions_scales_and_weights_as_torch_grad_scaler(settings):
    ours, theirs = _Run(), _Run()
    scaler = DynamicLossScaler(**settings)
    reference = torch.amp.GradScaler("cpu", **settings)
    skipped, scales = [], []
    for t, x in enumerate(_inputs()):
        loss_ours, loss_theirs = ours.loss(x), theirs.loss(x)
        scaled = scaler.scale_loss(loss_ours)
        assert torch.equal(scaled, loss_ours * scaler.scale) or not torch.isfinite(loss_ours)
        scaled.backward()
        reference.scale(loss_theirs).backward()
        _assert_same(ours.grads(), theirs.grads())
        if t % 2:  # an explicit unscale_ (as before gradient clipping) on odd steps
            scaler.unscale_(ours.optimizer)
            reference.unscale_(theirs.optimizer)
            _assert_same(ours.grads(), theirs.grads())
        before = [p.detach().clone() for p in ours.params]
        stepped = scaler.step(ours.optimizer)
        scaler.update()
        scale_before = reference.get_scale()
        reference.step(theirs.optimizer)
        reference.update()
        reference_skipped = reference.get_scale() < scale_before  # GradScaler backs off only on inf/NaN
        assert stepped == (not reference_skipped), t
        assert scaler.scale == reference.get_scale(), t
        _assert_same(ours.params, theirs.params)
        assert all(torch.equal(a, b) for a, b in zip(before, ours.params)) == (not stepped)
        skipped.append(not stepped)
        scales.append(scaler.scale)
    assert {2, 3, 4, 20, 33} <= {t for t, s in enumerate(skipped) if s}
    assert max(scales) > settings["init_scale"]  # the good runs grew the scale
    assert sum(skipped) < len(skipped) // 2


def test_rule_by_hand():
    """init 8, x2 after 2 good steps, x0.5 on inf: scales after each update, by hand."""
    run, scaler = _Run(), DynamicLossScaler(init_scale=8.0, growth_interval=2)
    pattern = [True, True, False, True, True, True, False, False, True]  # True: a finite gradient
    expected = [8.0, 16.0, 8.0, 8.0, 16.0, 16.0, 8.0, 4.0, 4.0]
    for good, scale in zip(pattern, expected):
        x = torch.ones(5) if good else torch.tensor([1.0, INF, 1.0, 1.0, 1.0])
        scaler.scale_loss(run.loss(x)).backward()
        assert scaler.step(run.optimizer) == good
        assert scaler.found_inf == (not good)
        scaler.update()
        assert scaler.scale == scale


def test_unscale_divides_by_the_scale_and_catches_overflow_below_one():
    run, scaler = _Run(), DynamicLossScaler(init_scale=0.5)
    run.params[0].grad = torch.tensor([3.0, -1.5, 0.25, 1.0, 1.0])
    run.params[1].grad = torch.tensor([1.0, 1.0, 1.0, 1.0, 2e38])  # 2e38 / 0.5 overflows float32
    scaler.unscale_(run.optimizer)
    assert run.params[0].grad.tolist() == [6.0, -3.0, 0.5, 2.0, 2.0]
    assert scaler.found_inf is True and not scaler.step(run.optimizer)


def test_misuse_is_refused():
    run, scaler = _Run(), DynamicLossScaler()
    with pytest.raises(RuntimeError, match="update"):
        scaler.update()
    scaler.scale_loss(run.loss(torch.ones(5))).backward()
    scaler.unscale_(run.optimizer)
    with pytest.raises(RuntimeError, match="already"):
        scaler.unscale_(run.optimizer)
    for bad in (dict(init_scale=0.0), dict(growth_factor=1.0), dict(backoff_factor=1.0), dict(growth_interval=0)):
        with pytest.raises(ValueError):
            DynamicLossScaler(**bad)


def test_state_dict_round_trip_resumes_exactly():
    rows = _inputs()
    run, scaler = _Run(), DynamicLossScaler(init_scale=2.0 ** 20, growth_factor=4.0, growth_interval=3)
    for x in rows[:9]:
        scaler.scale_loss(run.loss(x)).backward()
        scaler.step(run.optimizer)
        scaler.update()
    state = scaler.state_dict()
    assert state["good_steps"] != 0 and state["scale"] != 2.0 ** 20
    assert all(type(v) in (int, float) for v in state.values())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = DynamicLossScaler()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.state_dict() == state
    twin = _Run()
    for p, q in zip(twin.params, run.params):
        p.data.copy_(q.data)
    twin.optimizer.load_state_dict(copy.deepcopy(run.optimizer.state_dict()))  # not sharing momentum buffers
    for x in rows[9:]:
        for r, s in ((run, scaler), (twin, restored)):
            s.scale_loss(r.loss(x)).backward()
            s.step(r.optimizer)
            s.update()
        assert restored.state_dict() == scaler.state_dict()
    _assert_same(run.params, twin.params)


_TWO_RANKS = textwrap.dedent("""
    import torch
    from deepshrink.train.distributed import init_from_env
    from deepshrink.train.loss_scale import DynamicLossScaler

    ctx = init_from_env("cpu")
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([w], lr=0.5)
    scaler = DynamicLossScaler(init_scale=8.0, growth_interval=1)
    for inf_on_rank in (1, None):
        optimizer.zero_grad()
        x = torch.tensor([1.0, 2.0, 3.0])
        if ctx.rank == inf_on_rank:
            x[1] = float("inf")
        scaler.scale_loss((w * x).sum()).backward()
        stepped = scaler.step(optimizer)
        scaler.update()
        print(f"rank {ctx.rank}/{ctx.world_size} stepped={stepped} scale={scaler.scale} w={w.tolist()}", flush=True)
""")


@pytest.mark.slow  # three Python processes start torch: ~10 s on a loaded 2-core machine
def test_two_ranks_skip_together_when_one_sees_inf(tmp_path, torchrun):
    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    proc = torchrun(script, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank "))
    # step 1: only rank 1 saw inf, both skip and halve 8 -> 4; step 2: both step (w -= 0.5 * x) and double.
    assert lines == [f"rank {r}/2 stepped={s} scale={scale} w={w}"
                     for r in (0, 1)
                     for s, scale, w in ((False, 4.0, [1.0, 1.0, 1.0]), (True, 8.0, [0.5, 0.0, -0.5]))]


# ------------------------------------------------------------------ the trainer in fp16 / bf16
@pytest.fixture(scope="module")
def synthetic():
    train_set, test_set = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    return train_set.subset(128), test_set


def _config(**overrides):
    base = dict(epochs=3, batch_size=16, lr=0.05, schedule="cosine", seed=3, progress=False,
                eval_batch_size=64, device="cpu")
    return TrainConfig(**{**base, **overrides})


class _Probe(TrainHook):
    """Records the dtypes the training step sees."""

    def __init__(self):
        self.output_dtypes, self.grad_dtypes = set(), set()

    def loss(self, trainer, inputs, targets, outputs, loss):
        self.output_dtypes.add(outputs.dtype)
        return loss

    def after_backward(self, trainer):
        self.grad_dtypes |= {p.grad.dtype for p in trainer.model.parameters()}


def _trainer(synthetic, config, out_dir=None, hooks=(), scaler=None):
    train_set, test_set = synthetic
    info = new_model_info("lenet5", train_set)
    torch.manual_seed(config.seed)
    trainer = Trainer(build_model(info.arch), train_set, test_set, config, out_dir=out_dir, info=info, hooks=hooks)
    if scaler is not None:
        trainer.loss_scaler = scaler
    return trainer


@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_mixed_precision_training_learns_with_float32_weights(synthetic, precision, dtype):
    probe = _Probe()
    trainer = _trainer(synthetic, _config(precision=precision, epochs=4), hooks=[probe])
    result = trainer.fit()
    losses = [record["train_loss"] for record in result.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.final.top1 >= 0.9
    assert probe.output_dtypes == {dtype}  # the forward pass ran under autocast
    assert probe.grad_dtypes == {torch.float32}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    has_scaler = precision == "fp16"
    assert all(("loss_scale" in r and "overflow_steps" in r) == has_scaler for r in result.history)


def test_fp32_records_have_no_loss_scale(synthetic):
    result = _trainer(synthetic, _config(epochs=1)).fit()
    assert "loss_scale" not in result.history[0] and "overflow_steps" not in result.history[0]


def _overflowing_scaler():
    """2^22 overflows this model's float16 gradients (2^18 does not): the first 4 steps are
    skipped, then the scale grows every 3 good steps into the next overflow."""
    return DynamicLossScaler(init_scale=2.0 ** 22, growth_interval=3)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_resume_after_interrupt_gives_identical_weights_and_scale(synthetic, tmp_path, precision, crash_in):
    config = _config(precision=precision, max_bad_steps=2)
    scaler = _overflowing_scaler if precision == "fp16" else lambda: None
    straight = _trainer(synthetic, config, tmp_path / "straight", scaler=scaler())
    straight_result = straight.fit()
    with pytest.raises(KeyboardInterrupt):
        _trainer(synthetic, config, tmp_path / "cut", hooks=[crash_in(epoch=1)], scaler=scaler()).fit()
    resumed = _trainer(synthetic, config, tmp_path / "cut")  # the default scaler: the checkpoint restores it
    resumed_result = resumed.fit(resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert resumed_result.final.top1 == straight_result.final.top1
    if precision == "fp16":
        history = [(r["loss_scale"], r["overflow_steps"]) for r in straight_result.history]
        assert [(r["loss_scale"], r["overflow_steps"]) for r in resumed_result.history] == history
        assert resumed.loss_scaler.state_dict() == straight.loss_scaler.state_dict()
        # overflow skips are not bad steps: more of them in a row than max_bad_steps did not stop training
        assert history[0][1] > config.max_bad_steps and history[1][1] > 0


class _NanGradient(TrainHook):
    """Adds 0 * sqrt(|w - w|): the loss stays finite, every gradient of w is NaN."""

    def loss(self, trainer, inputs, targets, outputs, loss):
        weight = next(trainer.model.parameters())
        return loss + 0.0 * (weight - weight.detach()).abs().sqrt().sum()


def test_gradients_that_overflow_at_the_lowest_scale_are_bad_steps(synthetic):
    trainer = _trainer(synthetic, _config(precision="fp16", max_bad_steps=2), hooks=[_NanGradient()],
                       scaler=DynamicLossScaler(init_scale=4.0))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    # scale 4 and 2: overflow, not counted; scale 1: bad step 1; scale 0.5: bad step 2 -> stop
    with pytest.raises(TrainingDiverged, match=r"gradients were inf/NaN at loss scale 0.5 for 2 consecutive"):
        trainer.fit()
    assert trainer.step == 2  # the two bad steps; the overflow skips are not steps
    assert all(torch.equal(p, b) for p, b in zip(trainer.model.parameters(), before))  # no update taken


class _NanLoss(TrainHook):
    def loss(self, trainer, inputs, targets, outputs, loss):
        return loss * NAN


def test_a_nan_loss_is_still_a_bad_step_in_fp16(synthetic):
    trainer = _trainer(synthetic, _config(precision="fp16", max_bad_steps=3), hooks=[_NanLoss()])
    with pytest.raises(TrainingDiverged, match="loss was nan for 3 consecutive"):
        trainer.fit()
    assert trainer.loss_scaler.scale == 2.0 ** 16  # never reached the scaler


def test_resume_refuses_a_changed_precision(synthetic, tmp_path):
    from deepshrink.errors import UserError

    _trainer(synthetic, _config(epochs=1), tmp_path).fit()
    with pytest.raises(UserError, match="precision was 'fp32', now 'bf16'"):
        _trainer(synthetic, _config(epochs=1, precision="bf16"), tmp_path).fit(resume=True)
    with pytest.raises(UserError, match="precision must be one of fp32, fp16, bf16, got 'fp8'"):
        _config(precision="fp8")


def test_an_overflow_skip_does_not_advance_the_schedule_and_warns_nothing(synthetic, recwarn):
    """Issue 25 item 8: a skipped fp16 step leaves the step counter and the learning rate where
    they were, and PyTorch's "lr_scheduler.step() before optimizer.step()" warning is not raised
    (the first 4 steps overflow)."""
    import warnings
    warnings.simplefilter("always")
    trainer = _trainer(synthetic, _config(precision="fp16"), scaler=_overflowing_scaler())
    result = trainer.fit()
    overflows = sum(r["overflow_steps"] for r in result.history)
    total = trainer.config.epochs * len(trainer.train_loader)
    assert overflows >= 4
    assert trainer.step == total - overflows
    assert [r["step"] for r in result.history][-1] == trainer.step
    assert trainer.lr == pytest.approx(0.05 * trainer.lr_factor(trainer.step))
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]


def test_a_bad_first_step_counts_and_warns_nothing(synthetic, recwarn):
    """A bad step (non-finite loss) still moves the schedule on, as in fp32, without the warning."""
    import warnings
    warnings.simplefilter("always")
    trainer = _trainer(synthetic, _config(max_bad_steps=3), hooks=[_NanLoss()])
    with pytest.raises(TrainingDiverged):
        trainer.fit()
    assert trainer.step == 3
    assert trainer.lr == pytest.approx(0.05 * trainer.lr_factor(3))
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]
