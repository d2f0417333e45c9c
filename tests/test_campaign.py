"""The campaign tool: plan checks, run states and locks, and a whole plan run end to end on the synthetic set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pointkd.campaign import load_plan, run_campaign, status_table, summary
from pointkd.campaign.report import summary_markdown
from pointkd.campaign.runner import WORKDIR, pointkd_command, run_checkpoint, train_args
from pointkd.campaign.state import plan_states, take_lock, train_seconds
from pointkd.config import ConfigError, load_config

TINY = {
    "seed": 1,
    "data": {"source": "synthetic", "num_points": 64},
    "train": {"epochs": 2, "batch_size": 16, "max_batches_per_epoch": 2, "eval_every": 1, "threads": 1},
}


def _write(tmp_path: Path, runs: list[dict], **extra) -> Path:
    teacher = {
        **TINY,
        "model": {"name": "dgcnn_teacher", "overrides": {"widths": [8, 8, 16, 16], "emb_dim": 32, "mlp": [16], "k": 6}},
    }
    student = {
        **TINY,
        "model": {"name": "dgcnn_student", "overrides": {"widths": [8, 16], "mlp": [16], "k": 4}},
        "distill": {"method": "lsp", "lsp_centres": 16},
    }
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(teacher))
    (tmp_path / "student.yaml").write_text(yaml.safe_dump(student))
    plan = {"name": "tiny", "records": str(tmp_path / "records"), "runs_dir": str(tmp_path / "runs"), "runs": runs}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({**plan, **extra}))
    return path


def _runs(tmp_path: Path) -> list[dict]:
    return [
        {
            "name": "t",
            "config": str(tmp_path / "teacher.yaml"),
            "role": "teacher",
            "ship": str(tmp_path / "t.pt"),
            "eval_points": [64],  # the student evaluates at two point counts; one eval process less
        },
        {
            "name": "lsp-s1",
            "config": str(tmp_path / "student.yaml"),
            "teacher": "t",
            "after": ["t"],
            "set": {"seed": 2, "distill.kernel": "rbf"},
            "eval_points": [64, 128],
        },
    ]


def test_the_status_columns_stay_aligned_for_a_run_name_longer_than_the_default_width(tmp_path):
    runs = _runs(tmp_path)
    runs[0]["name"] = "a_run_name_of_thirty_characters"
    runs[1]["after"] = [runs[0]["name"]]
    runs[1]["teacher"] = runs[0]["name"]
    rows = status_table(load_plan(_write(tmp_path, runs))).splitlines()[2:4]
    assert len({row.index(word) for row, word in zip(rows, ("state", "todo"), strict=True)}) == 1


def test_plan_is_checked(tmp_path):
    runs = _runs(tmp_path)
    for bad, match in [
        ([{**runs[0], "colour": 1}], "unknown key"),
        ([runs[0], {**runs[1], "name": "t"}], "unique"),
        ([{**runs[1], "after": ["later"]}], "not earlier runs"),
        ([{**runs[0], "role": "mentor"}], "role"),
        ([{"name": "x"}], "'config'"),
        ([runs[0], {**runs[1], "init": "t", "after": []}], "list it in 'after'"),
    ]:
        with pytest.raises(ConfigError, match=match):
            load_plan(_write(tmp_path, bad))
    with pytest.raises(ConfigError, match="unknown plan key"):
        load_plan(_write(tmp_path, runs, budget=3))
    with pytest.raises(ConfigError, match="does not exist"):
        load_plan(tmp_path / "nope.yaml")


def test_overrides_reach_the_config_unchanged(tmp_path):
    plan = load_plan(_write(tmp_path, _runs(tmp_path)))
    spec = plan.run("lsp-s1")
    cfg = load_config(spec.config, spec.set_args())
    assert cfg.seed == 2 and cfg.distill.kernel == "rbf" and cfg.distill.lsp_centres == 16


def test_states_locks_and_resume_arguments(tmp_path):
    plan = load_plan(_write(tmp_path, _runs(tmp_path)))
    assert [s.state for s in plan_states(plan)] == ["todo", "waiting"]
    folder = plan.folder(plan.run("t"))
    take_lock(folder, pid=os.getpid())  # a live holder on this host
    assert plan_states(plan)[0].state == "running"
    take_lock(folder, pid=2**22 + 12345)  # no such process: a stale lock is ignored
    assert plan_states(plan)[0].state == "todo"
    (folder / "last.pt").write_bytes(b"")
    assert plan_states(plan)[0].state == "partial"
    assert train_args(plan, plan.run("t"))[-1] == "--resume"
    assert run_checkpoint(plan, "t") == folder / "last.pt"  # not shipped yet: the run's own last.pt
    with pytest.raises(RuntimeError, match="exists"):
        run_checkpoint(plan, str(tmp_path / "missing.pt"))


def test_a_warm_start_from_a_run_reaches_train_init(tmp_path):
    runs = _runs(tmp_path)
    tail = {"name": "t-tail", "config": runs[0]["config"], "role": "teacher", "init": "t", "after": ["t"]}
    plan = load_plan(_write(tmp_path, [*runs, {**tail, "set": {"model.overrides.k": 8}}]))
    spec = plan.run("t-tail")
    assert spec.init == "t" and "train.init" not in " ".join(train_args(plan, plan.run("t")))
    with pytest.raises(RuntimeError, match="none of"):  # t has neither shipped nor started
        train_args(plan, spec)
    (tmp_path / "t.pt").write_bytes(b"")  # t's shipped copy comes first
    args = train_args(plan, spec)
    assert args[args.index(f"train.init={tmp_path / 't.pt'}") - 1] == "--set"
    path = load_plan(_write(tmp_path, [*runs, {**tail, "init": str(tmp_path / "t.pt"), "after": []}]))
    assert f"train.init={tmp_path / 't.pt'}" in train_args(path, path.run("t-tail"))  # a checkpoint path


def test_campaign_runs_a_plan_end_to_end(tmp_path):
    plan = load_plan(_write(tmp_path, _runs(tmp_path)))
    logs: list[str] = []
    assert run_campaign(plan, WORKDIR, log=logs.append) == 2
    assert json.loads((tmp_path / "records" / "summary.json").read_text())["runs"][0]["method"] == "lsp"
    assert "1024 points (k -) OA - / mAcc -; 512 points" in (tmp_path / "records" / "summary.md").read_text()
    assert (tmp_path / "t.pt").is_file()  # the teacher was shipped, and the student distilled from it
    student = json.loads(plan.record_path(plan.run("lsp-s1")).read_text())
    assert student["config"]["distill"]["teacher"] == str(tmp_path / "t.pt")
    assert student["epochs"] == 2 and set(student["last"]["evals"]) == {"64", "128"}
    assert student["last"]["evals"]["128"]["k"] == 8  # k 4 at 64 training points, scaled to 128
    s = summary(plan)
    assert s["teacher"]["name"] == "t" and s["teacher"]["k_1024"] is None  # no 1024-point eval in this plan
    assert [(r["method"], r["seed"], r["kernel"]) for r in s["runs"]] == [("lsp", 2, "rbf")]
    assert all(st.state == "done" for st in plan_states(plan))
    assert "2/2 done" in status_table(plan)
    assert run_campaign(plan, WORKDIR, log=logs.append) == 0  # finished runs are skipped
    assert any("done: OA" in line for line in logs)


def test_a_plan_with_two_teachers_summarises_both_in_plan_order(tmp_path):
    runs = _runs(tmp_path)
    tail = {"name": "a-tail", "config": runs[0]["config"], "role": "teacher", "init": "t", "after": ["t"]}
    plan = load_plan(_write(tmp_path, [runs[0], tail]))
    folder = plan.records / "records"
    folder.mkdir(parents=True)
    for name, oa in [("a-tail", 0.91), ("t", 0.88)]:  # "a-tail" sorts first by name, but runs second in the plan
        evals = {"1024": {"oa": oa, "macc": oa - 0.05, "k": 40}, "512": {"oa": oa + 0.01}}
        record = {"name": name, "role": "teacher", "epochs": 2, "last": {"evals": evals}, "best": {"epoch": 2}}
        (folder / f"{name}.json").write_text(json.dumps(record))
    s = summary(plan)
    assert [t["name"] for t in s["teachers"]] == ["t", "a-tail"] and s["teacher"]["name"] == "t"
    assert s["teachers"][1]["last_epoch_oa_1024"] == 0.91 and s["runs"] == []
    md = summary_markdown(s)
    assert md.index("Teacher `t` (2 epochs): 1024 points (k 40) OA 88.00") < md.index("Teacher `a-tail`")


def test_wait_polls_while_another_process_holds_a_run(tmp_path, monkeypatch):
    plan = load_plan(_write(tmp_path, _runs(tmp_path)))
    folder = plan.folder(plan.run("t"))
    take_lock(folder, pid=os.getpid())
    sleeps: list[float] = []

    def release(seconds: float) -> None:  # the other process "finishes": its lock goes, a record appears
        sleeps.append(seconds)
        (folder / "campaign.lock").unlink()
        for spec in plan.runs:
            plan.record_path(spec).parent.mkdir(parents=True, exist_ok=True)
            plan.record_path(spec).write_text(json.dumps({"epochs": 2, "last": {}}))

    monkeypatch.setattr("pointkd.campaign.runner.time.sleep", release)
    assert run_campaign(plan, WORKDIR, wait_s=5.0, log=lambda _: None) == 0
    assert sleeps == [5.0]
    take_lock(folder, pid=os.getpid())
    plan.record_path(plan.run("t")).unlink()
    assert [s.state for s in plan_states(plan)] == ["running", "done"]
    assert run_campaign(plan, WORKDIR, log=lambda _: None) == 0  # without wait: returns at once
    assert sleeps == [5.0]


def test_children_import_the_pinned_code_not_the_checkout_they_run_in(tmp_path):
    """The child runs in the plan's checkout (for the data beside it), yet imports pointkd from the pinned worktree."""
    code = tmp_path / "pinned"
    (code / "pointkd").mkdir(parents=True)
    (code / "pointkd" / "__init__.py").write_text("")
    main = "import sys, pointkd\nprint('pinned', pointkd.__file__, sys.argv[1:])\n"
    (code / "pointkd" / "__main__.py").write_text(main)
    checkout = Path(__file__).resolve().parents[1]
    log = tmp_path / "child.log"
    assert pointkd_command(code, ["eval", "--k", "auto"], log, checkout) == 0
    line = log.read_text().splitlines()[-1]
    assert line == f"pinned {code / 'pointkd' / '__init__.py'} ['eval', '--k', 'auto']"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_background_training_stops_on_a_signal_with_its_checkpoint(tmp_path, sig):
    """Started as a non-interactive shell starts a background job (SIGINT ignored), `pointkd train` still saves its
    checkpoint and stops on SIGINT or SIGTERM, so a campaign can be stopped and resumed."""
    config = {**TINY, "train": {**TINY["train"], "epochs": 10_000}}
    config["model"] = {"name": "dgcnn_student", "overrides": {"widths": [8, 16], "mlp": [16], "k": 4}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    env = {**os.environ, "POINTKD_JEMALLOC": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pointkd", "train", "--config", str(tmp_path / "c.yaml"), "--out", str(out)]
    child = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    lines = []
    for line in child.stdout:
        lines.append(line)
        if "epoch 2" in line:
            break
    child.send_signal(sig)
    rest, _ = child.communicate(timeout=60)
    assert child.returncode == 130, "".join(lines) + rest
    assert "interrupted" in rest and (out / "last.pt").is_file()


def test_the_jemalloc_reexec_repeats_the_command_as_the_interpreter_got_it():
    code = "import sys; from pointkd.process import reexec_command; print(reexec_command())"
    out = subprocess.run([sys.executable, "-c", code, "train", "--x"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == repr([sys.executable, "-c", code, "train", "--x"])


def test_a_stopped_training_stops_the_campaign_without_an_error(tmp_path, monkeypatch):
    plan = load_plan(_write(tmp_path, _runs(tmp_path)))
    monkeypatch.setattr("pointkd.campaign.runner.pointkd_command", lambda *a: 130)
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_campaign(plan, WORKDIR, log=logs.append)
    assert logs[-1] == "[t] stopped; its checkpoint is kept and the same command resumes it"
    assert [s.state for s in plan_states(plan)] == ["todo", "waiting"]  # the lock is released


@pytest.mark.parametrize("plan_file", sorted((Path(__file__).parents[1] / "benchmarks" / "campaign").glob("*.yaml")))
def test_committed_plans_load_and_every_run_config_resolves(plan_file, tmp_path):
    plan = load_plan(plan_file, runs_dir=tmp_path)
    for spec in plan.runs:
        cfg = load_config(spec.config, spec.set_args())
        if cfg.train.init:
            assert (plan.repo / cfg.train.init).is_file(), f"{spec.name}: train.init {cfg.train.init} is missing"
        if spec.init and spec.init not in {r.name for r in plan.runs}:
            assert (plan.repo / spec.init).is_file(), f"{spec.name}: init {spec.init} is missing"
        if spec.teacher and spec.teacher not in {r.name for r in plan.runs}:
            assert (plan.repo / spec.teacher).is_file(), f"{spec.name}: teacher {spec.teacher} is missing"


def test_a_resumed_run_is_timed_over_all_its_sittings(tmp_path):
    """The status table's time left uses every sitting's time, not the last sitting's over all epochs."""
    plan = load_plan(_write(tmp_path, _runs(tmp_path)))
    folder = plan.folder(plan.run("t"))
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"train": {"epochs": 8}}))
    history = [{"epoch": 1, "elapsed_s": 600.0}, {"epoch": 2, "elapsed_s": 1200.0}, {"epoch": 3, "elapsed_s": 600.0}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (folder / "last.pt").write_bytes(b"")
    state = plan_states(plan)[0]
    assert state.state == "partial" and state.epochs_left == 5
    assert state.seconds_per_epoch == pytest.approx(600.0)
    assert "0 h 50 min" in status_table(plan).splitlines()[3]  # 5 epochs x 10 min


def test_an_untimed_method_is_timed_from_its_configs_other_runs(tmp_path):
    runs = _runs(tmp_path)
    runs.append({**runs[1], "name": "kd-s1", "set": {"seed": 2, "distill.method": "kd"}})
    plan = load_plan(_write(tmp_path, runs))
    folder = plan.folder(plan.run("lsp-s1"))
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "elapsed_s": 1200.0}) + "\n")
    (folder / "last.pt").write_bytes(b"")
    rows = {line.split()[0]: line for line in status_table(plan).splitlines()[3:6]}
    assert rows["t"].endswith("?")  # the teacher's config has no timed run
    assert rows["lsp-s1"].endswith("0 h 20 min") and rows["kd-s1"].endswith("0 h 40 min")  # TINY has 2 epochs


