"""Long training campaigns that survive interruptions: a plan of runs, a resumable runner, status and summary."""

from .plan import Plan, RunSpec, load_plan
from .report import status_table, summary, write_summary
from .runner import CampaignError, run_campaign

__all__ = ["CampaignError", "Plan", "RunSpec", "load_plan", "run_campaign", "status_table", "summary", "write_summary"]
