"""Options that check themselves: each option's constraint is declared beside it, and one check
answers the command line, a --config file and Python alike, in one line."""
from dataclasses import fields

import pytest

from conftest import assert_user_error, cli
from semisup.config import TASK_DEFAULTS, RunOptions, resolve
from semisup.engine.trainer import TrainOptions
from semisup.errors import UserError
from semisup.methods import METHODS
from semisup.options import Interval, check_of




# one bad value of each kind of option: optimisation (TrainOptions), run key, method option; the
# given value is what the command line parses its text as, so the three messages are the same
BAD = [
    ({"lr": -1.0}, "--lr -1.0: must be > 0"),
    ({"ema": 1.0}, "--ema 1.0: must be in [0, 1)"),
    ({"steps": 0}, "--steps 0: must be a whole number of at least 1"),
    ({"device": "mps"}, "--device mps: choose auto, cpu or cuda"),
    ({"image_size": 4}, "--image-size 4: must be a whole number of pixels, at least 8"),
    ({"labeled_fraction": 0.0}, "--labeled-fraction 0.0: must be in (0, 1]"),
    ({"threshold": 1.5}, "--threshold 1.5: must be in [0, 1]"),
    ({"method": "uda", "tsa": "cos"}, "--tsa cos: choose none, linear, exp or log"),
    ({"method": "mixmatch", "temperature": 0.0}, "--temperature 0.0: must be > 0"),
    ({"unlabeled_ratio": 3, "unlabeled_ratio_start": 5},
     "--unlabeled-ratio-start 5: above --unlabeled-ratio 3, where the ramp ends; give a start at or below it"),
]


def _argv(given: dict) -> list[str]:
    return [a for k, v in given.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@pytest.mark.parametrize("given,message", BAD)
def test_a_bad_value_is_one_line_from_python(given, message):
    with pytest.raises(UserError) as e:
        resolve(given)
    assert str(e.value) == message


@pytest.mark.parametrize("given,message", BAD)
def test_a_bad_value_is_one_line_from_the_command_line(given, message, capsys, tmp_path):
    r = cli(capsys, "train", *_argv(given), "--out", tmp_path / "run", "--quiet")
    assert_user_error(r, f"semisup train: error: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given,message", BAD)
def test_a_bad_value_is_one_line_from_a_config_file(given, message, capsys, tmp_path):
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(given))
    r = cli(capsys, "train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run", "--quiet")
    assert_user_error(r, f"semisup train: error: {message}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,words", [
    ("steps: ten\n", ["--steps ten", "whole number"]),
    ("lr: 1e-3\n", ["--lr 1e-3", "must be a number > 0", "write 1.0e-3"]),  # YAML 1.1 reads 1e-3 as text
    ("include_labeled: maybe\n", ["--include-labeled maybe", "true or false"]),
    ("threshold: high\n", ["--threshold high", "must be a number in [0, 1]"]),
])
def test_a_wrong_type_in_a_config_file_is_one_line(text, words, capsys, tmp_path):
    (tmp_path / "c.yaml").write_text(text)
    assert_user_error(cli(capsys, "train", "--config", tmp_path / "c.yaml", "--out", tmp_path / "run"), *words)


def test_a_wrong_type_or_name_from_python_is_one_line():
    for given, words in [({"steps": "ten"}, "--steps ten: must be a whole number"),
                         ({"seed": 1.5}, "--seed 1.5: must be a whole number of at least 0"),
                         ({"flip": 1}, "--flip 1: must be true or false"),
                         ({"lerning_rate": 0.1}, "unknown option 'lerning_rate'")]:
        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(".", r"\.")):
            resolve(given)


def test_another_methods_option_is_refused_with_the_options_this_one_takes():
    with pytest.raises(UserError) as e:
        resolve({"method": "mixmatch", "threshold": 0.9})
    assert "--threshold: not an option of method 'mixmatch'" in str(e.value)
    assert "lambda_u, mixup_alpha, temperature, warmup" in str(e.value)