def test_train_seconds_adds_up_the_sittings():
    """``elapsed_s`` restarts at each resume: the record's time is the sum of each sitting's last value."""
    one_sitting = [{"elapsed_s": 10.0}, {"elapsed_s": 21.0}, {"elapsed_s": 30.5}]
    assert train_seconds(one_sitting) == 30.5
    resumed_twice = [
        {"elapsed_s": 10.0},
        {"elapsed_s": 20.0},
        {"elapsed_s": 9.0},
        {"elapsed_s": 4.0},
        {"elapsed_s": 8.0},
    ]
    assert train_seconds(resumed_twice) == 20.0 + 9.0 + 8.0


def _trained_not_recorded(tmp_path, monkeypatch):
    """A plan whose teacher run "t" trained and then lost its machine before its record was written."""
    from pointkd.campaign import runner

    plan = load_plan(_write(tmp_path, _runs(tmp_path)))

    def crash(*_a, **_k):
        raise runner.CampaignError("the machine went away")

    monkeypatch.setattr(runner, "finish_run", crash)
    with pytest.raises(runner.CampaignError):
        run_campaign(plan, WORKDIR, log=lambda m: None)
    assert plan_states(plan)[0].state == "trained"
    return plan, plan.run("t")


def test_a_parked_run_resumes_on_a_machine_without_its_folder(tmp_path, monkeypatch):
    import shutil

    from pointkd.campaign import inflight
    from pointkd.campaign.state import inflight_dir, read_history

    plan, t = _trained_not_recorded(tmp_path, monkeypatch)
    messages: list[str] = []
    assert inflight.park(plan, max_mb=1e-4, log=messages.append) == []  # over the size cap: nothing copied
    assert "not parked" in messages[0] and not inflight_dir(plan, t).exists()
    assert inflight.park(plan, log=messages.append) == ["t"]
    parked = read_history(inflight_dir(plan, t))
    assert [h["epoch"] for h in parked] == [1, 2] and (inflight_dir(plan, t) / "code.txt").is_file()
    shutil.rmtree(plan.folder(t))  # a new machine: the run folder is gone, the committed records are not
    assert plan_states(plan)[0].state == "parked"
    monkeypatch.undo()
    logs: list[str] = []
    assert run_campaign(plan, WORKDIR, log=logs.append, only=["t"]) == 1
    assert any("restored its parked state" in line for line in logs)
    record = json.loads(plan.record_path(t).read_text())
    assert [h["train_loss"] for h in record["history"]] == [h["train_loss"] for h in parked]  # resumed, not retrained
    assert not inflight_dir(plan, t).exists()  # the record and the shipped copy replace the parked state


