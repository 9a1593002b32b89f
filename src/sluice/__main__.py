"""The ``sluice`` command: one image, several roles.

Each role lives in its own package and is imported only when chosen, so ``sluice worker`` does not pay for
FastAPI and ``sluice api`` does not pay for psycopg. Every role module exposes ``add_arguments(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# role -> (module holding add_arguments/run, one-line help)
ROLES: dict[str, tuple[str, str]] = {
    "api": ("sluice.api.cli", "serve the REST API (writes Secrets and Connector resources)"),
    "operator": ("sluice.operator.cli", "run the kopf operator that turns Connectors into workers"),
    "worker": ("sluice.worker.cli", "run one connector's replication worker"),
    "dev": ("sluice.devstack.cli", "local control plane, sample databases, operator, API and a demo connector"),
    "generate": ("sluice.schemagen", "write crds/ and the OpenAPI document from the models"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluice", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="role", required=True, metavar="ROLE")
    for role, (module_name, help_text) in ROLES.items():
        role_parser = sub.add_parser(role, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(role_parser)
        role_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="sluice", add_help=False)
    parser.add_argument("role", nargs="?")
    known, _ = parser.parse_known_args(args_list[:1])
    if known.role in ROLES:
        # Import only the chosen role's module: roles have heavy, unrelated dependencies.
        module = importlib.import_module(ROLES[known.role][0])
        role_parser = argparse.ArgumentParser(prog=f"sluice {known.role}", description=ROLES[known.role][1])
        module.add_arguments(role_parser)
        args = role_parser.parse_args(args_list[1:])
        result: int = module.run(args)
        return result
    build_parser().parse_args(args_list)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
