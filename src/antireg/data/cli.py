"""``antireg data list`` and ``antireg data fetch NAME``: what is known, what is here, and getting the rest."""

from __future__ import annotations

import argparse
from pathlib import Path

from .files import ENV_VAR, DataError, checksum_problem, default_data_dir


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data list`` and ``data fetch`` to the ``antireg`` command's subparsers."""
    data = subparsers.add_parser("data", help="list the known data sets and where they are; fetch one when online")
    actions = data.add_subparsers(dest="data_command", required=True)
    listing = actions.add_parser("list", help="each data set: present, missing or corrupt, and its path")
    fetch = actions.add_parser("fetch", help="download data sets from their official sources, verified by checksum")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="data set name(s), as in `antireg data list`")
    for p in (listing, fetch):
        p.add_argument("--data-dir", type=Path, default=None,
                       help=f"data folder (default ${ENV_VAR}, else the per-user data folder)")


def _status(info, data_dir: Path) -> str:
    """'built in', 'present', 'missing k/N' or 'corrupt k/N' (N files in all)."""
    if not info.files:
        return "built in"
    missing = [s for s in info.files if not (data_dir / s.relpath).is_file()]
    if missing:
        return f"missing {len(missing)}/{len(info.files)}"
    corrupt = [s for s in info.files if checksum_problem(data_dir / s.relpath, s)]
    return f"corrupt {len(corrupt)}/{len(info.files)}" if corrupt else "present"


def run(args: argparse.Namespace) -> int:
    from . import DATASETS, load_dataset

    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    if args.data_command == "list":
        print(f"data folder: {data_dir}")
        width = max(map(len, DATASETS))
        for name, info in DATASETS.items():
            where = sorted({str(Path(s.relpath).parts[0]) + "/" for s in info.files})
            print(f"  {name:<{width}}  {_status(info, data_dir):<11}  {' '.join(where) or '-':<19}  {info.description}")
        return 0
    unknown = [n for n in args.names if n not in DATASETS]
    if unknown:
        raise DataError(f"unknown data set(s) {', '.join(unknown)}; `antireg data list` shows the known ones")
    for name in args.names:
        if not DATASETS[name].files:
            print(f"{name}: bundled with scikit-learn or generated, nothing to fetch")
            continue
        # the loader knows archives and members; reading the data proves the files usable
        ds = load_dataset(name, data_dir, download=True)
        print(f"{name}: ready in {data_dir} ({len(ds.y)} rows)")
    return 0