def test_the_robustness_pair_differs_only_in_the_corruption_augmentations(tmp_path):
    from pointkd.data import TrainAugment
    from pointkd.train.trainer import train_augment

    plan = load_plan(Path(__file__).parents[1] / "benchmarks" / "campaign" / "robustness.yaml", runs_dir=tmp_path)
    plain, robust = (load_config(s.config, s.set_args()) for s in plan.runs)
    a, b = plain.to_dict(), robust.to_dict()
    assert {k: v for k, v in a.items() if k != "data"} == {k: v for k, v in b.items() if k != "data"}
    changed = {k for k in a["data"] if a["data"][k] != b["data"][k]}
    assert changed == {"stretch", "outliers", "drop_global", "drop_local"}
    assert train_augment(plain) == TrainAugment(num_points=1024)  # the control trains as the shipped recipe did
    best = "benchmarks/checkpoints/campaign2/lsp_med80_tail1024-s1.pt"  # campaign #29's best student
    assert [s.init for s in plan.runs] == [best] * 2


def test_the_summary_puts_the_papers_figure_of_each_groups_method_beside_it():
    def run(name: str, method: str, student: str = "dgcnn_student") -> dict:
        return {
            "name": name,
            "method": method,
            "seed": 1,
            "student": student,
            "oa_1024": 0.87,
            "macc_1024": 0.8,
            "oa_512": 0.86,
        }

    s = {"teachers": [], "runs": [run("lsp_med20-s1", "lsp"), run("kd20-s1", "kd"), run("x-s1", "lsp", "other")]}
    lines = summary_markdown(s).splitlines()
    assert "| lsp_med20 | dgcnn_student | 1 | 87.00 | 80.00 | 86.00 | 91.9 |" in lines
    assert "| kd20 | dgcnn_student | 1 | 87.00 | 80.00 | 86.00 | 91.6 |" in lines
    assert "| x | other | 1 | 87.00 | 80.00 | 86.00 | - |" in lines  # not the paper's student: no paper figure


