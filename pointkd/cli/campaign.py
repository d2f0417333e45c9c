"""``pointkd campaign``: a plan of training runs that survives interruptions; status, summary, park."""

from __future__ import annotations

import argparse

from ..campaign.inflight import MAX_MB


def add_parser(sub: argparse._SubParsersAction) -> None:
    camp = sub.add_parser(
        "campaign",
        help="run a plan of training runs that survives interruptions; its status; its summary",
        description="A plan (YAML) lists runs: a config, overrides, a teacher, the runs it waits for. `run` starts "
        "the next unfinished run, resumes an interrupted one from its last checkpoint, skips finished ones, and "
        "finishes each with evaluations at 512 and 1024 test points (k scaled), a shipped checkpoint and a small "
        "committed record. Runs train from one pinned commit (a git worktree) in folders outside the checkout.",
    )
    camp_sub = camp.add_subparsers(dest="campaign_command", metavar="ACTION", required=True)
    for action, text in (
        ("run", "work through the plan (Ctrl-C or SIGTERM: the current run saves and stops)"),
        ("status", "per run: state, epochs, latest test OA, time left"),
        ("summary", "write summary.json / summary.md from the committed records"),
        ("park", "copy each unfinished run's resume state into the records (commit it; `run` restores it)"),
    ):
        p = camp_sub.add_parser(action, help=text)
        p.add_argument("plan", help="the plan's YAML file")
        p.add_argument("--runs-dir", default=None, help="run folders (default: $POINTKD_CAMPAIGNS or ~/.cache/...)")
        if action == "run":
            p.add_argument("--code", default=None, help="commit for new runs (default: the pinned one, else HEAD)")
            p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="only these runs")
            p.add_argument("--max-runs", type=int, default=None, help="stop after finishing this many runs")
            p.add_argument(
                "--wait", action="store_true", help="while another process holds a run, wait for it (poll every 60 s)"
            )
        if action == "park":
            p.add_argument(
                "--max-mb", type=float, default=MAX_MB, help=f"skip a run whose state is larger (default {MAX_MB:g})"
            )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..campaign import load_plan, run_campaign, status_table, write_summary

    plan = load_plan(args.plan, args.runs_dir)
    if args.campaign_command == "status":
        print(status_table(plan))
    elif args.campaign_command == "summary":
        print(f"wrote {write_summary(plan)}")
    elif args.campaign_command == "park":
        from ..campaign.inflight import park

        parked = park(plan, args.max_mb)
        print(f"{len(parked)} run(s) parked under {plan.records / 'inflight'}" if parked else "nothing to park")
    else:
        log = lambda m: print(m, flush=True)  # noqa: E731
        n = run_campaign(plan, args.code, args.only, args.max_runs, log, wait_s=60.0 if args.wait else None)
        print(status_table(plan))  # summary.json/md: rewritten by the runner after each finished run
        print(f"{n} run(s) finished in this sitting")
    return 0
