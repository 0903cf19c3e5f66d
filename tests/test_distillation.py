import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch.utils.data import DataLoader, Subset

from pruning_utils.config import seed_everything
from pruning_utils.data import get_loaders
from pruning_utils.distillation import DistillationFineTuner, distillation_loss, soft_targets
from pruning_utils.masks import magnitude_prune, prunable_layers, sparsity
from pruning_utils.models import SmallCNN
from pruning_utils.training import build_optimizer, train

STUDENT = [[1.0, -0.5, 2.0], [0.3, 0.2, -1.0]]
TEACHER = [[2.5, 0.0, 1.0], [-0.4, 1.5, 0.1]]
LABELS = [2, 0]


def _softmax(row, T):
    exps = [math.exp(v / T) for v in row]
    return [e / sum(exps) for e in exps]


def hand_loss(student, teacher, labels, T, alpha):
    """The Hinton et al. loss in plain Python: alpha * T² * mean KL(p_t || p_s) + (1 - alpha) * mean CE."""
    kl = ce = 0.0
    for s, t, y in zip(student, teacher, labels):
        p_t, p_s = _softmax(t, T), _softmax(s, T)
        kl += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
        ce += -math.log(_softmax(s, 1.0)[y])
    n = len(labels)
    return alpha * T * T * kl / n + (1 - alpha) * ce / n


def tiny_models(seed=0, classes=10):
    seed_everything(seed)
    teacher = SmallCNN(widths=(4, 8), input_size=8, num_classes=classes)
    student = copy.deepcopy(teacher)
    return student, teacher


def small_loader(n=192, batch_size=64):
    """The first ``n`` training digits, in a fixed order (a few optimizer steps per epoch)."""
    data = get_loaders("quick").train.dataset
    return DataLoader(Subset(data, range(n)), batch_size=batch_size)