def test_a_state_over_the_cap_parks_compact_and_resumes_from_it(tmp_path, monkeypatch):
    import shutil

    import torch

    from pointkd.campaign import inflight
    from pointkd.campaign.state import inflight_dir
    from pointkd.checkpoint import load_checkpoint

    plan, t = _trained_not_recorded(tmp_path, monkeypatch)
    folder, dest = plan.folder(t), inflight_dir(plan, t)
    full = sum((folder / n).stat().st_size for n in inflight.FILES if (folder / n).is_file()) / 2**20
    messages: list[str] = []
    assert inflight.park(plan, max_mb=0.7 * full, log=messages.append) == ["t"]  # whole it is over; compact fits
    assert "compact" in messages[0] and not (dest / "best.pt").exists()
    live, parked = load_checkpoint(folder / "last.pt"), load_checkpoint(dest / "last.pt")
    assert {v.dtype for v in parked["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    momentum = [s["momentum_buffer"] for s in parked["optimizer"]["state"].values()]
    assert momentum and {m.dtype for m in momentum} == {torch.float16}
    for key, value in live["state_dict"].items():
        torch.testing.assert_close(parked["state_dict"][key].to(value.dtype), value, rtol=2**-10, atol=1e-4)
    assert parked["history"] == live["history"] and (parked["epoch"], parked["batch"]) == (live["epoch"], 0)
    before = (dest / "last.pt").read_bytes()
    assert inflight.park(plan, max_mb=1e-4, log=messages.append) == []  # not even compact fits now
    assert "not parked" in messages[-1] and "earlier parked state is kept" in messages[-1]
    assert (dest / "last.pt").read_bytes() == before and (dest / inflight.COMPACT).is_file()  # the old one stays
    assert not dest.with_name(dest.name + inflight.STAGING).exists()
    shutil.rmtree(dest)
    assert inflight.park(plan, max_mb=1e-4, log=messages.append) == [] and not dest.exists()
    assert "nothing is parked" in messages[-1]
    inflight.park(plan, max_mb=0.7 * full, log=lambda m: None)
    shutil.rmtree(folder)  # a new machine
    monkeypatch.undo()
    logs: list[str] = []
    assert run_campaign(plan, WORKDIR, log=logs.append, only=["t"]) == 1
    assert any("restored its parked state" in line and "compact" in line for line in logs)
    assert json.loads(plan.record_path(t).read_text())["epochs"] == 2