def test_a_methods_dataclass_checks_itself():
    hyper = METHODS["classify"]["uda"].Hyper
    with pytest.raises(UserError, match="--tsa cos: choose none, linear, exp or log"):
        hyper(tsa="cos")
    with pytest.raises(UserError, match="--eval-batch 0"):
        TrainOptions(eval_batch=0)


def _bad_values(c: Interval):
    """Values just outside an interval: below its low end, above its high end."""
    step = 1 if c.type is int else 0.5
    out = []
    if c.low is not None:
        out.append(c.low if not c.low_in else c.low - step)
    if c.high is not None:
        out.append(c.high if not c.high_in else c.high + step)
    return out


def _every_method():
    return [(task, name, m) for task, ms in METHODS.items() for name, m in ms.items()]


@pytest.mark.parametrize("task,name,method", _every_method(), ids=[f"{t}-{n}" for t, n, _ in _every_method()])
def test_every_declared_interval_is_what_resolve_checks(task, name, method):
    """Each numeric constraint declared on a method's field, a TrainOptions field or a run key
    refuses the values just outside it, through resolve, naming the option; the end itself of a
    closed interval passes."""
    declared = [*method.hyper_fields(), *fields(TrainOptions), *fields(RunOptions)]
    checked = [f for f in declared if isinstance(check_of(f), Interval)]
    assert checked
    for f in checked:
        c = check_of(f)
        for bad in _bad_values(c):
            with pytest.raises(UserError) as e:
                resolve({"task": task, "method": name, f.name: bad})
            assert str(e.value).startswith(f"--{f.name.replace('_', '-')} {bad}: "), str(e.value)
    for f in method.hyper_fields():  # the closed ends pass (an open end is refused above)
        c = check_of(f)
        if isinstance(c, Interval) and c.low is not None and c.low_in:
            resolve({"task": task, "method": name, f.name: c.low, **({"steps": 10} if f.name == "pretrain_steps"
                                                                    else {})})


def test_every_number_or_switch_declares_its_constraint():
    """A new option with a number or a bool for default cannot leave its check out."""
    declared = [*fields(TrainOptions), *fields(RunOptions)]
    declared += [f for _, _, m in _every_method() for f in m.hyper_fields()]
    missing = [f.name for f in declared
               if isinstance(f.default, (bool, int, float)) and check_of(f) is None]
    assert not missing, missing
    for f in fields(RunOptions):  # the run keys with None for default that take a number or a switch
        if f.name in ("labels", "labels_per_class", "labeled_fraction", "flip", "image_size", "init"):
            assert check_of(f) is not None, f.name


def help_text(capsys, *args) -> str:
    """`semisup <args>`'s help, its lines joined (argparse wraps them at the terminal width)."""
    r = cli(capsys, *args)
    assert r.returncode == 0, r.stderr
    return " ".join(r.stdout.split())


def test_train_help_lists_the_chosen_methods_options_with_its_defaults(capsys):
    h = help_text(capsys, "train", "--method", "mixmatch", "--help")
    mix = h.split("options of mixmatch")[1].split("run folder")[0]
    assert "--lambda-u LAMBDA_U weight of the unlabeled L2 loss (lambda_U, CIFAR-10; default 75.0)" in mix
    assert "--mixup-alpha" in mix
    assert "--threshold" not in h and "--tsa" not in h  # other methods' options
    assert "unlabeled images per labeled one (mu; default 1)" in h  # mixmatch's own run default

    h = help_text(capsys, "train", "--method", "fixmatch", "--help")
    fix = h.split("options of fixmatch")[1].split("run folder")[0]
    assert "--threshold THRESHOLD confidence" in fix and "(tau; default 0.95)" in fix
    assert "--lambda-u LAMBDA_U weight of the unlabeled loss (lambda_u; default 1.0)" in fix
    assert "--mixup-alpha" not in h

    h = help_text(capsys, "train", "--help")  # no --method: the default method on the default data, with its budget
    assert "options of flexmatch, the default method (--task classify)" in h and "--threshold" in h
    assert "optimisation (defaults of flexmatch on digits)" in h and "training steps (default 300)" in h
    assert "(mu; default 3)" in h
    h = help_text(capsys, "train", "--data", "pets/", "--help")  # a path: the task's default method
    assert "options of fixmatch, the default method (--task classify)" in h and "(mu; default 7)" in h
    assert "`semisup train --method X --help` shows the options of method X" in h
    assert f"default method {TASK_DEFAULTS['generate']['method']})" in h  # --task's help

    h = help_text(capsys, "train", "--task", "segment", "--method", "fixmatch", "--help")  # segment's fixmatch
    seg = h.split("options of fixmatch (--task segment)")[1].split("run folder")[0]
    assert "--cutmix-p" in seg and "--hard-label" not in h
    assert "optimisation (defaults of fixmatch on shapes)" in h and "(split across processes; default 8)" in h