@pytest.fixture(scope="module")
def loaders():
    return small_loader(), small_loader(96)


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (4.0, 0.3), (2.5, 1.0), (3.0, 0.0)])
def test_loss_equals_a_hand_computation(T, alpha):
    s, t, y = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)
    got = distillation_loss(s, t, y, temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(hand_loss(STUDENT, TEACHER, LABELS, T, alpha), rel=1e-6)
    kd = DistillationFineTuner(nn.Linear(4, 3), nn.Linear(4, 3), temperature=T, alpha=alpha)
    assert kd.distillation_loss(s, t, y).item() == pytest.approx(got.item(), rel=1e-7)


def test_identical_logits_leave_only_the_label_term():
    s, y = torch.tensor(STUDENT), torch.tensor(LABELS)
    loss = distillation_loss(s, s.clone(), y, temperature=3.0, alpha=0.25)
    assert loss.item() == pytest.approx(0.75 * F.cross_entropy(s, y).item(), abs=1e-6)


def test_soft_term_is_scaled_by_temperature_squared():
    s, t = torch.tensor(STUDENT, dtype=torch.float64), torch.tensor(TEACHER, dtype=torch.float64)
    y = torch.tensor(LABELS)
    for T in (1.0, 2.0, 8.0):
        plain_kl = F.kl_div(F.log_softmax(s / T, 1), soft_targets(t, T), reduction="batchmean")
        assert distillation_loss(s, t, y, T, alpha=1.0).item() == pytest.approx(T * T * plain_kl.item(), rel=1e-6)


def test_t_squared_keeps_the_gradient_scale_at_high_temperature():
    # Hinton et al.: for large T and zero-mean logits, d(T² KL)/dz_i -> (z_i - v_i) / C, per sample.
    s = torch.tensor(STUDENT, dtype=torch.float64)
    t = torch.tensor(TEACHER, dtype=torch.float64)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    expected = (s - t) / s.shape[1] / s.shape[0]  # batchmean divides by the batch size
    grads = {}
    for T in (50.0, 5000.0):
        z = s.clone().requires_grad_(True)
        distillation_loss(z, t, torch.tensor(LABELS), T, alpha=1.0).backward()
        grads[T] = z.grad
    assert torch.allclose(grads[5000.0], expected, atol=1e-4)
    assert torch.allclose(grads[50.0], expected, atol=5e-3)  # no 1/T² shrinkage: T=50 is as large


def test_gradient_flows_only_to_the_student():
    student, teacher = tiny_models()
    kd = DistillationFineTuner(student, teacher)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    kd.loss_fn(student(x), y, x).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    # teacher logits handed in with a graph are detached too
    t_logits = nn.Linear(3, 3)(torch.randn(2, 3))
    s_logits = torch.randn(2, 3, requires_grad=True)
    distillation_loss(s_logits, t_logits, torch.tensor([0, 1])).backward()
    assert s_logits.grad is not None


def test_teacher_is_unchanged_by_a_fit_and_the_student_learns(loaders):
    student, teacher = tiny_models()
    magnitude_prune(prunable_layers(student), 0.5)
    teacher.train()  # even a teacher left in train mode must not update its batch-norm statistics
    before_teacher = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_student = {k: v.clone() for k, v in student.state_dict().items()}
    kd = DistillationFineTuner(student, teacher, temperature=4.0, alpha=0.7)
    assert not teacher.training
    calls = []
    train_loader, val_loader = loaders
    history = kd.fit(train_loader, epochs=2, lr=0.05, val_loader=val_loader, callbacks=[calls.append],
                     progress=False)
    after = teacher.state_dict()
    assert all(torch.equal(before_teacher[k], after[k]) for k in after)
    assert not teacher.training
    assert any(not torch.equal(before_student[k], v) for k, v in student.state_dict().items())
    # the course's loop ran: history per epoch, the callback after every optimizer step, masks held
    assert history["epoch"] == [1, 2] and len(history["val_acc"]) == 2
    assert len(calls) == 2 * len(train_loader) and calls[-1].step == 2 * len(train_loader)
    assert sparsity(student) == pytest.approx(0.5, abs=1e-3)


def test_teacher_put_back_in_train_mode_is_frozen_again():
    student, teacher = tiny_models()
    kd = DistillationFineTuner(student, teacher)
    teacher.train()
    stats = teacher.bn1.running_mean.clone()
    x = torch.randn(8, 1, 8, 8) * 3 + 1
    kd.teacher_logits(x)
    assert not teacher.training and torch.equal(teacher.bn1.running_mean, stats)


def test_train_step_updates_the_student_only():
    student, teacher = tiny_models()
    kd = DistillationFineTuner(student, teacher, temperature=2.0, alpha=0.5)
    opt = build_optimizer(student, "quick", lr=0.1)
    w_student, w_teacher = student.fc.weight.clone(), teacher.fc.weight.clone()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    with torch.no_grad():
        expected = distillation_loss(student.train()(x), teacher(x), y, 2.0, 0.5).item()
    loss = kd.train_step(x, y, opt)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert not torch.equal(student.fc.weight, w_student)
    assert torch.equal(teacher.fc.weight, w_teacher)


def test_fit_matches_train_with_the_same_loss(loaders):
    # fit is train() with the distillation loss: the same batches give the same weights
    s1, teacher = tiny_models(seed=1)
    s2 = copy.deepcopy(s1)
    kd = DistillationFineTuner(s1, teacher, temperature=3.0, alpha=0.6)
    kd.fit(loaders[0], epochs=1, optimizer=build_optimizer(s1, "quick", lr=0.01), progress=False)
    train(s2, loaders[0], epochs=1, optimizer=build_optimizer(s2, "quick", lr=0.01), loss_fn=kd.loss_fn,
          progress=False)
    assert all(torch.equal(a, b) for a, b in zip(s1.state_dict().values(), s2.state_dict().values()))


def test_teacher_moves_to_the_students_device():
    student, teacher = tiny_models()
    kd = DistillationFineTuner(student, teacher, device="cpu")
    assert all(p.device.type == "cpu" for p in teacher.parameters())
    assert kd.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_teacher_follows_a_cuda_student():
    student, teacher = tiny_models()
    kd = DistillationFineTuner(student.cuda(), teacher)
    assert next(teacher.parameters()).is_cuda
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    assert math.isfinite(kd.train_step(x, y, torch.optim.SGD(student.parameters(), lr=0.1)))


@pytest.mark.parametrize("temperature, error", [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                                (float("inf"), ValueError), ("4", TypeError), (True, TypeError)])
def test_bad_temperature(temperature, error):
    with pytest.raises(error, match=r"temperature must be .*> 0"):
        DistillationFineTuner(nn.Linear(2, 3), nn.Linear(2, 3), temperature=temperature)


@pytest.mark.parametrize("alpha, error", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                          (None, TypeError)])
def test_bad_alpha(alpha, error):
    with pytest.raises(error, match=r"alpha must be .*\[0, 1\]"):
        DistillationFineTuner(nn.Linear(2, 3), nn.Linear(2, 3), alpha=alpha)


