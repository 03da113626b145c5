"""``poseprior list``: the registered priors and joint layouts."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="list the registered priors and joint layouts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import list_layouts, list_priors, prior_class

    print("priors:")
    for name in list_priors():
        cls = prior_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:12s} {'exact' if cls.has_exact_log_prob else 'estimate':8s} {doc}")
    print("layouts:", ", ".join(list_layouts()))
    return 0