def test_the_parser_still_takes_every_methods_options(capsys, tmp_path):
    """Options the help hides still parse, so that resolve's message, not argparse's, answers."""
    r = cli(capsys, "train", "--method", "fixmatch", "--mixup-alpha", "0.5", "--out", tmp_path / "r")
    assert_user_error(r, "--mixup-alpha: not an option of method 'fixmatch'", "hard_label, lambda_u")


def test_a_data_sets_defaults_for_one_task_apply_to_that_task_alone():
    """digits' classification defaults (flexmatch; for flexmatch the weak view's own pass, 300
    steps of 64 labeled images, cnn_small and 3 unlabeled images per labeled one; for fixmatch the own pass) layer under whatever is given, and leave the other tasks'
    and methods' own defaults alone."""
    cfg = resolve({})
    assert (cfg["method"], cfg["weak_pass"], cfg["steps"], cfg["batch_size"]) == ("flexmatch", "separate", 300, 64)
    assert (cfg["model"], cfg["unlabeled_ratio"]) == ("cnn_small", 3)
    assert resolve({"model": "cnn"})["model"] == "cnn"  # given options stay above
    cfg = resolve({"method": "fixmatch"})
    assert (cfg["weak_pass"], cfg["steps"], cfg["model"], cfg["unlabeled_ratio"], cfg["batch_size"]) == \
        ("separate", 1000, None, 7, 32)
    assert resolve({"method": "supervised"})["steps"] == 1000  # the baseline keeps the data set's budget
    cfg = resolve({"method": "fixmatch", "weak_pass": "joint", "steps": 50})
    assert (cfg["weak_pass"], cfg["steps"]) == ("joint", 50)
    assert "weak_pass" not in resolve({"method": "mixmatch"})  # not one of its options
    gen = resolve({"task": "generate"})
    assert gen["method"] == TASK_DEFAULTS["generate"]["method"] and gen["steps"] != 300
    seg = resolve({"task": "segment"})
    assert seg["method"] == TASK_DEFAULTS["segment"]["method"] and seg["steps"] == 1000
    assert resolve({"data": "mnist-like.npz", "method": "fixmatch"})["weak_pass"] == "joint"  # only digits


@pytest.mark.parametrize("method, native, weak_pass, bf16", [
    ("fixmatch", True, "separate", True), ("flexmatch", True, "separate", True), ("fixmatch", True, "joint", False),
    ("supervised", True, None, False), ("fixmatch", False, "separate", False)])
def test_amp_auto_takes_bf16_on_a_cpu_only_where_it_was_measured(method, native, weak_pass, bf16, monkeypatch):
    import torch

    from semisup.engine import trainer as tr
    from semisup.run import prepare
    from semisup.tasks import get_task

    monkeypatch.setattr(tr, "cpu_has_bf16", lambda: native)
    cfg = resolve({"method": method, "steps": 1, **({"weak_pass": weak_pass} if weak_pass else {})})
    data, views, m = prepare(cfg)
    opts = tr.TrainOptions(**{k: cfg[k] for k in tr.TrainOptions.__dataclass_fields__})
    t = tr.Trainer(m, data, views, opts, None, torch.device("cpu"), task=get_task("classify"))
    assert (t.amp is not None) == bf16
    opts.amp = "off"
    assert tr.Trainer(m, data, views, opts, None, torch.device("cpu"), task=get_task("classify")).amp is None
