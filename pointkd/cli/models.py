"""``pointkd models``: the registered model configs with their parameter counts."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("models", help="list the registered model configs with their parameter counts")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..models import create_model, list_models, model_config

    print(f"{'name':<22} {'params':>10}  description")
    for name in list_models():
        print(f"{name:<22} {create_model(name).num_parameters:>10,}  {model_config(name).description}")
    return 0