def test_alpha_bounds_are_allowed():
    for alpha in (0, 1):
        assert DistillationFineTuner(nn.Linear(2, 3), nn.Linear(2, 3), alpha=alpha).alpha == alpha


def test_class_count_mismatch_is_refused():
    student, _ = tiny_models(classes=10)
    _, teacher = tiny_models(classes=5)
    with pytest.raises(ValueError, match="teacher_model predicts 5 classes but student_model predicts 10"):
        DistillationFineTuner(student, teacher)
    # models that do not declare a class count are caught at the loss
    with pytest.raises(ValueError, match="teacher_logits shape .* does not match student_logits"):
        distillation_loss(torch.zeros(2, 10), torch.zeros(2, 5), torch.tensor([0, 1]))


def test_other_bad_inputs():
    with pytest.raises(TypeError, match="teacher_model must be a torch.nn.Module"):
        DistillationFineTuner(nn.Linear(2, 3), "teacher")
    model = nn.Linear(2, 3)
    with pytest.raises(ValueError, match="same object"):
        DistillationFineTuner(model, model)
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        DistillationFineTuner(nn.Linear(2, 3).requires_grad_(False), nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"student_logits must have shape \(batch, classes\)"):
        distillation_loss(torch.zeros(3), torch.zeros(3), torch.tensor([0]))


# -- inputs checked where they enter (issue 14) ---------------------------------------------------


def _copy_shallow(teacher):
    return copy.copy(teacher)  # shares the parameter dict, hence every weight


def _share_a_layer(teacher):
    student = copy.deepcopy(teacher)
    student.fc = teacher.fc
    return student


def _share_memory(teacher):
    student = copy.deepcopy(teacher)
    student.conv1.weight = nn.Parameter(teacher.conv1.weight.data)  # a new Parameter over the same storage
    return student


def _share_a_view(teacher):
    student = copy.deepcopy(teacher)
    student.fc.bias = nn.Parameter(teacher.fc.bias.data[:])
    return student


def _share_a_buffer(teacher):
    student = copy.deepcopy(teacher)
    student.bn1.running_mean = teacher.bn1.running_mean  # training the student would move the teacher's statistics
    return student


@pytest.mark.parametrize("make_student, where", [
    (_copy_shallow, "conv1.weight"), (_share_a_layer, "fc.weight"), (_share_memory, "conv1.weight"),
    (_share_a_view, "fc.bias"), (_share_a_buffer, "bn1.running_mean"),
])
def test_a_student_sharing_a_tensor_with_the_teacher_is_refused(make_student, where):
    _, teacher = tiny_models()
    student = make_student(teacher)
    with pytest.raises(ValueError, match=f"student_model and teacher_model share a tensor \\(student '{where}'"):
        DistillationFineTuner(student, teacher)
    # refused before anything was frozen
    assert all(p.requires_grad for p in student.parameters()) and teacher.training


def test_the_sharing_check_accepts_a_deep_copy_and_refuses_a_shared_layer():
    student, teacher = tiny_models()  # copy.deepcopy of the teacher
    kd = DistillationFineTuner(student, teacher)
    assert all(p.requires_grad for p in kd.student.parameters())
    with pytest.raises(ValueError, match="share a tensor"):  # the same check, the other way round
        DistillationFineTuner(_share_a_layer(teacher), teacher)


def test_tensors_and_optimizers_are_checked():
    student, teacher = tiny_models()
    kd = DistillationFineTuner(student, teacher)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with pytest.raises(ValueError, match="optimizer updates none of the parameters of student_model"):
        kd.train_step(x, y, torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1))
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer; got str"):
        kd.train_step(x, y, "sgd")
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor; got str"):
        kd.train_step("x", y, build_optimizer(student, "quick"))
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor; got list"):
        kd.teacher_logits([[0.0]])
    with pytest.raises(ValueError, match="optimizer updates none of the parameters of student_model"):
        kd.fit(small_loader(64), 1, optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), progress=False)
    with pytest.raises(TypeError, match="student_logits must be a torch.Tensor; got str"):
        distillation_loss("logits", torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="teacher_logits must be a floating-point tensor"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        soft_targets(torch.tensor([[2, 0]]), 2.0)
    with pytest.raises(ValueError, match=r"targets of shape \(1,\) do not match a batch of 2 logits"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"targets outside \[0, 3\) .*max 3"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="targets must be integer class indices; got dtype torch.float32"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
